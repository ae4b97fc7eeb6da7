"""A predictor that encodes one image once and answers any number of box prompts.

Shape of SAM's ``SamPredictor``: :meth:`SlicePredictor.set_image` runs the encoder and keeps the
embedding (an owned copy) and the image geometry; :meth:`SlicePredictor.predict` maps boxes from
original pixels to model coordinates (the one place that does, via :mod:`infer.preprocess`),
decodes all of them in one batched decoder call and turns the chosen low-res mask of each into a
binary mask in original pixels (:mod:`infer.postprocess`). :meth:`SlicePredictor.predict_prompts`
does the same for interactive prompts (clicks, an optional box and an optional low-res mask) on
the model's points decoder. Strategies (2D, 3D propagation, interactive refinement) receive a
predictor; they never touch models or sessions.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from infer.embedding_store import EmbeddingStore
from infer.errors import ModelError
from infer.model_spec import (DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, POINTS_DECODER,
                              POINTS_DECODER_INPUTS)
from infer.models import LoadedModel
from infer.postprocess import RegionMask, mask_from_logits, mask_to_logits, valid_low_res
from infer.preprocess import Geometry, boxes_to_model, box_scale, geometry_for, points_to_model, preprocess_image
from infer.session import Session

__all__ = ["CallStats", "ImageState", "Prompt", "SlicePredictor", "DEFAULT_MAX_BATCH"]

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
    stored_embeddings: int = 0


@dataclass(frozen=True)
class ImageState:
    """What :meth:`SlicePredictor.set_image` computed: the (1, 256, 64, 64) float32 embedding and
    the geometry of the image it came from. Cache it to decode the same image again later."""

    embedding: np.ndarray
    geometry: Geometry


@dataclass(frozen=True)
class Prompt:
    """One interactive prompt in original pixels of the current image: clicks ``points`` (N, 2)
    xy with ``labels`` (N,) 1 foreground / 0 background, an optional ``box`` (4,) XYXY, and an
    optional mask prompt ``mask`` (L, L) low-res logits in model space (a decoder output, or
    :meth:`SlicePredictor.mask_prompt` of a binary mask)."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None
    mask: np.ndarray | None = None


PADDING_LABEL = -1.0
BOX_LABELS = (2.0, 3.0)


class SlicePredictor:
    """Encoder once per image, batched decoder per set of boxes; :attr:`stats` counts both."""

    def __init__(self, model: LoadedModel, max_batch: int = DEFAULT_MAX_BATCH,
                 store: EmbeddingStore | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.spec = model.spec
        self.max_batch = max_batch
        self.store = store
        self._state: ImageState | None = None
        self.stats = CallStats()

    @property
    def image_state(self) -> ImageState | None:
        return self._state

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image``: (H, W) grey or (H, W, 3) uint8; with a :attr:`store`, an embedding
        stored for the same pixels is read instead, and a new one is stored."""
        image = np.ascontiguousarray(image)
        store = self.store
        key = store.key(image) if store is not None else ""
        stored = store.load(key) if store is not None else None
        if stored is not None:
            self.stats.stored_embeddings += 1
            self._state = ImageState(stored, geometry_for(self.spec.preprocess, *image.shape[:2]))
            return
        tensor, geometry = preprocess_image(image, self.spec.preprocess)
        start = time.perf_counter()
        if self.stats.first_encoder_time is None:
            self.stats.first_encoder_time, self.stats.first_encoder_cpu = start, time.process_time()
        outputs = self.model.encoder.run({ENCODER_INPUT: tensor})
        self.stats.encoder_seconds += time.perf_counter() - start
        self.stats.encoder_calls += 1
        self._state = ImageState(outputs[ENCODER_OUTPUT], geometry)
        if store is not None:
            store.save(key, self._state.embedding)

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
        return self._run_decoder(self.model.decoder, {DECODER_INPUTS[0]: state.embedding, DECODER_INPUTS[1]: model_boxes})

    def _run_decoder(self, decoder: Session, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One decoder call, counted in :attr:`stats`: each prompt's chosen low-res logits
        (mask 0 for ``mask_selection == "single"``, else the highest predicted IoU, first on
        ties) and that mask's predicted IoU."""
        start = time.perf_counter()
        outputs = decoder.run(feeds)
        self.stats.decoder_seconds += time.perf_counter() - start
        logits, iou = outputs[DECODER_OUTPUTS[0]], outputs[DECODER_OUTPUTS[1]]
        self.stats.decoder_calls += 1
        self.stats.decoded_boxes += len(logits)
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

    def _require_points_decoder(self) -> Session:
        if self.model.points_decoder is None:
            raise ModelError(f"{self.spec.folder}: this model folder has no {POINTS_DECODER} graph, so it decodes "
                             "boxes only; re-export it with `python -m train.export` to use clicks")
        return self.model.points_decoder

    def mask_prompt(self, mask: np.ndarray, scale: float = 8.0) -> np.ndarray:
        """An (H, W) binary mask of the current image as (L, L) low-res logits for :class:`Prompt`
        (``+scale`` inside, ``-scale`` outside, :func:`infer.postprocess.mask_to_logits`)."""
        geometry = self._require_state().geometry
        low_res = self.spec.low_res_size
        return mask_to_logits(mask, valid_low_res(self.spec.preprocess, geometry, low_res), low_res, scale)

    def _tokens(self, prompt: Prompt, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """SAM's sparse prompt: the clicks, then the box as corners 2 / 3, or one padding point
        (label -1) when there is no box, as SAM's predictor does."""
        coords = [points_to_model(prompt.points, self.spec.preprocess, geometry)]
        labels = [np.asarray(prompt.labels, np.float32).reshape(-1)]
        if prompt.box is not None:
            coords.append(boxes_to_model(prompt.box, self.spec.preprocess, geometry).reshape(2, 2))
            labels.append(np.array(BOX_LABELS, np.float32))
        else:
            coords.append(np.zeros((1, 2), np.float32))
            labels.append(np.array([PADDING_LABEL], np.float32))
        return np.concatenate(coords).astype(np.float32), np.concatenate(labels)

    def predict_prompts(self, prompts: Sequence[Prompt]) -> tuple[list[RegionMask | None], np.ndarray, np.ndarray]:
        """Decode interactive prompts on the points decoder; prompts with the same number of
        tokens share one decoder call (padding them would add tokens and change the result).

        Returns:
            Binary masks in original pixels (None = empty), the predicted IoU (B,) and the chosen
            low-res logits (B, L, L), which can be fed back as the next :attr:`Prompt.mask`.

        Raises:
            RuntimeError: no image has been set.
            ModelError: the model folder has no points decoder.
        """
        state = self._require_state()
        decoder = self._require_points_decoder()
        low_res = self.spec.low_res_size
        logits = np.zeros((len(prompts), low_res, low_res), np.float32)
        iou = np.zeros(len(prompts), np.float32)
        tokens = [self._tokens(p, state.geometry) for p in prompts]
        for count in sorted({len(t[1]) for t in tokens}):
            group = [i for i, t in enumerate(tokens) if len(t[1]) == count]
            masks = np.zeros((len(group), 1, low_res, low_res), np.float32)
            has_mask = np.zeros(len(group), np.float32)
            for row, i in enumerate(group):
                if prompts[i].mask is not None:
                    masks[row, 0], has_mask[row] = prompts[i].mask, 1.0
            feeds = (state.embedding, np.stack([tokens[i][0] for i in group]), np.stack([tokens[i][1] for i in group]),
                     masks, has_mask)
            logits[group], iou[group] = self._run_decoder(decoder, dict(zip(POINTS_DECODER_INPUTS, feeds)))
        valid = valid_low_res(self.spec.preprocess, state.geometry, low_res)
        out_shape = (state.geometry.orig_h, state.geometry.orig_w)
        return [mask_from_logits(one, valid, out_shape) for one in logits], iou, logits
