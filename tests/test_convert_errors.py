"""Bad input: one-line errors naming the file and the problem, nothing half-written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _convert_data import ct_volume, label_volume, save_segs, volume_image, write, write_dicom_series, written_files

from convert import ConversionError, convert_from_npz, convert_to_npz
from convert.__main__ import main

REPO = Path(__file__).resolve().parents[1]
BOXES_3D = "x_min,y_min,z_min,x_max,y_max,z_max\n"


@pytest.fixture
def ct(tmp_path) -> Path:
    return write(volume_image(ct_volume()), tmp_path / "ct.nii.gz")


def _fails(tmp_path, message, image, **kwargs):
    """Convert, expect ``message`` (file included) exactly, and no file under out/."""
    with pytest.raises(ConversionError) as info:
        convert_to_npz(image, tmp_path / "out", "CT", **kwargs)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert written_files(tmp_path / "out") == []


def test_unknown_format(tmp_path):
    (tmp_path / "scan.txt").write_text("hello")
    _fails(
        tmp_path,
        f"{tmp_path / 'scan.txt'}: unknown format; expected a DICOM series folder, a volume (.nii, .nii.gz, .mha, "
        ".mhd, .nrrd) or a 2D image (.png, .jpg, .jpeg, .tif, .tiff, .bmp)",
        tmp_path / "scan.txt",
        boxes_path=tmp_path / "b.csv",
    )


def test_unreadable_nifti(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"junk" * 20)
    _fails(
        tmp_path,
        f'{tmp_path / "bad.nii.gz"}: unreadable image (Unable to determine ImageIO reader for "{tmp_path / "bad.nii.gz"}")',
        tmp_path / "bad.nii.gz",
        boxes_path=tmp_path / "b.csv",
    )


def test_mixed_dicom_series(tmp_path, ct):
    write_dicom_series(volume_image(ct_volume()), tmp_path / "dicom", "1.2.3.4")
    write_dicom_series(volume_image(ct_volume(seed=2)), tmp_path / "dicom", "1.2.3.5")
    folder = tmp_path / "dicom"
    _fails(
        tmp_path,
        f"{folder}: mixed DICOM series: 2 series in one folder (1.2.3.4, 1.2.3.5); choose one by its UID",
        folder, labels_path=ct,
    )
    convert_to_npz(folder, tmp_path / "picked", "CT", boxes_path=_csv(tmp_path, "0,0,0,3,3,3"), series_uid="1.2.3.5")
    assert np.load(tmp_path / "picked" / "imgs" / "3DBox_CT_dicom.npz")["imgs"].shape == (12, 20, 16)


def test_dicom_series_with_a_missing_slice(tmp_path, ct):
    files = write_dicom_series(volume_image(ct_volume()), tmp_path / "dicom")
    files[5].unlink()
    _fails(
        tmp_path,
        f"{tmp_path / 'dicom'}: missing or unevenly spaced DICOM slices: gaps between slice positions range from 2.5 to 5 mm",
        tmp_path / "dicom",
        labels_path=ct,
    )


@pytest.mark.parametrize("index", [0, 5, -1])
def test_dicom_series_with_a_corrupt_slice(tmp_path, ct, index):
    # GDCM leaves a corrupt file out of the series; at either end the slice gaps cannot show it
    files = write_dicom_series(volume_image(ct_volume()), tmp_path / "dicom")
    files[index].write_bytes(files[index].read_bytes()[:1000])
    (tmp_path / "dicom" / "notes.txt").write_text("not DICOM, ignored")
    _fails(
        tmp_path,
        f"{tmp_path / 'dicom'}: unreadable DICOM file {files[index].name}: it belongs to no series (corrupt or truncated?)",
        tmp_path / "dicom",
        labels_path=ct,
    )


def test_folder_without_dicom(tmp_path, ct):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path, f"{tmp_path / 'empty'}: no DICOM series found in the folder", tmp_path / "empty", labels_path=ct)


def test_label_map_of_another_shape(tmp_path, ct):
    labels = write(volume_image(label_volume()[:, :, :-1]), tmp_path / "labels.nii.gz")
    _fails(
        tmp_path,
        f"{labels}: label map does not match the image: size [15, 20, 12] differs from [16, 20, 12]",
        ct, labels_path=labels,
    )


def test_label_map_on_another_grid(tmp_path, ct):
    labels = write(volume_image(label_volume(), origin=(-12.3, 45.6, 80.0)), tmp_path / "labels.nii.gz")
    _fails(
        tmp_path,
        f"{labels}: label map does not match the image: origin (-12.3, 45.6, 80) differs from (-12.3, 45.6, 78.9)",
        ct,
        labels_path=labels,
    )


def test_empty_label_map(tmp_path, ct):
    labels = write(volume_image(np.zeros((12, 20, 16), np.uint8)), tmp_path / "labels.nii.gz")
    _fails(tmp_path, f"{labels}: label map is empty (no voxel > 0)", ct, labels_path=labels)


def test_non_integer_label_map(tmp_path, ct):
    values = label_volume().astype(np.float32)
    values[0, 0, 0] = 2.5
    labels = write(volume_image(values), tmp_path / "labels.nii.gz")
    _fails(tmp_path, f"{labels}: label map has non-integer values", ct, labels_path=labels)


def test_jpeg_label_map(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5), np.uint8)), str(tmp_path / "p.png"))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 5), np.uint8)), str(tmp_path / "l.jpg"))
    _fails(
        tmp_path,
        f"{tmp_path / 'l.jpg'}: JPEG is lossy and cannot hold a label map; use PNG",
        tmp_path / "p.png", labels_path=tmp_path / "l.jpg",
    )


def _csv(tmp_path, *rows):
    path = tmp_path / "boxes.csv"
    path.write_text(BOXES_3D + "".join(r + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (("0,0,0,3,3,3", "10,5,2,16,8,4"), "box 1 [10.0, 5.0, 2.0, 16.0, 8.0, 4.0] lies outside the image of size [16, 20, 12]"),
        (("-1,0,0,3,3,3",), "box 0 [-1.0, 0.0, 0.0, 3.0, 3.0, 3.0] lies outside the image of size [16, 20, 12]"),
        (("5,0,0,3,3,3",), "box 0 [5.0, 0.0, 0.0, 3.0, 3.0, 3.0] has a minimum above its maximum"),
        (("1,2,3,4,5",), "CSV line 2 has a missing or non-numeric value"),
        ((), "no boxes"),
    ],
)
def test_bad_voxel_boxes(tmp_path, ct, rows, problem):
    boxes = _csv(tmp_path, *rows)
    _fails(tmp_path, f"{boxes}: {problem}", ct, boxes_path=boxes)


def test_physical_box_outside_the_image(tmp_path, ct):
    (tmp_path / "b.json").write_text('{"boxes": [[1000, 0, 0, 1010, 5, 5]]}')
    _fails(
        tmp_path,
        f"{tmp_path / 'b.json'}: box 0 [1000.0, 0.0, 0.0, 1010.0, 5.0, 5.0] lies outside the image of size [16, 20, 12]",
        ct,
        boxes_path=tmp_path / "b.json",
        box_coords="physical",
    )


def test_boxes_file_problems(tmp_path, ct):
    (tmp_path / "b.csv").write_text("x_min,y_min,x_max,y_max\n5,0,6,3\n")
    _fails(
        tmp_path,
        f"{tmp_path / 'b.csv'}: CSV header lacks column(s) z_min, z_max (needs x_min,y_min,z_min,x_max,y_max,z_max)",
        ct, boxes_path=tmp_path / "b.csv",
    )
    (tmp_path / "b.json").write_text('{"boxes": [[1, 2, 3')
    _fails(
        tmp_path,
        f"{tmp_path / 'b.json'}: invalid JSON (Expecting ',' delimiter: line 1 column 20 (char 19))",
        ct, boxes_path=tmp_path / "b.json",
    )
    (tmp_path / "b.yaml").write_text("boxes: []")
    _fails(
        tmp_path,
        f"{tmp_path / 'b.yaml'}: unknown boxes file format; expected .csv or .json",
        ct, boxes_path=tmp_path / "b.yaml",
    )


def test_a_failing_write_leaves_nothing(tmp_path, ct, monkeypatch):
    labels = write(volume_image(label_volume()), tmp_path / "labels.nii.gz")

    def broken_json(data):
        def write_json(path):
            path.write_text("{")  # partial content, then the disk fills up
            raise OSError("No space left on device")
        return write_json

    monkeypatch.setattr("convert.to_npz.json_writer", broken_json)
    with pytest.raises(OSError, match="No space left"):
        convert_to_npz(ct, tmp_path / "out", "CT", labels_path=labels)
    assert written_files(tmp_path / "out") == []  # imgs and gts were written first, then removed


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, ct):
    boxes = _csv(tmp_path, "0,0,0,3,3,3")
    first = convert_to_npz(ct, tmp_path / "out", "CT", case_id="1", boxes_path=boxes)
    with pytest.raises(ConversionError, match=r"3DBox_CT_1.npz: already exists \(use --overwrite to replace it\)$"):
        convert_to_npz(ct, tmp_path / "out", "CT", case_id="1", boxes_path=boxes)
    assert convert_to_npz(ct, tmp_path / "out", "CT", case_id="1", boxes_path=boxes, overwrite=True) == first
    assert written_files(tmp_path / "out") == sorted(first)  # no temporary left over


def _case(tmp_path, ct):
    convert_to_npz(ct, tmp_path / "out", "CT", case_id="1", labels_path=write(volume_image(label_volume()), tmp_path / "l.nii.gz"))
    return tmp_path / "out" / "geometry" / "3DBox_CT_1.json"


def test_segs_that_do_not_fit_the_case(tmp_path, ct):
    geometry = _case(tmp_path, ct)
    wrong_shape = save_segs(tmp_path / "a.npz", np.zeros((12, 16, 20)))
    too_many = save_segs(tmp_path / "b.npz", np.full((12, 20, 16), 4))
    np.savez(tmp_path / "c.npz", masks=np.zeros(3))
    cases = {
        wrong_shape: "array shape (12, 16, 20) does not match the case's (12, 20, 16)",
        too_many: "segs holds label 4 but the case has 3 boxes",
        tmp_path / "c.npz": "missing key 'segs' (has ['masks'])",
    }
    for segs, problem in cases.items():
        with pytest.raises(ConversionError) as info:
            convert_from_npz(segs, geometry, tmp_path / "mask.nii.gz")
        assert str(info.value) == f"{segs}: {problem}"
    assert not (tmp_path / "mask.nii.gz").exists()
    with pytest.raises(ConversionError, match=r"mask.png: unsupported mask format for a 3D case; use .nii.gz, .nii, .mha, .nrrd$"):
        convert_from_npz(wrong_shape, geometry, tmp_path / "mask.png")


def test_cli_from_npz_batch_goes_on_after_a_bad_case(tmp_path, ct, capsys):
    geometry = _case(tmp_path, ct)
    segs_dir = tmp_path / "segs"
    save_segs(segs_dir / "3DBox_CT_1.npz", np.load(tmp_path / "out" / "gts" / "3DBox_CT_1.npz")["gts"])
    save_segs(segs_dir / "3DBox_CT_0.npz", np.zeros((2, 2, 2)))  # no geometry file for this one
    code = main(["from-npz", str(segs_dir), "--geometry", str(geometry.parent), "--out", str(tmp_path / "masks")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"error: {geometry.parent / '3DBox_CT_0.json'}: unreadable geometry file")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "masks" / "3DBox_CT_1.nii.gz")))
    np.testing.assert_array_equal(mask, label_volume())


def test_cli_to_npz_prints_one_line_and_exits_1(tmp_path, ct):
    labels = write(volume_image(np.zeros((12, 20, 16), np.uint8)), tmp_path / "labels.nii.gz")
    run = subprocess.run(
        [sys.executable, "-m", "convert", "to-npz", str(ct), "--modality", "CT", "--labels", str(labels)]
        + ["--out-dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, encoding="utf-8",
    )
    assert run.returncode == 1
    assert run.stderr == f"error: {labels}: label map is empty (no voxel > 0)\n"
    assert written_files(tmp_path / "out") == []


def test_cli_rejects_unknown_modality_and_half_windows(tmp_path, ct, capsys):
    assert main(["to-npz", str(ct), "--modality", "CTA", "--boxes", "b.csv", "--out-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error: unknown modality 'CTA'; expected one of CT, MR, PET")
    assert main(["to-npz", str(ct), "--modality", "CT", "--boxes", "b.csv", "--out-dir", str(tmp_path), "--window-level", "40"]) == 1
    assert capsys.readouterr().err == "error: a custom CT window needs both a level and a width, and no preset\n"
