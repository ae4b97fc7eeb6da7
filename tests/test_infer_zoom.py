"""The 2D zoom strategy: which boxes are zoomed, where the crop lies, and what it buys."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import fake_model

from evaluation.metrics import dice
from infer.cases import Case
from infer.pipeline import segment_case
from infer.predictor import SlicePredictor
from infer.routing import Route
from infer.zoom import ZOOM_MAX_BOXES, zoom_selection, zoom_window


def _segment(strategy: str, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, SlicePredictor]:
    predictor = SlicePredictor(fake_model())
    case = Case(Path("2DBox_Fundus_0001.npz"), "2D", image, boxes.astype(np.float64))
    segs, _ = segment_case(case, Route("2D", "*", "fake", strategy), predictor, margin=3.0)
    return segs, predictor


def _disks(size: int, centres: list[tuple[int, int]], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A dark (size, size, 3) image with bright disks, and the disks' label map (1, 2, ...)."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for k, (cx, cy) in enumerate(centres):
        labels[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2] = k + 1
    image = np.where(labels[..., None] > 0, 220, 30).astype(np.uint8).repeat(3, axis=2)
    return image, labels


def test_the_window_is_a_square_of_twice_the_box_centred_on_it():
    assert zoom_window(np.array([100, 100, 199, 149]), (512, 512)) == (50, 25, 250, 225)


def test_a_tiny_box_gets_the_minimum_window_and_a_border_box_is_clipped():
    assert zoom_window(np.array([100, 100, 109, 109]), (512, 512)) == (89, 89, 121, 121)
    assert zoom_window(np.array([0, 0, 9, 9]), (512, 512)) == (0, 0, 21, 21)
    assert zoom_window(np.array([500, 300, 511, 311]), (312, 512)) == (490, 290, 512, 312)


def test_only_boxes_under_0_15_of_the_model_input_are_zoomed():
    predictor = SlicePredictor(fake_model())  # 256 input: a 512 image is halved, the bar is 38.4 px
    boxes = np.array([[0, 0, 75, 10], [0, 0, 10, 76], [0, 0, 49, 49], [0, 0, 300, 300]], np.float64)
    # longest sides 76, 77, 50, 301 original pixels -> 38, 38.5, 25, 150.5 model pixels
    assert zoom_selection(predictor, (512, 512), boxes).tolist() == [True, False, True, False]


def test_at_most_the_cap_smallest_boxes_are_zoomed():
    predictor = SlicePredictor(fake_model())
    sides = np.arange(ZOOM_MAX_BOXES + 4, 0, -1)  # all small, the largest first
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides - 1, sides - 1], 1).astype(np.float64)
    chosen = zoom_selection(predictor, (512, 512), boxes)
    assert chosen.sum() == ZOOM_MAX_BOXES and not chosen[:4].any() and chosen[4:].all()


def test_large_boxes_give_exactly_the_whole_image_result():
    image, _ = _disks(512, [(150, 150), (350, 330)], 70)
    boxes = np.array([[75, 75, 225, 225], [270, 250, 430, 410]])
    zoomed, predictor = _segment("image_zoom", image, boxes)
    plain, _ = _segment("image", image, boxes)
    np.testing.assert_array_equal(zoomed, plain)
    assert predictor.stats.encoder_calls == 1


def test_each_small_box_costs_one_encoder_call_and_none_for_the_whole_image_when_all_are_small():
    image, _ = _disks(512, [(100, 100), (300, 120), (400, 400)], 6)
    boxes = np.array([[92, 92, 108, 108], [292, 112, 308, 128], [392, 392, 408, 408]])
    _, predictor = _segment("image_zoom", image, boxes)
    assert predictor.stats.encoder_calls == 3
    _, predictor = _segment("image_zoom", image, np.concatenate([boxes, [[10, 10, 300, 300]]]))
    assert predictor.stats.encoder_calls == 4


def test_zoom_follows_a_small_object_far_better_than_the_whole_image():
    # the fake encoder sees 4 x 4-pixel blocks of its 256 input: 8 x 8 original pixels at 512
    image, truth = _disks(512, [(201, 203)], 5)
    boxes = np.array([[195, 197, 207, 209]])
    plain, _ = _segment("image", image, boxes)
    zoomed, _ = _segment("image_zoom", image, boxes)
    whole, near = dice(truth == 1, plain == 1), dice(truth == 1, zoomed == 1)
    assert near > 0.9 and near > whole + 0.1, (whole, near)


def test_a_zoomed_mask_moves_with_its_object():
    shift = np.array([37, 81])
    first, _ = _disks(512, [(200, 210)], 7)
    second, _ = _disks(512, [(200 + shift[0], 210 + shift[1])], 7)
    box = np.array([[192, 202, 208, 218]])
    a, _ = _segment("image_zoom", first, box)
    b, _ = _segment("image_zoom", second, box + np.tile(shift, 2))
    assert a.any()
    np.testing.assert_array_equal(np.roll(a, tuple(shift[::-1]), axis=(0, 1)), b)


@pytest.mark.parametrize("small_last", [True, False])
def test_where_a_zoomed_and_a_whole_image_mask_overlap_the_later_box_wins(small_last):
    image, _ = _disks(512, [(200, 200)], 60)
    big, small = np.array([140, 140, 260, 260]), np.array([250, 195, 262, 205])  # small: on the rim
    boxes = np.stack([big, small] if small_last else [small, big])
    segs, predictor = _segment("image_zoom", image, boxes)
    assert predictor.stats.encoder_calls == 2
    assert segs[200, 255] == 2 and segs[200, 200] == (1 if small_last else 2)
