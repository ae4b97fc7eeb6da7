"""Image and box pre-processing shared by inference and training.

One definition, imported by ``train`` as well, so the two can never drift apart. Every
rule here is the one the official weights were trained with (docs/reference_systems.md section 3):

* LiteMedSAM: resize the longest side to 256 with ``INTER_AREA``, min-max the resized image
  to [0, 1] over all channels jointly, zero-pad bottom/right; boxes scaled by
  ``256 / max(H, W)`` and truncated toward zero (the baseline's rounding).
* EfficientSAM: stretch to 1024 x 1024 (bilinear, half-pixel centres, like PyTorch's
  ``align_corners=False``), ``x / 255`` then ImageNet mean/std; boxes scaled per axis
  (``x * 1024 / W``, ``y * 1024 / H``) without rounding.

A model folder's ``model.json`` stores a :class:`PreprocessSpec`; nothing here branches on
model names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

ResizeMode = Literal["longest_side", "stretch"]
Interpolation = Literal["area", "linear"]
Normalization = Literal["minmax", "scale255_meanstd"]
BoxRounding = Literal["floor", "none"]

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How an original image and its boxes are mapped into a model's input space."""

    image_size: int
    resize: ResizeMode
    interpolation: Interpolation
    normalization: Normalization
    box_rounding: BoxRounding
    mean: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))

    def __post_init__(self) -> None:
        choices = {
            "resize": ("longest_side", "stretch"),
            "interpolation": tuple(_CV2_INTERPOLATION),
            "normalization": ("minmax", "scale255_meanstd"),
            "box_rounding": ("floor", "none"),
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"preprocessing {name}={value!r} is not one of {list(valid)}")
        if self.image_size <= 0:
            raise ValueError(f"preprocessing image_size must be positive, got {self.image_size}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PreprocessSpec":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        return cls(**known)


LITEMEDSAM_PREPROCESS = PreprocessSpec(
    image_size=256, resize="longest_side", interpolation="area", normalization="minmax", box_rounding="floor"
)
EFFICIENTSAM_PREPROCESS = PreprocessSpec(
    image_size=1024,
    resize="stretch",
    interpolation="linear",
    normalization="scale255_meanstd",
    box_rounding="none",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)


@dataclass(frozen=True)
class Geometry:
    """Where an original (H, W) image lands inside the S x S model input.

    ``resized_h`` x ``resized_w`` is the valid (unpadded) region at the top-left corner.
    """

    orig_h: int
    orig_w: int
    size: int
    resized_h: int
    resized_w: int


def geometry_for(spec: PreprocessSpec, height: int, width: int) -> Geometry:
    """Model-space geometry of an image of ``height`` x ``width`` pixels."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image must have a positive size, got {height} x {width}")
    size = spec.image_size
    if spec.resize == "stretch":
        return Geometry(height, width, size, size, size)
    scale = size / max(height, width)
    # Round half up in float64, as the baseline does: int(x * scale + 0.5).
    # A side never rounds to 0 (a 1 x 1000 image): OpenCV cannot resize to it.
    return Geometry(height, width, size, max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))


def box_scale(spec: PreprocessSpec, geometry: Geometry) -> tuple[float, float]:
    """Multipliers (x, y) from original pixels to model coordinates."""
    if spec.resize == "stretch":
        return spec.image_size / geometry.orig_w, spec.image_size / geometry.orig_h
    s = spec.image_size / max(geometry.orig_h, geometry.orig_w)
    return s, s


def boxes_to_model(boxes: np.ndarray, spec: PreprocessSpec, geometry: Geometry) -> np.ndarray:
    """Scale (N, 4) XYXY boxes from original pixels to model coordinates (float32).

    Rounding follows ``spec.box_rounding``: ``floor`` reproduces the baseline's ``int(b * s)``
    for the non-negative coordinates the pipeline passes in.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = box_scale(spec, geometry)
    scaled = boxes * np.array([sx, sy, sx, sy])
    if spec.box_rounding == "floor":
        scaled = np.trunc(scaled)
    return scaled.astype(np.float32)


def points_to_model(points: np.ndarray, spec: PreprocessSpec, geometry: Geometry) -> np.ndarray:
    """Scale (N, 2) xy click positions from original pixels to model coordinates (float32),
    exactly as box corners are scaled (:func:`boxes_to_model`): a click on a box's corner pixel
    lands on the corner the model sees for that box."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return boxes_to_model(np.concatenate([points, points], 1), spec, geometry)[:, :2]


def _to_channels_last(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image[:, :, None]
    if image.ndim == 3 and image.shape[2] in (1, 3):
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def resize_for_model(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize an (H, W[, C]) image to the spec's resized size with the spec's interpolation.

    The one place the spec's interpolation name becomes an OpenCV flag; training's cache uses it
    too, so its images are resized exactly as inference resizes them.
    """
    geometry = geometry_for(spec, image.shape[0], image.shape[1])
    return cv2.resize(image, (geometry.resized_w, geometry.resized_h),
                      interpolation=_CV2_INTERPOLATION[spec.interpolation])


def preprocess_image(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Geometry]:
    """Turn an (H, W) grey or (H, W, 3) uint8 image into the encoder input.

    Returns the (1, 3, S, S) float32 tensor and the :class:`Geometry` needed to map boxes in
    and masks out. A grey image is processed as one channel and replicated at the end, which
    equals replicating first (resize and min-max act per pixel and jointly).
    """
    image = _to_channels_last(np.asarray(image))
    height, width = image.shape[:2]
    geometry = geometry_for(spec, height, width)
    size = spec.image_size
    if spec.normalization == "scale255_meanstd":
        source = image.astype(np.float32)
    else:
        source = image  # INTER_AREA on uint8, exactly as the baseline
    resized = resize_for_model(source, spec)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    resized = resized.astype(np.float32)
    if spec.normalization == "minmax":
        lo, hi = float(resized.min()), float(resized.max())
        resized = (resized - lo) / max(hi - lo, 1e-8)
    else:
        resized = resized / 255.0
    channels = np.broadcast_to(resized, (geometry.resized_h, geometry.resized_w, 3))
    if spec.normalization == "scale255_meanstd":
        channels = (channels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    tensor = np.zeros((1, 3, size, size), dtype=np.float32)
    tensor[0, :, : geometry.resized_h, : geometry.resized_w] = np.transpose(channels, (2, 0, 1))
    return tensor, geometry
