"""Reading and validating input cases: every bad-input rule with its exact one-line message."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from infer.boxes import prepare_boxes
from infer.cases import load_case
from infer.errors import CaseError


def _save(path: Path, **arrays) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def _image2d(h: int = 20, w: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _error(path: Path, dimension: str = "2D") -> str:
    with pytest.raises(CaseError) as info:
        load_case(path, dimension)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_good_2d_case_loads_unchanged(tmp_path):
    img, boxes = _image2d(), np.array([[1, 2, 10, 12]], np.int64)
    case = load_case(_save(tmp_path / "2DBox_US_1.npz", imgs=img, boxes=boxes), "2D")
    np.testing.assert_array_equal(case.imgs, img)
    np.testing.assert_array_equal(case.boxes, boxes)
    assert case.boxes.dtype == np.float64 and case.notes == []


def test_not_an_npz(tmp_path):
    path = tmp_path / "2DBox_US_1.npz"
    path.write_text("hello, I am text")
    assert _error(path) == f"{path}: not a readable npz file (not a zip archive, or truncated)"


def test_truncated_npz(tmp_path):
    good = _save(tmp_path / "good.npz", imgs=_image2d(), boxes=np.zeros((1, 4)))
    path = tmp_path / "2DBox_US_1.npz"
    path.write_bytes(good.read_bytes()[:-30])
    assert _error(path) == f"{path}: not a readable npz file (not a zip archive, or truncated)"


def test_corrupt_member(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, imgs=_image2d(), boxes=np.zeros((1, 4)))
    raw = bytearray(buffer.getvalue())
    start = raw.index(b"\x93NUMPY")  # first member's data (stored uncompressed): flip payload bytes
    raw[start + 200:start + 260] = b"\x00" * 60
    path = tmp_path / "2DBox_US_1.npz"
    path.write_bytes(bytes(raw))
    message = _error(path)
    assert message.startswith(f"{path}: not a readable npz file (member '")


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "2DBox_US_1.npz"
    boxes = np.empty(1, dtype=object)
    boxes[0] = [1, 2, 3, 4]
    np.savez(path, imgs=_image2d(), boxes=boxes)
    assert _error(path) == (f"{path}: 'boxes' is a pickled object array (refused: inputs are read with "
                            "allow_pickle=False)")


@pytest.mark.parametrize("missing", ["imgs", "boxes"])
def test_missing_key(tmp_path, missing):
    arrays = {"imgs": _image2d(), "boxes": np.zeros((1, 4))}
    del arrays[missing]
    path = _save(tmp_path / "2DBox_US_1.npz", **arrays)
    assert _error(path) == f"{path}: missing key '{missing}' (has {sorted(arrays)})"


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 4), (2, 20, 30, 3)])
def test_2d_image_must_be_hw3(tmp_path, shape):
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=np.zeros(shape, np.uint8), boxes=np.zeros((0, 4)))
    assert _error(path) == f"{path}: 2D 'imgs' must have shape (H, W, 3), got {shape}"


@pytest.mark.parametrize("shape", [(20, 30), (4, 20, 30, 3)])
def test_3d_image_must_be_dhw(tmp_path, shape):
    path = _save(tmp_path / "3DBox_CT_1.npz", imgs=np.zeros(shape, np.uint8), boxes=np.zeros((0, 6)))
    assert _error(path, "3D") == f"{path}: 3D 'imgs' must have shape (D, H, W), got {shape}"


def test_empty_image(tmp_path):
    path = _save(tmp_path / "3DBox_CT_1.npz", imgs=np.zeros((0, 8, 8), np.uint8), boxes=np.zeros((0, 6)))
    assert _error(path, "3D") == f"{path}: 'imgs' is empty, shape (0, 8, 8)"


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.float64, bool])
def test_non_uint8_image_that_fits_is_converted_with_a_note(tmp_path, dtype):
    values = _image2d().astype(dtype)
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=values, boxes=np.zeros((0, 4)))
    case = load_case(path, "2D")
    assert case.imgs.dtype == np.uint8
    np.testing.assert_array_equal(case.imgs, values.astype(np.int64))
    lo, hi = values.min(), values.max()
    assert case.notes == [f"'imgs' converted from {np.dtype(dtype)} to uint8 (values {lo:g}..{hi:g})"]


def test_image_values_outside_uint8_are_an_error(tmp_path):
    img = _image2d().astype(np.int16)
    img[0, 0, 0], img[1, 1, 1] = -3, 300
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=img, boxes=np.zeros((0, 4)))
    assert _error(path) == f"{path}: 'imgs' is int16 with values outside 0..255 (min -3, max 300); expected uint8"


def test_fractional_float_image_is_an_error(tmp_path):
    img = _image2d().astype(np.float32) / 255
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=img, boxes=np.zeros((0, 4)))
    assert _error(path) == (f"{path}: 'imgs' is float32 with non-integer values (min {img.min():g}, "
                            f"max {img.max():g}); expected uint8")


def test_nan_image_is_an_error(tmp_path):
    img = _image2d().astype(np.float32)
    img[3, 3, 0] = np.nan
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=img, boxes=np.zeros((0, 4)))
    assert _error(path) == f"{path}: 'imgs' is float32 and contains NaN or infinite values; expected uint8"


def test_nan_box_coordinate(tmp_path):
    boxes = np.array([[1, 2, 10, 12], [1, np.nan, 5, 6]])
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=_image2d(), boxes=boxes)
    assert _error(path) == f"{path}: 'boxes' row 1 has a NaN or infinite coordinate [1, nan, 5, 6]"


def test_negative_box_coordinate(tmp_path):
    boxes = np.array([[1, 2, 10, 12], [-3, 1, 5, 9]], np.int64)
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=_image2d(), boxes=boxes)
    assert _error(path) == f"{path}: 'boxes' row 1 has a negative coordinate [-3, 1, 5, 9]"


def test_boxes_of_the_wrong_width(tmp_path):
    path = _save(tmp_path / "3DBox_CT_1.npz", imgs=np.zeros((3, 8, 8), np.uint8), boxes=np.zeros((2, 4)))
    assert _error(path, "3D") == (f"{path}: 3D 'boxes' must have shape (N, 6) [x_min, y_min, z_min, x_max, y_max, "
                                  "z_max], got (2, 4)")


def test_non_numeric_boxes(tmp_path):
    path = _save(tmp_path / "2DBox_US_1.npz", imgs=_image2d(), boxes=np.array([["a", "b", "c", "d"]]))
    assert _error(path) == f"{path}: 'boxes' must be numeric, got dtype <U1"


@pytest.mark.parametrize("boxes", [np.zeros((0,)), np.zeros((0, 4)), np.zeros((0, 6))])
def test_empty_box_list_is_valid(tmp_path, boxes):
    case = load_case(_save(tmp_path / "2DBox_US_1.npz", imgs=_image2d(), boxes=boxes), "2D")
    assert case.boxes.shape == (0, 4)


@pytest.mark.parametrize("spacing,note", [
    (None, "no 'spacing'; not needed for inference, going on"),
    (np.array([1.0, 1.0]), "'spacing' float64 (2,) is not 3 positive numbers; not needed for inference, going on"),
    (np.array([1.0, np.nan, 2.0]),
     "'spacing' float64 (3,) is not 3 positive numbers; not needed for inference, going on"),
    (np.array([1.0, 0.8, 2.5]), None),
])
def test_3d_spacing_is_not_needed(tmp_path, spacing, note):
    arrays = {"imgs": np.zeros((3, 8, 8), np.uint8), "boxes": np.array([[1, 1, 0, 4, 4, 2]])}
    if spacing is not None:
        arrays["spacing"] = spacing
    case = load_case(_save(tmp_path / "3DBox_CT_1.npz", **arrays), "3D")
    assert case.notes == ([] if note is None else [note])


def test_pickled_spacing_is_only_a_note(tmp_path):
    path = tmp_path / "3DBox_CT_1.npz"
    spacing = np.empty(3, dtype=object)
    np.savez(path, imgs=np.zeros((3, 8, 8), np.uint8), boxes=np.array([[1, 1, 0, 4, 4, 2]]), spacing=spacing)
    case = load_case(path, "3D")
    assert case.notes == ["unreadable 'spacing' ('spacing' is a pickled object array (refused: inputs are read with "
                          "allow_pickle=False)); not needed for inference, going on"]


def test_missing_file(tmp_path):
    path = tmp_path / "2DBox_US_1.npz"
    assert _error(path) == f"{path}: file not found"


def test_a_zip_that_is_not_an_npz_lacks_keys(tmp_path):
    path = tmp_path / "2DBox_US_1.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not an array")
    assert _error(path) == f"{path}: missing key 'imgs' (has ['readme.txt'])"


# --- box repairs --------------------------------------------------------------------------------

def test_boxes_inside_are_untouched():
    boxes = np.array([[0, 0, 29, 19], [3.5, 2, 7.25, 9]])
    prepared = prepare_boxes(boxes, (20, 30))
    np.testing.assert_array_equal(prepared.boxes, boxes)
    np.testing.assert_array_equal(prepared.labels, [1, 2])
    assert prepared.notes == []


def test_boxes_crossing_the_border_are_clipped_and_noted():
    prepared = prepare_boxes(np.array([[5, 5, 40, 10], [1, 1, 2, 2], [0, 3, 8, 25]], np.float64), (20, 30))
    np.testing.assert_array_equal(prepared.boxes, [[5, 5, 29, 10], [1, 1, 2, 2], [0, 3, 8, 19]])
    assert prepared.notes == ["box row(s) 0, 2 clipped to the image (30 x 20, x by y)"]


def test_boxes_wholly_outside_are_dropped_and_keep_label_numbers():
    prepared = prepare_boxes(np.array([[1, 1, 4, 4], [31, 2, 40, 5], [2, 2, 3, 3]], np.float64), (20, 30))
    np.testing.assert_array_equal(prepared.labels, [1, 3])
    np.testing.assert_array_equal(prepared.boxes, [[1, 1, 4, 4], [2, 2, 3, 3]])
    assert prepared.notes == ["box row(s) 1 lie outside the image: empty mask"]


def test_inverted_boxes_are_reordered_and_zero_area_boxes_kept():
    prepared = prepare_boxes(np.array([[10, 8, 2, 3], [4, 4, 4, 4]], np.float64), (20, 30))
    np.testing.assert_array_equal(prepared.boxes, [[2, 3, 10, 8], [4, 4, 4, 4]])
    assert prepared.notes == ["box row(s) 0 had min > max: corners swapped"]


def test_3d_boxes_clip_z_to_the_volume_and_truncate_fractional_slices():
    prepared = prepare_boxes(np.array([[1, 1, 2.7, 5, 5, 9.2], [0, 0, 7, 3, 3, 7]]), (5, 8, 8))
    np.testing.assert_array_equal(prepared.boxes, [[1, 1, 2, 5, 5, 4]])
    np.testing.assert_array_equal(prepared.labels, [1])
    assert prepared.notes == ["box row(s) 1 lie outside the image: empty mask",
                              "box row(s) 0 clipped to the image (8 x 8 x 5, x by y by z)"]
