"""The two exported graphs and the conversions that write them.

Export goes through dedicated wrapper modules so the graph signatures are exactly the
runtime contract of :mod:`infer.model_spec`: the encoder maps the pre-processed image to the
embedding; the decoder maps one embedding and B boxes (B dynamic) to low-resolution logits
and predicted IoU. Everything after that (crop, upsample, threshold) happens in ``infer``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from infer.model_spec import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
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


def export_onnx(model: PromptableSegmenter, image_size: int, folder: Path) -> None:
    """Write ``encoder.onnx`` and ``decoder.onnx`` (opset :data:`ONNX_OPSET`) into ``folder``.

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


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic) -> None:
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          opset_version=ONNX_OPSET, dynamic_axes=dynamic, do_constant_folding=True)


def onnx_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Convert an ONNX file to OpenVINO IR in full float32 (no FP16 compression)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
