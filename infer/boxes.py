"""Make validated boxes safe to prompt with: reorder inverted corners, clip to the image, drop
boxes that lie wholly outside (their label stays empty). Nothing is asserted away; every repair
becomes a note for the case's log line (docs/reference_systems.md section 7 #3, #4: never crash on odd boxes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PreparedBoxes", "prepare_boxes"]


@dataclass(frozen=True)
class PreparedBoxes:
    """Boxes ready for a strategy.

    ``boxes`` float64 (K, 4) ``[x_min, y_min, x_max, y_max]`` or (K, 6) ``[x_min, y_min, z_min,
    x_max, y_max, z_max]``, inclusive, inside the image; 3D z values are whole slice indices.
    ``labels`` int64 (K,): the output label of each box (its input row + 1).
    """

    boxes: np.ndarray
    labels: np.ndarray
    notes: list[str] = field(default_factory=list)


SHOWN_ROWS = 5
"""Rows named in a note; the rest are counted (65,534 clipped rows must not make one huge line)."""


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:SHOWN_ROWS])
    return shown if len(rows) <= SHOWN_ROWS else f"{shown} and {len(rows) - SHOWN_ROWS} more ({len(rows)} in all)"


def prepare_boxes(boxes: np.ndarray, spatial_shape: tuple[int, ...]) -> PreparedBoxes:
    """Repair (N, 4) boxes for an (H, W) image or (N, 6) boxes for a (D, H, W) volume.

    ``boxes`` must already be finite and non-negative (see :func:`infer.cases.load_case`).
    Fractional z coordinates are truncated to slice indices, as the baseline's ``int()``.
    """
    k = boxes.shape[1] // 2
    extent = np.array(spatial_shape[::-1], np.float64)  # (W, H) or (W, H, D), the box column order
    lo, hi = boxes[:, :k].copy(), boxes[:, k:].copy()
    if k == 3:
        lo[:, 2], hi[:, 2] = np.trunc(lo[:, 2]), np.trunc(hi[:, 2])
    notes = []
    inverted = (lo > hi).any(1)
    if inverted.any():
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        notes.append(f"box row(s) {_rows(np.flatnonzero(inverted))} had min > max: corners swapped")
    outside = (lo > extent - 1).any(1)
    if outside.any():
        notes.append(f"box row(s) {_rows(np.flatnonzero(outside))} lie outside the image: empty mask")
    clipped = (hi > extent - 1).any(1) & ~outside
    if clipped.any():
        size = " x ".join(str(s) for s in spatial_shape[::-1])
        notes.append(f"box row(s) {_rows(np.flatnonzero(clipped))} clipped to the image ({size}, x by y"
                     f"{' by z' if k == 3 else ''})")
    hi = np.minimum(hi, extent - 1)
    keep = ~outside
    return PreparedBoxes(np.concatenate([lo, hi], 1)[keep], np.flatnonzero(keep) + 1, notes)
