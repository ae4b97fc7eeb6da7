"""Pre-processing against hand-computed expectations (docs/reference_systems.md section 3)."""
from __future__ import annotations

import numpy as np
import pytest

from infer.preprocess import (
    EFFICIENTSAM_PREPROCESS,
    LITEMEDSAM_PREPROCESS,
    PreprocessSpec,
    boxes_to_model,
    geometry_for,
    preprocess_image,
)


def test_geometry_of_the_real_mammography_shape():
    # scale = 256 / 2604; 1726 * scale = 169.69 -> round half up -> 170
    g = geometry_for(LITEMEDSAM_PREPROCESS, 2604, 1726)
    assert (g.resized_h, g.resized_w, g.size) == (256, 170, 256)


def test_boxes_truncate_like_the_baseline():
    g = geometry_for(LITEMEDSAM_PREPROCESS, 2604, 1726)
    # 131*256/2604 = 12.88, 1532*256/2604 = 150.61, 475*256/2604 = 46.70, 1895*256/2604 = 186.30
    out = boxes_to_model(np.array([[131, 1532, 475, 1895]]), LITEMEDSAM_PREPROCESS, g)
    np.testing.assert_array_equal(out, [[12, 150, 46, 186]])
    assert out.dtype == np.float32


def test_efficientsam_boxes_scale_per_axis_without_rounding():
    g = geometry_for(EFFICIENTSAM_PREPROCESS, 320, 640)
    out = boxes_to_model(np.array([[10, 20, 30, 40]]), EFFICIENTSAM_PREPROCESS, g)
    np.testing.assert_allclose(out, [[16, 64, 48, 128]])


def test_area_downscale_by_two_is_block_mean_then_minmax_and_zero_pad():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(512, 256), dtype=np.uint8)
    tensor, g = preprocess_image(img, LITEMEDSAM_PREPROCESS)
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == np.float32
    assert (g.resized_h, g.resized_w) == (256, 128)
    # INTER_AREA at an exact factor 2 is the 2x2 block mean, rounded to uint8.
    blocks = img.reshape(256, 2, 128, 2).astype(np.float64).mean(axis=(1, 3))
    blocks = np.floor(blocks + 0.5)
    expected = (blocks - blocks.min()) / (blocks.max() - blocks.min())
    np.testing.assert_allclose(tensor[0, 0, :, :128], expected, atol=1e-6)
    assert np.all(tensor[0, :, :, 128:] == 0)
    np.testing.assert_array_equal(tensor[0, 0], tensor[0, 2])


def test_grey_and_replicated_rgb_give_identical_input():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(300, 410), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    a, _ = preprocess_image(grey, LITEMEDSAM_PREPROCESS)
    b, _ = preprocess_image(rgb, LITEMEDSAM_PREPROCESS)
    np.testing.assert_array_equal(a, b)


def test_constant_image_does_not_divide_by_zero():
    tensor, _ = preprocess_image(np.full((40, 40, 3), 7, np.uint8), LITEMEDSAM_PREPROCESS)
    assert np.isfinite(tensor).all() and tensor.max() == 0


def test_efficientsam_normalisation_uses_imagenet_statistics():
    img = np.full((64, 64, 3), 255, np.uint8)
    tensor, g = preprocess_image(img, EFFICIENTSAM_PREPROCESS)
    assert tensor.shape == (1, 3, 1024, 1024) and (g.resized_h, g.resized_w) == (1024, 1024)
    expected = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(tensor[0, :, 500, 500], expected, rtol=1e-6)


def test_spec_json_round_trip_and_bad_values():
    assert PreprocessSpec.from_json(EFFICIENTSAM_PREPROCESS.to_json()) == EFFICIENTSAM_PREPROCESS
    with pytest.raises(ValueError, match=r"resize='crop' is not one of"):
        PreprocessSpec(256, "crop", "area", "minmax", "floor")
    with pytest.raises(ValueError, match="expected an \\(H, W\\) or \\(H, W, 3\\) image"):
        preprocess_image(np.zeros((4, 4, 2), np.uint8), LITEMEDSAM_PREPROCESS)
