"""The strategies a route can name: name -> how one case's boxes become labels.

The registry is the one place a strategy name is spelled: the routing table is validated against
it and the pipeline calls what it finds there. Each strategy receives a predictor (never a model),
the case's image or volume and its prepared boxes and labels, and returns uint16 labels of the
image's spatial shape.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from challenge.names import Dimension
from infer.predictor import SlicePredictor
from infer.volume import IOU_PICK, IOU_PICK_STRIDE3, VIEWS, Rule, segment_volume
from infer.zoom import paint_zoomed, zoom_selection

__all__ = ["Strategy", "STRATEGIES", "strategies_for", "segment_image"]

SegmentFn = Callable[[SlicePredictor, np.ndarray, np.ndarray, np.ndarray, float, int], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """A named way to segment cases of one dimension.

    ``segment(predictor, imgs, boxes, labels, margin, cache_bytes)``: ``margin`` (model-input
    pixels) and ``cache_bytes`` (slice embeddings kept) matter only to 3D propagation.
    """

    dimension: Dimension
    segment: SegmentFn


def segment_image(predictor: SlicePredictor, image: np.ndarray, boxes: np.ndarray,
                  box_labels: np.ndarray) -> np.ndarray:
    """(H, W) uint16 labels for an (H, W, 3) image and (K, 4) boxes inside it: one encoder call,
    boxes decoded in batches of ``predictor.max_batch``."""
    labels = np.zeros(image.shape[:2], np.uint16)
    if len(boxes) == 0:
        return labels
    predictor.set_image(image)
    for start in range(0, len(boxes), predictor.max_batch):
        chunk = slice(start, start + predictor.max_batch)
        for label, mask in zip(box_labels[chunk], predictor.predict(boxes[chunk])):
            if mask is not None:
                mask.paint(labels, int(label))
    return labels


def _image(predictor: SlicePredictor, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
           margin: float, cache_bytes: int) -> np.ndarray:
    return segment_image(predictor, image, boxes, labels)


def _image_zoom(predictor: SlicePredictor, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                margin: float, cache_bytes: int) -> np.ndarray:
    zoomed = zoom_selection(predictor, image.shape[:2], boxes)
    segs = segment_image(predictor, image, boxes[~zoomed], labels[~zoomed])
    paint_zoomed(predictor, image, boxes[zoomed], labels[zoomed], segs)
    return segs


def _propagation(views: tuple[str, ...], rule: Rule = Rule()) -> SegmentFn:
    def segment(predictor: SlicePredictor, volume: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                margin: float, cache_bytes: int) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros(volume.shape, np.uint16)
        return segment_volume(predictor, volume, boxes, labels, views, margin, cache_bytes, rule)

    return segment


STRATEGIES: dict[str, Strategy] = {
    "image": Strategy("2D", _image),  # one encoder call per image
    "image_zoom": Strategy("2D", _image_zoom),  # small boxes on an enlarged crop (infer.zoom)
    "axial": Strategy("3D", _propagation(("axial",))),  # slice propagation (infer.volume)
    "three_view_vote": Strategy("3D", _propagation(tuple(VIEWS))),  # every view, then a vote
    # each slice keeps the better-rated mask of the propagated prompt and the 3D box (docs/propagation.md)
    "axial_iou": Strategy("3D", _propagation(("axial",), IOU_PICK)),
    # axial_iou on every third slice, agreeing gaps interpolated (docs/propagation.md)
    "axial_iou_stride3": Strategy("3D", _propagation(("axial",), IOU_PICK_STRIDE3)),
}


def strategies_for(dimension: str) -> list[str]:
    """Names of the strategies that segment ``dimension`` cases, in registry order."""
    return [name for name, strategy in STRATEGIES.items() if strategy.dimension == dimension]
