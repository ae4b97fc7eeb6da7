"""Check exported files against PyTorch: the export's own acceptance test.

Tolerance (absolute, float32): 1e-3 on decoder logits and IoU, 1e-4 relative to the largest
embedding value on the encoder output. The backends compute in float32 like PyTorch but fuse
and reorder operations (LayerNorm, softmax, GELU approximations inside kernels), which moves
results by a few ulp per layer; measured differences are 1e-6..1e-4. A logit error of 1e-3
can flip the ``> 0`` threshold only where |logit| < 1e-3, a vanishing share of pixels, so
masks stay equal for practical purposes; anything larger means a wrong graph, not rounding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from infer.model_spec import (DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, POINTS_DECODER,
                              POINTS_DECODER_INPUTS)
from infer.session import Session, host_threads, open_session
from train.export_graphs import example_prompts
from train.models import PromptableSegmenter

TOLERANCE = {"logits_abs": 1e-3, "iou_abs": 1e-3, "embedding_rel": 1e-4}
BOX_COUNTS = (1, 4, 17)
PROMPT_SHAPES = ((1, 2), (3, 5), (6, 1))
"""(prompts, points) of the points-decoder checks: every label kind, masks on and off."""


class VerificationError(RuntimeError):
    """An exported backend disagrees with PyTorch beyond :data:`TOLERANCE`."""


_MODEL_FILES = {"onnxruntime": ".onnx", "openvino": ".xml"}


def _runners(folder: Path) -> dict[str, tuple[Callable[..., np.ndarray], Callable[..., list[np.ndarray]]]]:
    """backend -> (run_encoder(image), run_decoder(embedding, boxes)), through the runtime's own sessions."""
    runners = {}
    for backend, suffix in _MODEL_FILES.items():
        encoder = open_session(folder / f"encoder{suffix}", backend, host_threads())
        decoder = open_session(folder / f"decoder{suffix}", backend, host_threads())

        def run_encoder(image: np.ndarray, encoder: Session = encoder) -> np.ndarray:
            return encoder.run({ENCODER_INPUT: image})[ENCODER_OUTPUT]

        def run_decoder(emb: np.ndarray, boxes: np.ndarray, decoder: Session = decoder) -> list[np.ndarray]:
            out = decoder.run({DECODER_INPUTS[0]: emb, DECODER_INPUTS[1]: boxes})
            return [out[name] for name in DECODER_OUTPUTS]

        runners[backend] = (run_encoder, run_decoder)
    return runners


def _random_boxes(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    corners = np.sort(rng.uniform(0, size - 1, size=(n, 2, 2)), axis=1)  # sort per axis: min then max
    return np.floor(corners.transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]).astype(np.float32)


def _verify_points(model: PromptableSegmenter, image_size: int, folder: Path, emb: np.ndarray,
                   low_res: int) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The points decoder of both backends against PyTorch, on :data:`PROMPT_SHAPES`."""
    cases = []
    with torch.no_grad():
        for seed, (batch, points) in enumerate(PROMPT_SHAPES):
            prompts = example_prompts(batch, points, low_res, image_size, seed)
            masks, iou = model.decode_prompts(torch.from_numpy(emb), *prompts)
            cases.append(([emb, *(t.numpy() for t in prompts)], masks.numpy(), iou.numpy()))
    worst, failures = {}, []
    for backend, suffix in _MODEL_FILES.items():
        session = open_session(folder / f"{POINTS_DECODER}{suffix}", backend, host_threads())
        diffs = {"logits_abs": 0.0, "iou_abs": 0.0}
        for feeds, want_masks, want_iou in cases:
            out = session.run(dict(zip(POINTS_DECODER_INPUTS, feeds)))
            got_masks, got_iou = out[DECODER_OUTPUTS[0]], out[DECODER_OUTPUTS[1]]
            if got_masks.shape != want_masks.shape or got_iou.shape != want_iou.shape:
                failures.append(f"{backend} points decoder: shapes {got_masks.shape}, {got_iou.shape} instead of "
                                f"{want_masks.shape}, {want_iou.shape}")
                continue
            diffs["logits_abs"] = max(diffs["logits_abs"], float(np.abs(got_masks - want_masks).max()))
            diffs["iou_abs"] = max(diffs["iou_abs"], float(np.abs(got_iou - want_iou).max()))
        worst[backend] = diffs
        failures += [f"{backend} points decoder {key} = {value:.3g} > {TOLERANCE[key]:g}"
                     for key, value in diffs.items() if value > TOLERANCE[key]]
    return worst, failures


def verify_folder(model: PromptableSegmenter, image_size: int, folder: Path) -> dict:
    """Compare both backends with PyTorch (and the points decoder, when the model has one);
    returns the differences, raises :class:`VerificationError`."""
    rng = np.random.default_rng(20240601)
    image = rng.uniform(0, 1, size=(1, 3, image_size, image_size)).astype(np.float32)
    with torch.no_grad():
        ref_emb = model.embed(torch.from_numpy(image)).numpy()
        ref = {}
        for n in BOX_COUNTS:
            boxes = _random_boxes(rng, n, image_size)
            logits, scores = model.decode(torch.from_numpy(ref_emb), torch.from_numpy(boxes))
            ref[n] = (boxes, logits.numpy(), scores.numpy())
    scale = float(np.abs(ref_emb).max())
    worst: dict[str, dict[str, float]] = {}
    failures = []
    for backend, (run_enc, run_dec) in _runners(folder).items():
        emb = run_enc(image)
        diffs = {"embedding_rel": float(np.abs(emb - ref_emb).max()) / scale, "logits_abs": 0.0, "iou_abs": 0.0}
        for n, (boxes, masks, iou) in ref.items():
            got_masks, got_iou = run_dec(ref_emb, boxes)
            if got_masks.shape != masks.shape or got_iou.shape != iou.shape:
                failures.append(f"{backend} decoder with {n} boxes: shapes {got_masks.shape}, {got_iou.shape} "
                                f"instead of {masks.shape}, {iou.shape}")
                continue
            diffs["logits_abs"] = max(diffs["logits_abs"], float(np.abs(got_masks - masks).max()))
            diffs["iou_abs"] = max(diffs["iou_abs"], float(np.abs(got_iou - iou).max()))
        worst[backend] = diffs
        failures += [f"{backend} {key} = {value:.3g} > {TOLERANCE[key]:g}"
                     for key, value in diffs.items() if value > TOLERANCE[key]]
    masks_shape = ref[BOX_COUNTS[0]][1].shape
    verification: dict = {"tolerance": TOLERANCE, "box_counts": list(BOX_COUNTS), "max_abs_diff": worst}
    if model.accepts_points:
        points_worst, points_failures = _verify_points(model, image_size, folder, ref_emb, int(masks_shape[-1]))
        failures += points_failures
        verification["points_decoder"] = {"prompt_shapes": [list(s) for s in PROMPT_SHAPES],
                                          "max_abs_diff": points_worst}
    if failures:
        raise VerificationError(f"{folder}: exported model differs from PyTorch: " + "; ".join(failures))
    return {"embedding_shape": list(ref_emb.shape), "low_res_size": int(masks_shape[-1]),
            "verification": verification}
