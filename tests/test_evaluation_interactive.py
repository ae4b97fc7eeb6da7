"""evaluation.interactive: the CVPR 2025 six-step protocol, end to end with a fake pipeline
(tests/_interactive_fake.py) whose predictions per step are fixed by the test, so every click,
score and area is worked out by hand here."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from challenge.interactive import boxes_from_labels, read_interactive_case, write_interactive_case
from challenge.npz import write_npz
from evaluation.csvio import read_csv
from evaluation.interactive import auc, evaluator_labels, main, score_step

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "_interactive_fake.py"
SHAPE = (5, 10, 12)


def _cube(volume: np.ndarray, corner: tuple[int, int, int], value: int, size: int = 3) -> None:
    volume[tuple(slice(c, c + size) for c in corner)] = value


def test_labels_are_those_present_without_the_smallest():
    assert evaluator_labels(np.array([[[0, 3, 3, 7]]])).tolist() == [3, 7]  # no NaN class for the gap
    assert evaluator_labels(np.array([[[2, 5]]])).tolist() == [5]  # no background: label 2 is dropped, as theirs


def test_score_step_gate_and_present_labels():
    gts = np.zeros((4, 6, 6), np.uint8)
    _cube(gts, (0, 0, 0), 1, 2)
    _cube(gts, (2, 3, 3), 4, 2)
    segs = np.zeros_like(gts)
    _cube(segs, (0, 0, 0), 1, 2)
    segs[3, 5, 5] = 9  # labels absent from the ground truth are not scored
    dsc, nsd, per_dsc, per_nsd = score_step(gts, segs, [1, 4], (1.0, 1.0, 1.0))
    assert per_dsc == [1.0, 0.0] and dsc == 0.5
    assert per_nsd == [1.0, 0.0] and nsd == 0.5
    segs[segs == 1] = 0
    segs[0, 0, 0] = 1  # class 1 DSC 2 * 1 / (8 + 1) = 2/9, mean 1/9 <= 0.2: NSD not computed, 0
    dsc, nsd, _, per_nsd = score_step(gts, segs, [1, 4], (1.0, 1.0, 1.0))
    assert dsc == pytest.approx(1 / 9) and nsd == 0.0 and per_nsd is None


def test_auc_is_the_unit_trapezoid_over_the_click_steps():
    # the box step (first value) is left out: 0.5 * 0.2 + 0.4 + 0.6 + 0.8 + 0.5 * 1.0
    assert auc([0.9, 0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx(2.4)
    assert auc([0.0, 1, 1, 1, 1, 1]) == 4.0


def _gts() -> np.ndarray:
    gts = np.zeros(SHAPE, np.uint8)
    _cube(gts, (1, 1, 1), 1)
    _cube(gts, (1, 5, 5), 2)
    return gts


def _plan(folder: Path, steps: dict[int, np.ndarray], fail: tuple[int, ...] = ()) -> None:
    folder.mkdir(parents=True)
    for step, segs in steps.items():
        write_npz(folder / f"step{step}.npz", {"segs": segs})
    for step in fail:
        (folder / f"step{step}.fail").touch()


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Folders imgs/, gts/, plan/, and a function running the CLI with the fake pipeline."""
    for name in ("imgs", "gts", "plan"):
        (tmp_path / name).mkdir()
    log = tmp_path / "fake.jsonl"
    monkeypatch.setenv("FAKE_PLAN", str(tmp_path / "plan"))
    monkeypatch.setenv("FAKE_LOG", str(log))

    def run(*extra: str, gts: bool = True) -> tuple[int, list[dict]]:
        argv = ["-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "work"),
                "--command", f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))}", *extra]
        if gts:
            argv += ["-g", str(tmp_path / "gts")]
        code = main(argv)
        seen = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return code, seen

    return run


@pytest.mark.slow  # six runs of a Python process per case
def test_six_steps_clicks_scores_and_reports(tmp_path, fake_run, capsys):
    gts = _gts()
    case = tmp_path / "imgs" / "3D_demo_0001.npz"
    write_interactive_case(case, np.full(SHAPE, 7, np.uint8), [1.0, 1.0, 1.0], boxes=boxes_from_labels(gts))
    write_npz(tmp_path / "gts" / case.name, {"gts": gts})
    slab = np.zeros(SHAPE, np.uint8)
    slab[2, 5:8, 5:8] = 2                      # the middle slice of class 2
    with_false = gts.copy()
    _cube(with_false, (1, 5, 9), 2)            # class 2 also on a separate false cube
    _plan(tmp_path / "plan" / case.stem, {0: np.where(gts == 1, 1, 0).astype(np.uint16),
                                          1: np.maximum(np.where(gts == 1, 1, 0), slab).astype(np.uint16),
                                          2: with_false, 3: gts, 4: gts, 5: gts})
    code, seen = fake_run()
    assert code == 0
    assert [s["step"] for s in seen] == [0, 1, 2, 3, 4, 5]
    assert seen[0]["keys"] == ["imgs", "spacing", "boxes"] and seen[0]["clicks"] is None
    assert all(s["keys"] == ["imgs", "spacing", "clicks", "clicks_order", "prev_pred", "boxes"] for s in seen[1:])
    assert all(s["boxes"] == 2 for s in seen)
    # step 0 output misses class 2 entirely: fg click at the centre of its cube
    # step 1 output has its middle slice: errors are the slices z = 1 and z = 3 (9 voxels each, not
    #   connected); the first in raster order (z = 1) wins; all 9 voxels have EDT 1 and
    #   choice(9) = 6 picks row 2, column 0: (1, 7, 5), fg
    # step 2 output adds a false cube at x 9..11: bg click at its centre (2, 6, 10)
    # steps 3, 4 are perfect: no click, None
    assert seen[5]["clicks"] == [[], [["fg", [2, 6, 6]], ["fg", [1, 7, 5]], ["bg", [2, 6, 10]]]]
    assert seen[5]["clicks_order"] == [[None] * 5, ["fg", "fg", "bg", None, None]]
    assert seen[1]["clicks_order"] == [[None], ["fg"]]
    assert [s["prev_pred_voxels"] for s in seen[1:]] == [27, 36, 81, 54, 54]
    assert seen[1]["prev_pred_dtype"] == "uint8"

    rows = read_csv(tmp_path / "work" / "metrics.csv")
    assert len(rows) == 1
    row = rows[0]
    # DSC per step: (1 + 0)/2, (1 + 2*9/36)/2, (1 + 2*27/81)/2, 1, 1, 1
    dscs = [float(row[f"DSC_{i}"]) for i in range(1, 7)]
    assert dscs == pytest.approx([0.5, 0.75, 5 / 6, 1, 1, 1], abs=1e-12)
    # NSD: class 2 empty -> 0 (mean 0.5); the slab's surface is within 1 voxel of the cube's -> 1;
    # the false cube's surface lies 1, 2, 3, 4 voxels from the cube's face in mirror-equal layers,
    # so half of its area counts: (A + A + A/2) / (A + 2A) = 5/6, case (1 + 5/6) / 2
    nsds = [float(row[f"NSD_{i}"]) for i in range(1, 7)]
    assert nsds == pytest.approx([0.5, 1.0, 11 / 12, 1, 1, 1], abs=1e-12)
    assert float(row["DSC_AUC"]) == pytest.approx(0.5 * 0.75 + 5 / 6 + 1 + 1 + 0.5, abs=1e-12)
    assert float(row["NSD_AUC"]) == pytest.approx(0.5 * 1 + 11 / 12 + 1 + 1 + 0.5, abs=1e-12)
    assert float(row["DSC_Final"]) == 1.0 and float(row["NSD_Final"]) == 1.0
    assert row["num_class"] == "2" and row["runtime_upperbound"] == "180" and row["counted"] == "True"
    assert row["failed_steps"] == "0" and row["error"] == ""
    times = [float(row[f"RunningTime_{i}"]) for i in range(1, 7)]
    assert all(t > 0 for t in times) and float(row["TotalRunningTime"]) == pytest.approx(sum(times))

    steps = read_csv(tmp_path / "work" / "steps.csv")
    assert [(s["step"], s["prompt"], s["output"], s["returncode"]) for s in steps] == \
        [("1", "box", "new", "0")] + [(str(i), "click", "new", "0") for i in range(2, 7)]
    classes = read_csv(tmp_path / "work" / "classes.csv")
    given = [(c["step"], c["label"], c["click"], c["z"], c["y"], c["x"]) for c in classes if c["click"]]
    assert given == [("2", "2", "fg", "2", "6", "6"), ("3", "2", "fg", "1", "7", "5"), ("4", "2", "bg", "2", "6", "10")]
    slab_row = next(c for c in classes if c["step"] == "2" and c["label"] == "2")
    assert float(slab_row["dsc"]) == 0.5 and slab_row["error_voxels"] == "27"  # click from step 1, score of step 2

    with np.load(tmp_path / "work" / "segs" / case.name) as saved:
        assert set(saved.files) == {"segs", "all_segs"}
        assert np.array_equal(saved["segs"], gts)
        assert saved["all_segs"].shape == (6, *SHAPE) and saved["all_segs"].dtype == np.uint8
        assert np.array_equal(saved["all_segs"][2], with_false)
    assert not list((tmp_path / "work" / "inputs").iterdir())  # the case is removed after its steps
    assert (tmp_path / "work" / "outputs" / case.name).is_file()  # outputs are kept, as theirs
    out = capsys.readouterr().out
    assert "1 case(s), 1 counted" in out and "DSC_AUC" in out


@pytest.mark.slow  # six runs of a Python process per case
def test_no_box_step_a_failed_step_and_a_pipeline_that_never_answers(tmp_path, fake_run):
    gts = np.zeros((5, 6, 6), np.uint8)
    _cube(gts, (1, 1, 1), 1)
    for name in ("3D_a_nobox.npz", "3D_b_silent.npz"):
        write_interactive_case(tmp_path / "imgs" / name, np.zeros(gts.shape, np.uint8), [1.0, 2.0, 1.0], gts=gts)
    # a: no boxes, so the first run is step 2 (first click); its third run (step index 2) fails,
    #    leaving step 1's perfect output in outputs/, which is scored again
    _plan(tmp_path / "plan" / "3D_a_nobox", {1: gts, 3: gts, 4: gts, 5: gts}, fail=(2,))
    (tmp_path / "plan" / "3D_b_silent").mkdir()  # b: never writes anything
    code, seen = fake_run(gts=False)  # ground truth from the inputs (training files), passed on
    assert code == 1
    a = [s for s in seen if s["case"] == "3D_a_nobox.npz"]
    b = [s for s in seen if s["case"] == "3D_b_silent.npz"]
    assert [s["step"] for s in a] == [1, 2, 3, 4, 5] and [s["step"] for s in b] == [1, 2, 3, 4, 5]
    assert a[0]["keys"] == ["imgs", "gts", "spacing", "clicks", "clicks_order", "prev_pred"]
    assert a[0]["clicks"] == [[["fg", [2, 2, 2]]]] and a[0]["prev_pred_voxels"] == 0
    assert a[-1]["clicks_order"] == [["fg", None, None, None, None]]
    # b: every step scores zeros, so every click is the same centre (as in the organisers' README)
    assert b[-1]["clicks"] == [[["fg", [2, 2, 2]]] * 5]

    rows = {r["CaseName"]: r for r in read_csv(tmp_path / "work" / "metrics.csv")}
    ra, rb = rows["3D_a_nobox.npz"], rows["3D_b_silent.npz"]
    assert [float(ra[f"DSC_{i}"]) for i in range(1, 7)] == [0, 1, 1, 1, 1, 1]
    assert float(ra["RunningTime_1"]) == 0 and float(ra["DSC_AUC"]) == 4.0 and float(ra["NSD_AUC"]) == 4.0
    assert ra["counted"] == "True" and ra["failed_steps"] == "1" and "step 3: exit code 3" in ra["error"]
    assert rb["counted"] == "False" and float(rb["DSC_Final"]) == 0 and rb["failed_steps"] == "5"
    steps = [s for s in read_csv(tmp_path / "work" / "steps.csv") if s["case"] == "3D_a_nobox.npz"]
    assert [s["output"] for s in steps] == ["not run", "new", "stale", "new", "new", "new"]
    assert steps[0]["prompt"] == "skipped"
    with np.load(tmp_path / "work" / "segs" / "3D_a_nobox.npz") as saved:
        assert saved["all_segs"].shape == (5, *gts.shape)
    assert not (tmp_path / "work" / "segs" / "3D_b_silent.npz").exists()


def test_cases_that_cannot_run_are_reported(tmp_path, fake_run):
    np.savez_compressed(tmp_path / "imgs" / "3D_nospacing.npz", imgs=np.zeros((2, 3, 3), np.uint8))
    write_interactive_case(tmp_path / "imgs" / "3D_nogts.npz", np.zeros((2, 3, 3), np.uint8), np.ones(3))
    write_interactive_case(tmp_path / "imgs" / "3D_zero.npz", np.zeros((2, 3, 3), np.uint8), [1.0, 0.0, 1.0])
    code, seen = fake_run()
    assert code == 1 and seen == []
    rows = {r["CaseName"]: r for r in read_csv(tmp_path / "work" / "metrics.csv")}
    assert "no 'spacing'" in rows["3D_nospacing.npz"]["error"]
    assert "file not found" in rows["3D_nogts.npz"]["error"] and rows["3D_nogts.npz"]["counted"] == "False"
    assert "spacing must be 3 positive finite numbers, got [1.0, 0.0, 1.0]" in rows["3D_zero.npz"]["error"]


@pytest.mark.slow  # six runs of a Python process per case
def test_keep_inputs_keeps_what_each_step_was_given(tmp_path, fake_run):
    gts = np.zeros((4, 5, 5), np.uint8)
    _cube(gts, (0, 0, 0), 1, 2)
    case = tmp_path / "imgs" / "3D_k.npz"
    write_interactive_case(case, np.zeros(gts.shape, np.uint8), np.array([1.5, 1, 1], np.float32),
                           boxes=boxes_from_labels(gts))
    write_npz(tmp_path / "gts" / case.name, {"gts": gts})
    _plan(tmp_path / "plan" / "3D_k", {k: gts for k in range(6)})
    code, _ = fake_run("--keep-inputs")
    assert code == 0
    kept = sorted((tmp_path / "work" / "inputs_kept" / "3D_k").iterdir())
    assert [p.name for p in kept] == [f"step{i}.npz" for i in range(1, 7)]
    last = read_interactive_case(kept[-1])
    assert last.clicks_order == ((None,) * 5,) and last.boxes == boxes_from_labels(gts)
    with np.load(kept[-1]) as rewritten:  # spacing carried as stored, like the evaluator's re-save
        assert rewritten["spacing"].dtype == np.float32 and rewritten["spacing"].tolist() == [1.5, 1, 1]


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["-i", str(tmp_path / "none"), "-o", str(tmp_path / "w"), "--command", "true"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["-i", str(tmp_path / "empty"), "-o", str(tmp_path / "w"), "--command", "true"]) == 2
    assert "no *.npz cases" in capsys.readouterr().err
