"""3D segmentation by slice propagation, scheduled slice by slice (docs/reference_systems.md section 4).

Per box: start on the middle slice ``(z_min + z_max) // 2`` with the 3D box's xy, walk up to
``z_max`` and down to ``z_min`` (both inclusive); the prompt on each next slice is the bounding
box of this box's mask on the previous slice, in original pixels, grown by ``margin`` model-input
pixels and kept inside the 3D box's xy grown by the same margin (so a leak cannot feed itself);
when that mask is empty the 3D box's xy is used again (``on_empty="home"``) or the box ends in
this sweep (``"stop"``: an object that has ended stays ended, instead of the whole 3D box's xy
prompting a slice where the object is a sliver or gone). With ``zoom_context`` a box small against
the slice is decoded on a crop around its 3D box's xy (:mod:`infer.slice_zoom`), encoded at the
model's input size; boxes whose crops merge share one encoder call per slice.

The work is not done box by box (docs/reference_systems.md section 7 #2 re-encodes every slice per box) but in two
sweeps over the slices: upward over every box's ``[z_mid, z_max]``, then downward over every
box's ``[z_min, z_mid - 1]``. Each slice is encoded once per sweep and all boxes active on it are
decoded together (per crop when zooming). A slice both sweeps need keeps its embedding (an owned copy, 4 MiB) from the
upward sweep until the downward sweep consumes it, within ``cache_bytes``; beyond that budget it
is encoded again, so memory stays bounded on any volume. With the default budget each
(view, slice, crop) is encoded at most once.

State is explicit (:class:`PropagationState`) and :func:`propagate` is a generator over slices;
the caller paints the masks (:func:`segment_view`). Other views are the same code on a transposed
volume: coronal slices are ``vol[:, y, :]``, sagittal ``vol[:, :, x]``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from infer.interpolate import interpolate_masks, mask_agreement
from infer.postprocess import RegionMask
from infer.predictor import ImageState, SlicePredictor
from infer.slice_zoom import Window, box_window, merge_windows
from infer.vote import majority_vote

__all__ = ["VIEWS", "DEFAULT_CACHE_BYTES", "Rule", "IOU_PICK", "IOU_PICK_STRIDE3", "Track", "PropagationState", "init_state", "add_box", "propagate",
           "segment_view", "segment_volume", "view_boxes"]

VIEWS: dict[str, tuple[int, int, int]] = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
"""Axis order (slice, row, column) of each view of a (D, H, W) volume."""

DEFAULT_CACHE_BYTES = 1 << 30
"""Embeddings kept between the sweeps: 1 GiB = 256 slices of LiteMedSAM embeddings."""


@dataclass(frozen=True)
class Rule:
    """How a box moves from slice to slice, besides the margin.

    ``on_empty``: after an empty mask, prompt the next slice with the 3D box's xy (``"home"``) or
    end the box in this sweep (``"stop"``; the start slice never stops it). ``grow``: the next
    prompt also grows by this fraction of the mask's width / height on each side (a box prompt
    yields a mask a little inside it, so a tight box shrinks slice after slice); ``blend``: the
    prompt moves this fraction of the way to the 3D box's xy. ``pick="iou"``: the 3D box's xy is
    decoded as well and the mask the model rates higher (predicted IoU) is kept, so each slice
    chooses between following its neighbour and the 3D box. ``zoom_context`` > 0:
    a box whose xy longest side is below ``zoom_below`` times the slice's longest side is decoded
    on a square crop ``zoom_context`` times that side (at least ``zoom_min_side`` pixels).

    ``stride`` > 1: each sweep decodes only the slices on a grid of that step (plus each box's
    first and last slice); the slices between two decoded ones are filled by shape-based
    interpolation (:mod:`infer.interpolate`) for a box whose two masks agree (Dice >=
    ``agree_dice`` and area ratio >= ``agree_area``), and for any other box encoded and
    decoded one by one as with stride 1, after which the far slice is decoded again from its
    neighbour's prompt: where every gap disagrees the result is stride 1's exactly. With
    ``quadratic`` the fill also uses the box's decoded slice before the gap's (see
    :func:`infer.interpolate.interpolate_masks`)."""

    on_empty: Literal["home", "stop"] = "home"
    grow: float = 0.0
    blend: float = 0.0
    pick: Literal["prompt", "iou"] = "prompt"
    zoom_context: float = 0.0
    zoom_below: float = 1.0
    zoom_min_side: int = 32
    stride: int = 1
    agree_dice: float = 0.9
    agree_area: float = 0.8
    quadratic: bool = True

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


IOU_PICK = Rule(pick="iou")
"""The ``axial_iou`` strategy. On curved or oblique structures (caudate, hippocampus) the mask from
the 3D box's xy takes in a neighbour and, followed slice by slice, drifts onto it; letting the
model's own IoU estimate choose between its neighbour's prompt and the 3D box holds it, and keeps
propagation where it was already right (docs/propagation.md)."""


IOU_PICK_STRIDE3 = Rule(pick="iou", stride=3, agree_dice=0.8, agree_area=0.7)
"""The ``axial_iou_stride3`` strategy: ``axial_iou`` decoding every third slice where neighbouring
masks agree (Dice >= 0.8, area ratio >= 0.7). Measured against ``axial_iou`` on the real and demo
volumes (docs/propagation.md): 14 % fewer encoder calls, mean DSC -0.002, NSD -0.01 to -0.02 on
the demo volumes; not the default for that NSD."""


@dataclass
class Track:
    """One box being propagated: output ``label``, its slice range, the 2D box ``home`` (x_min,
    y_min, x_max, y_max) on every slice, the start slice ``z_mid``, the prompt for the next slice
    of the current sweep, the crop ``window`` it is decoded on (None: the whole slice), whether
    it has ``stopped`` for the rest of the sweep, and its last two decoded slices and masks
    (``last_*``, ``before_*``; the first two of the upward sweep are kept as ``start_nodes`` to
    begin the downward one)."""

    label: int
    home: np.ndarray
    z_min: int
    z_mid: int
    z_max: int
    prompt: np.ndarray
    mid_prompt: np.ndarray | None = None
    mid_mask: RegionMask | None = None
    window: Window | None = None
    stopped: bool = False
    last_z: int | None = None
    last_mask: RegionMask | None = None
    before_z: int | None = None
    before_mask: RegionMask | None = None
    start_nodes: list[tuple[int, RegionMask | None]] = field(default_factory=list)


@dataclass
class PropagationState:
    """A (S, R, C) volume view and its tracks; ``cache`` maps (slice, crop) -> embedding kept for
    the downward sweep. ``upward_done`` guards the sweep order (the downward sweep starts from the
    middle-slice masks)."""

    volume: np.ndarray
    margin: float
    cache_bytes: int
    rule: Rule = Rule()
    tracks: list[Track] = field(default_factory=list)
    cache: dict[tuple[int, Window | None], ImageState] = field(default_factory=dict)
    upward_done: bool = False


def init_state(volume: np.ndarray, margin: float, cache_bytes: int = DEFAULT_CACHE_BYTES,
               rule: Rule = Rule()) -> PropagationState:
    """Start propagating in ``volume`` (S, R, C) uint8, slices along axis 0; ``margin`` in
    model-input pixels."""
    return PropagationState(volume, float(margin), int(cache_bytes), rule)


def add_box(state: PropagationState, label: int, box: np.ndarray, start: int | None = None) -> None:
    """Add a box ``[x_min, y_min, z_min, x_max, y_max, z_max]`` in view coordinates (x = column,
    y = row, z = slice), inside the view, z whole numbers, painted as ``label``; the sweeps start
    on slice ``start`` (default: the middle one)."""
    if state.upward_done:
        raise RuntimeError("add_box after the upward sweep: boxes must all be added first")
    z_min, z_max = int(box[2]), int(box[5])
    z_start = (z_min + z_max) // 2 if start is None else min(max(int(start), z_min), z_max)
    home = np.array([box[0], box[1], box[3], box[4]], np.float64)
    state.tracks.append(Track(int(label), home, z_min, z_start, z_max, home.copy()))
    _assign_windows(state)


def _assign_windows(state: PropagationState) -> None:
    """Give each small box its crop, merged with its neighbours' (:func:`merge_windows`)."""
    rule, shape = state.rule, state.volume.shape[1:]
    if rule.zoom_context <= 0:
        return
    small = [t for t in state.tracks if max(t.home[2] - t.home[0], t.home[3] - t.home[1]) + 1
             < rule.zoom_below * max(shape)]
    windows = [box_window(t.home, shape, rule.zoom_context, rule.zoom_min_side) for t in small]
    for track, window in zip(small, merge_windows(windows)):
        track.window = None if window == (0, 0, shape[1], shape[0]) else window


def _next_prompt(mask: RegionMask | None, home: np.ndarray, margin: tuple[float, float],
                 shape: tuple[int, int], rule: Rule = Rule()) -> np.ndarray:
    """The mask's bounding box grown by ``margin`` (and by ``rule.grow`` times its own width and
    height), moved ``rule.blend`` of the way to the 3D box's xy, kept inside the 3D box's xy grown
    by ``margin``: the 3D box bounds the object on every slice, so a prompt reaching beyond it can
    only feed a leak that grows slice after slice. No mask, or none left inside: the 3D box's xy."""
    if mask is None:
        return home.copy()
    bbox = np.array(mask.bbox(), np.float64)
    extent = bbox[2:] - bbox[:2] + 1
    pad = np.array([-margin[0], -margin[1], margin[0], margin[1]])
    limit = np.clip(home + pad, 0.0, [shape[1] - 1.0, shape[0] - 1.0] * 2)
    prompt = (1.0 - rule.blend) * (bbox + pad + rule.grow * np.concatenate([-extent, extent])) + rule.blend * home
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


def _encode(state: PropagationState, predictor: SlicePredictor, z: int, window: Window | None,
            reverse: bool, later: set[int]) -> None:
    """Make slice ``z`` (or its ``window`` crop) current: from the cache on the downward sweep,
    else encoded, and kept for the downward sweep when it needs it and the budget allows."""
    key = (z, window)
    if reverse and key in state.cache:
        predictor.restore(state.cache.pop(key))
        return
    image = state.volume[z] if window is None else state.volume[z, window[1]:window[3], window[0]:window[2]]
    predictor.set_image(image)
    embedding_bytes = predictor.image_state.embedding.nbytes  # type: ignore[union-attr]
    if z in later and (len(state.cache) + 1) * embedding_bytes <= state.cache_bytes:
        state.cache[key] = predictor.image_state  # type: ignore[assignment]


def _decode(predictor: SlicePredictor, tracks: list[Track], window: Window | None,
            pick_iou: bool) -> list[RegionMask | None]:
    """Masks in slice pixels for the tracks' prompts on the current image (a ``window`` crop or
    the whole slice), in chunks of ``predictor.max_batch``. ``pick_iou``: each track's 3D box xy
    is decoded beside its prompt and the mask with the higher predicted IoU is kept."""
    x0, y0 = (0, 0) if window is None else window[:2]
    shift = np.array([x0, y0, x0, y0], np.float64)
    step = predictor.max_batch // 2 if pick_iou and predictor.max_batch > 1 else predictor.max_batch
    masks: list[RegionMask | None] = []
    for start in range(0, len(tracks), step):
        chunk = tracks[start:start + step]
        prompts = [t.prompt for t in chunk] + ([t.home for t in chunk] if pick_iou else [])
        found, iou = predictor.predict_scored(np.stack(prompts) - shift)
        if pick_iou:
            n = len(chunk)
            found = [found[i] if iou[i] >= iou[n + i] else found[n + i] for i in range(n)]
        for mask in found:
            shifted = mask is not None and window is not None
            masks.append(RegionMask(mask.top + y0, mask.left + x0, mask.mask) if shifted else mask)  # type: ignore[union-attr]
    return masks


def _key_slices(state: PropagationState, order: list[int], reverse: bool) -> set[int]:
    """The slices a sweep decodes for sure: the stride grid (slice numbers divisible by the
    stride, shared by all boxes so they share encoder calls) and each box's first and last slice
    of the sweep (the downward sweep starts from the start slice's mask, decoded upward)."""
    stride = state.rule.stride
    keys = {z for z in order if z % stride == 0}
    for t in state.tracks:
        keys |= {t.z_min} if reverse else {t.z_mid, t.z_max}
    return keys & set(order)


def _decode_slice(state: PropagationState, predictor: SlicePredictor, z: int, tracks: list[Track],
                  reverse: bool, later: set[int], restore: dict[Window | None, ImageState] | None = None,
                  keep: dict[Window | None, ImageState] | None = None) -> dict[int, RegionMask | None]:
    """Decode ``tracks`` on slice ``z`` from their prompts and move each prompt on: the slice is
    encoded once per crop (or taken from ``restore``, or the sweep cache), and with ``keep`` its
    embeddings are kept there. Returns each track's mask by position in ``tracks``."""
    shape = state.volume.shape[1:]
    masks: dict[int, RegionMask | None] = {}
    for window in dict.fromkeys(t.window for t in tracks):
        group = [i for i, t in enumerate(tracks) if t.window == window]
        if restore is not None:
            predictor.restore(restore[window])
        else:
            _encode(state, predictor, z, window, reverse, later)
        if keep is not None:
            keep[window] = predictor.image_state  # type: ignore[assignment]
        margin = predictor.margin_pixels(state.margin)
        found = _decode(predictor, [tracks[i] for i in group], window, state.rule.pick == "iou")
        for i, mask in zip(group, found):
            track = tracks[i]
            track.prompt = _next_prompt(mask, track.home, margin, shape, state.rule)
            track.before_z, track.before_mask, track.last_z, track.last_mask = track.last_z, track.last_mask, z, mask
            masks[i] = mask
    return masks


def _agree(state: PropagationState, a: RegionMask | None, b: RegionMask | None) -> bool:
    dice, area = mask_agreement(a, b)
    return dice >= state.rule.agree_dice and area >= state.rule.agree_area


def _key_step(state: PropagationState, predictor: SlicePredictor, z: int, gap: list[int], reverse: bool,
              later: set[int]) -> Iterator[tuple[int, list[tuple[int, RegionMask]]]]:
    """Decode key slice ``z``, then fill the ``gap`` slices (sweep order) since the previous key:
    by interpolation for a box whose masks on both sides agree, else by decoding them one by one
    and ``z`` again. Yields the gap slices, then ``z``."""
    tracks = [t for t in state.tracks if _active(t, z, reverse) and not t.stopped]
    if not tracks:
        return
    before = [(t.last_z, t.last_mask, t.prompt, t.before_z, t.before_mask) for t in tracks]
    own = {i: [g for g in gap if _active(t, g, reverse)] for i, t in enumerate(tracks)}
    keep: dict[Window | None, ImageState] | None = {} if any(own.values()) else None
    masks = _decode_slice(state, predictor, z, tracks, reverse, later, keep=keep)
    filled: dict[int, dict[int, RegionMask | None]] = {g: {} for g in gap}
    redo = []
    for i, track in enumerate(tracks):
        if not own[i]:
            continue
        last_z, last_mask, prompt, before_z, before_mask = before[i]
        assert last_z is not None, "a gap always follows a decoded slice of its box"
        if _agree(state, last_mask, masks[i]):
            fractions = [(g - last_z) / (z - last_z) for g in own[i]]
            third = state.rule.quadratic and before_mask is not None and last_mask is not None
            at = (before_z - last_z) / (z - last_z) if third else -1.0  # type: ignore[operator]
            for g, mask in zip(own[i], interpolate_masks(last_mask, masks[i], fractions, before_mask if third else None, at)):
                filled[g][i] = mask
        else:
            track.prompt = prompt
            redo.append(i)
    if redo:
        for g in gap:
            now = [i for i in redo if g in own[i]]
            if now:
                found = _decode_slice(state, predictor, g, [tracks[i] for i in now], reverse, later)
                for k, i in enumerate(now):
                    filled[g][i] = found[k]
        found = _decode_slice(state, predictor, z, [tracks[i] for i in redo], reverse, later, restore=keep)
        for k, i in enumerate(redo):
            masks[i] = found[k]
    stop = state.rule.on_empty == "stop"
    for i, track in enumerate(tracks):
        if not reverse and z == track.z_mid:
            track.mid_prompt, track.mid_mask = track.prompt, masks[i]
            track.start_nodes = [(z, masks[i])]
        elif not reverse and len(track.start_nodes) == 1:  # the decoded slice next to the start
            nearest = own[i][0] if i in redo else z
            track.start_nodes.append((nearest, filled[nearest][i] if i in redo else masks[i]))
        track.stopped = stop and masks[i] is None and z != track.z_mid
    for g in gap:
        if any(g in own_gap for own_gap in own.values()):
            yield g, [(tracks[i].label, m) for i, m in sorted(filled[g].items()) if m is not None]
    yield z, [(t.label, masks[i]) for i, t in enumerate(tracks) if masks[i] is not None]  # type: ignore[misc]


def _downward_nodes(track: Track) -> list[tuple[int | None, RegionMask | None]]:
    """The two decoded slices the downward sweep starts from: the start slice (its final mask)
    and the next one the upward sweep decoded (none when the box has one slice)."""
    nodes: list[tuple[int | None, RegionMask | None]] = [(z, m) for z, m in track.start_nodes[1:2]]
    return [(None, None)] * (1 - len(nodes)) + nodes + [(track.z_mid, track.mid_mask)]


def propagate(state: PropagationState, predictor: SlicePredictor,
              reverse: bool = False) -> Iterator[tuple[int, list[tuple[int, RegionMask]]]]:
    """Sweep upward (``reverse=False``, first) or downward over the slices the tracks need.

    Yields ``(slice, [(label, mask), ...])`` for each slice with a box still going, the non-empty
    masks of those boxes, grouped by crop; with a stride, the slices of a gap come after the key
    slice that closes it, in sweep order among themselves. The boxes of one crop (or of the whole
    slice) are decoded in one call (in chunks of ``predictor.max_batch`` when more are active); a
    slice where every box has stopped is not encoded.
    """
    if reverse and not state.upward_done:
        raise RuntimeError("propagate(reverse=True) before the upward sweep: it starts from the middle-slice masks")
    for track in state.tracks:
        track.stopped = False
        if reverse:
            track.prompt = track.home.copy() if track.mid_prompt is None else track.mid_prompt
            (track.before_z, track.before_mask), (track.last_z, track.last_mask) = _downward_nodes(track)
        else:
            track.last_z, track.last_mask, track.before_z, track.before_mask = None, None, None, None
            track.start_nodes = []
    order = _slices(state, reverse)
    keys = _key_slices(state, order, reverse)
    later = set(_slices(state, reverse=True)) if not reverse else set()
    gap: list[int] = []
    for z in order:
        if z not in keys:
            gap.append(z)
            continue
        yield from _key_step(state, predictor, z, gap, reverse, later)
        gap = []
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
                 box_labels: np.ndarray | None = None, rule: Rule = Rule()) -> None:
    """Propagate (K, 6) volume boxes in one view of ``volume`` (D, H, W) uint8 and paint the
    masks into ``labels`` (D, H, W) uint16 (later box wins).

    ``box_labels`` gives each box's label (default: row + 1).
    """
    perm = VIEWS[view]
    box_labels = np.arange(1, len(boxes) + 1) if box_labels is None else box_labels
    state = init_state(volume.transpose(perm), margin, cache_bytes, rule)
    for label, box in zip(box_labels, view_boxes(boxes, view)):
        add_box(state, int(label), box)
    target = labels.transpose(perm)
    for reverse in (False, True):
        for z, masks in propagate(state, predictor, reverse):
            for label, mask in masks:
                mask.paint(target[z], label)


def segment_volume(predictor: SlicePredictor, volume: np.ndarray, boxes: np.ndarray,
                   box_labels: np.ndarray | None = None, views: tuple[str, ...] = ("axial",),
                   margin: float = 3.0, cache_bytes: int = DEFAULT_CACHE_BYTES, rule: Rule = Rule()) -> np.ndarray:
    """Label volume (D, H, W) uint16 for (K, 6) boxes (inside the volume, see
    :func:`infer.boxes.prepare_boxes`): one view, or the majority vote of three views."""
    if len(views) not in (1, 3):
        raise ValueError(f"segment_volume takes one view or three to vote, got {views}")
    results = []
    for view in views:
        labels = np.zeros(volume.shape, np.uint16)
        segment_view(predictor, volume, boxes, labels, view, margin, cache_bytes, box_labels, rule)
        results.append(labels)
    return results[0] if len(results) == 1 else majority_vote(*results)
