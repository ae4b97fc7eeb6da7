"""End to end with the real exported models (random-init, via the project's export command).

Cases are small (the encoder costs the same for any image size, so the number of encoder calls
is what costs time): every modality once through the CLI with OpenVINO, a subset with ONNX
Runtime for agreement and again with OpenVINO for byte-identical determinism.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import make_work_dir

from infer.cli import main
from infer.models import load_model
from infer.postprocess import RegionMask, mask_from_logits, valid_low_res
from infer.predictor import SlicePredictor
from infer.volume import segment_volume
from test_demo.generate import SCENES, CaseSpec, generate_case, write_case

pytestmark = pytest.mark.slow

AGREEMENT = ("2DBox_US_0003.npz", "2DBox_X-Ray_0004.npz", "3DBox_CT_0000.npz")  # both models, 2D and 3D
REPEAT = ("2DBox_US_0003.npz", "3DBox_CT_0000.npz")


@pytest.fixture(scope="module")
def real_models(export_random_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real_models")
    return make_work_dir(root / "work_dir", export_random_model("litemedsam", 0),
                         export_random_model("efficientsam_vitt", 0))


def _small_cases(folder: Path) -> dict[str, np.ndarray]:
    """One small case per modality plus a later-box-wins trio; returns name -> boxes as written."""
    written = {}
    for i, (modality, (dim, _)) in enumerate(SCENES.items()):
        shape = {"CT": (3, 40, 48), "MR": (2, 40, 48), "PET": (4, 32, 32)}.get(modality, (64, 80))
        case = generate_case(CaseSpec(modality, dim, shape, 1 if modality == "PET" else 2,
                                      f"{dim}Box_{modality}_{i:04d}"), seed=100 + i)
        if modality == "PET":  # keep the coronal and sagittal sweeps short: 3 slices each
            case.boxes = np.array([[10, 10, 1, 12, 12, 2]])
        if modality == "CT":  # overlapping z ranges, and a single-slice box crossing the border
            case.boxes = np.array([[5, 5, 0, 30, 30, 2], [10, 10, 1, 20, 20, 2], [30, 20, 1, 60, 30, 1]])
        write_case(case, folder)
        written[f"{case.name}.npz"] = case.boxes
    image = generate_case(CaseSpec("Endoscopy", "2D", (64, 80), 1, "2DBox_Endoscopy_lbw"), seed=7).imgs
    trio = {"2DBox_Endoscopy_9001.npz": [[10, 10, 60, 50], [25, 20, 50, 45]],
            "2DBox_Endoscopy_9002.npz": [[10, 10, 60, 50]], "2DBox_Endoscopy_9003.npz": [[25, 20, 50, 45]]}
    for name, boxes in trio.items():
        np.savez_compressed(folder / name, imgs=image, boxes=np.array(boxes))
        written[name] = np.array(boxes)
    return written


def _run(inputs: Path, outputs: Path, models: Path, cache: Path, *extra: str) -> dict[str, dict[str, str]]:
    csv_path = outputs.parent / f"{outputs.name}.csv"
    code = main(["-i", str(inputs), "-o", str(outputs), "--models", str(models), "--cache-dir", str(cache),
                 "--efficiency-csv", str(csv_path), *extra])
    assert code == 0
    with open(csv_path) as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def openvino_run(real_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    boxes = _small_cases(root / "in")
    rows = _run(root / "in", root / "openvino", real_models, root / "cache")
    return root, boxes, rows


def _segs(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == ["segs"]
        return archive["segs"]


def test_outputs_have_the_input_names_shapes_and_labels(openvino_run):
    root, boxes, rows = openvino_run
    assert sorted(p.name for p in (root / "openvino").iterdir()) == sorted(boxes)
    for name, case_boxes in boxes.items():
        with np.load(root / "in" / name) as archive:
            imgs = archive["imgs"]
        segs = _segs(root / "openvino" / name)
        assert segs.dtype == np.uint16
        assert segs.shape == (imgs.shape[:2] if name.startswith("2D") else imgs.shape)
        assert set(np.unique(segs)) <= set(range(len(case_boxes) + 1))
    assert all(row["status"] == "ok" for row in rows.values())
    assert sum(_segs(root / "openvino" / name).any() for name in boxes) >= len(boxes) // 2  # not all empty


def _distinct(boxes: np.ndarray, shape: tuple[int, int, int], lo: int, hi: int, axis: int) -> int:
    return len({z for b in boxes for z in range(int(b[lo]), min(int(b[hi]), shape[axis] - 1) + 1)})


def test_3d_encoder_calls_are_the_distinct_view_slices(openvino_run):
    root, boxes, rows = openvino_run
    for name in ("3DBox_CT_0000.npz", "3DBox_MR_0001.npz", "3DBox_PET_0002.npz"):
        with np.load(root / "in" / name) as archive:
            shape = archive["imgs"].shape
        expected = _distinct(boxes[name], shape, 2, 5, 0)
        if "PET" in name.split("_")[1]:
            expected += _distinct(boxes[name], shape, 1, 4, 1) + _distinct(boxes[name], shape, 0, 3, 2)
        assert int(rows[name]["encoder_calls"]) == expected, name
    assert int(rows["3DBox_PET_0002.npz"]["encoder_calls"]) == 2 + 3 + 3
    # the default 3D strategy (axial_iou) decodes each box's 3D box xy beside its prompt: 2 x 3 slices x 2 boxes
    assert (rows["3DBox_CT_0000.npz"]["encoder_calls"], rows["3DBox_CT_0000.npz"]["decoded_boxes"]) == ("3", "12")


def test_later_box_wins_with_a_real_model(openvino_run):
    root, _, _ = openvino_run
    both, first, second = (_segs(root / "openvino" / f"2DBox_Endoscopy_900{i}.npz") for i in (1, 2, 3))
    assert ((first > 0) & (second > 0)).any(), "random model gave disjoint masks: the test would prove nothing"
    expected = np.where(second > 0, 2, np.where(first > 0, 1, 0))
    assert (both != expected).mean() < 1e-3  # batched vs single decoding: float noise at most


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    scores = []
    for label in set(np.unique(a)) | set(np.unique(b)):
        if label == 0:
            continue
        x, y = a == label, b == label
        scores.append(2 * (x & y).sum() / (x.sum() + y.sum()))
    return float(np.mean(scores)) if scores else 1.0


def _copy_cases(root, names, folder: str):
    """Copy the named input cases of the OpenVINO run into root/folder (a fresh input folder)."""
    target = root / folder
    target.mkdir()
    for name in names:
        (target / name).write_bytes((root / "in" / name).read_bytes())
    return target


def test_onnxruntime_agrees_with_openvino(openvino_run, real_models):
    root, _, _ = openvino_run
    subset = _copy_cases(root, AGREEMENT, "subset")
    _run(subset, root / "onnxruntime", real_models, root / "cache", "--backend", "onnxruntime")
    for name in AGREEMENT:
        assert _dice(_segs(root / "openvino" / name), _segs(root / "onnxruntime" / name)) >= 0.99, name


def test_a_second_run_writes_identical_bytes(openvino_run, real_models):
    root, _, _ = openvino_run
    again = _copy_cases(root, REPEAT, "again_in")
    _run(again, root / "again", real_models, root / "cache")
    for name in REPEAT:
        assert (root / "again" / name).read_bytes() == (root / "openvino" / name).read_bytes(), name


def _pasted(mask: RegionMask | None, shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, bool)
    if mask is not None:
        canvas[mask.top:mask.top + mask.mask.shape[0], mask.left:mask.left + mask.mask.shape[1]] = mask.mask
    return canvas


class CountingSession:
    """Wraps a real session and counts its calls."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def run(self, feeds):
        self.calls += 1
        return self.inner.run(feeds)


def test_encoder_calls_counted_by_an_instrumented_real_session(real_models, tmp_path):
    model = load_model(real_models / "litemedsam", "openvino", 2, tmp_path / "cache")
    encoder, decoder = CountingSession(model.encoder), CountingSession(model.decoder)
    predictor = SlicePredictor(type(model)(model.spec, encoder, decoder))
    volume = generate_case(CaseSpec("MR", "3D", (4, 32, 40), 1, "3DBox_MR_t"), seed=9).imgs
    boxes = np.array([[3, 4, 0, 20, 25, 3], [10, 10, 1, 30, 20, 2], [5, 5, 2, 8, 9, 2]], float)
    labels = segment_volume(predictor, volume, boxes, views=("axial",))
    assert encoder.calls == 4  # slices 0-3, although the boxes need 4 + 2 + 1 (box, slice) pairs
    assert decoder.calls == 4  # up: 1, 2, 3 (z_mid 1, 1, 2); down: 0
    assert labels.shape == volume.shape and labels.dtype == np.uint16


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_batched_decoding_equals_per_box_decoding(real_models, backend, tmp_path):
    model = load_model(real_models / "litemedsam", backend, 2, tmp_path / "cache")
    predictor = SlicePredictor(model)
    image = generate_case(CaseSpec("Fundus", "2D", (96, 128), 3, "2DBox_Fundus_t"), seed=3).imgs
    predictor.set_image(image)
    boxes = np.array([[5, 5, 60, 50], [40, 30, 120, 90], [0, 0, 127, 95], [70, 10, 80, 20], [33, 44, 55, 66]], float)
    batched, batched_iou = predictor.predict_logits(boxes)
    single = [predictor.predict_logits(boxes[i:i + 1]) for i in range(len(boxes))]
    np.testing.assert_allclose(batched, np.concatenate([s[0] for s in single]), atol=1e-3)
    np.testing.assert_allclose(batched_iou, np.concatenate([s[1] for s in single]), atol=1e-4)
    valid = valid_low_res(model.spec.preprocess, predictor.image_state.geometry, 256)
    for i in range(len(boxes)):
        a = _pasted(mask_from_logits(batched[i], valid, image.shape[:2]), image.shape[:2])
        b = _pasted(mask_from_logits(single[i][0][0], valid, image.shape[:2]), image.shape[:2])
        assert (a != b).mean() < 1e-3


def test_openvino_results_are_owned_copies(real_models, tmp_path):
    """OpenVINO reuses an infer request's output buffer (docs/reference_systems.md section 7 #1): a kept result must not
    change when the next call runs."""
    model = load_model(real_models / "litemedsam", "openvino", 2, tmp_path / "cache")
    embedding = np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)
    first = model.decoder.run({"image_embeddings": embedding, "boxes": np.array([[10, 10, 100, 100]], np.float32)})
    kept = {k: v.copy() for k, v in first.items()}
    model.decoder.run({"image_embeddings": embedding * -1, "boxes": np.array([[150, 20, 250, 80]], np.float32)})
    for key in kept:
        np.testing.assert_array_equal(first[key], kept[key])
