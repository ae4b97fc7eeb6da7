"""Issue 13 through `evaluation/compute_metrics.py`: a bad ground truth is the ground truth's problem,
cost follows the labels present, memory is bounded, the CSV path is checked before the work."""
from __future__ import annotations

import csv
import os
import signal
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

import evaluation.scoring
from challenge.npz import DEFAULT_MAX_MEMBER_BYTES
from evaluation.compute_metrics import main

SCRIPT = Path(__file__).resolve().parents[1] / "evaluation" / "compute_metrics.py"
CUBE = np.zeros((4, 6, 6), np.uint8)
CUBE[1:3, 1:5, 1:5] = 1


def _metrics(gts: Path, segs: Path, csv_path: Path) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, str]]]:
    done = subprocess.run([sys.executable, str(SCRIPT), "-s", str(segs), "-g", str(gts), "-csv_dir", str(csv_path),
                           "-num_workers", "1"], capture_output=True, encoding="utf-8")
    rows = {}
    if csv_path.is_file():
        with open(csv_path, newline="") as handle:
            rows = {row["case"]: row for row in csv.DictReader(handle)}
    return done, rows


def _pair(gts: Path, segs: Path, name: str, gt: dict, seg: np.ndarray) -> None:
    gts.mkdir(exist_ok=True), segs.mkdir(exist_ok=True)
    np.savez_compressed(gts / name, **gt)
    np.savez_compressed(segs / name, segs=seg)


def test_a_bad_ground_truth_is_reported_as_the_ground_truths_problem(tmp_path):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    bad = {"3DBox_CT_0001.npz": ({"gts": CUBE, "spacing": np.array([1.0, np.nan, 1.0])},
                                 "spacing must be 3 positive finite numbers, got (1.0, nan, 1.0)"),
           "3DBox_CT_0002.npz": ({"gts": CUBE, "spacing": np.zeros(3)},
                                 "spacing must be 3 positive finite numbers, got (0.0, 0.0, 0.0)"),
           "3DBox_CT_0003.npz": ({"gts": CUBE, "spacing": np.ones(2)},
                                 "spacing must be 3 positive finite numbers, got (1.0, 1.0)"),
           "2DBox_US_0001.npz": ({"gts": np.zeros((6, 6, 3), np.uint8)},
                                 "2D case needs (H, W) masks, got shape (6, 6, 3)")}
    for name, (gt, _) in bad.items():
        _pair(gts, segs, name, gt, gt["gts"])
    _pair(gts, segs, "3DBox_CT_0004.npz", {"gts": CUBE, "spacing": np.ones(3)}, CUBE)
    (gts / ".tmp-7-3DBox_CT_0005.npz").write_bytes(b"left by a killed writer")  # never a case
    done, rows = _metrics(gts, segs, tmp_path / "m.csv")
    assert done.returncode == 1
    assert sorted(rows) == sorted([*bad, "3DBox_CT_0004.npz"])
    for name, (_, problem) in bad.items():
        assert (rows[name]["dsc"], rows[name]["nsd"]) == ("", "")  # NaN: the case cannot be judged
        assert rows[name]["error"] == f"ground truth: {gts / name}: {problem}"
    assert (rows["3DBox_CT_0004.npz"]["dsc"], rows["3DBox_CT_0004.npz"]["error"]) == ("1.0", "")


def test_a_huge_label_value_costs_only_its_presence(tmp_path):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    gt = np.zeros((20, 20), np.int64)
    gt[2:6, 2:6], gt[10:14, 10:14] = 1, 2**31 - 1
    _pair(gts, segs, "2DBox_US_0001.npz", {"gts": gt}, gt)
    done, rows = _metrics(gts, segs, tmp_path / "m.csv")
    assert done.returncode == 0, done.stderr
    assert (rows["2DBox_US_0001.npz"]["dsc"], rows["2DBox_US_0001.npz"]["nsd"]) == ("", "0.0")  # the gap rule


def test_a_prediction_declaring_more_than_the_bound_is_refused_before_inflating(tmp_path):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    _pair(gts, segs, "3DBox_CT_0001.npz", {"gts": CUBE, "spacing": np.ones(3)}, CUBE)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2048,) * 3})
    with zipfile.ZipFile(segs / "3DBox_CT_0001.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("segs.npy", header.getvalue() + bytes(64))
    done, rows = _metrics(gts, segs, tmp_path / "m.csv")
    assert done.returncode == 1
    assert rows["3DBox_CT_0001.npz"]["error"] == (
        f"{segs / '3DBox_CT_0001.npz'}: 'segs' declares 8589934592 bytes (uint8 (2048, 2048, 2048)), above the limit "
        f"of {DEFAULT_MAX_MEMBER_BYTES} bytes per array")


def test_an_unwritable_csv_is_refused_before_scoring(tmp_path):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    _pair(gts, segs, "3DBox_CT_0001.npz", {"gts": CUBE, "spacing": np.ones(3)}, CUBE)
    (tmp_path / "taken").mkdir()
    done, _ = _metrics(gts, segs, tmp_path / "taken")
    assert (done.returncode, done.stderr.strip()) == (2, f"error: {tmp_path / 'taken'}: metrics CSV cannot be "
                                                         "written (is a folder)")
    assert "scoring" not in done.stderr


def test_ctrl_c_while_scoring_is_one_line_and_no_csv(tmp_path, capsys, monkeypatch):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    for i in range(3):
        _pair(gts, segs, f"3DBox_CT_{i:04d}.npz", {"gts": CUBE, "spacing": np.ones(3)}, CUBE)
    score, calls = evaluation.scoring.score_case, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return score(*args, **kwargs)

    monkeypatch.setattr(evaluation.scoring, "score_case", interrupted)
    code = main(["-s", str(segs), "-g", str(gts), "-csv_dir", str(tmp_path / "m.csv"), "-num_workers", "1"])
    err = capsys.readouterr().err
    assert code == 130
    assert err.splitlines()[-1] == "compute_metrics: interrupted by SIGINT; finished outputs are kept, no partial file is left"
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob(".tmp-*"))
