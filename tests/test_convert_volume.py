"""Volumes: NIfTI -> npz -> mask NIfTI round trips, boxes, re-orientation, DICOM twin."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _convert_data import (
    OBLIQUE_DIRECTION,
    ORIGIN,
    SPACING,
    ct_volume,
    label_volume,
    save_segs,
    volume_image,
    write,
    write_dicom_series,
    write_scanner_dicom_series,
)

from evaluation.scoring import evaluate_case
from convert import convert_from_npz, convert_to_npz

REPO = Path(__file__).resolve().parents[1]
NAME = "3DBox_CT_0001"


def _nifti_affine(path: Path) -> tuple[np.ndarray, bytes]:
    """(srow_x/y/z as a 3 x 4 float32 matrix, raw bytes of pixdim + qform fields) of a NIfTI-1 file."""
    header = gzip.open(path).read(348) if path.name.endswith(".gz") else path.read_bytes()[:348]
    assert int(np.frombuffer(header[:4], "<i4")[0]) == 348
    return np.frombuffer(header[280:328], "<f4").reshape(3, 4), header[76:108] + header[252:280]


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "convert", *args], check=True, cwd=REPO, capture_output=True)


# An oblique grid (anisotropic too), and an axis-aligned anisotropic one stored RAS like most
# NIfTI files (5 mm slices, x and y flipped against ITK's LPS).
GRIDS = {
    "oblique": {"direction": OBLIQUE_DIRECTION, "spacing": SPACING, "origin": ORIGIN},
    "anisotropic": {"direction": (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0), "spacing": (0.8, 0.8, 5.0),
                    "origin": (120.5, 98.25, -310.0)},
}


@pytest.mark.parametrize("grid", GRIDS)
def test_round_trip_through_the_cli_keeps_labels_and_affine(tmp_path, grid):
    hu = ct_volume()
    ct, labels = write(volume_image(hu, **GRIDS[grid]), tmp_path / "ct.nii.gz"), tmp_path / "labels.nii.gz"
    write(volume_image(label_volume(), **GRIDS[grid]), labels)
    _cli("to-npz", str(ct), "--modality", "ct", "--labels", str(labels), "--out-dir", str(tmp_path / "out"), "--id", "0001")

    with np.load(tmp_path / "out" / "imgs" / f"{NAME}.npz", allow_pickle=False) as case:
        assert sorted(case.files) == ["boxes", "imgs", "spacing"]
        imgs, boxes, spacing = case["imgs"], case["boxes"], case["spacing"]
    # (D, H, W) = ITK size reversed; spacing in ITK (x, y, z) order, as the organisers stored it
    assert imgs.shape == (12, 20, 16) and imgs.dtype == np.uint8
    np.testing.assert_allclose(spacing, GRIDS[grid]["spacing"], rtol=1e-6)
    window = np.clip(hu.astype(np.float64), -160, 240)  # abdomen window, the volume spans it
    np.testing.assert_array_equal(imgs, np.uint8((window + 160) / 400 * 255.0))
    # labels 2, 5, 9 become boxes 1, 2, 3 in increasing order of the original value
    np.testing.assert_array_equal(boxes, [[1, 10, 7, 14, 11, 7], [4, 3, 2, 6, 8, 4], [15, 19, 11, 15, 19, 11]])
    assert boxes.dtype == np.int64
    with np.load(tmp_path / "out" / "gts" / f"{NAME}.npz", allow_pickle=False) as truth:
        gts = truth["gts"]
        np.testing.assert_array_equal(truth["spacing"], spacing)
    np.testing.assert_array_equal(gts, np.select([label_volume() == v for v in (2, 5, 9)], [1, 2, 3], 0))

    save_segs(tmp_path / "segs" / f"{NAME}.npz", gts)  # identity "segmentation"
    scored = evaluate_case(f"{NAME}.npz", tmp_path / "segs", tmp_path / "out" / "gts")  # the case can be scored
    assert (scored.dsc, scored.nsd, scored.modality, scored.image_size, scored.error) == (1.0, 1.0, "CT", "12x20x16", "")
    _cli("from-npz", str(tmp_path / "segs"), "--geometry", str(tmp_path / "out" / "geometry"), "--out", str(tmp_path / "masks"))
    mask_path = tmp_path / "masks" / f"{NAME}.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), label_volume())
    original = sitk.ReadImage(str(labels))
    assert mask.GetSize() == original.GetSize()
    np.testing.assert_allclose(mask.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(mask.GetSpacing(), original.GetSpacing(), rtol=1e-7)
    np.testing.assert_allclose(mask.GetDirection(), original.GetDirection(), atol=1e-7)
    # the NIfTI affine itself: qform and pixdim bit for bit, sform within one float32 step
    (srow_mask, qform_mask), (srow_orig, qform_orig) = _nifti_affine(mask_path), _nifti_affine(labels)
    assert qform_mask == qform_orig
    np.testing.assert_allclose(srow_mask, srow_orig, rtol=0, atol=2.5e-7 * np.abs(srow_orig).max())


def test_margins_are_clipped_to_the_image(tmp_path):
    write(volume_image(ct_volume()), tmp_path / "ct.nii.gz")
    write(volume_image(label_volume().astype(np.float32)), tmp_path / "labels.nii.gz")  # float labels are common
    labels = tmp_path / "labels.nii.gz"
    convert_to_npz(tmp_path / "ct.nii.gz", tmp_path / "out", "CT", case_id="m", labels_path=labels, margin=2, margin_z=1)
    with np.load(tmp_path / "out" / "imgs" / "3DBox_CT_m.npz") as case:
        np.testing.assert_array_equal(
            case["boxes"], [[0, 8, 6, 15, 13, 8], [2, 1, 1, 8, 10, 5], [13, 17, 10, 15, 19, 11]]
        )


# Stored sagittally: index i runs towards P, j towards I (inferior), k towards L.
SAGITTAL = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def test_reorientation_puts_axial_slices_on_d_and_is_undone_exactly(tmp_path):
    rng = np.random.default_rng(1)
    stored = rng.integers(1, 500, size=(6, 9, 7)).astype(np.int16)  # (k, j, i)
    labels = np.zeros(stored.shape, np.uint8)
    labels[1:3, 2:7, 3:5] = 4
    spacing = (0.8, 1.1, 3.0)
    write(volume_image(stored, SAGITTAL, spacing), tmp_path / "mr.nii.gz")
    write(volume_image(labels, SAGITTAL, spacing), tmp_path / "labels.nii.gz")
    convert_to_npz(tmp_path / "mr.nii.gz", tmp_path / "out", "MR", case_id="s", labels_path=tmp_path / "labels.nii.gz", orient="LPS")

    # LPS: new x = k (towards L), new y = i (towards P), new z = j reversed (towards S)
    def to_lps(array):
        return array.transpose(1, 2, 0)[::-1]

    name = "3DBox_MR_s"
    with np.load(tmp_path / "out" / "gts" / f"{name}.npz") as truth:
        np.testing.assert_array_equal(truth["gts"], to_lps(labels > 0))
        np.testing.assert_allclose(truth["spacing"], (3.0, 0.8, 1.1), rtol=1e-6)
    with np.load(tmp_path / "out" / "imgs" / f"{name}.npz") as case:
        # j in 2..6 of 9 -> z in 9-1-6 .. 9-1-2 = 2..6; i in 3..4 -> y; k in 1..2 -> x
        np.testing.assert_array_equal(case["boxes"], [[1, 3, 2, 2, 4, 6]])
        # the intensity map is monotone, so imgs sorted by the re-oriented voxels never decreases
        order = np.argsort(to_lps(stored).ravel(), kind="stable")
        assert case["imgs"].shape == (9, 7, 6) and (np.diff(case["imgs"].ravel()[order].astype(int)) >= 0).all()
        segs = to_lps(labels > 0).astype(np.uint16)
    save_segs(tmp_path / "segs.npz", segs)
    convert_from_npz(tmp_path / "segs.npz", tmp_path / "out" / "geometry" / f"{name}.json", tmp_path / "mask.nii.gz")
    mask = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), labels)
    np.testing.assert_allclose(mask.GetDirection(), SAGITTAL, atol=1e-7)
    np.testing.assert_allclose(mask.GetOrigin(), ORIGIN, atol=1e-5)


def test_voxel_boxes_file_with_labels_and_reorientation(tmp_path):
    stored = np.full((6, 9, 7), 100, np.int16)
    write(volume_image(stored, SAGITTAL), tmp_path / "ct.nii.gz")
    (tmp_path / "boxes.csv").write_text("x_min,y_min,z_min,x_max,y_max,z_max,label,note\n3,2,1,4,6,2,7,kidney\n0,0,0,6,8,5,3,all\n")
    convert_to_npz(tmp_path / "ct.nii.gz", tmp_path / "out", "CT", case_id="b", boxes_path=tmp_path / "boxes.csv", orient="LPS")
    with np.load(tmp_path / "out" / "imgs" / "3DBox_CT_b.npz") as case:
        np.testing.assert_array_equal(case["boxes"], [[1, 3, 2, 2, 4, 6], [0, 0, 0, 5, 6, 8]])
    assert not (tmp_path / "out" / "gts").exists()
    segs = np.zeros((9, 7, 6), np.uint16)
    segs[2:7, 3:5, 1:3] = 1
    save_segs(tmp_path / "segs.npz", segs)
    convert_from_npz(tmp_path / "segs.npz", tmp_path / "out" / "geometry" / "3DBox_CT_b.json", tmp_path / "mask.nii.gz")
    expected = np.zeros(stored.shape, np.uint8)
    expected[1:3, 2:7, 3:5] = 7  # box 1 written back with its CSV label
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask.nii.gz"))), expected)


def test_physical_boxes_on_a_flipped_anisotropic_grid(tmp_path):
    # x = 10 - 0.5 i, y = 20 + 0.8 j, z = -5 + 3 k
    grid = {"direction": (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), "spacing": (0.5, 0.8, 3.0), "origin": (10.0, 20.0, -5.0)}
    write(volume_image(ct_volume(), **grid), tmp_path / "ct.nii.gz")
    # x 6..8 mm -> i 8..4; y 20.8..24 -> j 1..5; z 1..7 -> k 2..4
    (tmp_path / "boxes.json").write_text(json.dumps({"boxes": [[6.0, 20.8, 1.0, 8.0, 24.0, 7.0]]}))
    boxes = tmp_path / "boxes.json"
    convert_to_npz(tmp_path / "ct.nii.gz", tmp_path / "out", "CT", case_id="p", boxes_path=boxes, box_coords="physical")
    with np.load(tmp_path / "out" / "imgs" / "3DBox_CT_p.npz") as case:
        np.testing.assert_array_equal(case["boxes"], [[4, 1, 2, 8, 5, 4]])


@pytest.mark.parametrize("writer", [write_dicom_series, write_scanner_dicom_series])
def test_dicom_series_converts_like_its_nifti_twin(tmp_path, writer):
    # SimpleITK's writer, and pydicom writing what scanners store (uint16 HU + 1024, intercept -1024)
    image = volume_image(ct_volume(seed=5))
    write(image, tmp_path / "ct.nii.gz")
    write(volume_image(label_volume()), tmp_path / "labels.nii.gz")
    writer(image, tmp_path / "dicom")
    for source, case_id in ((tmp_path / "ct.nii.gz", "nifti"), (tmp_path / "dicom", "dicom")):
        convert_to_npz(source, tmp_path / "out", "CT", case_id=case_id, labels_path=tmp_path / "labels.nii.gz")
    nifti = np.load(tmp_path / "out" / "imgs" / "3DBox_CT_nifti.npz")
    dicom = np.load(tmp_path / "out" / "imgs" / "3DBox_CT_dicom.npz")
    np.testing.assert_array_equal(dicom["imgs"], nifti["imgs"])
    np.testing.assert_array_equal(dicom["boxes"], nifti["boxes"])
    np.testing.assert_allclose(dicom["spacing"], nifti["spacing"], rtol=1e-6)
    grids = [json.loads((tmp_path / "out" / "geometry" / f"3DBox_CT_{n}.json").read_text())["source_grid"] for n in ("nifti", "dicom")]
    np.testing.assert_allclose(grids[1]["origin"], grids[0]["origin"], atol=1e-5)
    np.testing.assert_allclose(grids[1]["direction"], grids[0]["direction"], atol=1e-6)


@pytest.mark.parametrize("modality", ["MR", "PET"])
def test_mr_and_pet_volumes_use_percentiles(tmp_path, modality):
    volume = np.zeros((4, 10, 10), np.float32)
    volume[:, 2:8, 2:8] = np.arange(1, 145, dtype=np.float32).reshape(4, 6, 6)
    write(volume_image(volume), tmp_path / "v.nii.gz")
    (tmp_path / "b.json").write_text("[[2, 2, 0, 7, 7, 3]]")
    convert_to_npz(tmp_path / "v.nii.gz", tmp_path / "out", modality, case_id="1", boxes_path=tmp_path / "b.json")
    imgs = np.load(tmp_path / "out" / "imgs" / f"3DBox_{modality}_1.npz")["imgs"]
    # 1..144: 0.5% -> 1 + 143 * 0.005 = 1.715, 99.5% -> 1 + 143 * 0.995 = 143.285
    # value 72: (72 - 1.715) / 141.57 * 255 = 126.60 -> 126; zeros stay 0
    assert imgs[0, 0, 0] == 0 and imgs[1, 7, 7] == 126
    assert imgs[0, 2, 2] == 0 and imgs[3, 7, 7] == 255


def test_cli_window_flags_apply_a_window_to_any_modality(tmp_path):
    from convert.__main__ import main

    volume = np.array([-100, -50, 0, 100], np.int16).reshape(1, 1, 4)
    write(volume_image(volume), tmp_path / "mr.nii.gz")
    (tmp_path / "b.json").write_text("[[0, 0, 0, 3, 0, 0]]")
    argv = ["to-npz", str(tmp_path / "mr.nii.gz"), "--modality", "MR", "--boxes", str(tmp_path / "b.json"), "--id", "w"]
    assert main([*argv, "--out-dir", str(tmp_path / "out"), "--window-level=0", "--window-width", "200"]) == 0
    # [-100, 100]: -50 -> 50/200*255 = 63.75 -> 63, 0 -> 127.5 -> 127
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "imgs" / "3DBox_MR_w.npz")["imgs"], [[[0, 63, 127, 255]]])
