"""SAM's prompt encoder and mask decoder as LiteMedSAM uses them (docs/reference_systems.md section 2.3).

Boxes are the prompt LiteMedSAM was trained with (:meth:`PromptEncoder.embed_boxes`). Points
(clicks, label 1 foreground, 0 background, 2 / 3 box corners, -1 padding) and a low-resolution
mask prompt follow SAM's conventions (:meth:`PromptEncoder.embed_points`,
:meth:`PromptEncoder.embed_masks`), for interactive refinement (docs/interactive.md).
"""
from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from train.models.layers import LayerNorm2d, RandomFourierPE, TwoWayTransformer


class PromptEncoder(nn.Module):
    """Boxes in model pixels -> sparse (B, 2, C) corner embeddings; dense no-mask embedding."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (256, 256), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = RandomFourierPE(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, h, w) positional encoding of the embedding grid."""
        return self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) XYXY in model pixels -> (B, 2, C); +0.5 moves to pixel centres, as SAM does."""
        corners = self.pe_layer.points((boxes.float() + 0.5).reshape(-1, 2, 2), self.input_image_size)
        # Embeddings 2 and 3: SAM's box corners (ModuleList items type as bare Modules).
        top_left, bottom_right = (cast(nn.Embedding, self.point_embeddings[i]).weight for i in (2, 3))
        return corners + torch.cat([top_left, bottom_right])[None]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) xy in model pixels, labels (B, N) -> (B, N, C), written with masks
        instead of indexing so it exports with N dynamic (as SAM's own ONNX export does).

        Label 1 / 0 add the foreground / background point embedding, 2 / 3 the box corners (so a
        box given as two points with labels 2, 3 equals :meth:`embed_boxes`), -1 is a padding
        point: no positional encoding, only ``not_a_point_embed``. SAM's predictor appends one
        padding point when there is no box; callers do that (the embedding is a token the decoder
        attends to, so it changes the result)."""
        pe = self.pe_layer.points(coords.float() + 0.5, self.input_image_size)
        labels = labels.unsqueeze(-1).to(pe.dtype)
        out = pe * (labels != -1) + self.not_a_point_embed.weight * (labels == -1)
        for index, embedding in enumerate(self.point_embeddings):
            out = out + cast(nn.Embedding, embedding).weight * (labels == index)
        return out

    def embed_masks(self, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """masks (B, 1, 4h, 4w) low-res logits, has_mask (B,) or (1,) 0 / 1 -> (B, C, h, w): the
        downscaled mask where ``has_mask`` is 1, the no-mask embedding where it is 0."""
        flag = has_mask.to(masks.dtype).reshape(-1, 1, 1, 1)
        return flag * self.mask_downscaling(masks) + (1 - flag) * self.dense_embedding()

    def dense_embedding(self) -> torch.Tensor:
        """(1, C, h, w) dense prompt when no mask is given (broadcasts over the batch)."""
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)


class MLP(nn.Module):
    """Linear layers with ReLU between them (keys ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MLPBlock(nn.Module):
    """The transformer's feed-forward block (keys ``lin1``, ``lin2``)."""

    def __init__(self, embedding_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


def decode_tokens(transformer: nn.Module, iou_token: nn.Embedding, mask_tokens: nn.Embedding,
                  image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                  sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the two-way transformer for B prompts on one (or B) image embeddings.

    Returns (iou token output (B, C), mask token outputs (B, T, C), image tokens as a map (B, C, h, w)).
    """
    b = sparse.shape[0]
    output_tokens = torch.cat([iou_token.weight, mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
    _, c, h, w = image_embeddings.shape
    hs, keys = transformer(image_embeddings, image_pe, tokens)
    # A permuted (b, h, w, c) view, not a transpose of the tokens: the runtime keeps the upscaling
    # channels-last instead of moving the map (docs/encoder_speed.md, the decoder).
    return hs[:, 0], hs[:, 1:1 + mask_tokens.num_embeddings], keys.reshape(b, h, w, c).permute(0, 3, 1, 2)


def chosen_tokens(multimask_output: bool, count: int) -> range:
    """The mask tokens a decoder returns: 1..count-1 (SAM's multimask outputs) or 0 (the single mask)."""
    return range(1, count) if multimask_output else range(1)


def token_masks(upscaled: torch.Tensor, hypernetworks: nn.ModuleList, mask_out: torch.Tensor,
                chosen: range) -> torch.Tensor:
    """(B, M, H, W) logits of the ``chosen`` mask tokens: each token's hypernetwork output dotted
    with every pixel of the upscaled (B, C, H, W) map. Only the tokens returned are computed, on
    the map's channels-last view, so the runtime neither reorders the map nor multiplies unused
    tokens (docs/encoder_speed.md, the decoder)."""
    hyper = torch.stack([hypernetworks[i](mask_out[:, i]) for i in chosen], dim=1)
    b, c, h, w = upscaled.shape
    pixels = upscaled.permute(0, 2, 3, 1).reshape(b, h * w, c)
    return (pixels @ hyper.transpose(1, 2)).transpose(1, 2).reshape(b, len(chosen), h, w)


class MaskDecoder(nn.Module):
    """Two-way transformer + upscaling + per-token hypernetworks (SAM), 3 multimask + 1 single token."""

    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3, depth: int = 2, num_heads: int = 8,
                 mlp_dim: int = 2048, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth, transformer_dim, num_heads,
                                             lambda: MLPBlock(transformer_dim, mlp_dim), first_block_residual=False)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings (1 or B, C, h, w), sparse (B, T, C), dense (1 or B, C, h, w) ->
        masks (B, M, 4h, 4w) logits and IoU (B, M); M = 1 (token 0) or 3 (tokens 1..3)."""
        iou_out, mask_out, src = decode_tokens(self.transformer, self.iou_token, self.mask_tokens,
                                               image_embeddings + dense, image_pe, sparse)
        chosen = chosen_tokens(multimask_output, self.num_mask_tokens)
        masks = token_masks(self.output_upscaling(src), self.output_hypernetworks_mlps, mask_out, chosen)
        return masks, self.iou_prediction_head(iou_out)[:, chosen.start:chosen.stop]
