"""Issue 13 through `python -m convert`: truncated NIfTI refused, from-npz goes on after any bad
case or geometry file, signals leave no temporary file."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _convert_data import ct_volume, label_volume, save_segs, volume_image, write, written_files

import convert.writing
from convert.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def _to_npz(image: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert", "to-npz", str(image), "--modality", "CT", "--boxes",
                           str(REPO / "nonexistent.csv"), "--out", str(out)], cwd=REPO, capture_output=True, encoding="utf-8")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_truncated_nifti_is_refused(tmp_path, suffix):
    full = write(volume_image(ct_volume()), tmp_path / f"ct{suffix}").read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full[: len(full) * 2 // 3])
    run = _to_npz(cut, tmp_path / "out")
    expected = "the gzip stream ends early" if suffix == ".nii.gz" else f"{len(full) * 2 // 3} of {len(full)} bytes"
    assert (run.returncode, run.stderr) == (1, f"error: {cut}: NIfTI file is truncated ({expected})\n")
    assert written_files(tmp_path / "out") == []


def test_a_nifti_whose_whole_gzip_stream_holds_too_few_voxels_is_refused(tmp_path):
    full = gzip.decompress(write(volume_image(ct_volume()), tmp_path / "ct.nii.gz").read_bytes())
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(full[:1000]))
    run = _to_npz(short, tmp_path / "out")
    assert run.stderr == f"error: {short}: NIfTI file is truncated (1000 of {len(full)} bytes)\n"


def test_an_uncompressed_nifti_named_gz_is_checked_as_it_is_read(tmp_path):
    full = write(volume_image(ct_volume()), tmp_path / "ct.nii").read_bytes()
    cut = tmp_path / "plain.nii.gz"
    cut.write_bytes(full[:2000])
    assert _to_npz(cut, tmp_path / "out").stderr == f"error: {cut}: NIfTI file is truncated (2000 of {len(full)} bytes)\n"


def _case(tmp_path: Path) -> Path:
    ct = write(volume_image(ct_volume()), tmp_path / "ct.nii.gz")
    labels = write(volume_image(label_volume()), tmp_path / "labels.nii.gz")
    assert main(["to-npz", str(ct), "--modality", "CT", "--labels", str(labels), "--id", "1",
                 "--out", str(tmp_path / "out")]) == 0
    return tmp_path / "out" / "geometry" / "3DBox_CT_1.json"


def test_from_npz_goes_on_after_corrupt_members_and_malformed_geometry(tmp_path, capsys):
    geometry = _case(tmp_path)
    capsys.readouterr()
    segs_dir, geo_dir = tmp_path / "segs", tmp_path / "geo"
    geo_dir.mkdir()
    gts = np.load(tmp_path / "out" / "gts" / "3DBox_CT_1.npz")["gts"]
    record = json.loads(geometry.read_text())
    broken = {"3DBox_CT_2": ("source_grid", {}), "3DBox_CT_3": ("array_grid", record["array_grid"] | {"size": [1]})}
    for name in ("3DBox_CT_1", "3DBox_CT_4", "3DBox_CT_5", "3DBox_CT_6", *broken):
        geo_dir.joinpath(f"{name}.json").write_text(json.dumps(record | dict([broken.get(name, ("x", 0))])))
    for name in ("3DBox_CT_1", *broken):
        save_segs(segs_dir / f"{name}.npz", gts)
    good = (segs_dir / "3DBox_CT_1.npz").read_bytes()
    (segs_dir / "3DBox_CT_4.npz").write_bytes(good[:-40])  # zip directory cut off
    with zipfile.ZipFile(segs_dir / "3DBox_CT_5.npz", "w") as archive:
        archive.writestr("segs.npy", b"not an array")
    (segs_dir / "3DBox_CT_6.npz").write_text("plain text")
    (segs_dir / ".tmp-9-3DBox_CT_7.npz").write_bytes(b"left by a killed writer")
    code = main(["from-npz", str(segs_dir), "--geometry", str(geo_dir), "--out", str(tmp_path / "masks")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == [
        f"error: {geo_dir / '3DBox_CT_2.json'}: malformed geometry file (KeyError: 'orientation')",
        f"error: {segs_dir / '3DBox_CT_3.npz'}: array shape (12, 20, 16) does not match the case's (1,)",
        f"error: {segs_dir / '3DBox_CT_4.npz'}: not a readable npz file (not a zip archive, or truncated)",
        f"error: {segs_dir / '3DBox_CT_5.npz'}: not a readable npz file (member 'segs': not an NPY array)",
        f"error: {segs_dir / '3DBox_CT_6.npz'}: not a readable npz file (not a zip archive, or truncated)"]
    assert os.listdir(tmp_path / "masks") == ["3DBox_CT_1.nii.gz"]


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    ct = write(volume_image(ct_volume()), tmp_path / "ct.nii.gz")
    labels = write(volume_image(label_volume()), tmp_path / "labels.nii.gz")
    save = convert.writing.save_npz

    def killed(path, arrays, compresslevel=None):
        save(path, arrays, compresslevel)
        if "gts" in arrays:  # imgs written, gts written, then the signal before the renames
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(convert.writing, "save_npz", killed)
    code = main(["to-npz", str(ct), "--modality", "CT", "--labels", str(labels), "--out", str(tmp_path / "out")])
    assert (code, capsys.readouterr().err) == (143, "python -m convert: interrupted by SIGTERM; finished outputs are "
                                                    "kept, no partial file is left\n")
    assert written_files(tmp_path / "out") == []
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == []
