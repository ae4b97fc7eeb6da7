"""2D zoom: segment a small box on an enlarged crop around it instead of on the whole image.

A box a few model-input pixels wide covers a few cells of the 64 x 64 image embedding, so a lesion
of 20 x 20 original pixels in a 512 x 512 image (10 x 10 at LiteMedSAM's 256) comes back as a blob.
Cropping a square ``ZOOM_CONTEXT`` times the box's longest side around it and encoding the crop puts
the same object at about half of the model input. Cost: one encoder call per zoomed box (LiteMedSAM
0.75 s on 2 CPU threads), hence a cap on zoomed boxes per image, smallest first; the rest are
decoded on the whole image as usual.

The thresholds below were chosen on validation draws of the demo cases; Ultrasound loses with
zoom, so the demo routing (infer/routing_demo.json) keeps it on the whole image. The scores are in
docs/results.md.
"""
from __future__ import annotations

import numpy as np

from infer.postprocess import RegionMask
from infer.predictor import SlicePredictor
from infer.preprocess import box_scale, geometry_for

__all__ = ["ZOOM_BELOW", "ZOOM_CONTEXT", "ZOOM_MIN_CROP", "ZOOM_MAX_BOXES", "zoom_selection", "zoom_window",
           "paint_zoomed"]

ZOOM_BELOW = 0.15
"""Zoom a box whose longest side spans less than this fraction of the model input side."""
ZOOM_CONTEXT = 2.0
"""Crop side / box longest side: the object fills about half the crop, with context around it."""
ZOOM_MIN_CROP = 32
"""Smallest crop side in original pixels, so a 2-pixel box is not blown up 100 times."""
ZOOM_MAX_BOXES = 16
"""Most zoomed boxes (encoder calls) per image; beyond it the larger small boxes use the whole image."""


def zoom_selection(predictor: SlicePredictor, image_shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """Bool (K,): which of the (K, 4) XYXY boxes (inclusive, original pixels) to segment zoomed."""
    spec = predictor.spec.preprocess
    sx, sy = box_scale(spec, geometry_for(spec, *image_shape))
    model_side = np.maximum((boxes[:, 2] - boxes[:, 0] + 1) * sx, (boxes[:, 3] - boxes[:, 1] + 1) * sy)
    small = np.flatnonzero(model_side < ZOOM_BELOW * spec.image_size)
    chosen = small[np.argsort(model_side[small], kind="stable")[:ZOOM_MAX_BOXES]]
    selection = np.zeros(len(boxes), bool)
    selection[chosen] = True
    return selection


def zoom_window(box: np.ndarray, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, end-exclusive: the square crop around the inclusive XYXY ``box``,
    side ``max(ZOOM_CONTEXT * longest side, ZOOM_MIN_CROP)``, centred on it, clipped to the image."""
    height, width = image_shape
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    side = max(ZOOM_CONTEXT * max(x_max - x_min + 1, y_max - y_min + 1), ZOOM_MIN_CROP)
    cx, cy = (x_min + x_max + 1) / 2, (y_min + y_max + 1) / 2
    x0, y0 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
    x1, y1 = min(width, int(np.ceil(cx + side / 2))), min(height, int(np.ceil(cy + side / 2)))
    return x0, y0, x1, y1


def paint_zoomed(predictor: SlicePredictor, image: np.ndarray, boxes: np.ndarray, box_labels: np.ndarray,
                 labels: np.ndarray) -> None:
    """Segment each (4,) box of ``boxes`` on its own crop (one encoder call each) and paint it into
    the (H, W) ``labels`` with its label; a higher label already there wins, as everywhere."""
    shape = image.shape[:2]
    for box, label in zip(boxes, box_labels):
        x0, y0, x1, y1 = zoom_window(box, shape)
        predictor.set_image(image[y0:y1, x0:x1])
        local = np.asarray(box, np.float64) - np.array([x0, y0, x0, y0], np.float64)
        mask = predictor.predict(local[None])[0]
        if mask is not None:
            RegionMask(mask.top + y0, mask.left + x0, mask.mask).paint(labels, int(label))
