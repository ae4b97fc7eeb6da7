"""DSC and NSD of one case, reproducing the organisers' `compute_metrics.py` (docs/reference_systems.md section 5).

Rules reproduced on purpose (scoring parity, not physics):
- labels scored are 1..max(gt); prediction labels above max(gt) are ignored;
- DSC of a label absent from both masks is NaN, and the case DSC is the plain mean over labels, so
  one such label makes the case DSC NaN; a ground truth without labels scores NaN;
- NSD (tolerance 2.0) is computed only when the case DSC > 0.2 (NaN fails the test), otherwise 0.0;
- 2D masks are scored as (H, W, 1) volumes with spacing (1, 1, 1); 3D spacing is applied as stored to
  array axes (0, 1, 2).

Surface distances come from DeepMind's `surface-distance` 0.1, the upstream of the organisers'
`SurfaceDice.py`. It cannot run under NumPy 2 when either mask is empty (`np.Inf`), so those cases are
answered here with the values the organisers' code gives: NaN when both are empty, 0.0 when one is.
Each label is cropped to the union of its ground-truth and prediction bounding boxes before the
call; the library crops to that same box itself, so the numbers are bit-identical, only cheaper.

The library sorts the surface elements by (distance, area) with Python's `sorted` over tuples, which
takes most of the time on large objects (a 2D object is scored as a one-slice volume, so every pixel
is a surface element: seconds per megapixel). The order only fixes the summation order of the areas;
`np.lexsort` on (distance, area) yields the same sequence (elements that tie on both are equal), so
that one private step is replaced at import by the vectorised sort (checked in the tests).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import surface_distance
from scipy import ndimage

__all__ = ["NSD_TOLERANCE", "NSD_DSC_THRESHOLD", "CaseScores", "dice", "surface_dice", "score_case",
           "sort_by_distance_then_area"]

NSD_TOLERANCE = 2.0
"""Surface tolerance: mm for 3D cases, pixels for 2D cases."""
NSD_DSC_THRESHOLD = 0.2
"""NSD is computed only when the case DSC is strictly above this value."""


def sort_by_distance_then_area(distances: np.ndarray, surfel_areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both (N,) float arrays ordered by distance, ties by area: `sorted(zip(distances, areas))`."""
    order = np.lexsort((surfel_areas, distances))
    return distances[order], surfel_areas[order]


surface_distance.metrics._sort_distances_surfels = sort_by_distance_then_area


@dataclass(frozen=True)
class CaseScores:
    """Scores of one case.

    Attributes:
        dsc: mean DSC over labels 1..max(gt) (NaN as described in the module docstring).
        nsd: mean NSD over the same labels; 0.0 when the DSC gate fails; None when not requested.
        label_dsc: (L,) float64 DSC per label 1..L.
        label_nsd: (L,) float64 NSD per label, or None when NSD was not computed.
    """

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
    with warnings.catch_warnings():  # the package uses scipy.ndimage.filters/morphology aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = surface_distance.compute_surface_distances(
            gt_mask.astype(bool, copy=False), pred_mask.astype(bool, copy=False), spacing_mm=tuple(spacing))
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
        return a if b is None else b
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))


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
        ValueError: shape mismatch, wrong number of dimensions, bad spacing, non-integer labels.
    """
    if gts.shape != segs.shape:
        raise ValueError(f"prediction shape {segs.shape} differs from ground-truth shape {gts.shape}")
    if spacing is None:
        if gts.ndim != 2:
            raise ValueError(f"2D case needs (H, W) masks, got shape {gts.shape}")
        gts, segs, spacing = gts[..., None], segs[..., None], (1.0, 1.0, 1.0)
    else:
        spacing = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
        if gts.ndim != 3:
            raise ValueError(f"3D case needs (D, H, W) masks, got shape {gts.shape}")
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be 3 positive finite numbers, got {spacing}")
    gts, segs = _as_label_map("gts", gts), _as_label_map("segs", segs)
    n_labels = int(gts.max()) if gts.size else 0
    if n_labels <= 0:
        nothing = np.zeros(0)
        return CaseScores(float("nan"), 0.0 if compute_nsd else None, nothing, nothing if compute_nsd else None)

    gt_boxes = ndimage.find_objects(gts, max_label=n_labels)
    seg_boxes = ndimage.find_objects(segs, max_label=n_labels)
    crops: list[tuple[np.ndarray, np.ndarray] | None] = []
    label_dsc = np.empty(n_labels)
    for index, (gt_box, seg_box) in enumerate(zip(gt_boxes, seg_boxes)):
        if gt_box is None and seg_box is None:
            crops.append(None)
            label_dsc[index] = np.nan
            continue
        box, label = _union(gt_box, seg_box), index + 1
        gt_crop, seg_crop = gts[box] == label, segs[box] == label
        crops.append((gt_crop, seg_crop))
        label_dsc[index] = dice(gt_crop, seg_crop)
    case_dsc = float(np.mean(label_dsc))

    if not compute_nsd:
        return CaseScores(case_dsc, None, label_dsc, None)
    if not case_dsc > NSD_DSC_THRESHOLD:
        return CaseScores(case_dsc, 0.0, label_dsc, None)
    label_nsd = np.array([np.nan if crop is None else surface_dice(crop[0], crop[1], spacing) for crop in crops])
    return CaseScores(case_dsc, float(np.mean(label_nsd)), label_dsc, label_nsd)
