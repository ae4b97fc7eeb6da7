"""Low-resolution logits -> binary mask in original pixels, exactly and cheaply (docs/reference_systems.md section 3).

The reference post-processing is: crop the (L, L) low-res logits to the valid (unpadded) region,
upsample bilinearly to (H, W) with half-pixel centres (``cv2.INTER_LINEAR``, PyTorch
``align_corners=False``), threshold at 0. Every upsampled value is a convex combination of at
most 2 x 2 neighbouring low-res values, so it can only be positive where one of them is: the
output rows whose upper source row lies in ``[r_min - 1, r_max]`` of the positive low-res pixels
(likewise columns). Computing only that window, with the same arithmetic per output pixel as the
full upsampling, gives the identical mask; a small object in a 4000 x 3000 image costs its own
size, not the image's.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from infer.preprocess import Geometry, PreprocessSpec

__all__ = ["RegionMask", "valid_low_res", "axis_weights", "upsample_logits", "mask_from_logits", "mask_to_logits"]


@dataclass(frozen=True)
class RegionMask:
    """A binary mask stored as its tight bounding box: ``mask`` bool (h, w) placed at
    (``top``, ``left``) of the original image; ``mask`` has a positive pixel on every edge."""

    top: int
    left: int
    mask: np.ndarray

    @classmethod
    def tight(cls, top: int, left: int, mask: np.ndarray) -> RegionMask | None:
        """The mask ``mask`` (bool) placed at (``top``, ``left``), cropped to its positive pixels;
        None when it has none."""
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(top + r0, left + c0, np.ascontiguousarray(mask[r0:r1, c0:c1]))

    def bbox(self) -> tuple[int, int, int, int]:
        """``(x_min, y_min, x_max, y_max)`` of the positive pixels, inclusive, original pixels."""
        h, w = self.mask.shape
        return self.left, self.top, self.left + w - 1, self.top + h - 1

    def paint(self, labels: np.ndarray, label: int) -> None:
        """Write ``label`` into the (H, W) ``labels`` where the mask is set, keeping a higher label
        already there: the result is the later box wins, whatever order boxes are painted in."""
        h, w = self.mask.shape
        window = labels[self.top:self.top + h, self.left:self.left + w]
        np.maximum(window, self.mask * np.asarray(label, labels.dtype), out=window)


def valid_low_res(spec: PreprocessSpec, geometry: Geometry, low_res_size: int) -> tuple[int, int]:
    """Rows and columns of the (L, L) low-res logits that cover the unpadded image.

    Longest-side models pad bottom/right, so the valid part is ``round(L * resized / S)``
    (exactly ``resized`` when L == S, as for LiteMedSAM); stretched models use all of it.
    """
    if spec.resize == "stretch":
        return low_res_size, low_res_size
    scale = low_res_size / geometry.size
    return (max(1, int(geometry.resized_h * scale + 0.5)), max(1, int(geometry.resized_w * scale + 0.5)))


@lru_cache(maxsize=64)
def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis, half-pixel centres: output i reads inputs ``i0[i]``,
    ``i1[i]`` with weights ``w0[i]``, ``w1[i]`` (float32), sources clamped at both borders like
    PyTorch ``align_corners=False``. ``i0`` is non-decreasing."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    w0 = np.float32(1) - w1
    for a in (i0, i1, w0, w1):
        a.flags.writeable = False
    return i0, i1, w0, w1


def upsample_logits(crop: np.ndarray, out_shape: tuple[int, int], rows: slice = slice(None),
                    cols: slice = slice(None)) -> np.ndarray:
    """Bilinear upsampling of the (h, w) float32 ``crop`` to ``out_shape``, computing only output
    ``rows`` x ``cols``. Each output value is computed the same way whatever window is asked for,
    so a window equals the same part of the full result bit for bit."""
    yi0, yi1, wy0, wy1 = (a[rows] for a in axis_weights(crop.shape[0], out_shape[0]))
    xi0, xi1, wx0, wx1 = (a[cols] for a in axis_weights(crop.shape[1], out_shape[1]))
    if len(yi0) == 0 or len(xi0) == 0:
        return np.zeros((len(yi0), len(xi0)), np.float32)
    first, last = int(yi0[0]), int(yi1[-1]) + 1
    band = crop[first:last].astype(np.float32, copy=False)
    across = band[:, xi0] * wx0 + band[:, xi1] * wx1  # (band rows, output cols)
    return across[yi0 - first] * wy0[:, None] + across[yi1 - first] * wy1[:, None]


def _window(i0: np.ndarray, lo: int, hi: int) -> slice:
    """Output indices whose first tap lies in ``[lo - 1, hi]``: all that can see inputs lo..hi."""
    return slice(int(np.searchsorted(i0, lo - 1, "left")), int(np.searchsorted(i0, hi, "right")))


def mask_from_logits(logits: np.ndarray, valid: tuple[int, int], out_shape: tuple[int, int]) -> RegionMask | None:
    """Threshold (> 0) the bilinear upsampling of ``logits[:valid_h, :valid_w]`` to ``out_shape``.

    Args:
        logits: (L, L) float32 low-res logits of one mask.
        valid: rows and columns of ``logits`` covering the image (:func:`valid_low_res`).
        out_shape: (H, W) of the original image.

    Returns:
        The mask as a :class:`RegionMask`, or None when no pixel is positive.
    """
    crop = logits[: valid[0], : valid[1]]
    positive = crop > 0
    pos_rows, pos_cols = np.flatnonzero(positive.any(1)), np.flatnonzero(positive.any(0))
    if len(pos_rows) == 0:
        return None
    rows = _window(axis_weights(crop.shape[0], out_shape[0])[0], int(pos_rows[0]), int(pos_rows[-1]))
    cols = _window(axis_weights(crop.shape[1], out_shape[1])[0], int(pos_cols[0]), int(pos_cols[-1]))
    return RegionMask.tight(rows.start, cols.start, upsample_logits(crop, out_shape, rows, cols) > 0)


def mask_to_logits(mask: np.ndarray, valid: tuple[int, int], low_res_size: int, scale: float) -> np.ndarray:
    """The inverse direction, for a mask prompt: an (H, W) binary mask in original pixels ->
    (L, L) float32 low-res logits, ``+scale`` inside, ``-scale`` outside and on the padding.

    The mask is area-averaged onto the ``valid`` low-res region (the part that covers the image,
    :func:`valid_low_res`), so a low-res pixel half covered gets logit 0; SAM feeds its own
    low-res logits back the same way, with magnitudes of about 10 where it is sure.
    """
    import cv2

    out = np.full((low_res_size, low_res_size), -scale, np.float32)
    cover = cv2.resize(np.asarray(mask, np.float32), (valid[1], valid[0]), interpolation=cv2.INTER_AREA)
    out[:valid[0], :valid[1]] = (2 * cover.reshape(valid) - 1) * scale
    return out
