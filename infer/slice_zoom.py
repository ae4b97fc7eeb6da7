"""Crop regions for zoomed 3D propagation: which part of a slice each 3D box is encoded on.

A structure of 20 x 40 pixels in a 185 x 149 slice covers a few cells of the 64 x 64 embedding when
the whole slice is encoded at 256 px. Encoding a crop around the 3D box's xy instead puts it at
several times that resolution, at one encoder call per crop and slice. A box's crop is fixed for
the whole volume (the 3D box bounds the object on every slice), so the prompts of every slice fall
inside it; nearby boxes share one crop when that costs no more pixels than two crops would.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Window", "box_window", "merge_windows"]

Window = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` end-exclusive, original pixels of the slice."""


def box_window(home: np.ndarray, shape: tuple[int, int], context: float, min_side: int) -> Window:
    """The square crop around the inclusive XYXY ``home`` box: side ``context`` times the box's
    longest side (at least ``min_side``), centred on the box, clipped to the (H, W) slice."""
    height, width = shape
    x_min, y_min, x_max, y_max = (float(v) for v in home)
    side = max(context * max(x_max - x_min + 1, y_max - y_min + 1), float(min_side))
    cx, cy = (x_min + x_max + 1) / 2, (y_min + y_max + 1) / 2
    x0, y0 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
    x1, y1 = min(width, int(np.ceil(cx + side / 2))), min(height, int(np.ceil(cy + side / 2)))
    return x0, y0, x1, y1


def _area(w: Window) -> int:
    return (w[2] - w[0]) * (w[3] - w[1])


def _union(a: Window, b: Window) -> Window:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def merge_windows(windows: list[Window]) -> list[Window]:
    """The crop each window's box is encoded on: windows whose union covers no more pixels than
    the two apart share their union (repeatedly, so chains merge); boxes with equal crops share
    one encoder call per slice."""
    merged: list[Window] = list(windows)
    owner = list(range(len(windows)))
    changed = True
    while changed:
        changed = False
        alive = sorted(set(owner))
        pairs = ((a, b) for i, a in enumerate(alive) for b in alive[i + 1:])
        for a, b in pairs:
            union = _union(merged[a], merged[b])
            if _area(union) <= _area(merged[a]) + _area(merged[b]):
                merged[a] = union
                owner = [a if o == b else o for o in owner]
                changed = True
                break
    return [merged[o] for o in owner]
