"""Region-limited bilinear upsampling equals full upsampling, bit for bit (docs/reference_systems.md section 3)."""
from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest

from infer.postprocess import RegionMask, mask_from_logits, upsample_logits, valid_low_res
from infer.preprocess import EFFICIENTSAM_PREPROCESS, LITEMEDSAM_PREPROCESS, PreprocessSpec, geometry_for


def _full_mask(logits: np.ndarray, valid: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    return upsample_logits(logits[: valid[0], : valid[1]], out) > 0


def _pasted(region: RegionMask | None, out: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(out, bool)
    if region is not None:
        h, w = region.mask.shape
        canvas[region.top:region.top + h, region.left:region.left + w] = region.mask
    return canvas


# (valid low-res rows, cols) -> (H, W): up- and down-sampling, odd factors, one-pixel extents
SHAPES = [((256, 170), (2604, 1726)), ((256, 256), (1920, 2560)), ((192, 256), (384, 512)), ((256, 256), (100, 37)),
          ((7, 5), (13, 11)), ((1, 9), (5, 40)), ((256, 128), (256, 128)), ((50, 50), (49, 51))]


@pytest.mark.parametrize("valid,out", SHAPES)
@pytest.mark.parametrize("density", ["sparse", "dense", "single"])
def test_region_equals_full_upsampling_bit_for_bit(valid, out, density):
    rng = np.random.default_rng(zlib.crc32(repr((valid, out, density)).encode()))
    logits = rng.standard_normal((256, 256)).astype(np.float32)
    if density == "sparse":
        logits -= 2.5
    elif density == "single":
        logits = -np.abs(logits) - 0.01
        logits[rng.integers(valid[0]), rng.integers(valid[1])] = 3.0
    logits[valid[0]:, :] = 5.0  # padding rows/cols must be ignored, whatever they hold
    logits[:, valid[1]:] = 5.0
    region = mask_from_logits(logits, valid, out)
    np.testing.assert_array_equal(_pasted(region, out), _full_mask(logits, valid, out))


@pytest.mark.parametrize("corner", [(0, 0), (0, -1), (-1, 0), (-1, -1)])
def test_positives_on_the_corners_and_edges(corner):
    valid, out = (64, 48), (301, 227)
    logits = np.full((256, 256), -1.0, np.float32)
    r = corner[0] % valid[0]
    c = corner[1] % valid[1]
    logits[r, c] = 4.0
    logits[r, :valid[1]] = np.where(np.arange(valid[1]) % 7 == 0, 0.5, -1.0)  # edge row, scattered positives
    region = mask_from_logits(logits, valid, out)
    full = _full_mask(logits, valid, out)
    assert full.any()
    np.testing.assert_array_equal(_pasted(region, out), full)
    ys, xs = np.nonzero(full)
    assert region.bbox() == (xs.min(), ys.min(), xs.max(), ys.max())


def test_no_positive_pixel_gives_none():
    assert mask_from_logits(np.full((256, 256), -0.1, np.float32), (256, 256), (500, 400)) is None
    logits = np.full((256, 256), -1.0, np.float32)
    logits[200:, :] = 9.0  # only the padding is positive
    assert mask_from_logits(logits, (100, 256), (300, 768)) is None


@pytest.mark.parametrize("valid,out", SHAPES)
def test_upsampling_is_half_pixel_bilinear_like_opencv(valid, out):
    """Independent reference: OpenCV's INTER_LINEAR in float64 (half-pixel centres, border clamp)."""
    rng = np.random.default_rng(7)
    crop = rng.standard_normal(valid).astype(np.float32)
    ours = upsample_logits(crop, out)
    reference = cv2.resize(crop.astype(np.float64), (out[1], out[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    clear = np.abs(reference) > 1e-4
    np.testing.assert_array_equal((ours > 0)[clear], (reference > 0)[clear])


def test_windows_of_the_upsampling_are_slices_of_the_full_result():
    crop = np.random.default_rng(3).standard_normal((37, 53)).astype(np.float32)
    full = upsample_logits(crop, (401, 399))
    part = upsample_logits(crop, (401, 399), slice(17, 290), slice(3, 398))
    np.testing.assert_array_equal(part, full[17:290, 3:398])


def test_valid_region_of_the_low_res_logits():
    g = geometry_for(LITEMEDSAM_PREPROCESS, 2604, 1726)
    assert valid_low_res(LITEMEDSAM_PREPROCESS, g, 256) == (256, 170)
    g = geometry_for(EFFICIENTSAM_PREPROCESS, 320, 640)
    assert valid_low_res(EFFICIENTSAM_PREPROCESS, g, 256) == (256, 256)  # stretched: no crop
    big = PreprocessSpec(1024, "longest_side", "linear", "minmax", "none")
    g = geometry_for(big, 300, 1000)  # resized 307 x 1024 -> 307 * 256 / 1024 = 76.75 -> 77
    assert (g.resized_h, g.resized_w) == (307, 1024)
    assert valid_low_res(big, g, 256) == (77, 256)


def test_paint_keeps_the_higher_label_whatever_the_order():
    a = RegionMask(1, 1, np.ones((3, 3), bool))
    b = RegionMask(2, 2, np.ones((3, 3), bool))
    forward, backward = np.zeros((6, 6), np.uint16), np.zeros((6, 6), np.uint16)
    a.paint(forward, 1)
    b.paint(forward, 300)
    b.paint(backward, 300)
    a.paint(backward, 1)
    np.testing.assert_array_equal(forward, backward)
    assert forward[2, 2] == 300 and forward[1, 1] == 1 and forward[4, 4] == 300 and forward[0, 0] == 0
    assert forward.dtype == np.uint16
