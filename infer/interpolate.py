"""Masks between two decoded slices: whether two masks agree, and shape-based interpolation.

Strided propagation (:mod:`infer.volume`) decodes every ``stride``-th slice and fills the slices
between two decoded ones from their masks when those agree. The fill is shape-based
interpolation: each mask's signed distance (positive inside, negative outside, Euclidean, in
pixels) blended linearly by the slice's position between the two, thresholded at zero. Unlike
a per-pixel vote it moves the outline smoothly from one shape to the other (a shrinking disc
shrinks), and at either end it gives that end's mask exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

from infer.postprocess import RegionMask

__all__ = ["mask_agreement", "interpolate_masks"]


def _canvas(a: RegionMask, b: RegionMask, pad: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Both masks on their common bounding box grown by ``pad`` pixels: (top, left, a, b)."""
    top, left = min(a.top, b.top) - pad, min(a.left, b.left) - pad
    bottom = max(a.top + a.mask.shape[0], b.top + b.mask.shape[0]) + pad
    right = max(a.left + a.mask.shape[1], b.left + b.mask.shape[1]) + pad
    out = []
    for m in (a, b):
        canvas = np.zeros((bottom - top, right - left), bool)
        canvas[m.top - top:m.top - top + m.mask.shape[0], m.left - left:m.left - left + m.mask.shape[1]] = m.mask
        out.append(canvas)
    return top, left, out[0], out[1]


def mask_agreement(a: RegionMask | None, b: RegionMask | None) -> tuple[float, float]:
    """(Dice, smaller area / larger area) of two masks in the same slice coordinates; two empty
    masks agree fully (1, 1), one empty mask not at all (0, 0)."""
    if a is None or b is None:
        return (1.0, 1.0) if a is None and b is None else (0.0, 0.0)
    _, _, ca, cb = _canvas(a, b, 0)
    area_a, area_b = int(ca.sum()), int(cb.sum())
    return 2.0 * int(np.count_nonzero(ca & cb)) / (area_a + area_b), min(area_a, area_b) / max(area_a, area_b)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance to the other region, positive inside ``mask``, negative outside; the
    mask must have background around it (the caller pads) so every inside pixel has a distance."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return inside - outside


def interpolate_masks(a: RegionMask | None, b: RegionMask | None, fractions: list[float]) -> list[RegionMask | None]:
    """The masks at ``fractions`` (0 = ``a``, 1 = ``b``) of the way from ``a`` to ``b``, by
    blending their signed distances. Both empty: empty. One empty is not interpolated (a shape
    cannot be blended with nothing): ValueError, since callers decode such gaps instead."""
    if a is None or b is None:
        if a is None and b is None:
            return [None] * len(fractions)
        raise ValueError("interpolate_masks needs two masks or none: one is empty")
    top, left, ca, cb = _canvas(a, b, 1)
    da, db = _signed_distance(ca), _signed_distance(cb)
    return [RegionMask.tight(top, left, (1.0 - f) * da + f * db > 0) for f in fractions]
