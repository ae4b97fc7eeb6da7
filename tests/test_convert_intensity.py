"""Intensity rules against hand-computed values (docs/reference_systems.md section 6.1)."""
from __future__ import annotations

import numpy as np
import pytest

from convert.intensity import ct_window, percentile_clip, rescale_8bit, resolve_window, to_rgb, to_uint8
from challenge.names import require_modality


def test_ct_abdomen_window_by_hand():
    # window 40/400 -> [-160, 240]; the volume spans it, so min-max uses exactly those bounds
    hu = np.array([[[-1000, -160, -60, 40, 100, 240, 3000]]], dtype=np.int16)
    # -60: 100/400*255 = 63.75 -> 63; 40: 127.5 -> 127; 100: 260/400*255 = 165.75 -> 165
    np.testing.assert_array_equal(ct_window(hu, 40, 400), [[[0, 0, 63, 127, 165, 255, 255]]])


def test_ct_window_stretches_the_clipped_range_like_the_organisers():
    # nothing below -160 or above 240: min-max over the clipped values 0..100, not the window
    hu = np.array([0, 50, 75, 100], dtype=np.int16)
    np.testing.assert_array_equal(ct_window(hu, 40, 400), [0, 127, 191, 255])  # 191.25 -> 191


def test_lung_window_by_hand():
    # -600/1500 -> [-1350, 150]; -1000: 350/1500*255 = 59.5 -> 59; -600: 127.5 -> 127; 0: 229.5 -> 229
    hu = np.array([-2000, -1000, -600, 0, 150], dtype=np.float32)
    np.testing.assert_array_equal(ct_window(hu, *resolve_window("lung")), [0, 59, 127, 229, 255])


def test_window_presets_and_custom_pairs():
    assert resolve_window() == (40.0, 400.0)
    assert resolve_window("Bone") == (400.0, 1800.0)
    assert resolve_window("brain") == (40.0, 80.0)
    assert resolve_window(level=-50, width=350) == (-50.0, 350.0)
    with pytest.raises(ValueError, match=r"^unknown CT window 'liverish'; expected one of abdomen, lung, bone, brain"):
        resolve_window("liverish")
    with pytest.raises(ValueError, match="needs both a level and a width"):
        resolve_window(level=40)
    with pytest.raises(ValueError, match=r"^CT window width must be positive, got -4"):
        resolve_window(level=40, width=-4)


def test_percentile_clipping_by_hand():
    # positives 1..1000 plus zeros. Linear percentiles: 0.5 -> 5 + 0.995 = 5.995, 99.5 -> 995.005
    values = np.concatenate([np.zeros(50), np.arange(1, 1001)]).astype(np.float32)
    out, (low, high) = percentile_clip(values)
    assert low == pytest.approx(5.995) and high == pytest.approx(995.005)
    at = {v: out[50 + v - 1] for v in (1, 500, 995, 1000)}
    # 500: 494.005 / 989.01 * 255 = 127.37 -> 127; 995: 989.005 / 989.01 * 255 = 254.9987 -> 254
    assert at == {1: 0, 500: 127, 995: 254, 1000: 255}
    assert (out[:50] == 0).all()


def test_percentile_keeps_zeros_but_not_negatives_out_of_the_percentiles():
    values = np.array([-5, 0, 10, 20, 30], dtype=np.int16)
    out, (low, high) = percentile_clip(values)
    # positives 10, 20, 30: 0.5% -> 10.1, 99.5% -> 29.9; -5 clips to 10.1 -> 0; 20 -> 9.9/19.8*255 = 127.5 -> 127
    assert (low, high) == pytest.approx((10.1, 29.9))
    np.testing.assert_array_equal(out, [0, 0, 0, 127, 255])


def test_percentile_needs_a_positive_voxel():
    with pytest.raises(ValueError, match=r"^image has no voxel > 0, so percentile normalisation is undefined$"):
        percentile_clip(np.zeros((2, 3, 3), dtype=np.int16))


def _organisers(volume, method):
    """pre_CT_MR.py's expressions, literally: NumPy picks the arithmetic type from the input."""
    if method == "window":
        low, high = 40 - 400 / 2, 40 + 400 / 2
    else:
        low, high = np.percentile(volume[volume > 0], 0.5), np.percentile(volume[volume > 0], 99.5)
    ref = np.clip(volume, low, high)
    ref = (ref - np.min(ref)) / (np.max(ref) - np.min(ref)) * 255.0
    if method == "percentile":
        ref[volume == 0] = 0
    return np.uint8(ref)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
@pytest.mark.parametrize("method", ["window", "percentile"])
def test_blockwise_volume_equals_the_organisers_whole_array_formula(method, dtype):
    rng = np.random.default_rng(3)
    volume = rng.normal(200, 300, size=(20, 512, 512)).astype(dtype)  # more than one working block
    volume[:, :40] = 0
    out, _ = to_uint8(volume, method, (40.0, 400.0))
    np.testing.assert_array_equal(out, _organisers(volume, method))


def test_float32_volumes_are_scaled_in_float32_like_the_organisers():
    # 247 * 400 / 255 - 160 rounded to float32. In float32 (what np.clip of a float32 volume gives
    # the organisers) (x + 160) / 400 * 255 lands on 247.0 exactly; in float64 it is 246.9999956.
    x = np.float32(227.4509735107422)
    assert (x + np.float32(160)) / np.float32(400) * np.float32(255) == np.float32(247)
    assert int((float(x) + 160) / 400 * 255) == 246
    hu = np.array([-1000, x, 3000], dtype=np.float32)
    np.testing.assert_array_equal(ct_window(hu, 40, 400), [0, 247, 255])
    np.testing.assert_array_equal(ct_window(hu.astype(np.float64), 40, 400), [0, 246, 255])
    for method in ("window", "percentile"):  # the same volume at both precisions, on random data
        volume = np.random.default_rng(0).uniform(-160, 240, 1_000_000).astype(np.float32)
        out, _ = to_uint8(volume, method, (40.0, 400.0))
        np.testing.assert_array_equal(out, _organisers(volume, method))


def test_8bit_rule():
    np.testing.assert_array_equal(rescale_8bit(np.array([0, 500, 1000], np.uint16)), [0, 127, 255])
    kept = rescale_8bit(np.array([3, 200], np.uint16))  # already inside 0..255: unchanged
    np.testing.assert_array_equal(kept, [3, 200])
    assert kept.dtype == np.uint8
    np.testing.assert_array_equal(rescale_8bit(np.array([0.0, 0.25, 1.0])), [0, 63, 255])
    np.testing.assert_array_equal(rescale_8bit(np.array([700, 700], np.int32)), [0, 0])  # constant, above 8 bits


def test_nan_is_rejected():
    with pytest.raises(ValueError, match=r"^image contains NaN or infinite values$"):
        ct_window(np.array([0.0, np.nan]), 40, 400)


def test_grey_and_rgba_to_rgb():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_rgb(grey)
    assert rgb.shape == (2, 3, 3) and all((rgb[..., c] == grey).all() for c in range(3))
    rgba = np.dstack([grey, grey + 1, grey + 2, np.full_like(grey, 9)])
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])
    with pytest.raises(ValueError, match=r"got an array of shape \(2, 3, 5\)"):
        to_rgb(np.zeros((2, 3, 5), np.uint8))


def test_modality_names_and_aliases():
    assert require_modality("ct") == "CT"
    assert require_modality("MRI") == "MR"
    assert require_modality("xray") == "X-Ray"
    assert require_modality("X-ray") == "X-Ray"
    assert require_modality("Microscopy") == "Microscope"
    assert require_modality("oct") == "OCT"
    with pytest.raises(ValueError, match=r"^unknown modality 'C'; expected one of CT, MR, PET, US, X-Ray,"):
        require_modality("C")
