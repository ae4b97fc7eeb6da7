"""Demo-case generator: challenge contract, tight boxes, determinism, seed ranges, CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from challenge.names import MODALITIES
from test_demo import generate as gen
from test_demo.generate import (BENCHMARK_WORKLOAD, DEMO_CASES, CaseSpec, bounding_boxes, case_seed, generate_case,
                                training_cases, write_case)

REPO = Path(__file__).resolve().parents[1]
# The challenge's modality tokens (docs/reference_systems.md section 1.2, test spelling) and their dimension.
CHALLENGE_MODALITIES = {"CT": "3D", "MR": "3D", "PET": "3D", "US": "2D", "X-Ray": "2D", "Dermoscopy": "2D",
                        "Endoscopy": "2D", "Fundus": "2D", "Microscope": "2D", "Mammography": "2D", "OCT": "2D"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """The demo set written by the CLI in a separate process (base seed 0)."""
    out = tmp_path_factory.mktemp("demo")
    subprocess.run([sys.executable, "-m", "test_demo.generate", "--out", str(out)], check=True, cwd=REPO, capture_output=True)
    return out


def _tight_boxes(gts: np.ndarray, n: int) -> np.ndarray:
    """Independent recomputation: min / max of np.nonzero per label, reordered to x, y(, z)."""
    rows = []
    for k in range(1, n + 1):
        idx = np.nonzero(gts == k)
        lo, hi = [int(i.min()) for i in idx], [int(i.max()) for i in idx]
        rows.append(lo[::-1] + hi[::-1])
    return np.array(rows)


def test_demo_cases_cover_every_modality_with_small_sizes():
    assert {s.modality for s in DEMO_CASES} == set(CHALLENGE_MODALITIES)
    for spec in DEMO_CASES:
        assert spec.dim == CHALLENGE_MODALITIES[spec.modality]
        assert 1 <= spec.n_objects <= 8
        assert np.prod(spec.shape) <= 64 * 192 * 192


def test_benchmark_workload_matches_design_section_6():
    sized = {(s.modality, s.shape): s.n_objects for s in BENCHMARK_WORKLOAD}
    assert sized[("CT", (287, 512, 512))] == 6
    assert ("MR", (64, 290, 320)) in sized
    assert sized[("PET", (264, 200, 200))] == 2
    assert sized[("Microscope", (1920, 2560))] == 241
    assert ("Dermoscopy", (3024, 4032)) in sized
    assert sized[("Mammography", (2604, 1726))] == 4
    assert sized[("X-Ray", (320, 640))] == 34
    assert {"US", "Endoscopy", "Fundus"} <= {s.modality for s in BENCHMARK_WORKLOAD}
    assert len({s.name for s in BENCHMARK_WORKLOAD}) == len(BENCHMARK_WORKLOAD)


@pytest.mark.parametrize("spec", DEMO_CASES, ids=lambda s: s.name)
def test_written_case_follows_the_contract(demo_dir, spec: CaseSpec):
    dim, modality = spec.name.split("_")[:2]
    assert (dim, modality) == (f"{spec.dim}Box", spec.modality)
    with np.load(demo_dir / "imgs" / f"{spec.name}.npz", allow_pickle=False) as f:
        inp = {k: f[k] for k in f.files}
    with np.load(demo_dir / "gts" / f"{spec.name}.npz", allow_pickle=False) as f:
        gt = {k: f[k] for k in f.files}
    n = spec.n_objects
    if spec.dim == "3D":
        assert set(inp) == {"imgs", "boxes", "spacing"} and set(gt) == {"gts", "spacing"}
        assert inp["imgs"].shape == spec.shape and inp["boxes"].shape == (n, 6)
        assert inp["spacing"].dtype == np.float64 and inp["spacing"].shape == (3,) and (inp["spacing"] > 0).all()
        np.testing.assert_array_equal(inp["spacing"], gt["spacing"])
    else:
        assert set(inp) == {"imgs", "boxes"} and set(gt) == {"gts"}
        assert inp["imgs"].shape == (*spec.shape, 3) and inp["boxes"].shape == (n, 4)
    assert inp["imgs"].dtype == np.uint8 and inp["boxes"].dtype == np.int64 and gt["gts"].dtype == np.uint16
    assert gt["gts"].shape == spec.shape
    assert set(np.unique(gt["gts"]).tolist()) == set(range(n + 1))
    np.testing.assert_array_equal(inp["boxes"], _tight_boxes(gt["gts"], n))
    assert inp["imgs"].std() > 5  # not a blank image


def test_phantoms_have_single_slice_border_touching_and_very_different_objects(demo_dir):
    flat = touching = 0
    size_ratio = 1.0
    for spec in DEMO_CASES:
        with np.load(demo_dir / "gts" / f"{spec.name}.npz", allow_pickle=False) as f:
            gts = f["gts"]
        boxes = _tight_boxes(gts, spec.n_objects)
        half = boxes.shape[1] // 2
        if spec.dim == "3D":
            flat += int((boxes[:, 2] == boxes[:, 5]).sum())
        limits = np.array(gts.shape[::-1]) - 1  # x, y(, z) maxima
        touching += int(((boxes[:, :half] == 0) | (boxes[:, half:] == limits)).any(axis=1).sum())
        counts = np.bincount(gts.ravel(), minlength=spec.n_objects + 1)[1:]
        size_ratio = max(size_ratio, counts.max() / counts.min())
    assert flat >= 2  # single-slice 3D objects
    assert touching >= 3
    assert size_ratio > 100


def test_same_seed_gives_byte_identical_files_across_processes(demo_dir, tmp_path):
    for i in (0, 3, 4, 9):  # CT, PET, US, Microscope
        spec = DEMO_CASES[i]
        paths = write_case(generate_case(spec, case_seed("demo", 0, i)), tmp_path / "imgs", tmp_path / "gts")
        for path in paths:
            assert path.read_bytes() == (demo_dir / path.parent.name / path.name).read_bytes(), path.name


def test_written_files_get_ordinary_permissions(demo_dir, tmp_path):
    reference = tmp_path / "reference"
    reference.write_bytes(b"")  # created like any file, under the current umask
    path = demo_dir / "imgs" / f"{DEMO_CASES[0].name}.npz"
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
    assert not [p.name for p in (demo_dir / "imgs").iterdir() if p.suffix != ".npz"]  # no temporary left


def test_other_seed_gives_other_case():
    spec = DEMO_CASES[4]
    a, b = generate_case(spec, 11), generate_case(spec, 12)
    assert not np.array_equal(a.imgs, b.imgs)
    assert generate_case(spec, 11).imgs.tobytes() == a.imgs.tobytes()


def test_training_seeds_are_disjoint_from_demo_and_benchmark_seeds():
    demo_max = case_seed("demo", gen.SEED_STRIDE - 1, gen.SEED_STRIDE - 1)
    bench = [case_seed("benchmark", gen.SEED_STRIDE - 1, gen.SEED_STRIDE - 1), case_seed("benchmark", 0, 0)]
    assert demo_max < bench[1] < bench[0] < case_seed("training", 0, 0)
    cases = list(training_cases(11, seed=0))
    assert {c.name.split("_")[1] for c in cases} == set(CHALLENGE_MODALITIES)
    assert [c.seed for c in cases] == [2**41 + k for k in range(11)]
    assert all(c.name.endswith(f"_t{k:06d}") for k, c in enumerate(cases))
    demo_seeds = {case_seed("demo", base, i) for base in range(4) for i in range(len(DEMO_CASES))}
    assert not demo_seeds & {c.seed for c in cases}


def test_seed_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"base seed 1048576 out of range \[0, 1048576\)"):
        case_seed("training", 2**20, 0)
    with pytest.raises(ValueError, match="unknown seed range 'test'"):
        case_seed("test", 0, 0)


def test_bounding_boxes_hand_computed_with_margin():
    gts = np.zeros((6, 8), np.uint16)
    gts[1:3, 2:5] = 1  # rows 1-2, columns 2-4
    gts[5, 7] = 2  # a single pixel in the corner
    np.testing.assert_array_equal(bounding_boxes(gts, 2), [[2, 1, 4, 2], [7, 5, 7, 5]])
    np.testing.assert_array_equal(bounding_boxes(gts, 2, margin=2), [[0, 0, 6, 4], [5, 3, 7, 5]])
    vol = np.zeros((4, 5, 6), np.uint16)
    vol[3, 1:4, 2] = 1  # slice 3 only
    np.testing.assert_array_equal(bounding_boxes(vol, 1), [[2, 1, 3, 2, 3, 3]])
    assert bounding_boxes(gts, 3) is None  # label 3 absent


def test_box_margin_is_passed_through():
    spec = DEMO_CASES[6]
    tight, grown = generate_case(spec, 5), generate_case(spec, 5, box_margin=3)
    h, w = spec.shape
    np.testing.assert_array_equal(grown.boxes, np.clip(tight.boxes + [-3, -3, 3, 3], 0, [w - 1, h - 1, w - 1, h - 1]))


@pytest.mark.parametrize("spec, message", [
    (CaseSpec("CT", "2D", (32, 32), 1, "2DBox_CT_x"), "2DBox_CT_x: modality CT is 3D, spec says 2D"),
    (CaseSpec("Xray", "2D", (32, 32), 1, "2DBox_Xray_x"), "2DBox_Xray_x: unknown modality 'Xray'"),
    (CaseSpec("OCT", "2D", (32, 32), 1, "2DBox_CT_x"), "2DBox_CT_x: name must look like 2DBox_OCT_<id>"),
    (CaseSpec("MR", "3D", (32, 32), 1, "3DBox_MR_x"), r"3DBox_MR_x: shape \(32, 32\) is not a valid 3D shape"),
    (CaseSpec("US", "2D", (32, 32), 0, "2DBox_US_x"), "2DBox_US_x: n_objects must be >= 1, got 0"),
])
def test_bad_spec_is_rejected_with_its_name(spec, message):
    with pytest.raises(ValueError, match=message):
        generate_case(spec, 0)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    case = generate_case(DEMO_CASES[6], 1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        write_case(case, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_to_overwrite_without_the_flag(demo_dir):
    target = demo_dir / "imgs" / f"{DEMO_CASES[0].name}.npz"
    before = target.read_bytes()
    cmd = [sys.executable, "-m", "test_demo.generate", "--out", str(demo_dir)]
    res = subprocess.run(cmd + ["--seed", "1"], cwd=REPO, capture_output=True, encoding="utf-8")
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {target} exists ({2 * len(DEMO_CASES)} existing files); pass --overwrite to replace them"
    assert target.read_bytes() == before


def test_cli_overwrite_replaces_and_benchmark_goes_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "DEMO_CASES", DEMO_CASES[6:7])
    monkeypatch.setattr(gen, "BENCHMARK_WORKLOAD", [CaseSpec("US", "2D", (64, 96), 1, "2DBox_US_tiny")])
    assert gen.main(["--out", str(tmp_path)]) == 0
    first = (tmp_path / "imgs" / f"{DEMO_CASES[6].name}.npz").read_bytes()
    assert gen.main(["--out", str(tmp_path), "--seed", "7"]) == 1
    assert gen.main(["--out", str(tmp_path), "--seed", "7", "--overwrite"]) == 0
    assert (tmp_path / "imgs" / f"{DEMO_CASES[6].name}.npz").read_bytes() != first
    assert gen.main(["--out", str(tmp_path), "--benchmark"]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npz")) == [
        "benchmark/gts/2DBox_US_tiny.npz", "benchmark/imgs/2DBox_US_tiny.npz",
        f"gts/{DEMO_CASES[6].name}.npz", f"imgs/{DEMO_CASES[6].name}.npz"]


def test_cli_training_set_uses_the_challenge_training_layout(tmp_path):
    root = tmp_path / "phantoms"
    assert gen.main(["--training", "12", "--out", str(root)]) == 0
    files = sorted(root.glob("*/phantoms/*.npz"))
    assert len(files) == 12
    assert {f.parent.parent.name for f in files} == set(gen.SCENES)  # 11 modalities in turn
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            dim, modality = path.stem.split("_")[:2]
            assert path.parent.parent.name == modality
            expected = {"imgs", "gts", "spacing"} if dim == "3DBox" else {"imgs", "gts"}
            assert set(data.files) == expected
            assert data["gts"].shape == (data["imgs"].shape[:2] if dim == "2DBox" else data["imgs"].shape)
            assert data["gts"].max() >= 1
    demo_names = {spec.name for spec in DEMO_CASES}
    assert not demo_names & {f.stem for f in files}
    assert gen.main(["--training", "1", "--out", str(root)]) == 1  # not empty: refuses without --force


def test_scene_builders_follow_the_challenge_modalities():
    assert tuple(gen.SCENES) == MODALITIES
    assert {modality: dim for modality, (dim, _) in gen.SCENES.items()} == CHALLENGE_MODALITIES
