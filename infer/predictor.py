"""A predictor that encodes one image once and answers any number of box prompts.

Shape of SAM's ``SamPredictor``: :meth:`SlicePredictor.set_image` runs the encoder and keeps the
embedding (an owned copy) and the image geometry; :meth:`SlicePredictor.predict` maps boxes from
original pixels to model coordinates (the one place that does, via :mod:`infer.preprocess`),
decodes all of them in one batched decoder call and turns the chosen low-res mask of each into a
binary mask in original pixels (:mod:`infer.postprocess`). Strategies (2D, 3D propagation)
receive a predictor; they never touch models or sessions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from infer.model_spec import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
from infer.models import LoadedModel
from infer.postprocess import RegionMask, mask_from_logits, valid_low_res
from infer.preprocess import Geometry, boxes_to_model, box_scale, preprocess_image

__all__ = ["CallStats", "ImageState", "SlicePredictor", "DEFAULT_MAX_BATCH"]

DEFAULT_MAX_BATCH = 8
"""Boxes per decoder call for callers that chunk (2D images with many boxes). Measured on the
LiteMedSAM decoder (2 CPU threads): the time per box hardly falls with the batch size, while
peak memory grows by about 40 MB (OpenVINO) to 60 MB (ONNX Runtime) per box in the batch, so
larger batches only cost memory."""


@dataclass
class CallStats:
    """Work a predictor did since it was made, for logs, the efficiency CSV and benchmarks.

    ``encoder_seconds`` / ``decoder_seconds`` are wall time inside the sessions;
    ``first_encoder_time`` / ``first_encoder_cpu`` are ``time.perf_counter()`` /
    ``time.process_time()`` at the first encoder call (None before it).
    """

    encoder_calls: int = 0
    decoder_calls: int = 0
    decoded_boxes: int = 0
    encoder_seconds: float = 0.0
    decoder_seconds: float = 0.0
    first_encoder_time: float | None = None
    first_encoder_cpu: float | None = None


@dataclass(frozen=True)
class ImageState:
    """What :meth:`SlicePredictor.set_image` computed: the (1, 256, 64, 64) float32 embedding and
    the geometry of the image it came from. Cache it to decode the same image again later."""

    embedding: np.ndarray
    geometry: Geometry


class SlicePredictor:
    """Encoder once per image, batched decoder per set of boxes; :attr:`stats` counts both."""

    def __init__(self, model: LoadedModel, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.spec = model.spec
        self.max_batch = max_batch
        self._state: ImageState | None = None
        self.stats = CallStats()

    @property
    def image_state(self) -> ImageState | None:
        return self._state

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image``: (H, W) grey or (H, W, 3) uint8."""
        tensor, geometry = preprocess_image(np.ascontiguousarray(image), self.spec.preprocess)
        start = time.perf_counter()
        if self.stats.first_encoder_time is None:
            self.stats.first_encoder_time, self.stats.first_encoder_cpu = start, time.process_time()
        outputs = self.model.encoder.run({ENCODER_INPUT: tensor})
        self.stats.encoder_seconds += time.perf_counter() - start
        self.stats.encoder_calls += 1
        self._state = ImageState(outputs[ENCODER_OUTPUT], geometry)

    def restore(self, state: ImageState) -> None:
        """Make an earlier :attr:`image_state` current again, without encoding."""
        self._state = state

    def reset_image(self) -> None:
        self._state = None

    def _require_state(self) -> ImageState:
        if self._state is None:
            raise RuntimeError("SlicePredictor.predict called before set_image: there is no image embedding")
        return self._state

    def margin_pixels(self, model_pixels: float) -> tuple[float, float]:
        """``model_pixels`` in the model input, as (x, y) original pixels of the current image."""
        sx, sy = box_scale(self.spec.preprocess, self._require_state().geometry)
        return model_pixels / sx, model_pixels / sy

    def predict_logits(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode (B, 4) XYXY boxes in original pixels in ONE decoder call.

        Returns:
            The chosen low-res logits (B, L, L) float32 and their predicted IoU (B,): mask 0 for
            ``mask_selection == "single"``, the highest predicted IoU (first on ties) for
            ``"best_iou"``.

        Raises:
            RuntimeError: no image has been set.
        """
        state = self._require_state()
        model_boxes = boxes_to_model(boxes, self.spec.preprocess, state.geometry)
        start = time.perf_counter()
        outputs = self.model.decoder.run({DECODER_INPUTS[0]: state.embedding, DECODER_INPUTS[1]: model_boxes})
        self.stats.decoder_seconds += time.perf_counter() - start
        self.stats.decoder_calls += 1
        self.stats.decoded_boxes += len(model_boxes)
        logits, iou = outputs[DECODER_OUTPUTS[0]], outputs[DECODER_OUTPUTS[1]]
        choice = np.zeros(len(logits), np.intp) if self.spec.mask_selection == "single" else iou.argmax(1)
        rows = np.arange(len(logits))
        return logits[rows, choice], iou[rows, choice]

    def predict(self, boxes: np.ndarray) -> list[RegionMask | None]:
        """Binary masks in original pixels for (B, 4) boxes (one decoder call); None = empty."""
        return self.predict_scored(boxes)[0]

    def predict_scored(self, boxes: np.ndarray) -> tuple[list[RegionMask | None], np.ndarray]:
        """:meth:`predict` and the (B,) predicted IoU of each chosen mask (the model's own estimate
        of its quality, which lets a caller choose between prompts)."""
        if len(boxes) == 0:
            self._require_state()
            return [], np.zeros(0, np.float32)
        logits, iou = self.predict_logits(boxes)
        geometry = self._require_state().geometry
        valid = valid_low_res(self.spec.preprocess, geometry, logits.shape[-1])
        out_shape = (geometry.orig_h, geometry.orig_w)
        return [mask_from_logits(one, valid, out_shape) for one in logits], iou
