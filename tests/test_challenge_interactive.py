"""challenge.interactive: the CVPR 2025 interactive input files, read without running their pickles."""
from __future__ import annotations

import io
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest

from challenge.interactive import (ClassBox, ClassClicks, boxes_from_labels, read_interactive_case,
                                   write_interactive_case)
from challenge.npz import NpzError

SHAPE = (6, 8, 10)


def _imgs() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)


def _evaluator_lists() -> tuple[list, list, list]:
    """clicks, clicks_order and boxes built with the same statements as the organisers' scripts:
    click coordinates from np.argwhere rows (np.int64), box values from np.min / np.where (np.int64)."""
    volume = np.zeros(SHAPE, bool)
    volume[2, 3, 4] = True
    center = tuple(np.argwhere(volume)[0])
    clicks = [{"fg": [list(center)], "bg": []}, {"fg": [], "bg": [list(center), [np.int64(5), np.int64(7), np.int64(9)]]}]
    order = [["fg", None], ["bg", "bg"]]
    z = np.array([1, 2, 3])
    boxes = [{"z_min": np.min(z), "z_max": np.max(z), "z_mid": np.unique(z)[1], "z_mid_x_min": np.int64(1),
              "z_mid_y_min": np.int64(2), "z_mid_x_max": np.int64(8), "z_mid_y_max": np.int64(7)},
             {"z_min": 0, "z_max": 5, "z_mid": 2, "z_mid_x_min": 0, "z_mid_y_min": 0, "z_mid_x_max": 9, "z_mid_y_max": 7}]
    return clicks, order, boxes


def test_reads_what_the_evaluator_writes(tmp_path):
    clicks, order, boxes = _evaluator_lists()
    path = tmp_path / "case.npz"
    prev = np.zeros(SHAPE, np.uint8)
    prev[1, 1, 1] = 2
    np.savez_compressed(path, imgs=_imgs(), spacing=np.array([1.0, 0.5, 2.0]), clicks=clicks, clicks_order=order,
                        prev_pred=prev, boxes=boxes)
    case = read_interactive_case(path)
    assert case.imgs.dtype == np.uint8 and case.imgs.shape == SHAPE
    assert case.spacing.tolist() == [1.0, 0.5, 2.0]
    assert case.boxes == (ClassBox(1, 3, 2, 1, 2, 8, 7), ClassBox(0, 5, 2, 0, 0, 9, 7))
    assert case.clicks is not None
    assert case.clicks[0].fg.tolist() == [[2, 3, 4]] and case.clicks[0].bg.shape == (0, 3)
    assert case.clicks[1].bg.tolist() == [[2, 3, 4], [5, 7, 9]] and case.clicks[1].fg.dtype == np.int64
    assert case.clicks_order == (("fg", None), ("bg", "bg"))
    assert case.prev_pred is not None and case.prev_pred[1, 1, 1] == 2
    assert case.num_classes == 2
    assert case.ordered_clicks(1) == [("bg", (2, 3, 4)), ("bg", (5, 7, 9))]


def test_clicks_order_without_none_is_a_unicode_array_and_is_read_too(tmp_path):
    path = tmp_path / "case.npz"
    np.savez_compressed(path, imgs=_imgs(), spacing=np.ones(3), clicks=[{"fg": [[1, 1, 1]], "bg": [[2, 2, 2]]}],
                        clicks_order=[["fg", "bg"]])
    with np.load(path) as f:  # premise: no pickle for this member
        assert f["clicks_order"].dtype.kind == "U"
    case = read_interactive_case(path)
    assert case.clicks_order == (("fg", "bg"),)
    assert case.ordered_clicks(0) == [("fg", (1, 1, 1)), ("bg", (2, 2, 2))]
    assert case.boxes is None and case.prev_pred is None


def _npy_object_member(array: np.ndarray, protocol: int, numpy1_names: bool) -> bytes:
    handle = io.BytesIO()
    np.lib.format.write_array_header_1_0(handle, {"descr": "|O", "fortran_order": False, "shape": array.shape})
    data = pickle.dumps(array, protocol=protocol)
    if numpy1_names:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return handle.getvalue() + data


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)


def _npy(array: np.ndarray) -> bytes:
    handle = io.BytesIO()
    np.lib.format.write_array(handle, array, allow_pickle=False)
    return handle.getvalue()


def test_reads_numpy_1_pickles(tmp_path):
    """The evaluator pins numpy 1.26: protocol 3, globals under numpy.core.multiarray."""
    clicks, order, boxes = _evaluator_lists()
    arrays = {"clicks": np.empty(2, object), "boxes": np.empty(2, object)}
    arrays["clicks"][:] = clicks
    arrays["boxes"][:] = boxes
    members = {name: _npy_object_member(a, 3, True) for name, a in arrays.items()}
    assert b"numpy.core.multiarray\n_reconstruct" in members["clicks"] and b"_core" not in members["clicks"]
    members |= {"imgs": _npy(_imgs()), "spacing": _npy(np.ones(3))}
    _zip(tmp_path / "old.npz", members)
    case = read_interactive_case(tmp_path / "old.npz")
    assert case.clicks is not None and case.clicks[1].bg.tolist() == [[2, 3, 4], [5, 7, 9]]
    assert case.boxes is not None and case.boxes[0].z_mid == 2


class _Payload:
    """Pickles as a call of os.system: unpickling it with plain pickle runs the shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("key", ["clicks", "boxes", "clicks_order"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, key):
    marker = tmp_path / "pwned"
    evil = np.empty(1, object)
    evil[0] = {"fg": [_Payload(marker)], "bg": []}
    path = tmp_path / "evil.npz"
    np.savez_compressed(path, imgs=_imgs(), spacing=np.ones(3), **{key: evil})
    with pytest.raises(NpzError) as info:
        read_interactive_case(path)
    message = str(info.value)
    assert message.startswith(str(path)) and f"'{key}'" in message and f"global {os.system.__module__}.system" in message
    assert "\n" not in message
    assert not marker.exists()
    # control: the payload is live, plain np.load runs it
    control = tmp_path / "control"
    evil[0] = {"fg": [_Payload(control)], "bg": []}
    np.savez_compressed(path, imgs=_imgs(), spacing=np.ones(3), **{key: evil})
    with np.load(path, allow_pickle=True) as f:
        f[key]
    assert control.exists()


@pytest.mark.parametrize("obj, refused", [(eval, "builtins.eval"), (__import__("collections").OrderedDict(a=1),
                                                                    "collections.OrderedDict")])
def test_any_other_global_is_refused(tmp_path, obj, refused):
    evil = np.empty(1, object)
    evil[0] = obj
    path = tmp_path / "case.npz"
    np.savez_compressed(path, imgs=_imgs(), clicks=evil)
    with pytest.raises(NpzError, match=f"'clicks': pickle refused: global {refused} is not allowed"):
        read_interactive_case(path)


def test_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "case.npz"
    clicks, order, boxes = _evaluator_lists()
    np.savez_compressed(path, imgs=_imgs(), spacing=np.ones(3), clicks=clicks, clicks_order=order, boxes=boxes)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NpzError, match="not a readable npz file"):
        read_interactive_case(path)


def test_truncated_pickle_member_is_an_error(tmp_path):
    clicks, _, _ = _evaluator_lists()
    array = np.empty(2, object)
    array[:] = clicks
    member = _npy_object_member(array, 4, False)
    _zip(tmp_path / "case.npz", {"imgs": _npy(_imgs()), "clicks": member[:-20]})
    with pytest.raises(NpzError, match=r"'clicks': not a readable pickle \("):
        read_interactive_case(tmp_path / "case.npz")


def test_a_pickle_that_is_not_the_declared_array_is_refused(tmp_path):
    handle = io.BytesIO()
    np.lib.format.write_array_header_1_0(handle, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    _zip(tmp_path / "case.npz", {"imgs": _npy(_imgs()), "clicks": handle.getvalue() + pickle.dumps([1, 2])})
    with pytest.raises(NpzError, match="'clicks': pickle holds list, not the object array"):
        read_interactive_case(tmp_path / "case.npz")


def test_missing_imgs_is_named(tmp_path):
    path = tmp_path / "case.npz"
    np.savez_compressed(path, spacing=np.ones(3), clicks=[{"fg": [], "bg": []}])
    with pytest.raises(NpzError, match=r"missing key 'imgs' \(has \['clicks', 'spacing'\]\)"):
        read_interactive_case(path)


def test_pickled_members_are_bounded(tmp_path):
    path = tmp_path / "case.npz"
    np.savez_compressed(path, imgs=_imgs(), clicks=[{"fg": [[1, 1, 1]] * 100, "bg": []}])
    with pytest.raises(NpzError, match="'clicks': pickled member larger than 200 bytes"):
        read_interactive_case(path, max_pickle_bytes=200)
    assert read_interactive_case(path).clicks is not None


@pytest.mark.parametrize("members, message", [
    ({"clicks": [{"fg": [[6, 0, 0]], "bg": []}]}, r"'clicks' entry 0 'fg' click 0 \[6, 0, 0\] \(z, y, x\) is outside"),
    ({"clicks": [{"fg": [[1, 2]], "bg": []}]}, r"'clicks' entry 0 'fg' click 0 is \[1, 2\], expected 3 integers"),
    ({"clicks": [{"fg": []}]}, r"'clicks' entry 0 must be a dict with keys 'fg' and 'bg', got \['fg'\]"),
    ({"clicks": [{"fg": [[1, 1, 1]], "bg": []}], "clicks_order": [["bg"]]}, r"class 0: 'clicks_order' \['bg'\] does not match"),
    ({"clicks_order": [["up"]]}, r"'clicks_order' entry 0 holds np.str_\('up'\)"),
    ({"boxes": [{"z_min": 0}]}, r"'boxes' entry 0 has no z_max, z_mid"),
    ({"boxes": [{"z_min": 3, "z_max": 1, "z_mid": 2, "z_mid_x_min": 0, "z_mid_y_min": 0, "z_mid_x_max": 1,
                 "z_mid_y_max": 1}]}, r"'boxes' entry 0 \(z_min=3, z_max=1, .*\) is not an ordered box"),
    ({"boxes": np.zeros((1, 6))}, r"'boxes' must be a pickled list with one entry per class, got a float64 array \(1, 6\)"),
    ({"clicks": [{"fg": [], "bg": []}], "clicks_order": [[None], [None]]},
     r"per-class prompts disagree on the number of classes \(clicks: 1, clicks_order: 2\)"),
    ({"prev_pred": np.zeros((6, 8, 9), np.uint8)}, r"'prev_pred' has shape \(6, 8, 9\), the image \(6, 8, 10\)"),
    ({"spacing": np.ones(2)}, r"'spacing' must be 3 numbers, got float64 \(2,\)"),
])
def test_malformed_prompts_are_named(tmp_path, members, message):
    path = tmp_path / "case.npz"
    np.savez_compressed(path, **({"imgs": _imgs(), "spacing": np.ones(3)} | members))
    with pytest.raises(NpzError, match=message):
        read_interactive_case(path)


def test_image_must_be_3d(tmp_path):
    path = tmp_path / "case.npz"
    np.savez_compressed(path, imgs=np.zeros((4, 4, 3, 1), np.uint8))
    with pytest.raises(NpzError, match=r"'imgs' must be a non-empty numeric \(D, H, W\) array, got uint8 \(4, 4, 3, 1\)"):
        read_interactive_case(path)


def test_writer_round_trip_and_evaluator_layout(tmp_path):
    path = tmp_path / "case.npz"
    clicks = (ClassClicks.empty().add("fg", (1, 2, 3)).add("bg", (4, 5, 6)), ClassClicks.empty())
    boxes = (ClassBox(0, 5, 2, 1, 1, 8, 6), ClassBox(1, 1, 1, 0, 0, 0, 0))
    write_interactive_case(path, _imgs(), [1.0, 1.0, 3.0], boxes=boxes, clicks=clicks,
                           clicks_order=[["fg", "bg"], [None, None]], prev_pred=np.ones(SHAPE, np.uint8))
    with np.load(path, allow_pickle=True) as f:  # what a participant's np.load sees
        assert list(f.keys()) == ["imgs", "spacing", "clicks", "clicks_order", "prev_pred", "boxes"]
        assert f["clicks"].dtype == object and f["clicks"].shape == (2,)
        assert f["clicks"][0] == {"fg": [[1, 2, 3]], "bg": [[4, 5, 6]]}
        assert type(f["clicks"][0]["fg"][0][0]) is np.int64
        assert f["clicks_order"].shape == (2, 2) and f["clicks_order"].dtype == object
        assert f["boxes"][0]["z_mid_x_max"] == 8 and type(f["boxes"][0]["z_mid"]) is np.int64
    case = read_interactive_case(path)
    assert case.boxes == boxes
    assert case.clicks is not None and case.clicks[0].fg.tolist() == [[1, 2, 3]] and case.clicks[1].fg.shape == (0, 3)
    assert case.clicks_order == (("fg", "bg"), (None, None))
    assert not list(tmp_path.glob(".tmp-*"))


def test_writer_keeps_ragged_click_orders(tmp_path):
    path = tmp_path / "case.npz"
    clicks = (ClassClicks.empty().add("fg", (1, 1, 1)), ClassClicks.empty())
    write_interactive_case(path, _imgs(), np.ones(3), clicks=clicks, clicks_order=[["fg"], []])
    assert read_interactive_case(path).clicks_order == (("fg",), ())


def test_boxes_from_labels_follow_get_boxes():
    gts = np.zeros((8, 10, 12), np.uint8)
    gts[2, 1:3, 1:3] = 1       # label 1 on slices 2, 3 and 5: z_mid is the middle one of them, 3
    gts[3, 4:7, 2:9] = 1
    gts[5, 0, 0] = 1
    gts[6:8, 5:6, 10:12] = 4   # label 4 on slices 6, 7: z_mid = [6, 7][2 // 2] = 7
    boxes = boxes_from_labels(gts)
    assert boxes == (ClassBox(2, 5, 3, 2, 4, 8, 6), ClassBox(6, 7, 7, 10, 5, 11, 5))


def test_box_perturbation_is_scaled_to_the_image_and_clipped():
    gts = np.zeros((3, 512, 256), np.uint8)
    gts[1, 100:200, 0:50] = 1
    shift = int(np.random.default_rng(7).integers(0, 6))  # the same draw the function makes
    box = boxes_from_labels(gts, np.random.default_rng(7))[0]
    # W = 256: int(s * 256 / 256) = s columns; H = 512: int(s * 512 / 256) = 2 s rows; x_min clipped at 0
    assert (box.z_mid_x_min, box.z_mid_x_max) == (0, 49 + shift)
    assert (box.z_mid_y_min, box.z_mid_y_max) == (100 - 2 * shift, 199 + 2 * shift)
