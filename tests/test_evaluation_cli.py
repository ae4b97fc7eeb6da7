"""`evaluation/compute_metrics.py` end to end on a small folder: CSV, summary, failures, exit codes."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.cases import case_modality, is_3d_case
from evaluation.compute_metrics import main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "evaluation" / "compute_metrics.py"


def run_metrics(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, encoding="utf-8", cwd=REPO)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def folders(tmp_path):
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    gts.mkdir(), segs.mkdir()
    # 3D: 6-cube vs its erosion at 1.2 mm: DSC 128/280, NSD hand-computed in test_evaluation_metrics
    cube = np.zeros((10, 10, 10), np.uint8)
    cube[2:8, 2:8, 2:8] = 1
    inner = np.zeros_like(cube)
    inner[3:7, 3:7, 3:7] = 1
    np.savez_compressed(gts / "3DBox_CT_0001.npz", gts=cube, spacing=np.array([1.2, 1.2, 1.2]))
    np.savez_compressed(segs / "3DBox_CT_0001.npz", segs=inner.astype(np.uint16))
    # 2D: a perfect square and a one-pixel object moved 3 columns: DSC 0.5, NSD (1 + 0.5) / 2
    gt2 = np.zeros((20, 20), np.uint8)
    gt2[2:8, 2:8] = 1
    gt2[12, 5] = 2
    seg2 = gt2.copy()
    seg2[12, 5], seg2[12, 8] = 0, 2
    np.savez_compressed(gts / "2DBox_US_0001.npz", gts=gt2)
    np.savez_compressed(segs / "2DBox_US_0001.npz", segs=seg2)
    # failures: missing, unreadable, wrong shape, pickled object array
    np.savez_compressed(gts / "2DBox_Microscopy_0002.npz", gts=gt2)
    np.savez_compressed(gts / "2DBox_X-Ray_0003.npz", gts=gt2)
    (segs / "2DBox_X-Ray_0003.npz").write_bytes(b"not a zip file")
    np.savez_compressed(gts / "3DBox_MR_0004.npz", gts=cube, spacing=np.array([1.0, 1.0, 1.0]))
    np.savez_compressed(segs / "3DBox_MR_0004.npz", segs=cube[:, :, :9])
    np.savez_compressed(gts / "2DBox_OCT_0005.npz", gts=gt2)
    np.savez(segs / "2DBox_OCT_0005.npz", segs=np.array([{"evil": 1}], dtype=object))
    # a ground-truth label id absent from both masks: DSC NaN, NSD 0 (the organisers' values)
    gap = np.zeros((20, 20), np.uint8)
    gap[2:5, 2:5], gap[10:14, 10:14] = 1, 3
    np.savez_compressed(gts / "2DBox_Endoscopy_0006.npz", gts=gap)
    np.savez_compressed(segs / "2DBox_Endoscopy_0006.npz", segs=gap)
    (gts / "notes.txt").write_text("ignored")
    return gts, segs


def test_case_names():
    assert case_modality("2DBox_Microscopy_7.npz") == "Microscope"
    assert case_modality("2DBox_XRay_7.npz") == "X-Ray"
    assert case_modality("2DBox_OCT_7.npz") == "OCT"
    assert case_modality("weird.npz") == "unknown"
    assert is_3d_case("3DBox_CT_1.npz") and not is_3d_case("2DBox_CT3D_1.npz")


def test_round_trip_with_failures(folders, tmp_path):
    gts, segs = folders
    out = tmp_path / "out" / "metrics.csv"
    done = run_metrics("-s", str(segs), "-g", str(gts), "-csv_dir", str(out), "-num_workers", "2")
    assert done.returncode == 1, done.stderr
    rows = read_rows(out)
    assert list(rows[0]) == ["case", "dsc", "nsd", "modality", "image_size", "error"]
    assert [r["case"] for r in rows] == sorted(p.name for p in gts.glob("*.npz"))
    by_case = {r["case"]: r for r in rows}
    ct = by_case["3DBox_CT_0001.npz"]
    a6 = 6 * 25 + 30 * 2 ** 0.5 + 3 ** 0.5
    a4 = 6 * 9 + 18 * 2 ** 0.5 + 3 ** 0.5
    assert (ct["dsc"], ct["nsd"], ct["modality"], ct["image_size"], ct["error"]) == (
        "0.4571", str(round((a6 + a4 - 3 ** 0.5) / (a6 + a4), 4)), "CT", "10x10x10", "")
    assert (by_case["2DBox_US_0001.npz"]["dsc"], by_case["2DBox_US_0001.npz"]["nsd"]) == ("0.5", "0.75")
    assert (by_case["2DBox_Endoscopy_0006.npz"]["dsc"], by_case["2DBox_Endoscopy_0006.npz"]["nsd"]) == ("", "0.0")
    assert by_case["2DBox_Microscopy_0002.npz"]["modality"] == "Microscope"
    failed = {"2DBox_Microscopy_0002.npz": "file not found", "2DBox_X-Ray_0003.npz": "not a readable npz file",
              "3DBox_MR_0004.npz": "prediction shape (10, 10, 9) differs from ground-truth shape (10, 10, 10)",
              "2DBox_OCT_0005.npz": "'segs' is a pickled object array (refused: inputs are read with allow_pickle=False)"}
    for case, message in failed.items():
        assert (by_case[case]["dsc"], by_case[case]["nsd"]) == ("0.0", "0.0")
        assert by_case[case]["error"].startswith(str(segs / case)) and message in by_case[case]["error"]
        assert f"  {case}: {segs / case}" in done.stderr
    assert "4 of 7 case(s) failed:" in done.stderr

    summary = {r["modality"]: r for r in read_rows(tmp_path / "out" / "metrics_summary.csv")}
    assert list(summary) == ["CT", "Endoscopy", "MR", "Microscope", "OCT", "US", "X-Ray", "All"]
    all_row = summary["All"]
    assert (all_row["n_cases"], all_row["n_failed"], all_row["n_nan"]) == ("7", "4", "1")
    dscs = [0.4571, 0.5, 0.0, 0.0, 0.0, 0.0]  # the NaN case is left out
    assert float(all_row["dsc_mean"]) == round(float(np.mean(dscs)), 4)
    assert float(all_row["dsc_std"]) == round(float(np.std(dscs)), 4)
    assert "modality" in done.stdout and "All" in done.stdout


def test_kebab_flags_without_nsd_and_clean_exit(folders, tmp_path):
    gts, segs = folders
    for path in gts.glob("*.npz"):
        if path.name not in {"3DBox_CT_0001.npz", "2DBox_US_0001.npz"}:
            path.unlink()
    out = tmp_path / "m.csv"
    done = run_metrics("--seg-dir", str(segs), "--gt-dir", str(gts), "--csv-dir", str(out), "--num-workers", "1",
                       "--nsd", "false")
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert list(rows[0]) == ["case", "dsc", "modality", "image_size", "error"]
    assert [(r["case"], r["dsc"]) for r in rows] == [("2DBox_US_0001.npz", "0.5"), ("3DBox_CT_0001.npz", "0.4571")]


def test_bad_arguments(tmp_path, capsys):
    out = str(tmp_path / "m.csv")
    assert main(["-s", str(tmp_path), "-g", str(tmp_path / "nope"), "-csv_dir", out]) == 2
    assert f"error: gt_dir {tmp_path / 'nope'} is not a folder" in capsys.readouterr().err
    assert main(["-s", str(tmp_path), "-g", str(tmp_path), "-csv_dir", out]) == 2
    assert f"error: no *.npz ground truths in {tmp_path}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["-nsd", "maybe"])
    assert exit_info.value.code == 2 and "expected true or false, got 'maybe'" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_evaluation_stands_alone():
    # importing every evaluation module must not need torch, infer or train
    code = ("import sys\n"
            "for name in ('torch', 'infer', 'train'):\n"
            "    sys.modules[name] = None\n"
            "import evaluation.compute_metrics, evaluation.time_eval, evaluation.overlay\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", cwd=REPO)
    assert done.returncode == 0, done.stderr
