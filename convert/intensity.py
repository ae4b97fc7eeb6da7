"""Intensities to uint8 exactly as the organisers prepared the training data.

docs/reference_systems.md section 6.1 (BW ``pre_CT_MR.py``, ``pre_grey_rgb.py``):

* CT ``window``: clip to ``[level - width / 2, level + width / 2]``, then min-max of the
  *clipped volume* (its own minimum and maximum, which equal the window bounds only when the
  volume spans the window) times 255, truncated to uint8.
* ``percentile`` (MR, PET, any other volume): bounds are the 0.5 and 99.5 percentiles
  (NumPy's default linear interpolation) of the voxels **> 0**, then clip, min-max of the
  clipped volume times 255, voxels that were exactly 0 set back to 0, truncated to uint8.
* ``8bit`` (2D images): integer images already inside 0..255 are kept; anything else
  (16-bit, negative or floating point) is min-maxed to 0..255 and truncated.

Arithmetic follows the organisers' order of operations in the floating type NumPy gives
their expressions for the input (:func:`working_dtype`: float32 for float32 volumes, float64
for integer ones), so results are reproducible to the last bit; a constant image (max == min
after clipping) gives zeros where the organisers' code would divide by zero.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from convert.blocks import slabs

IntensityMethod = Literal["window", "percentile", "8bit"]
INTENSITY_METHODS = ("window", "percentile", "8bit")

# (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
DEFAULT_CT_WINDOW = "abdomen"
PERCENTILES = (0.5, 99.5)


def working_dtype(dtype: np.dtype) -> np.dtype:
    """Floating type of ``np.clip(image, low, high)`` with Python-float bounds, the type all of the
    organisers' arithmetic then runs in: float32 stays float32 (their percentile bounds of a
    float32 image are float32 too), integers become float64.
    """
    return np.result_type(dtype, 0.0)


def _clipped_minmax_uint8(image: np.ndarray, low: float, high: float, keep_zeros: bool) -> np.ndarray:
    """``uint8((clip(x, low, high) - min) / (max - min) * 255)`` with min/max of the clipped image."""
    work = working_dtype(image.dtype).type
    low, high = work(low), work(high)
    cmin, cmax = np.clip(work(image.min()), low, high), np.clip(work(image.max()), low, high)
    out = np.zeros(image.shape, dtype=np.uint8)
    if cmax == cmin:
        return out
    span = cmax - cmin
    for rows in slabs(image):
        block = image[rows]
        scaled = block.astype(work)  # in place from here: same IEEE operations, fewer copies
        np.maximum(scaled, low, out=scaled)
        np.minimum(scaled, high, out=scaled)
        scaled -= cmin
        scaled /= span
        scaled *= 255.0
        if keep_zeros:
            scaled[block == 0] = 0
        out[rows] = scaled
    return out


def _check_finite(image: np.ndarray) -> None:
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")


def ct_window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT window (level/width in HU) to uint8, any shape; see the module docstring."""
    if not width > 0:
        raise ValueError(f"CT window width must be positive, got {width}")
    _check_finite(image)
    return _clipped_minmax_uint8(image, level - width / 2, level + width / 2, keep_zeros=False)


def percentile_bounds(image: np.ndarray) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles of the voxels > 0 (the organisers' MR rule)."""
    positive = image[image > 0]
    if positive.size == 0:
        raise ValueError("image has no voxel > 0, so percentile normalisation is undefined")
    # One call per percentile, as the organisers did: a scalar q keeps float32 data in float32.
    low, high = (np.percentile(positive, q) for q in PERCENTILES)
    return float(low), float(high)


def percentile_clip(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Percentile clipping and min-max to uint8, zeros kept; returns the image and the bounds."""
    _check_finite(image)
    low, high = percentile_bounds(image)
    return _clipped_minmax_uint8(image, low, high, keep_zeros=True), (low, high)


def rescale_8bit(image: np.ndarray) -> np.ndarray:
    """Keep an integer 0..255 image as uint8, min-max anything else to 0..255 (truncated)."""
    _check_finite(image)
    low, high = float(image.min()), float(image.max())
    if np.issubdtype(image.dtype, np.integer) and low >= 0 and high <= 255:
        return image.astype(np.uint8)
    return _clipped_minmax_uint8(image, low, high, keep_zeros=False)


def to_uint8(
    image: np.ndarray, method: IntensityMethod, window: tuple[float, float] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply ``method`` and return the uint8 image plus a JSON-able record of what was done.

    ``window`` is ``(level, width)`` and only used (and required) for ``method="window"``.
    """
    if method == "window":
        if window is None:
            raise ValueError("the window method needs (level, width)")
        level, width = window
        return ct_window(image, level, width), {"method": method, "level": level, "width": width}
    if method == "percentile":
        out, (low, high) = percentile_clip(image)
        return out, {"method": method, "percentiles": list(PERCENTILES), "low": low, "high": high}
    if method == "8bit":
        return rescale_8bit(image), {"method": method}
    raise ValueError(f"unknown intensity method {method!r}; expected one of {list(INTENSITY_METHODS)}")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA -> (H, W, 3).

    Grey is replicated to three identical channels (as in the challenge files), alpha dropped.
    """
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected a grey, RGB or RGBA image, got an array of shape {image.shape}")


def resolve_window(
    preset: str | None = None, level: float | None = None, width: float | None = None
) -> tuple[float, float]:
    """``(level, width)`` from a preset name or a custom pair; the abdomen window by default."""
    if level is not None or width is not None:
        if level is None or width is None or preset is not None:
            raise ValueError("a custom CT window needs both a level and a width, and no preset")
        if not width > 0:
            raise ValueError(f"CT window width must be positive, got {width}")
        return float(level), float(width)
    name = (preset or DEFAULT_CT_WINDOW).lower()
    if name not in CT_WINDOWS:
        raise ValueError(
            f"unknown CT window {preset!r}; expected one of {', '.join(CT_WINDOWS)} or a custom level/width"
        )
    return CT_WINDOWS[name]
