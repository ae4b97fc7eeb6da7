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


def _canvas(masks: list[RegionMask], pad: int) -> tuple[int, int, list[np.ndarray]]:
    """The masks on their common bounding box grown by ``pad`` pixels: (top, left, canvases)."""
    top, left = min(m.top for m in masks) - pad, min(m.left for m in masks) - pad
    bottom = max(m.top + m.mask.shape[0] for m in masks) + pad
    right = max(m.left + m.mask.shape[1] for m in masks) + pad
    out = []
    for m in masks:
        canvas = np.zeros((bottom - top, right - left), bool)
        canvas[m.top - top:m.top - top + m.mask.shape[0], m.left - left:m.left - left + m.mask.shape[1]] = m.mask
        out.append(canvas)
    return top, left, out


def mask_agreement(a: RegionMask | None, b: RegionMask | None) -> tuple[float, float]:
    """(Dice, smaller area / larger area) of two masks in the same slice coordinates; two empty
    masks agree fully (1, 1), one empty mask not at all (0, 0)."""
    if a is None or b is None:
        return (1.0, 1.0) if a is None and b is None else (0.0, 0.0)
    _, _, (ca, cb) = _canvas([a, b], 0)
    area_a, area_b = int(ca.sum()), int(cb.sum())
    return 2.0 * int(np.count_nonzero(ca & cb)) / (area_a + area_b), min(area_a, area_b) / max(area_a, area_b)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance to the other region, positive inside ``mask``, negative outside; the
    mask must have background around it (the caller pads) so every inside pixel has a distance."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return inside - outside


def _lagrange(nodes: list[float], target: float) -> list[float]:
    """Weights of the polynomial through ``nodes`` evaluated at ``target`` (they sum to 1)."""
    weights = []
    for i, zi in enumerate(nodes):
        w = 1.0
        for j, zj in enumerate(nodes):
            if j != i:
                w *= (target - zj) / (zi - zj)
        weights.append(w)
    return weights


def interpolate_masks(a: RegionMask | None, b: RegionMask | None, fractions: list[float],
                      before: RegionMask | None = None, before_at: float = -1.0) -> list[RegionMask | None]:
    """The masks at ``fractions`` (0 = ``a``, 1 = ``b``) of the way from ``a`` to ``b``, by
    blending their signed distances: linearly, or with ``before`` (a third mask at fraction
    ``before_at``, outside [0, 1]) on the quadratic through the three. A cross-section
    that changes along a curve (a sphere's radius) is underestimated between two slices by the
    straight line, as the quadratic is not. Both ends empty: empty. One empty is not
    interpolated (a shape cannot be blended with nothing): ValueError, since callers decode such
    gaps instead."""
    if a is None or b is None:
        if a is None and b is None:
            return [None] * len(fractions)
        raise ValueError("interpolate_masks needs two masks or none: one is empty")
    masks, nodes = ([a, b], [0.0, 1.0]) if before is None else ([before, a, b], [before_at, 0.0, 1.0])
    top, left, canvases = _canvas(masks, 1)
    distances = [_signed_distance(c) for c in canvases]
    out = []
    for f in fractions:
        blend = np.zeros_like(distances[0])
        for w, d in zip(_lagrange(nodes, f), distances):
            blend += w * d
        inside = blend > 0
        inside[[0, -1], :] = inside[:, [0, -1]] = False  # the padding: the quadratic may reach it, the image may end there
        out.append(RegionMask.tight(top, left, inside))
    return out
