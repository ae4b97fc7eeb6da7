"""3D segmentation by slice propagation, scheduled slice by slice (docs/reference_systems.md section 4).

Per box: start on the middle slice ``(z_min + z_max) // 2`` with the 3D box's xy, walk up to
``z_max`` and down to ``z_min`` (both inclusive); the prompt on each next slice is the bounding
box of this box's mask on the previous slice, in original pixels, grown by ``margin`` model-input
pixels and kept inside the 3D box's xy grown by the same margin (so a leak cannot feed itself);
when that mask is empty the 3D box's xy is used again.

The work is not done box by box (docs/reference_systems.md section 7 #2 re-encodes every slice per box) but in two
sweeps over the slices: upward over every box's ``[z_mid, z_max]``, then downward over every
box's ``[z_min, z_mid - 1]``. Each slice is encoded once per sweep and all boxes active on it are
decoded together. A slice both sweeps need keeps its embedding (an owned copy, 4 MiB) from the
upward sweep until the downward sweep consumes it, within ``cache_bytes``; beyond that budget it
is encoded again, so memory stays bounded on any volume. With the default budget each
(view, slice) is encoded exactly once.

State is explicit (:class:`PropagationState`) and :func:`propagate` is a generator over slices;
the caller paints the masks (:func:`segment_view`). Other views are the same code on a transposed
volume: coronal slices are ``vol[:, y, :]``, sagittal ``vol[:, :, x]``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from infer.postprocess import RegionMask
from infer.predictor import ImageState, SlicePredictor
from infer.vote import majority_vote

__all__ = ["VIEWS", "DEFAULT_CACHE_BYTES", "Track", "PropagationState", "init_state", "add_box", "propagate",
           "segment_view", "segment_volume", "view_boxes"]

VIEWS: dict[str, tuple[int, int, int]] = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
"""Axis order (slice, row, column) of each view of a (D, H, W) volume."""

DEFAULT_CACHE_BYTES = 1 << 30
"""Embeddings kept between the sweeps: 1 GiB = 256 slices of LiteMedSAM embeddings."""


@dataclass
class Track:
    """One box being propagated: output ``label``, its slice range, the 2D box ``home`` (x_min,
    y_min, x_max, y_max) on every slice, and the prompt for the next slice of the current sweep."""

    label: int
    home: np.ndarray
    z_min: int
    z_mid: int
    z_max: int
    prompt: np.ndarray
    mid_prompt: np.ndarray | None = None


@dataclass
class PropagationState:
    """A (S, R, C) volume view and its tracks; ``cache`` maps slice -> embedding kept for the
    downward sweep. ``upward_done`` guards the sweep order (the downward sweep starts from the
    middle-slice masks)."""

    volume: np.ndarray
    margin: float
    cache_bytes: int
    tracks: list[Track] = field(default_factory=list)
    cache: dict[int, ImageState] = field(default_factory=dict)
    upward_done: bool = False


def init_state(volume: np.ndarray, margin: float, cache_bytes: int = DEFAULT_CACHE_BYTES) -> PropagationState:
    """Start propagating in ``volume`` (S, R, C) uint8, slices along axis 0; ``margin`` in
    model-input pixels."""
    return PropagationState(volume, float(margin), int(cache_bytes))


def add_box(state: PropagationState, label: int, box: np.ndarray) -> None:
    """Add a box ``[x_min, y_min, z_min, x_max, y_max, z_max]`` in view coordinates (x = column,
    y = row, z = slice), inside the view, z whole numbers, painted as ``label``."""
    if state.upward_done:
        raise RuntimeError("add_box after the upward sweep: boxes must all be added first")
    z_min, z_max = int(box[2]), int(box[5])
    home = np.array([box[0], box[1], box[3], box[4]], np.float64)
    state.tracks.append(Track(int(label), home, z_min, (z_min + z_max) // 2, z_max, home.copy()))


def _next_prompt(mask: RegionMask | None, home: np.ndarray, margin: tuple[float, float],
                 shape: tuple[int, int]) -> np.ndarray:
    """The mask's bounding box grown by ``margin``, kept inside the 3D box's xy grown by the same
    margin: the 3D box bounds the object on every slice, so a prompt reaching beyond it can only
    feed a leak that grows slice after slice. No mask, or none left inside: the 3D box's xy."""
    if mask is None:
        return home.copy()
    grow = np.array([-margin[0], -margin[1], margin[0], margin[1]])
    limit = np.clip(home + grow, 0.0, [shape[1] - 1.0, shape[0] - 1.0] * 2)
    prompt = np.array(mask.bbox(), np.float64) + grow
    prompt = np.concatenate([np.maximum(prompt[:2], limit[:2]), np.minimum(prompt[2:], limit[2:])])
    if prompt[0] > prompt[2] or prompt[1] > prompt[3]:
        return home.copy()
    return prompt


def _slices(state: PropagationState, reverse: bool) -> list[int]:
    if reverse:
        needed = {z for t in state.tracks for z in range(t.z_min, t.z_mid)}
    else:
        needed = {z for t in state.tracks for z in range(t.z_mid, t.z_max + 1)}
    return sorted(needed, reverse=reverse)


def _active(track: Track, z: int, reverse: bool) -> bool:
    return track.z_min <= z < track.z_mid if reverse else track.z_mid <= z <= track.z_max


def propagate(state: PropagationState, predictor: SlicePredictor,
              reverse: bool = False) -> Iterator[tuple[int, list[tuple[int, RegionMask]]]]:
    """Sweep upward (``reverse=False``, first) or downward over the slices the tracks need.

    Yields ``(slice, [(label, mask), ...])`` for each slice, the non-empty masks of the boxes
    active there, in track order. Boxes of one slice are decoded in one call (in chunks of
    ``predictor.max_batch`` when more are active).
    """
    if reverse and not state.upward_done:
        raise RuntimeError("propagate(reverse=True) before the upward sweep: it starts from the middle-slice masks")
    if reverse:
        for track in state.tracks:
            track.prompt = track.home.copy() if track.mid_prompt is None else track.mid_prompt
    shape = state.volume.shape[1:]
    later = set(_slices(state, reverse=True)) if not reverse else set()
    for z in _slices(state, reverse):
        if reverse and z in state.cache:
            predictor.restore(state.cache.pop(z))
        else:
            predictor.set_image(state.volume[z])
            embedding_bytes = predictor.image_state.embedding.nbytes  # type: ignore[union-attr]
            if z in later and (len(state.cache) + 1) * embedding_bytes <= state.cache_bytes:
                state.cache[z] = predictor.image_state  # type: ignore[assignment]
        active = [t for t in state.tracks if _active(t, z, reverse)]
        margin = predictor.margin_pixels(state.margin)
        found: list[tuple[int, RegionMask]] = []
        for start in range(0, len(active), predictor.max_batch):
            chunk = active[start:start + predictor.max_batch]
            masks = predictor.predict(np.stack([t.prompt for t in chunk]))
            for track, mask in zip(chunk, masks):
                track.prompt = _next_prompt(mask, track.home, margin, shape)
                if not reverse and z == track.z_mid:
                    track.mid_prompt = track.prompt
                if mask is not None:
                    found.append((track.label, mask))
        yield z, found
    if not reverse:
        state.upward_done = True
    else:
        state.cache.clear()


def view_boxes(boxes: np.ndarray, view: str) -> np.ndarray:
    """(K, 6) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` volume boxes -> the same layout in
    ``view`` coordinates (x = column, y = row, z = slice of that view), slice bounds truncated."""
    perm = VIEWS[view]
    lo = boxes[:, [2, 1, 0]]  # per array axis (z, y, x)
    hi = boxes[:, [5, 4, 3]]
    out = np.stack([lo[:, perm[2]], lo[:, perm[1]], np.trunc(lo[:, perm[0]]),
                    hi[:, perm[2]], hi[:, perm[1]], np.trunc(hi[:, perm[0]])], axis=1)
    return out


def segment_view(predictor: SlicePredictor, volume: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 view: str = "axial", margin: float = 3.0, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 box_labels: np.ndarray | None = None) -> None:
    """Propagate (K, 6) volume boxes in one view of ``volume`` (D, H, W) uint8 and paint the
    masks into ``labels`` (D, H, W) uint16 (later box wins).

    ``box_labels`` gives each box's label (default: row + 1).
    """
    perm = VIEWS[view]
    box_labels = np.arange(1, len(boxes) + 1) if box_labels is None else box_labels
    state = init_state(volume.transpose(perm), margin, cache_bytes)
    for label, box in zip(box_labels, view_boxes(boxes, view)):
        add_box(state, int(label), box)
    target = labels.transpose(perm)
    for reverse in (False, True):
        for z, masks in propagate(state, predictor, reverse):
            for label, mask in masks:
                mask.paint(target[z], label)


def segment_volume(predictor: SlicePredictor, volume: np.ndarray, boxes: np.ndarray,
                   box_labels: np.ndarray | None = None, views: tuple[str, ...] = ("axial",),
                   margin: float = 3.0, cache_bytes: int = DEFAULT_CACHE_BYTES) -> np.ndarray:
    """Label volume (D, H, W) uint16 for (K, 6) boxes (inside the volume, see
    :func:`infer.boxes.prepare_boxes`): one view, or the majority vote of three views."""
    if len(views) not in (1, 3):
        raise ValueError(f"segment_volume takes one view or three to vote, got {views}")
    results = []
    for view in views:
        labels = np.zeros(volume.shape, np.uint16)
        segment_view(predictor, volume, boxes, labels, view, margin, cache_bytes, box_labels)
        results.append(labels)
    return results[0] if len(results) == 1 else majority_vote(*results)
