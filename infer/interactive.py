"""Interactive refinement: the CVPR 2025 input (boxes as dicts, clicks, the previous prediction)
on the same predictor and propagation (docs/interactive.md).

One run is one step of the evaluator's six, in a fresh process:

- **Box step** (``boxes``, no ``clicks``): each class is a track that starts on its ``z_mid``
  slice with the given 2D box and is propagated to ``z_min`` and ``z_max``
  (:mod:`infer.volume`, the route's rule; the 2D box bounds the prompt on every slice as the 3D
  box's xy does in 2024).
- **Click step** (``clicks``): ``prev_pred`` is kept, and only the classes that got a new click
  change. Such a class is re-decoded on the clicked slice with all its clicks on that slice, a
  box (the given one on ``z_mid``, else the bounding box of its previous mask there grown to hold
  the clicks) and, as an option, its previous mask on that slice as the mask prompt. By default
  (``local_edits``) the new mask only edits the previous one at the click: a fg click adds the
  new mask's region holding it, a bg click removes the previous mask's region around it that the
  new mask drops, both within ``edit_reach`` of the click; nothing else changes (measured best
  with the box-trained official weights, docs/interactive.md). Otherwise, and for a class with
  no previous mask, the new mask is propagated outward slice by slice, each slice prompted by its
  neighbour's new mask and its own clicks, **only while the masks change**: where the new mask
  agrees with the previous one (Dice >= ``agree_dice``) the walk stops and the rest of the
  previous prediction stays. A class without a box (click-only case) starts the same way from
  its clicks (points only).
- ``refine_rounds`` > 0 (M-SAM style): the clicked slice is decoded again that many times with
  its own low-res logits as the mask prompt.

Slices are encoded at most once per process (:class:`EmbeddingCache`), so a click step costs its
changed slices, not the volume. Class k (0-based entry of ``boxes``/``clicks``) is label k + 1;
a later class wins where masks overlap, as in 2024. A 2D case is a one-slice volume (1, H, W).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from challenge.interactive import ClassBox, InteractiveCase
from infer.embedding_store import DEFAULT_STORE_BYTES
from infer.interpolate import mask_agreement
from infer.postprocess import RegionMask
from infer.predictor import ImageState, Prompt, SlicePredictor
from infer.volume import DEFAULT_CACHE_BYTES, IOU_PICK, Rule, add_box, init_state, propagate

__all__ = ["InteractiveOptions", "EmbeddingCache", "CLICK_STEPS", "is_last_step", "segment_interactive", "box_step",
           "click_step"]

CLICK_STEPS = 5
"""Click steps after the box step in the 2025 evaluator (``CVPR25_iter_eval.py``: six runs per case)."""


def is_last_step(case: InteractiveCase) -> bool:
    """Whether ``case`` is the evaluator's last step of its case: every class's ``clicks_order``
    has one entry per click step (a class without error gets ``None``)."""
    order = case.clicks_order or ()
    return len(order) > 0 and all(len(steps) >= CLICK_STEPS for steps in order)


@dataclass(frozen=True)
class InteractiveOptions:
    """``mask_prompt``: give the clicked slice's previous mask as the mask prompt;
    ``refine_rounds``: decode the clicked slice again that many times with its own logits as the
    mask prompt; ``local_edits`` (the default, chosen by measurement in docs/interactive.md): a
    click only edits its own slice near itself (a fg click adds the new mask's region holding the
    click, a bg click removes the previous mask's region around the click that the new mask drops;
    no re-propagation), since with box-trained weights the new mask is often worse than the
    previous one away from the click; False re-propagates the new mask while it changes;
    ``edit_reach``: a local edit changes only pixels within ``edit_reach`` times the click's
    distance to the previous mask's edge (the evaluator clicks the centre of an error region, so
    that distance is about the error's half-width; 0: the whole region); ``store_bytes``: keep
    slice embeddings in the outputs folder between the steps of a case up to this size, 0 not at
    all (:mod:`infer.embedding_store`); ``agree_dice``: re-propagation stops at a slice whose new
    mask has at least this Dice with the previous one; ``mask_scale``: logit magnitude of a binary
    mask turned prompt; ``rule``: the box step's propagation rule."""

    mask_prompt: bool = False
    refine_rounds: int = 0
    local_edits: bool = True
    edit_reach: float = 3.0
    store_bytes: int = DEFAULT_STORE_BYTES
    agree_dice: float = 0.95
    mask_scale: float = 8.0
    rule: Rule = IOU_PICK

    def __post_init__(self) -> None:
        if self.refine_rounds < 0:
            raise ValueError(f"refine_rounds must be >= 0, got {self.refine_rounds}")
        if self.edit_reach < 0:
            raise ValueError(f"edit_reach must be >= 0, got {self.edit_reach}")
        if self.store_bytes < 0:
            raise ValueError(f"store_bytes must be >= 0, got {self.store_bytes}")


class EmbeddingCache:
    """Slice embeddings of one volume, each slice encoded at most once while the budget lasts
    (beyond it a slice is encoded again: memory stays bounded)."""

    def __init__(self, predictor: SlicePredictor, volume: np.ndarray, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.predictor, self.volume, self.budget = predictor, volume, budget_bytes
        self.states: dict[int, ImageState] = {}

    def use(self, z: int) -> None:
        """Make slice ``z`` the predictor's current image."""
        if z in self.states:
            self.predictor.restore(self.states[z])
            return
        self.predictor.set_image(self.volume[z])
        state = self.predictor.image_state
        assert state is not None
        if (len(self.states) + 1) * state.embedding.nbytes <= self.budget:
            self.states[z] = state


def _box_3d(box: ClassBox) -> np.ndarray:
    """The 2025 box as the 2024 layout ``[x_min, y_min, z_min, x_max, y_max, z_max]``."""
    return np.array([box.z_mid_x_min, box.z_mid_y_min, box.z_min, box.z_mid_x_max, box.z_mid_y_max, box.z_max],
                    np.float64)


def box_step(predictor: SlicePredictor, volume: np.ndarray, boxes: Sequence[ClassBox], margin: float,
             options: InteractiveOptions = InteractiveOptions()) -> np.ndarray:
    """(D, H, W) uint16 labels from the boxes alone: every class starts on its ``z_mid`` with its
    2D box and propagates to ``z_min`` and ``z_max`` (both sweeps share encoder calls)."""
    labels = np.zeros(volume.shape, np.uint16)
    state = init_state(volume, margin, rule=options.rule)
    for index, box in enumerate(boxes):
        add_box(state, index + 1, _box_3d(box), start=box.z_mid)
    for reverse in (False, True):
        for z, masks in propagate(state, predictor, reverse):
            for label, mask in masks:
                mask.paint(labels[z], label)
    return labels


def _tight(mask: np.ndarray) -> RegionMask | None:
    return RegionMask.tight(0, 0, mask)


def _grown_box(mask: RegionMask | None, points: np.ndarray, labels: np.ndarray, pad: tuple[float, float],
               shape: tuple[int, int]) -> np.ndarray | None:
    """The bounding box of ``mask`` and of the foreground ``points``, grown by ``pad`` (x, y)
    original pixels, inside the slice; None when there is neither."""
    corners = [np.asarray(mask.bbox(), np.float64).reshape(2, 2)] if mask is not None else []
    fg = points[labels == 1]
    if len(fg):
        corners.append(fg.astype(np.float64))
    if not corners:
        return None
    found = np.concatenate(corners)
    lo = np.maximum(found.min(0) - pad, 0.0)
    hi = np.minimum(found.max(0) + pad, [shape[1] - 1.0, shape[0] - 1.0])
    return np.concatenate([lo, hi])


@dataclass(frozen=True)
class _ClassClicks:
    """One class's clicks as (z, x, y) rows with labels 1 / 0, and its newest click's slice (or None)."""

    zxy: np.ndarray
    labels: np.ndarray
    new_z: int | None

    def on(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        here = self.zxy[:, 0] == z
        return self.zxy[here, 1:], self.labels[here]


def _class_clicks(case: InteractiveCase, index: int) -> _ClassClicks:
    ordered = case.ordered_clicks(index)
    zxy = np.array([[z, x, y] for _, (z, y, x) in ordered], np.int64).reshape(-1, 3)
    labels = np.array([1 if kind == "fg" else 0 for kind, _ in ordered], np.int64)
    order = case.clicks_order[index] if case.clicks_order is not None else ()
    fresh = len(ordered) > 0 and (not order or order[-1] is not None)
    return _ClassClicks(zxy, labels, int(zxy[-1, 0]) if fresh else None)


def _prior(segs: np.ndarray, label: int, z: int) -> np.ndarray:
    """Where class ``label`` was before on slice ``z``, or, when it was not there (a missed
    slice), on the nearest slice where it was: the box prompt comes from it, so a click on a
    missed slice is decoded with the object's extent, not a box around the click alone."""
    present = np.flatnonzero((segs == label).any(axis=(1, 2)))
    if len(present) == 0:
        return segs[z] == label
    return segs[int(present[np.argmin(np.abs(present - z))])] == label


def _decode(predictor: SlicePredictor, prompt: Prompt, rounds: int) -> RegionMask | None:
    masks, _, logits = predictor.predict_prompts([prompt])
    for _ in range(rounds):
        prompt = Prompt(prompt.points, prompt.labels, prompt.box, logits[0])
        masks, _, logits = predictor.predict_prompts([prompt])
    return masks[0]


def _repaint(labels: np.ndarray, label: int, mask: RegionMask | None) -> None:
    """Replace ``label`` on the (H, W) slice ``labels`` by ``mask`` (a higher label already there
    is kept: the later class wins)."""
    labels[labels == label] = 0
    if mask is not None:
        mask.paint(labels, label)


def _full(mask: RegionMask | None, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, bool)
    if mask is not None:
        out[mask.top:mask.top + mask.mask.shape[0], mask.left:mask.left + mask.mask.shape[1]] = mask.mask
    return out


def _component_at(mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 8-connected region of ``mask`` holding pixel (y, x); empty when it is not set."""
    if not mask[y, x]:
        return np.zeros_like(mask)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels == labels[y, x]


def _local_edit(before: np.ndarray, new: np.ndarray, y: int, x: int, foreground: bool, reach: float = 0.0) -> np.ndarray:
    """``before`` corrected at the click (y, x) only: a foreground click adds the region of
    ``new`` holding it, a background click removes the region of ``before`` minus ``new``
    holding it; with ``reach`` > 0 only inside the disc of radius ``reach`` times the click's
    distance to the edge of ``before`` (at least 1 pixel), so a new mask that is wrong far from
    the click cannot add or remove much."""
    if foreground:
        change, click_side = _component_at(new, y, x), ~before
    else:
        change, click_side = _component_at(before & ~new, y, x), before
    if reach > 0 and before.any() and (~before).any():
        dist = cv2.distanceTransform(click_side.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        radius = reach * max(float(dist[y, x]), 1.0)
        yy, xx = np.ogrid[:before.shape[0], :before.shape[1]]
        change &= (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
    return before | change if foreground else before & ~change


def _refine_class(cache: EmbeddingCache, segs: np.ndarray, label: int, clicks: _ClassClicks,
                  box: ClassBox | None, margin: float, options: InteractiveOptions) -> int:
    """Re-decode class ``label`` on its newest click's slice and propagate the change outward
    while it lasts; returns the number of slices decoded."""
    predictor, shape = cache.predictor, segs.shape[1:]
    z0 = clicks.new_z
    assert z0 is not None
    z_lo, z_hi = (0, len(segs) - 1) if box is None else (min(box.z_min, z0), max(box.z_max, z0))
    cache.use(z0)
    pad = predictor.margin_pixels(margin)
    points, point_labels = clicks.on(z0)
    before = segs[z0] == label
    if box is not None and z0 == box.z_mid:
        prompt_box: np.ndarray | None = np.array([box.z_mid_x_min, box.z_mid_y_min, box.z_mid_x_max,
                                                  box.z_mid_y_max], np.float64)
    else:
        prior = _prior(segs, label, z0)  # nothing yet (click-only case): the clicks alone
        prompt_box = _grown_box(_tight(prior), points, point_labels, pad, shape) if prior.any() else None
    mask_in = predictor.mask_prompt(before, options.mask_scale) if options.mask_prompt and before.any() else None
    new = _decode(predictor, Prompt(points, point_labels, prompt_box, mask_in), options.refine_rounds)
    if options.local_edits and (before.any() or (segs == label).any()):  # with nothing to keep, propagate
        x, y = (int(v) for v in clicks.zxy[-1, 1:])
        edited = _local_edit(before, _full(new, shape), y, x, bool(clicks.labels[-1]), options.edit_reach)
        _repaint(segs[z0], label, _tight(edited))
        return 1
    _repaint(segs[z0], label, new)
    decoded = 1
    for step in (1, -1):
        last, z = new, z0 + step
        while last is not None and z_lo <= z <= z_hi:
            cache.use(z)
            pad = predictor.margin_pixels(margin)
            points, point_labels = clicks.on(z)
            old = segs[z] == label
            prompt_box = _grown_box(last, points, point_labels, pad, shape)
            found = _decode(predictor, Prompt(points, point_labels, prompt_box), 0)
            decoded += 1
            dice, _ = mask_agreement(found, _tight(old))
            if dice >= options.agree_dice:
                break
            _repaint(segs[z], label, found)
            last, z = found, z + step
    return decoded


def click_step(predictor: SlicePredictor, case: InteractiveCase, margin: float,
               options: InteractiveOptions = InteractiveOptions(), cache: EmbeddingCache | None = None) -> np.ndarray:
    """(D, H, W) uint16 labels: ``prev_pred`` with every class that got a new click refined."""
    volume = case.imgs
    segs = (np.zeros(volume.shape, np.uint16) if case.prev_pred is None
            else case.prev_pred.astype(np.uint16))
    cache = cache or EmbeddingCache(predictor, volume)
    for index in range(len(case.clicks or ())):
        clicks = _class_clicks(case, index)
        if clicks.new_z is None:
            continue
        box = case.boxes[index] if case.boxes is not None and index < len(case.boxes) else None
        _refine_class(cache, segs, index + 1, clicks, box, margin, options)
    return segs


def segment_interactive(predictor: SlicePredictor, case: InteractiveCase, margin: float,
                        options: InteractiveOptions = InteractiveOptions()) -> np.ndarray:
    """One step: the box step when the input has no clicks, else a click step."""
    volume = case.imgs
    if case.clicks is None:
        return box_step(predictor, volume, case.boxes or (), margin, options)
    return click_step(predictor, case, margin, options)
