"""DSC and NSD of one case, reproducing the organisers' `compute_metrics.py` (docs/reference_systems.md section 5).

Rules reproduced on purpose (scoring parity, not physics):
- labels scored are 1..max(gt); prediction labels above max(gt) are ignored;
- DSC of a label absent from both masks is NaN, and the case DSC is the plain mean over labels, so
  one such label makes the case DSC NaN; a ground truth without labels scores NaN;
- NSD (tolerance 2.0) is computed only when the case DSC > 0.2 (NaN fails the test), otherwise 0.0;
- 2D masks are scored as (H, W, 1) volumes with spacing (1, 1, 1); 3D spacing is applied as stored to
  array axes (0, 1, 2).

Surface distances follow DeepMind's `surface-distance` 0.1, the upstream of the organisers'
`SurfaceDice.py` (`evaluation/surface.py`: its recipe and public tables, ordered by a vectorised sort,
bit-identical). It cannot run under NumPy 2 when either mask is empty (`np.Inf`), so those cases are
answered here with the values the organisers' code gives: NaN when both are empty, 0.0 when one is.
Each label is cropped to the union of its ground-truth and prediction bounding boxes first.

Work follows the labels present, not the largest label value: a ground truth with label 2**31 - 1
is scored from its few present labels. A label in 1..max(gt) absent from both masks has DSC NaN, so
the case DSC is NaN (and NSD 0.0 by the gate) whichever labels are missing; only present labels
are measured.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import surface_distance
from scipy import ndimage

from evaluation.surface import surface_distances

__all__ = ["NSD_TOLERANCE", "NSD_DSC_THRESHOLD", "CaseScores", "dice", "surface_dice", "score_case",
           "check_ground_truth"]

NSD_TOLERANCE = 2.0
"""Surface tolerance: mm for 3D cases, pixels for 2D cases."""
NSD_DSC_THRESHOLD = 0.2
"""NSD is computed only when the case DSC is strictly above this value."""


@dataclass(frozen=True)
class CaseScores:
    """Scores of one case.

    Attributes:
        dsc: mean DSC over labels 1..max(gt) (NaN as described in the module docstring).
        nsd: mean NSD over the same labels; 0.0 when the DSC gate fails; None when not requested.
        labels: (L,) the labels in 1..max(gt) present in either mask, ascending (all of 1..max(gt)
            unless one is absent from both, which makes ``dsc`` NaN).
        label_dsc: (L,) float64 DSC per label of ``labels``.
        label_nsd: (L,) float64 NSD per label of ``labels``, or None when NSD was not computed.
    """

    labels: np.ndarray
    dsc: float
    nsd: float | None
    label_dsc: np.ndarray
    label_nsd: np.ndarray | None


def dice(gt_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """Sørensen-Dice of two boolean masks of one shape; NaN when both are empty."""
    volume_sum = int(np.count_nonzero(gt_mask)) + int(np.count_nonzero(pred_mask))
    if volume_sum == 0:
        return float("nan")
    return 2 * int(np.count_nonzero(gt_mask & pred_mask)) / volume_sum


def surface_dice(gt_mask: np.ndarray, pred_mask: np.ndarray, spacing: Sequence[float],
                 tolerance: float = NSD_TOLERANCE) -> float:
    """Normalised surface Dice of two boolean 3D masks at `tolerance` (units of `spacing`).

    Args:
        gt_mask, pred_mask: (D, H, W) bool.
        spacing: 3 voxel sizes for array axes (0, 1, 2).
        tolerance: maximal surface-to-surface distance counted as overlap.

    Returns:
        NaN when both masks are empty (0/0 in the organisers' code), 0.0 when exactly one is.
    """
    gt_any, pred_any = bool(gt_mask.any()), bool(pred_mask.any())
    if not (gt_any or pred_any):
        return float("nan")
    if not (gt_any and pred_any):
        return 0.0
    distances = surface_distances(gt_mask.astype(bool, copy=False), pred_mask.astype(bool, copy=False), spacing)
    return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance))


def _as_label_map(name: str, array: np.ndarray) -> np.ndarray:
    """Integer view of a label map; floats are accepted only when every value is an integer."""
    if array.dtype == bool:
        return array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} has non-integer labels (dtype {array.dtype})")
        return array.astype(np.int64)
    raise ValueError(f"{name} has dtype {array.dtype}, expected integer labels")


def _union(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None) -> tuple[slice, ...]:
    """Smallest box (tuple of slices) holding both boxes; at least one is not None."""
    if a is None or b is None:
        either = a if b is None else b
        if either is None:
            raise ValueError("_union needs at least one box")
        return either
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))


def check_ground_truth(gts: np.ndarray, spacing: np.ndarray | None) -> tuple[np.ndarray, tuple[float, ...]]:
    """The ground truth as an integer label map of the case's layout, and the spacing to score with.

    Checked apart from the prediction, so that a bad ground truth is reported as such.

    Raises:
        ValueError: 2D labels not (H, W), 3D labels not (D, H, W), spacing not 3 positive finite
            numbers, non-integer labels.
    """
    if spacing is None:
        if gts.ndim != 2:
            raise ValueError(f"2D case needs (H, W) masks, got shape {gts.shape}")
        return _as_label_map("gts", gts), (1.0, 1.0, 1.0)
    if gts.ndim != 3:
        raise ValueError(f"3D case needs (D, H, W) masks, got shape {gts.shape}")
    values = np.asarray(spacing).ravel()
    if values.dtype.kind not in "iuf":
        raise ValueError(f"spacing must be 3 positive finite numbers, got dtype {values.dtype}")
    steps = tuple(float(s) for s in values.astype(np.float64))
    if len(steps) != 3 or not all(np.isfinite(s) and s > 0 for s in steps):
        raise ValueError(f"spacing must be 3 positive finite numbers, got {steps}")
    return _as_label_map("gts", gts), steps


def _present(labels: np.ndarray, top: int) -> np.ndarray:
    """Sorted distinct values of ``labels`` within 1..top."""
    return np.unique(labels[(labels >= 1) & (labels <= top)])


def _compact(labels: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 1..len(scored) by position in ``scored``; other values become 0."""
    out = np.zeros(labels.shape, np.int32)
    inside = (labels >= 1) & (labels <= scored[-1])
    index = np.searchsorted(scored, labels[inside])
    hit = scored[np.minimum(index, len(scored) - 1)] == labels[inside]
    out[inside] = np.where(hit, index + 1, 0)
    return out


def score_case(gts: np.ndarray, segs: np.ndarray, spacing: Sequence[float] | None = None,
               compute_nsd: bool = True) -> CaseScores:
    """Score one case like the organisers.

    Args:
        gts: ground-truth label map, (H, W) for a 2D case or (D, H, W) for a 3D case.
        segs: predicted label map of the same shape (any integer dtype, bool, or integral floats).
        spacing: None for a 2D case (scored as (H, W, 1) with spacing (1, 1, 1)); for a 3D case the
            3 values of the ground truth's `spacing` key, used as stored for axes (0, 1, 2).
        compute_nsd: False skips NSD (`nsd` and `label_nsd` are None).

    Raises:
        ValueError: as :func:`check_ground_truth`; shape mismatch, non-integer prediction labels.
    """
    gts, steps = check_ground_truth(gts, None if spacing is None else np.asarray(spacing))
    if gts.shape != segs.shape:
        raise ValueError(f"prediction shape {segs.shape} differs from ground-truth shape {gts.shape}")
    segs = _as_label_map("segs", segs)
    if spacing is None:
        gts, segs = gts[..., None], segs[..., None]
    top = int(gts.max()) if gts.size else 0
    if top <= 0:
        nothing = np.zeros(0)
        return CaseScores(nothing.astype(np.int64), float("nan"), 0.0 if compute_nsd else None, nothing,
                          nothing if compute_nsd else None)
    scored = np.union1d(_present(gts, top), _present(segs, top))
    gt_ids, seg_ids = _compact(gts, scored), _compact(segs, scored)
    gt_boxes = ndimage.find_objects(gt_ids, max_label=len(scored))
    seg_boxes = ndimage.find_objects(seg_ids, max_label=len(scored))
    crops: list[tuple[np.ndarray, np.ndarray]] = []
    for index, (gt_box, seg_box) in enumerate(zip(gt_boxes, seg_boxes)):
        box = _union(gt_box, seg_box)
        crops.append((gt_ids[box] == index + 1, seg_ids[box] == index + 1))
    label_dsc = np.array([dice(gt, seg) for gt, seg in crops])
    case_dsc = float(np.mean(label_dsc)) if len(scored) == top else float("nan")

    if not compute_nsd:
        return CaseScores(scored, case_dsc, None, label_dsc, None)
    if not case_dsc > NSD_DSC_THRESHOLD:
        return CaseScores(scored, case_dsc, 0.0, label_dsc, None)
    label_nsd = np.array([surface_dice(gt, seg, steps) for gt, seg in crops])
    return CaseScores(scored, case_dsc, float(np.mean(label_nsd)), label_dsc, label_nsd)
