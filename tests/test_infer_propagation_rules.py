"""3D propagation rules beyond the margin: stopping on an empty mask, the start slice, zoomed crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _infer_fakes import fake_model

from infer.predictor import SlicePredictor
from infer.slice_zoom import box_window, merge_windows
from infer.cases import Case
from infer.pipeline import segment_case
from infer.postprocess import RegionMask
from infer.routing import Route
from infer.volume import Rule, _next_prompt, add_box, init_state, propagate, segment_volume


def _disk_ending_early(depth: int = 11, end: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright disk on slices 0..end-1 of a 3D box that runs to the last slice, and a bright bar
    inside the box's xy on the slices after the disk has ended (another structure)."""
    yy, xx = np.mgrid[:128, :128]
    volume = np.full((depth, 128, 128), 20, np.uint8)
    truth = np.zeros(volume.shape, bool)
    truth[:end] = (yy - 64) ** 2 + (xx - 64) ** 2 <= 16 ** 2
    volume[truth] = 230
    volume[end + 1:, 50:56, 46:82] = 230
    box = np.array([[47, 47, 0, 81, 81, depth - 1]], float)
    return volume, truth, box


def test_home_after_an_empty_mask_paints_another_structure_and_stop_does_not():
    volume, truth, box = _disk_ending_early()
    home_model, stop_model = fake_model(), fake_model()
    home = segment_volume(SlicePredictor(home_model), volume, box)
    stop = segment_volume(SlicePredictor(stop_model), volume, box, rule=Rule(on_empty="stop"))
    assert home[8:].any() and not stop[8:].any()  # slice 7 is empty; the bar starts on slice 8
    np.testing.assert_array_equal(stop[:7], home[:7])
    assert ((stop[:7] > 0) == truth[:7]).mean() > 0.99
    assert home_model.encoder.calls == 11 and stop_model.encoder.calls == 8  # slices 9, 10 never encoded


def test_the_start_slice_never_stops_a_box():
    volume, _, box = _disk_ending_early()
    volume[7:] = 20  # nothing on slices 7-10
    state = init_state(volume, 3, rule=Rule(on_empty="stop"))
    add_box(state, 1, box[0], start=9)
    predictor = SlicePredictor(fake_model())
    up = list(propagate(state, predictor))
    down = list(propagate(state, predictor, reverse=True))
    assert up == [(9, []), (10, [])]  # the empty start slice did not stop it; slice 10 did
    assert down == [(8, [])]  # the downward sweep stops on its first empty mask


def test_add_box_start_is_kept_inside_the_box():
    state = init_state(np.zeros((10, 16, 16), np.uint8), 3)
    add_box(state, 1, np.array([1, 1, 2, 8, 8, 6], float), start=9)
    add_box(state, 2, np.array([1, 1, 2, 8, 8, 6], float))
    assert [t.z_mid for t in state.tracks] == [6, 4]


def _small_cube(size: int = 512, side: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    volume = np.full((5, size, size), 20, np.uint8)
    truth = np.zeros(volume.shape, bool)
    truth[:, 300:300 + side, 200:200 + side] = True
    volume[truth] = 230
    box = np.array([[199, 299, 0, 200 + side, 300 + side, 4]], float)
    return volume, truth, box


def _dice(labels: np.ndarray, truth: np.ndarray) -> float:
    return 2 * ((labels > 0) & truth).sum() / ((labels > 0).sum() + truth.sum())


def test_zoom_resolves_an_object_too_small_for_the_whole_slice():
    # 5 px at 512 are 2.5 px at 256: one 4 x 4 cell of the fake's embedding averages it away
    volume, truth, box = _small_cube()
    whole = segment_volume(SlicePredictor(fake_model()), volume, box)
    model = fake_model()
    # the 32 px crop is encoded 8x enlarged; margin 8 model pixels = 1 original pixel (at 3 the
    # prompt is so tight that the fake loses a pixel row per slice)
    zoomed = segment_volume(SlicePredictor(model), volume, box, margin=8,
                            rule=Rule(zoom_context=2.0, zoom_min_side=32))
    assert _dice(whole, truth) < 0.5 < 0.9 < _dice(zoomed, truth)
    assert model.encoder.calls == 5


def test_nearby_boxes_share_a_crop_and_far_ones_do_not():
    volume = np.full((3, 512, 512), 20, np.uint8)
    boxes = np.array([[100, 100, 0, 119, 119, 2], [110, 104, 0, 129, 123, 2], [400, 400, 0, 419, 419, 2]], float)
    for b in boxes.astype(int):
        volume[:, b[1] + 2:b[4] - 1, b[0] + 2:b[3] - 1] = 230
    model = fake_model()
    labels = segment_volume(SlicePredictor(model), volume, boxes, rule=Rule(zoom_context=2.0))
    assert model.encoder.calls == 3 * 2  # two crops per slice: boxes 1 and 2 share one
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_zoom_below_leaves_large_boxes_on_the_whole_slice():
    state = init_state(np.zeros((3, 200, 100), np.uint8), 3, rule=Rule(zoom_context=2.0, zoom_below=0.25))
    add_box(state, 1, np.array([10, 10, 0, 59, 29, 2], float))  # 50 px: a quarter of 200
    add_box(state, 2, np.array([10, 100, 0, 29, 119, 2], float))  # 20 px
    assert state.tracks[0].window is None
    assert state.tracks[1].window == (0, 90, 40, 130)


def test_box_window_is_square_centred_and_clipped():
    assert box_window(np.array([40, 40, 49, 59]), (200, 200), 2.0, 8) == (25, 30, 65, 70)
    assert box_window(np.array([0, 0, 9, 9]), (200, 200), 2.0, 8) == (0, 0, 15, 15)
    assert box_window(np.array([50, 50, 50, 50]), (200, 200), 2.0, 16) == (42, 42, 59, 59)


def test_merge_windows_merges_only_when_one_crop_costs_no_more_pixels_than_two():
    a, b, far = (0, 0, 10, 10), (5, 0, 15, 10), (100, 100, 110, 110)
    assert merge_windows([a, b, far]) == [(0, 0, 15, 10), (0, 0, 15, 10), far]
    corner = (9, 9, 19, 19)  # union 19 x 19 = 361 > 200: kept apart
    assert merge_windows([a, corner]) == [a, corner]
    # a chain: the first union then covers the third at no extra cost
    assert merge_windows([(0, 0, 10, 10), (8, 0, 18, 10), (16, 0, 26, 10)]) == [(0, 0, 26, 10)] * 3


def test_a_tight_prompt_shrinks_slice_after_slice_and_grow_stops_it():
    # at 8x zoom, 3 model pixels are 0.4 original pixels: the fake loses a pixel row per slice
    volume, truth, box = _small_cube()
    tight = segment_volume(SlicePredictor(fake_model()), volume, box, rule=Rule(zoom_context=2.0, zoom_min_side=32))
    grown = segment_volume(SlicePredictor(fake_model()), volume, box,
                           rule=Rule(zoom_context=2.0, zoom_min_side=32, grow=0.2))
    assert (tight > 0).sum(axis=(1, 2)).tolist() == [9, 16, 25, 16, 9]
    assert (grown > 0).sum(axis=(1, 2)).tolist() == [25] * 5


def test_next_prompt_grow_and_blend_arithmetic():
    mask = RegionMask(40, 50, np.ones((20, 10), bool))  # x 50-59, y 40-59
    home = np.array([0.0, 0.0, 99.0, 99.0])
    np.testing.assert_allclose(_next_prompt(mask, home, (1.0, 1.0), (100, 100), Rule(grow=0.1)), [48, 37, 61, 62])
    np.testing.assert_allclose(_next_prompt(mask, home, (0.0, 0.0), (100, 100), Rule(blend=0.5)), [25, 20, 79, 79])
    # still kept inside the 3D box grown by the margin
    np.testing.assert_allclose(_next_prompt(mask, np.array([52.0, 45, 57, 55]), (1.0, 1.0), (100, 100),
                                            Rule(grow=0.5)), [51, 44, 58, 56])


class _IouByBoxArea:
    """Wraps a fake decoder: predicted IoU grows (``sign`` +1) or falls (-1) with the box area."""

    def __init__(self, decoder, sign: int) -> None:
        self.decoder, self.sign = decoder, sign

    def run(self, feeds):
        out = self.decoder.run(feeds)
        boxes = feeds["boxes"]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        out["iou_predictions"] = np.repeat((self.sign * area / 1e5)[:, None], out["iou_predictions"].shape[1], 1)
        return out


def test_pick_iou_keeps_the_mask_the_model_rates_higher():
    volume, _, box = _disk_ending_early()  # the bar inside the 3D box after slice 7 separates the rules
    follow = segment_volume(SlicePredictor(fake_model()), volume, box)
    home = segment_volume(SlicePredictor(fake_model()), volume, box, rule=Rule(blend=1.0))
    assert not np.array_equal(follow, home)
    for sign, expected in ((+1, home), (-1, follow)):
        model = fake_model()
        model = type(model)(model.spec, model.encoder, _IouByBoxArea(model.decoder, sign))
        picked = segment_volume(SlicePredictor(model), volume, box, rule=Rule(pick="iou"))
        np.testing.assert_array_equal(picked, expected)
        assert model.decoder.decoder.batch_sizes == [2] * 11  # prompt and 3D box in one call per slice


def test_the_axial_iou_strategy_routes_to_the_iou_pick_rule():
    volume, _, box = _disk_ending_early()
    case = Case(Path("3DBox_CT_t.npz"), "3D", volume, box)
    out = {}
    for strategy in ("axial", "axial_iou"):
        model = fake_model()
        model = type(model)(model.spec, model.encoder, _IouByBoxArea(model.decoder, +1))
        out[strategy] = segment_case(case, Route("3D", "*", "fake", strategy), SlicePredictor(model), 3.0)[0]
        assert model.decoder.decoder.batch_sizes == ([2] if strategy == "axial_iou" else [1]) * 11
    home = segment_volume(SlicePredictor(fake_model()), volume, box, rule=Rule(blend=1.0))
    np.testing.assert_array_equal(out["axial_iou"], home)  # the model rates the 3D box higher here
    assert not np.array_equal(out["axial"], home)
