"""File-name parsing (whole tokens, aliases) and the routing table."""
from __future__ import annotations

import json

import pytest

from infer.errors import RoutingError
from challenge.names import MODALITIES, parse_case_name
from infer.routing import DEFAULT_ROUTING, load_routing


@pytest.mark.parametrize("name,dimension,modality", [
    ("2DBox_OCT_0001.npz", "2D", "OCT"),          # contains "CT": must not become CT
    ("3DBox_CT_0566.npz", "3D", "CT"),
    ("3DBox_PET_0001.npz", "3D", "PET"),
    ("2DBox_Microscope_0016.npz", "2D", "Microscope"),
    ("2DBox_Microscopy_0016.npz", "2D", "Microscope"),
    ("2DBox_X-Ray_0053.npz", "2D", "X-Ray"),
    ("2DBox_XRay_0053.npz", "2D", "X-Ray"),
    ("2DBox_xray_1.npz", "2D", "X-Ray"),
    ("3DBox_MR_demo.npz", "3D", "MR"),
    ("3DBox_MRI_demo.npz", "3D", None),           # not a known token: no prefix matching
    ("2DBox_CTA_1.npz", "2D", None),
    ("3DBox_PETCT_1.npz", "3D", None),
    ("2DBox.npz", "2D", None),
    ("case_CT_1.npz", None, "CT"),
])
def test_case_names(name, dimension, modality):
    parsed = parse_case_name(name)
    assert (parsed.dimension, parsed.modality) == (dimension, modality)


def test_every_test_set_spelling_is_its_own_canonical_form():
    for token in MODALITIES:
        assert parse_case_name(f"2DBox_{token}_1.npz").modality == token


def test_default_table_routes_as_the_mission_says():
    table = load_routing(DEFAULT_ROUTING)
    pet = table.route_for("3D", "PET")
    assert pet.strategy == "three_view_vote" and table.models[pet.model] == "litemedsam"
    micro = table.route_for("2D", "Microscope")
    assert micro.model == pet.model and micro.strategy == "image"
    xray = table.route_for("2D", "X-Ray")
    assert table.models[xray.model].startswith("efficientsam")
    base = table.route_for("2D", "CT")
    assert table.models[base.model] == "litemedsam" and base.model != pet.model
    for modality in ("CT", "MR", None):
        route = table.route_for("3D", modality)
        assert (route.model, route.strategy) == (base.model, "axial_iou")
    for modality in ("US", "Dermoscopy", "Endoscopy", "Fundus", "Mammography", "OCT", None):
        assert table.route_for("2D", modality) == table.route_for("2D", "*")
    assert table.propagation_margin == 3


def _write(tmp_path, **changes):
    data = json.loads(DEFAULT_ROUTING.read_text())
    data.update(changes)
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(data))
    return path


def _routes(*rows):
    return [{"dimension": d, "modality": m, "model": "litemedsam", "strategy": s} for d, m, s in rows]


def test_a_user_table_with_aliases(tmp_path):
    path = _write(tmp_path, routes=_routes(("2D", "Microscopy", "image"), ("2D", "*", "image"), ("3D", "*", "axial")))
    assert load_routing(path).route_for("2D", "Microscope").modality == "Microscope"


@pytest.mark.parametrize("changes,message", [
    ({"routes": _routes(("2D", "*", "image"))}, "no default route for 3D (add one with modality '*')"),
    ({"routes": _routes(("2D", "*", "image"), ("3D", "*", "image"))},
     "routes[1]: strategy 'image' is not valid for 3D; expected one of ['axial', 'three_view_vote', 'axial_iou', 'axial_iou_stride3']"),
    ({"routes": _routes(("2D", "*", "axial"), ("3D", "*", "axial"))},
     "routes[0]: strategy 'axial' is not valid for 2D; expected one of ['image', 'image_zoom']"),
    ({"routes": _routes(("2D", "Xray-ish", "image"), ("3D", "*", "axial"))},
     "routes[0]: unknown modality 'Xray-ish'; expected '*' or one of CT, MR, PET, US, X-Ray, Dermoscopy, "
     "Endoscopy, Fundus, Microscope, Mammography, OCT"),
    ({"routes": _routes(("2D", "*", "image"), ("3D", "*", "axial"), ("3D", "*", "axial"))}, "two routes for 3D/*"),
    ({"routes": _routes(("4D", "*", "image"))}, "routes[0]: dimension '4D' is not one of ['2D', '3D']"),
    ({"format_version": 7}, "format_version 7 is not supported (expected 1)"),
    ({"propagation_margin": -1}, "propagation_margin must be a number from 0 to 64 (model-input pixels), got -1"),
    ({"propagation_margin": "3"}, "field 'propagation_margin' must be a number, got '3'"),
])
def test_bad_tables(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(RoutingError) as info:
        load_routing(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_route_must_name_a_listed_model(tmp_path):
    rows = _routes(("2D", "*", "image"), ("3D", "*", "axial"))
    rows[0]["model"] = "mystery"
    path = _write(tmp_path, routes=rows)
    with pytest.raises(RoutingError, match=r"routes\[0\]: model 'mystery' is not listed in 'models'"):
        load_routing(path)


def test_unreadable_and_invalid_tables(tmp_path):
    with pytest.raises(RoutingError, match="cannot read routing table"):
        load_routing(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RoutingError, match="not valid JSON"):
        load_routing(bad)


def _departures(table_name: str, model: str) -> dict[tuple[str, str | None], tuple[str, str]]:
    """Every (dimension, modality) where ``table_name`` picks another strategy than the mission table:
    the pair (mission's, table's). Checks on the way that ``model`` serves every route."""
    mission = load_routing(DEFAULT_ROUTING)
    table = load_routing(DEFAULT_ROUTING.with_name(table_name))
    assert table.propagation_margin == mission.propagation_margin
    found = {}
    for modality in (*MODALITIES, None):
        for dimension in ("2D", "3D"):
            planned, served = mission.route_for(dimension, modality), table.route_for(dimension, modality)
            assert served.model == model, (dimension, modality)
            if served.strategy != planned.strategy:
                found[(dimension, modality)] = (planned.strategy, served.strategy)
    return found


def test_demo_table_serves_all_with_the_demo_model_and_departs_from_the_mission_only_where_validated():
    # where validation draws said so (routing_demo.json): 2D zoom except Ultrasound, PET axial;
    # axial_iou was measured with the official weights only
    expected = {("2D", m): ("image", "image_zoom") for m in (*MODALITIES, None) if m != "US"}
    expected |= {("3D", m): ("axial_iou", "axial") for m in (*MODALITIES, None) if m != "PET"}
    expected[("3D", "PET")] = ("three_view_vote", "axial")
    assert _departures("routing_demo.json", "demo") == expected


def test_official_table_serves_all_with_the_official_model_and_departs_from_the_mission_only_for_pet():
    # the three-view vote lost on every PET draw measured with the official weights
    assert _departures("routing_official.json", "litemedsam") == {("3D", "PET"): ("three_view_vote", "axial_iou")}
