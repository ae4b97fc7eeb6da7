"""The exported graphs and the conversions that write them.

Export goes through dedicated wrapper modules so the graph signatures are exactly the
runtime contract of :mod:`infer.model_spec`: the encoder maps the pre-processed image to the
embedding; the decoder maps one embedding and B boxes (B dynamic) to low-resolution logits
and predicted IoU; the points decoder (models that accept points) maps one embedding and B
prompts of N points each with a mask prompt (B and N dynamic) to the same outputs. Everything
after that (crop, upsample, threshold) happens in ``infer``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from infer.model_spec import (DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, POINTS_DECODER,
                              POINTS_DECODER_INPUTS)
from train.models import PromptableSegmenter

ONNX_OPSET = 18


class EncoderGraph(nn.Module):
    def __init__(self, model: PromptableSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.embed(image)


class DecoderGraph(nn.Module):
    def __init__(self, model: PromptableSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(image_embeddings, boxes)


class PointsDecoderGraph(nn.Module):
    def __init__(self, model: PromptableSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode_prompts(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)


def example_prompts(batch: int, points: int, low_res: int, image_size: int, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points-decoder inputs for tracing and verification: random points with labels 1, 0, 2, 3
    and -1 (padding) all present, random mask logits, has_mask_input alternating 1, 0."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.floor(torch.rand(batch, points, 2, generator=gen) * (image_size - 1))
    kinds = torch.tensor([1.0, 0.0, 2.0, 3.0, -1.0])
    labels = torch.stack([kinds.roll(row) for row in range(batch)]).repeat(1, points // 5 + 1)[:, :points]
    masks = torch.randn(batch, 1, low_res, low_res, generator=gen) * 8
    has_mask = (torch.arange(batch) % 2 == 0).float()
    return coords, labels, masks, has_mask


def export_onnx(model: PromptableSegmenter, image_size: int, folder: Path) -> None:
    """Write ``encoder.onnx`` and ``decoder.onnx`` (opset :data:`ONNX_OPSET`) into ``folder``,
    and ``decoder_points.onnx`` for a model that accepts points.

    Uses the tracing exporter: the graphs have no data-dependent control flow, and it exports
    in a fifth of the time of the ``torch.export`` path, which matters for tests and users.
    The box axis is dynamic; the exporter's own verification runs several box counts.
    """
    image = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        embedding = model.embed(image)
    boxes = torch.tensor([[10.0, 12.0, 60.0, 70.0], [0.0, 0.0, 30.0, 30.0], [5.0, 40.0, 90.0, 99.0]])
    boxes = boxes * (image_size / 256)
    dynamic = {DECODER_INPUTS[1]: {0: "num_boxes"}, **{name: {0: "num_boxes"} for name in DECODER_OUTPUTS}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constants and the legacy-exporter notice
        _export(EncoderGraph(model), (image,), folder / "encoder.onnx", [ENCODER_INPUT], [ENCODER_OUTPUT], None)
        _export(DecoderGraph(model), (embedding, boxes), folder / "decoder.onnx", list(DECODER_INPUTS),
                list(DECODER_OUTPUTS), dynamic)
        if model.accepts_points:
            low_res = 4 * embedding.shape[-1]
            prompts = example_prompts(3, 4, low_res, image_size)
            batch = {0: "num_prompts"}
            dynamic = {"point_coords": {0: "num_prompts", 1: "num_points"},
                       "point_labels": {0: "num_prompts", 1: "num_points"}, "mask_input": batch,
                       "has_mask_input": batch, **{name: batch for name in DECODER_OUTPUTS}}
            _export(PointsDecoderGraph(model), (embedding, *prompts), folder / f"{POINTS_DECODER}.onnx",
                    list(POINTS_DECODER_INPUTS), list(DECODER_OUTPUTS), dynamic)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic) -> None:
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          opset_version=ONNX_OPSET, dynamic_axes=dynamic, do_constant_folding=True)


def onnx_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Convert an ONNX file to OpenVINO IR in full float32 (no FP16 compression)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
