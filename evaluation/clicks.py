"""The clicks the CVPR 2025 interactive evaluator simulates, placed exactly as it places them.

Reproduced from the organisers' ``CVPR25_iter_eval.py`` (repository
``JunMa11/CVPR-MedSegFMCompetition``; docs/interactive.md lists the facts with line numbers):

- per class (a label present in the ground truth), the error is every voxel where
  ``prediction == label`` and ``ground truth == label`` disagree: missed foreground and false
  foreground together, in one mask;
- the error is split into 26-connected components; the largest is clicked. Equal sizes go to the
  component met first in C (z, y, x) raster order, as ``np.argmax`` over ``cc3d``'s component ids
  (numbered in that order) gives;
- the click goes where the Euclidean distance transform of that component (unit voxels, spacing
  ignored) is largest. The transform is taken on the component's bounding box padded with zeros by
  ``max(int(0.25 * size), 1)`` voxels per axis, so the image border counts as outside; a padded box
  of more than 60,000,000 voxels is max-pooled 2 x 2 x 2 first and the distances are repeated back;
- equal maxima are broken by ``np.random.seed(42); np.random.choice(n)`` over the maxima in
  ``np.argwhere`` (C) order, reseeded for every click: the legacy Mersenne Twister, reproduced here
  with ``np.random.RandomState(42)``;
- the click is foreground (``fg``) when the ground truth holds the label there, else background
  (``bg``); a class without error gets no click.

The prediction is first cast with ``astype(np.uint8)`` as the evaluator does (labels above 255 wrap).
Work stays inside the error's bounding box: no full-volume distance map is made.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from challenge.interactive import ClickKind

__all__ = ["EDT_DOWNSAMPLE_ABOVE", "TIE_SEED", "Click", "largest_error_component", "click_distances", "pick_voxel",
           "next_click", "next_clicks"]

EDT_DOWNSAMPLE_ABOVE = 60_000_000
"""Padded boxes with more voxels than this are max-pooled 2 x 2 x 2 before the distance transform."""
TIE_SEED = 42
"""Seed of the legacy generator that picks among equal distance maxima, reset for every click."""

_NEIGHBOURS_26 = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Click:
    """One simulated click: ``zyx`` voxel index of the (D, H, W) volume; ``error_voxels`` the size
    of the error component it was placed in."""

    label: int
    kind: ClickKind
    zyx: tuple[int, int, int]
    error_voxels: int


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a non-empty bool mask."""
    found = ndimage.find_objects(mask.view(np.uint8))[0]
    assert found is not None
    return found


def largest_error_component(error: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The largest 26-connected component of a bool (D, H, W) error mask, as (its bounding box in
    the volume, its bool mask inside that box); None when there is no error.

    Ties go to the component whose first voxel comes first in C order (``cc3d`` numbers components
    in that order and the evaluator takes ``np.argmax`` of their sizes).
    """
    if not error.any():
        return None
    outer = _box(error)
    labels, _ = ndimage.label(error[outer], structure=_NEIGHBOURS_26)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    candidates = np.flatnonzero(sizes == sizes.max())
    winner = candidates[0]
    if len(candidates) > 1:  # do not rely on scipy's numbering: first voxel in C order decides
        flat = labels.ravel()
        winner = candidates[int(np.argmin([np.argmax(flat == c) for c in candidates]))]
    component = labels == winner
    inner = _box(component)
    box = tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(outer, inner))
    return box, component[inner]


def _max_pool_2(volume: np.ndarray) -> np.ndarray:
    """2 x 2 x 2 max pooling, zero-padded at the end of odd axes (skimage ``block_reduce`` with
    ``func=np.max``, what the evaluator calls)."""
    padded = np.pad(volume, [(0, n % 2) for n in volume.shape])
    d, h, w = (n // 2 for n in padded.shape)
    return padded.reshape(d, 2, h, 2, w, 2).max(axis=(1, 3, 5))


def click_distances(component: np.ndarray, downsample_above: int = EDT_DOWNSAMPLE_ABOVE) -> np.ndarray:
    """Euclidean distance transform of a component given as its tight bool box, as the evaluator's
    ``compute_edt`` computes it (padding, optional 2 x 2 x 2 pooling), cropped back to the box."""
    shape = np.array(component.shape)
    padding = np.maximum((shape * 0.25).astype(int), 1)
    inner = tuple(slice(int(p), int(p + n)) for p, n in zip(padding, shape))
    padded = np.zeros(tuple(shape + 2 * padding), np.uint8)
    padded[inner] = component
    pooled = int(np.prod(padded.shape)) > downsample_above
    if pooled:
        padded = _max_pool_2(padded)
    distances = ndimage.distance_transform_edt(padded)
    if pooled:
        distances = distances.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    return distances[inner]


def pick_voxel(values: np.ndarray) -> tuple[int, ...]:
    """Index of the largest value; among equal maxima in ``np.argwhere`` order, the one
    ``np.random.seed(42); np.random.choice(n)`` picks."""
    ties = np.argwhere(values == values.max())
    chosen = np.random.RandomState(TIE_SEED).choice(len(ties))
    return tuple(int(v) for v in ties[chosen])


def next_click(segs_u8: np.ndarray, gts: np.ndarray, label: int,
               downsample_above: int = EDT_DOWNSAMPLE_ABOVE) -> Click | None:
    """The evaluator's click for ``label`` given the (uint8) prediction; None when the class has no error."""
    truth = gts == label
    found = largest_error_component((segs_u8 == label) != truth)
    if found is None:
        return None
    box, component = found
    distances = click_distances(component, downsample_above) * component
    local = pick_voxel(distances if distances.sum() != 0 else component)
    zyx = (local[0] + box[0].start, local[1] + box[1].start, local[2] + box[2].start)
    kind: ClickKind = "fg" if truth[zyx] else "bg"
    return Click(int(label), kind, zyx, int(np.count_nonzero(component)))


def next_clicks(segs: np.ndarray, gts: np.ndarray, labels: Sequence[int]) -> list[Click | None]:
    """One click (or None) per label of ``labels``, from a prediction of any integer dtype (cast
    to uint8 first, as the evaluator does)."""
    segs_u8 = segs.astype(np.uint8)
    return [next_click(segs_u8, gts, int(label)) for label in labels]
