"""The sidecar (``model.json``) that makes an exported model folder self-describing.

``train.export`` writes it; ``infer`` reads it and derives everything (pre-processing, box
scaling, mask post-processing, tensor names) from it. Layout of a model folder::

    work_dir/<name>/
        model.json
        encoder.onnx   encoder.xml + encoder.bin     (OpenVINO IR)
        decoder.onnx   decoder.xml + decoder.bin
        decoder_points.onnx  decoder_points.xml + .bin   (optional: point and mask prompts)

Encoder: input ``image`` (1, 3, S, S) float32 (already pre-processed), output
``image_embeddings`` (1, 256, 64, 64). Decoder: inputs ``image_embeddings`` (1, 256, 64, 64)
and ``boxes`` (B, 4) float32 XYXY in model coordinates, B dynamic; outputs ``low_res_masks``
(B, M, 256, 256) logits and ``iou_predictions`` (B, M), with M = ``mask_outputs`` (1 for
LiteMedSAM, 3 for EfficientSAM).

The optional points decoder (``files["decoder_points"]``; ``prompts`` lists what each decoder
accepts) takes SAM's interactive inputs: ``image_embeddings``, ``point_coords`` (B, N, 2) xy in
model coordinates, ``point_labels`` (B, N) float32 (1 foreground, 0 background, 2 / 3 box
corners, -1 padding point), ``mask_input`` (B, 1, L, L) low-res logits and ``has_mask_input``
(B,) 0 / 1; the same two outputs. The box decoder stays the one box prompts use, so box-only
results do not depend on whether a folder has the points graph.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from infer.preprocess import PreprocessSpec

SIDECAR_NAME = "model.json"
FORMAT_VERSION = 1
BACKENDS = ("openvino", "onnxruntime")

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "boxes")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
POINTS_DECODER = "decoder_points"
POINTS_DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")

MaskSelection = Literal["single", "best_iou"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``infer`` needs to know about one exported model folder."""

    folder: Path
    name: str
    arch: str
    preprocess: PreprocessSpec
    mask_outputs: int
    mask_selection: MaskSelection
    low_res_size: int
    files: dict[str, dict[str, str]]  # {"encoder": {"onnx": ..., "openvino": ...}, "decoder": {...}}
    trained: bool
    source: str
    raw: dict[str, Any]

    @property
    def accepts_points(self) -> bool:
        """Whether the folder has the points decoder (clicks and mask prompts)."""
        return POINTS_DECODER in self.files

    def model_file(self, part: str, backend: str, precision: str = "f32") -> Path:
        """Path of the ``encoder``/``decoder`` file for ``backend`` (``openvino``/``onnxruntime``);
        an ``int8`` encoder is its own file, listed under ``precisions.int8.files`` (a part
        without one there runs from its f32 file)."""
        key = "onnx" if backend == "onnxruntime" else "openvino"
        if precision == "int8":
            quantized = self.raw.get("precisions", {}).get("int8", {}).get("files", {}).get(part, {})
            if key in quantized:
                return self.folder / quantized[key]
        return self.folder / self.files[part][key]


def _count(path: Path, data: dict, key: str) -> int:
    """A positive whole number field of the sidecar, or a message naming the file and the field."""
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: field '{key}' must be a positive integer, got {value!r}")
    return value


def load_model_spec(folder: str | Path) -> ModelSpec:
    """Read and validate ``folder/model.json``.

    Raises:
        FileNotFoundError: the folder or its sidecar is missing.
        ValueError: the sidecar is not valid JSON or lacks a required field.
    """
    folder = Path(folder)
    path = folder / SIDECAR_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model sidecar not found (export a model with `python -m train.export`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    try:
        if data["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {data['format_version']} is not supported (expected {FORMAT_VERSION})")
        mask_selection = data["mask_selection"]
        if mask_selection not in ("single", "best_iou"):
            raise ValueError(f"{path}: mask_selection {mask_selection!r} is not 'single' or 'best_iou'")
        return ModelSpec(
            folder=folder,
            name=data.get("name", folder.name),
            arch=data["arch"],
            preprocess=PreprocessSpec.from_json(data["preprocess"]),
            mask_outputs=_count(path, data, "mask_outputs"),
            mask_selection=mask_selection,
            low_res_size=_count(path, data, "low_res_size"),
            files={part: dict(data["files"][part]) for part in ("encoder", "decoder", POINTS_DECODER)
                   if part in data["files"] or part != POINTS_DECODER},
            trained=bool(data["source"]["trained"]),
            source=str(data["source"]["description"]),
            raw=data,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing field {exc}") from None
