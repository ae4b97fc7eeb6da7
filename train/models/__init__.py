"""Model zoo: a name-keyed registry of builders returning eval-mode PyTorch models.

``build_model("litemedsam", checkpoint="lite_medsam.pth")`` builds the architecture and loads
the file strictly (see :mod:`train.checkpoint` for the accepted layouts). Each entry also
records how inputs are pre-processed and which mask output to use, which the exporter copies
into the model folder's sidecar so ``infer`` never branches on model names.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from torch import nn

from infer.preprocess import EFFICIENTSAM_PREPROCESS, LITEMEDSAM_PREPROCESS, PreprocessSpec
from train.models import efficient_sam, sam_heads
from train.models.sam import EfficientSAM, LiteMedSAM, PromptableSegmenter
from train.models.tiny_vit import TinyViT

__all__ = ["ARCHITECTURES", "Architecture", "build_model", "get_architecture", "PromptableSegmenter"]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: how to build it and how its inputs and outputs are read."""

    name: str
    build: Callable[[], PromptableSegmenter]
    preprocess: PreprocessSpec
    mask_selection: str  # "single" (one output) or "best_iou" (highest predicted IoU of several)
    description: str


SMALL_INPUT = replace(LITEMEDSAM_PREPROCESS, image_size=192)


def _litemedsam() -> LiteMedSAM:
    return LiteMedSAM(TinyViT(), sam_heads.MaskDecoder())


def _litemedsam_small() -> LiteMedSAM:
    """A 0.35M-parameter LiteMedSAM layout at 192 x 192 input (embedding 64 x 48 x 48, about 0.6 GMAC
    per image): the demo model, small enough to train on a laptop CPU, and the fast model of tests.
    At 192 a training step costs a quarter of one at 256 on a CPU (caches), not just 0.56x."""
    encoder = TinyViT(img_size=SMALL_INPUT.image_size, embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                      num_heads=(1, 2, 2, 2), out_chans=64)
    return LiteMedSAM(encoder, sam_heads.MaskDecoder(transformer_dim=64, num_heads=2, mlp_dim=256,
                                                     iou_head_hidden_dim=64))


def _efficientsam(embed_dim: int, num_heads: int) -> Callable[[], EfficientSAM]:
    def build() -> EfficientSAM:
        return EfficientSAM(efficient_sam.ImageEncoderViT(embed_dim=embed_dim, num_heads=num_heads),
                            efficient_sam.MaskDecoder())
    return build


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("litemedsam", _litemedsam, LITEMEDSAM_PREPROCESS, "single",
                     "LiteMedSAM: TinyViT-5M encoder at 256 x 256, SAM prompt encoder and mask decoder"),
        Architecture("litemedsam_small", _litemedsam_small, SMALL_INPUT, "single",
                     "LiteMedSAM layout at reduced width, depth and input size (TinyViT 16-32-48-64 at "
                     "192 x 192, decoder width 64; LiteMedSAM's pre-processing otherwise): "
                     "the demo model's architecture, trainable on a CPU"),
        Architecture("efficientsam_vitt", _efficientsam(192, 3), EFFICIENTSAM_PREPROCESS, "best_iou",
                     "EfficientSAM-Ti: ViT-T/16 encoder at 1024 x 1024, EfficientSAM decoder"),
        Architecture("efficientsam_vits", _efficientsam(384, 6), EFFICIENTSAM_PREPROCESS, "best_iou",
                     "EfficientSAM-S: ViT-S/16 encoder at 1024 x 1024, EfficientSAM decoder"),
    )
}


def get_architecture(name: str) -> Architecture:
    """The registry entry for ``name``; raises ``ValueError`` listing the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def build_model(name: str, checkpoint: str | Path | None = None) -> PromptableSegmenter:
    """Build architecture ``name`` in eval mode, loading ``checkpoint`` strictly when given."""
    from train.checkpoint import load_weights

    model = get_architecture(name).build()
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    """Number of trainable-parameter values (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
