"""2D pictures: grey/16-bit/RGBA to (H, W, 3) uint8, label PNG -> 2D boxes, PNG masks back."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from _convert_data import save_segs

from convert import convert_from_npz, convert_to_npz


def _png(path, array, vector=False):
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


def test_16bit_grey_png_with_label_png_round_trip(tmp_path):
    grey = np.zeros((30, 40), np.uint16)
    grey[5, 7], grey[6, 7], grey[7, 7] = 1000, 500, 250  # 127.5 -> 127, 63.75 -> 63
    labels = np.zeros((30, 40), np.uint8)
    labels[3:10, 20:31] = 200  # y 3..9, x 20..30
    labels[25:30, 0:2] = 17  # y 25..29, x 0..1
    image, label_png = _png(tmp_path / "cxr.png", grey), _png(tmp_path / "labels.png", labels)
    convert_to_npz(image, tmp_path / "out", "xray", case_id="7", labels_path=label_png)

    with np.load(tmp_path / "out" / "imgs" / "2DBox_X-Ray_7.npz", allow_pickle=False) as case:
        assert sorted(case.files) == ["boxes", "imgs"]
        imgs, boxes = case["imgs"], case["boxes"]
    assert imgs.shape == (30, 40, 3) and imgs.dtype == np.uint8
    assert (imgs == imgs[..., :1]).all()  # three identical channels
    assert (imgs[5, 7, 0], imgs[6, 7, 0], imgs[7, 7, 0], imgs[0, 0, 0]) == (255, 127, 63, 0)
    np.testing.assert_array_equal(boxes, [[0, 25, 1, 29], [20, 3, 30, 9]])  # label 17 then 200
    gts = np.load(tmp_path / "out" / "gts" / "2DBox_X-Ray_7.npz")["gts"]
    np.testing.assert_array_equal(gts, np.select([labels == 17, labels == 200], [1, 2], 0))

    save_segs(tmp_path / "segs.npz", gts)
    out = convert_from_npz(tmp_path / "segs.npz", tmp_path / "out" / "geometry" / "2DBox_X-Ray_7.json", tmp_path / "mask.png")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), labels)


def test_rgb_kept_and_rgba_alpha_dropped(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(12, 9, 4), dtype=np.uint8)
    _png(tmp_path / "skin.png", rgba, vector=True)
    (tmp_path / "boxes.csv").write_text("x_min,y_min,x_max,y_max\n1,2,8,11\n")
    convert_to_npz(tmp_path / "skin.png", tmp_path / "out", "Dermoscopy", case_id="a", boxes_path=tmp_path / "boxes.csv")
    with np.load(tmp_path / "out" / "imgs" / "2DBox_Dermoscopy_a.npz") as case:
        np.testing.assert_array_equal(case["imgs"], rgba[..., :3])
        np.testing.assert_array_equal(case["boxes"], [[1, 2, 8, 11]])


def test_more_than_255_labels_give_uint16_gts_and_16bit_png(tmp_path):
    labels = np.arange(1, 301, dtype=np.uint16).reshape(15, 20)  # one pixel per label
    _png(tmp_path / "cells.png", np.full((15, 20), 9, np.uint8))
    _png(tmp_path / "labels.png", labels)
    convert_to_npz(tmp_path / "cells.png", tmp_path / "out", "microscopy", case_id="c", labels_path=tmp_path / "labels.png")
    name = "2DBox_Microscope_c"
    gts = np.load(tmp_path / "out" / "gts" / f"{name}.npz")["gts"]
    assert gts.dtype == np.uint16
    boxes = np.load(tmp_path / "out" / "imgs" / f"{name}.npz")["boxes"]
    assert boxes.shape == (300, 4)
    np.testing.assert_array_equal(boxes[299], [19, 14, 19, 14])
    save_segs(tmp_path / "segs.npz", gts)
    convert_from_npz(tmp_path / "segs.npz", tmp_path / "out" / "geometry" / f"{name}.json", tmp_path / "mask.png")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask.png"))), labels)
