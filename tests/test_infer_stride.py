"""Strided 3D propagation: which slices are decoded, shape-based interpolation between them, and
the fallback to stride 1's schedule where neighbouring masks disagree."""
from __future__ import annotations

import numpy as np
import pytest
from _infer_fakes import fake_model

from infer.interpolate import interpolate_masks, mask_agreement
from infer.postprocess import RegionMask
from infer.predictor import SlicePredictor
from infer.volume import Rule, segment_volume


def _disc(radius: float, cy: float = 50, cx: float = 50, size: int = 100) -> RegionMask:
    yy, xx = np.mgrid[:size, :size]
    mask = RegionMask.tight(0, 0, (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)
    assert mask is not None
    return mask


def _canvas(mask: RegionMask | None, size: int = 100) -> np.ndarray:
    out = np.zeros((size, size), np.uint16)
    if mask is not None:
        mask.paint(out, 1)
    return out.astype(bool)


def test_agreement_of_hand_made_masks():
    a = RegionMask(10, 10, np.ones((10, 10), bool))  # 100 px
    b = RegionMask(10, 15, np.ones((10, 10), bool))  # 100 px, 50 shared
    assert mask_agreement(a, b) == (pytest.approx(0.5), 1.0)
    c = RegionMask(10, 10, np.ones((10, 5), bool))  # 50 px inside a
    assert mask_agreement(a, c) == (pytest.approx(2 * 50 / 150), 0.5)
    assert mask_agreement(None, None) == (1.0, 1.0)
    assert mask_agreement(a, None) == (0.0, 0.0)


def test_interpolation_ends_are_the_masks_themselves():
    a, b = _disc(10), _disc(20, cy=55)
    start, end = interpolate_masks(a, b, [0.0, 1.0])
    np.testing.assert_array_equal(_canvas(start), _canvas(a))
    np.testing.assert_array_equal(_canvas(end), _canvas(b))


def test_half_way_between_concentric_discs_is_the_mean_radius():
    # signed distances r1 - rho and r2 - rho blend to (r1 + r2) / 2 - rho: a disc of radius 15
    (half,) = interpolate_masks(_disc(10), _disc(20), [0.5])
    area = _canvas(half).sum()
    assert abs(area - np.pi * 15 ** 2) / (np.pi * 15 ** 2) < 0.05
    assert mask_agreement(half, _disc(15))[0] > 0.97


def test_a_shifted_square_moves_by_the_fraction():
    a = RegionMask(20, 20, np.ones((20, 20), bool))
    b = RegionMask(20, 28, np.ones((20, 20), bool))
    quarter, half = interpolate_masks(a, b, [0.25, 0.5])
    assert quarter.bbox() == (22, 20, 41, 39)  # type: ignore[union-attr]
    assert half.bbox() == (24, 20, 43, 39)  # type: ignore[union-attr]
    assert interpolate_masks(None, None, [0.5]) == [None]
    with pytest.raises(ValueError, match="one is empty"):
        interpolate_masks(a, None, [0.5])


def _cylinder(depth: int, radius_at: dict[int, int], size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on every slice, radius given per slice range start (e.g. {0: 20, 12: 40})."""
    yy, xx = np.mgrid[:size, :size]
    volume = np.full((depth, size, size), 20, np.uint8)
    radius = 0
    for z in range(depth):
        radius = radius_at.get(z, radius)
        volume[z][(yy - 64) ** 2 + (xx - 64) ** 2 <= radius ** 2] = 230
    return volume, np.array([[14, 14, 0, 114, 114, depth - 1]], float)


def _run(volume: np.ndarray, boxes: np.ndarray, rule: Rule) -> tuple[np.ndarray, int]:
    model = fake_model()
    labels = segment_volume(SlicePredictor(model), volume, boxes, rule=rule)
    return labels, model.encoder.calls


@pytest.mark.parametrize("stride", [2, 3])
def test_a_constant_cross_section_decodes_only_the_key_slices(stride):
    volume, box = _cylinder(20, {0: 20})
    exact, exact_calls = _run(volume, box, Rule())
    strided, calls = _run(volume, box, Rule(stride=stride))
    np.testing.assert_array_equal(strided, exact)  # identical masks interpolate to themselves
    # box z 0..19, start slice 9: upward keys 9 (start), 19 (end) and the multiples of the stride
    # in 9..19; downward keys 0 (end) and the multiples in 0..8 (slice 9 is decoded upward)
    up = {9, 19} | {z for z in range(9, 20) if z % stride == 0}
    down = {0} | {z for z in range(0, 9) if z % stride == 0}
    assert exact_calls == 20 and calls == len(up) + len(down)


def test_a_jump_in_size_is_decoded_slice_by_slice_like_stride_one():
    # radius 40 on slices 0-12, 20 from 13: Dice 0.4 across the jump, far below the threshold
    # (a shrinking object: the prompt from a larger mask holds the smaller one whole)
    volume, box = _cylinder(20, {0: 40, 13: 20})
    exact, _ = _run(volume, box, Rule())
    strided, calls = _run(volume, box, Rule(stride=3))
    np.testing.assert_array_equal(strided, exact)
    # upward keys 9, 12, 15, 18, 19; the gap 13-14 between 12 and 15 disagrees and is decoded
    up = {9, 12, 15, 18, 19} | {13, 14}
    down = {0, 3, 6}
    assert calls == len(up) + len(down)


def test_never_agreeing_gives_stride_one_exactly_on_a_real_looking_case():
    from test_demo.generate import CaseSpec, generate_case
    from infer.boxes import prepare_boxes

    case = generate_case(CaseSpec("CT", "3D", (24, 96, 96), 5, "3DBox_CT_t"), 11)
    prepared = prepare_boxes(case.boxes.astype(float), case.imgs.shape)
    for pick in ("prompt", "iou"):
        exact, exact_calls = _run(case.imgs, prepared.boxes, Rule(pick=pick))
        strided, calls = _run(case.imgs, prepared.boxes, Rule(pick=pick, stride=2, agree_dice=1.01))
        np.testing.assert_array_equal(strided, exact)
        assert calls == exact_calls


def test_stride_must_be_positive():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        Rule(stride=0)


def test_the_quadratic_follows_a_sphere_where_the_straight_line_falls_inside():
    # cross-sections of a sphere of radius 40 at heights 20, 30, 38 (radius sqrt(40^2 - h^2));
    # at height 34 the true radius is 21.07, the straight line between 30 and 38 gives 19.5
    radius = {h: np.sqrt(40 ** 2 - h ** 2) for h in (20, 30, 34, 38)}
    before, a, b = (_disc(radius[h]) for h in (20, 30, 38))
    (linear,) = interpolate_masks(a, b, [0.5])
    (quadratic,) = interpolate_masks(a, b, [0.5], before=before, before_at=-10 / 8)
    truth = np.pi * radius[34] ** 2
    assert abs(_canvas(quadratic).sum() - truth) < abs(_canvas(linear).sum() - truth) / 2
    assert mask_agreement(quadratic, _disc(radius[34]))[0] > mask_agreement(linear, _disc(radius[34]))[0]
