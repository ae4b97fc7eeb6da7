"""Interactive steps (infer.interactive) on the numpy fakes, and the 2025 format through
`python -m infer` on tiny model folders: box step from the mid-slice box, click steps that change
only what the click changes, click-only cases, 2D as one slice, bad inputs one line each."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import FakePointsDecoder, fake_model, run_cli, save_case, tiny_work_dir

from challenge.interactive import ClassBox, ClassClicks, read_interactive_case, write_interactive_case
from infer.interactive import InteractiveOptions, box_step, click_step
from infer.predictor import SlicePredictor

SHAPE = (16, 64, 64)


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """A bright block on slices 3..12 (rows 16..40, columns 20..44)."""
    truth = np.zeros(SHAPE, bool)
    truth[3:13, 16:41, 20:45] = True
    return np.where(truth, 220, 20).astype(np.uint8), truth


BOX = ClassBox(z_min=3, z_max=12, z_mid=8, z_mid_x_min=20, z_mid_y_min=16, z_mid_x_max=44, z_mid_y_max=40)


def _case(tmp_path: Path, volume: np.ndarray, **members) -> Path:
    path = tmp_path / "3DBox_CT_0001.npz"
    write_interactive_case(path, volume, (1.0, 1.0, 1.0), **members)
    return path


PROPAGATE = InteractiveOptions(local_edits=False)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_box_step_starts_on_the_mid_slice_and_spans_the_boxs_slices():
    volume, truth = _volume()
    model = fake_model(points=True)
    segs = box_step(SlicePredictor(model), volume, [BOX], margin=3.0)
    assert segs.dtype == np.uint16 and set(np.unique(segs)) == {0, 1}
    assert _dice(segs == 1, truth) > 0.95
    assert model.encoder.calls == 10  # slices 3..12, each once


def test_a_click_step_refines_the_clicked_slice_and_stops_where_nothing_changes(tmp_path):
    volume, truth = _volume()
    prev = truth.astype(np.uint8)
    prev[10:13] = 0  # the previous prediction missed slices 10..12
    clicks = [ClassClicks(np.array([[11, 28, 32]]), np.zeros((0, 3), np.int64))]
    case = read_interactive_case(_case(tmp_path, volume, boxes=[BOX], clicks=clicks, clicks_order=[["fg"]],
                                       prev_pred=prev))
    model = fake_model(points=True)
    segs = click_step(SlicePredictor(model), case, 3.0, PROPAGATE)
    assert _dice(segs == 1, truth) > 0.95
    np.testing.assert_array_equal(segs[:10], prev[:10])  # slices that agree are kept as they were
    # slice 11, up to 12 (the box's last), down to 10 and 9 where the new mask agrees with the old
    assert model.encoder.calls == 4
    feeds = model.points_decoder.feeds[0]
    np.testing.assert_array_equal(feeds["point_labels"], [[1, 2, 3]])  # the click and a box from it
    assert feeds["has_mask_input"].tolist() == [0.0]


def test_background_click_and_mask_prompt_option(tmp_path):
    volume, truth = _volume()
    prev = truth.astype(np.uint8)
    prev[8, 10:16, 20:45] = 1  # a false strip above the block on slice 8
    clicks = [ClassClicks(np.zeros((0, 3), np.int64), np.array([[8, 12, 30]]))]
    case = read_interactive_case(_case(tmp_path, volume, boxes=[BOX], clicks=clicks, clicks_order=[["bg"]],
                                       prev_pred=prev))
    model = fake_model(points=True)
    segs = click_step(SlicePredictor(model), case, 3.0, replace(PROPAGATE, mask_prompt=True, refine_rounds=2))
    assert not segs[8, 10:16].any() and _dice(segs[8] == 1, truth[8]) > 0.95  # the given box on z_mid
    feeds = model.points_decoder.feeds
    assert len(feeds) == 3 + 2  # clicked slice 3 times (2 refinement rounds), slices 7 and 9 agree
    assert [f["has_mask_input"].tolist() for f in feeds[:3]] == [[1.0], [1.0], [1.0]]
    np.testing.assert_array_equal(feeds[0]["point_labels"], [[0, 2, 3]])


def test_a_class_without_a_new_click_is_left_as_it_was(tmp_path):
    volume, truth = _volume()
    prev = truth.astype(np.uint8)
    prev[5:7] = 0
    clicks = [ClassClicks(np.array([[5, 28, 32]]), np.zeros((0, 3), np.int64))]
    case = read_interactive_case(_case(tmp_path, volume, boxes=[BOX], clicks=clicks, clicks_order=[["fg", None]],
                                       prev_pred=prev))
    model = fake_model(points=True)
    np.testing.assert_array_equal(click_step(SlicePredictor(model), case, 3.0), prev)
    assert model.encoder.calls == 0


def test_click_only_cases_start_from_the_click(tmp_path):
    volume, truth = _volume()
    clicks = [ClassClicks(np.array([[6, 28, 32]]), np.zeros((0, 3), np.int64))]
    case = read_interactive_case(_case(tmp_path, volume, clicks=clicks, clicks_order=[["fg"]],
                                       prev_pred=np.zeros(SHAPE, np.uint8)))
    model = fake_model(points=True)
    model = replace(model, points_decoder=FakePointsDecoder(256, reach=100))  # a click finds the whole block
    segs = click_step(SlicePredictor(model), case, 3.0)
    assert _dice(segs == 1, truth) > 0.9 and not segs[:3].any() and not segs[13:].any()
    np.testing.assert_array_equal(model.points_decoder.feeds[0]["point_labels"], [[1, -1]])  # points only


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    return tiny_work_dir(tmp_path_factory.mktemp("tiny_models"))


def test_the_cli_runs_the_box_step_and_refuses_clicks_without_the_points_graph(tmp_path, capsys, tiny_models):
    volume, _ = _volume()
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_interactive_case(inputs / "CT_Organ_0001.npz", volume, (1.0, 1.0, 1.0), boxes=[BOX])
    clicks = [ClassClicks(np.array([[11, 28, 32]]), np.zeros((0, 3), np.int64))]
    write_interactive_case(inputs / "3DBox_CT_0002.npz", volume, (1.0, 1.0, 1.0), boxes=[BOX], clicks=clicks,
                           clicks_order=[["fg"]], prev_pred=np.zeros(SHAPE, np.uint8))
    (inputs / "3DBox_CT_0003.npz").write_bytes((inputs / "3DBox_CT_0002.npz").read_bytes()[:200])
    code, out, err = run_cli(capsys, inputs, tmp_path / "out", tiny_models)
    assert code == 1
    segs = np.load(tmp_path / "out" / "CT_Organ_0001.npz")["segs"]
    assert segs.shape == SHAPE and segs.dtype == np.uint16
    assert (segs[3:13, 16:40, 20:44] == 1).all() and not segs[:3].any() and not segs[13:].any()  # about the box
    assert "CT_Organ_0001.npz: 3D " in out and "-> litemedsam (axial_iou)" in out and "interactive box step" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "3DBox_CT_0002.npz: " in lines[0] and "has no decoder_points graph" in lines[0]
    assert "3DBox_CT_0003.npz: not a readable npz file" in lines[1]


def test_a_refused_pickle_is_one_line_naming_the_file(tmp_path, capsys, tiny_models):
    import pickle

    volume, _ = _volume()
    boxes = np.empty(1, object)
    boxes[0] = BOX.as_dict()
    save_case(tmp_path / "in", "3DBox_CT_0001.npz", imgs=volume, spacing=np.ones(3), boxes=boxes)
    evil = tmp_path / "in" / "3DBox_CT_0002.npz"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    arr = np.empty(1, object)
    arr[0] = Evil()
    np.savez(evil, imgs=volume, boxes=arr)
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 1 and "pwned" not in out
    assert err.strip() == (f"error: {evil}: 'boxes': pickle refused: global builtins.print is not allowed "
                           "(only numpy array, dtype and scalar reconstruction)")
    assert (tmp_path / "out" / "3DBox_CT_0001.npz").is_file()
    del pickle


def test_local_edits_change_only_the_region_at_the_click():
    from infer.interactive import _local_edit

    before = np.zeros((10, 12), bool)
    before[1:4, 1:4] = True  # kept object
    before[6:9, 6:9] = True  # a false blob
    new = np.zeros_like(before)
    new[1:4, 8:11] = True  # the missed part, found by the new mask
    new[6:9, 0:3] = True  # elsewhere the new mask is wrong
    added = _local_edit(before, new, 2, 9, foreground=True)
    np.testing.assert_array_equal(added, before | (np.arange(12)[None] >= 8) & (np.arange(12)[None] <= 10)
                                  & (np.arange(10)[:, None] >= 1) & (np.arange(10)[:, None] <= 3))
    removed = _local_edit(before, new, 7, 7, foreground=False)  # the blob is not in new: removed
    assert not removed[6:9, 6:9].any() and removed[1:4, 1:4].all() and removed.sum() == 9
    assert (_local_edit(before, new, 0, 0, foreground=True) == before).all()  # click outside new: no change


def test_the_edit_reach_bounds_a_local_edit_by_the_clicks_distance_to_the_edge():
    from infer.interactive import _local_edit

    yy, xx = np.mgrid[:40, :40]
    before = (yy < 30) & (xx < 30)
    new = before & (xx < 20)  # the new mask drops a whole 10-column band
    # bg click 2 px inside the edge (column 28; column 30 is outside): radius 3 * 2
    removed = before & ~_local_edit(before, new, 15, 28, foreground=False, reach=3)
    np.testing.assert_array_equal(removed, before & ~new & ((yy - 15) ** 2 + (xx - 28) ** 2 <= 36))
    assert _local_edit(before, new, 15, 28, foreground=False, reach=0).sum() == before.sum() - 300  # whole band
    # fg click 3 px outside (column 32; column 29 is the nearest inside): radius 2 * 3 within the new mask
    grown = np.ones_like(before)
    added = _local_edit(before, grown, 15, 32, foreground=True, reach=2) & ~before
    np.testing.assert_array_equal(added, ~before & ((yy - 15) ** 2 + (xx - 32) ** 2 <= 36))


def test_local_edits_touch_only_the_clicked_slice(tmp_path):
    volume, truth = _volume()
    prev = truth.astype(np.uint8)
    prev[10:13] = 0
    clicks = [ClassClicks(np.array([[11, 28, 32]]), np.zeros((0, 3), np.int64))]
    case = read_interactive_case(_case(tmp_path, volume, boxes=[BOX], clicks=clicks, clicks_order=[["fg"]],
                                       prev_pred=prev))
    model = fake_model(points=True)
    segs = click_step(SlicePredictor(model), case, 3.0, InteractiveOptions(local_edits=True))
    np.testing.assert_array_equal(np.delete(segs, 11, axis=0), np.delete(prev, 11, axis=0))
    assert _dice(segs[11] == 1, truth[11]) > 0.95 and model.encoder.calls == 1
