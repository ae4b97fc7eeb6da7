"""Whole promptable models: image encoder + prompt encoder + mask decoder.

Both expose the same three calls, which training, export and the tests use:
``embed(image)``, ``decode(embeddings, boxes)`` and ``forward(image, boxes)``. Boxes are
(B, 4) XYXY in model-input pixels; one embedding may serve all B boxes. LiteMedSAM also decodes
point and mask prompts (``decode_prompts``, ``accepts_points``), SAM's interactive inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from train.models import efficient_sam, sam_heads
from train.models.tiny_vit import TinyViT


class PromptableSegmenter(nn.Module):
    """Common driver; subclasses choose the prompt encoder and implement ``decode``."""

    mask_outputs: int
    accepts_points = False

    def __init__(self, encoder: TinyViT | efficient_sam.ImageEncoderViT, prompt_encoder_class: type[nn.Module],
                 decoder: sam_heads.MaskDecoder | efficient_sam.MaskDecoder) -> None:
        super().__init__()
        side = encoder.embedding_size
        self.image_encoder = encoder
        # The prompt encoder's sizes follow from the encoder (input, grid) and decoder (width).
        self.prompt_encoder = prompt_encoder_class(
            embed_dim=decoder.iou_token.embedding_dim, image_embedding_size=(side, side),
            input_image_size=(encoder.img_size, encoder.img_size))
        self.mask_decoder = decoder

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) pre-processed image -> (N, C, 64, 64) embedding."""
        return self.image_encoder(image)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode_prompts(self, embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                       mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} takes box prompts only")

    def forward(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One box per image: image (B, 3, S, S), boxes (B, 4) -> masks (B, M, 256, 256), IoU (B, M)."""
        return self.decode(self.embed(image), boxes.reshape(-1, 4))


class LiteMedSAM(PromptableSegmenter):
    """TinyViT encoder + SAM prompt encoder and decoder; the single-mask token (M = 1)."""

    mask_outputs = 1
    # The parts the base class stores, typed as this architecture builds them.
    prompt_encoder: sam_heads.PromptEncoder
    mask_decoder: sam_heads.MaskDecoder
    accepts_points = True

    def __init__(self, encoder: TinyViT, decoder: sam_heads.MaskDecoder) -> None:
        super().__init__(encoder, sam_heads.PromptEncoder, decoder)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embeddings (1 or B, C, h, w), boxes (B, 4) -> masks (B, 1, 4h, 4w) logits, IoU (B, 1)."""
        pe = self.prompt_encoder
        return self.mask_decoder(embeddings, pe.get_dense_pe(), pe.embed_boxes(boxes), pe.dense_embedding())

    def decode_prompts(self, embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                       mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's interactive prompt: point_coords (B, N, 2) xy in model pixels, point_labels (B, N)
        (1 fg, 0 bg, 2 / 3 box corners, -1 padding), mask_input (B, 1, 4h, 4w) low-res logits
        used where has_mask_input (B,) is 1 -> masks (B, 1, 4h, 4w) logits, IoU (B, 1). A box as
        corners 2, 3 without other points or mask gives :meth:`decode`'s result."""
        pe = self.prompt_encoder
        return self.mask_decoder(embeddings, pe.get_dense_pe(), pe.embed_points(point_coords, point_labels),
                                 pe.embed_masks(mask_input, has_mask_input))


class EfficientSAM(PromptableSegmenter):
    """EfficientSAM ViT encoder and decoder; the three multimask outputs (M = 3)."""

    mask_outputs = 3
    # The parts the base class stores, typed as this architecture builds them.
    prompt_encoder: efficient_sam.PromptEncoder
    mask_decoder: efficient_sam.MaskDecoder

    def __init__(self, encoder: efficient_sam.ImageEncoderViT, decoder: efficient_sam.MaskDecoder) -> None:
        super().__init__(encoder, efficient_sam.PromptEncoder, decoder)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embeddings (1 or B, C, h, w), boxes (B, 4) in 1024 space -> masks (B, 3, 4h, 4w), IoU (B, 3)."""
        pe = self.prompt_encoder
        return self.mask_decoder(embeddings, pe.get_dense_pe(), pe.embed_boxes(boxes), multimask_output=True)
