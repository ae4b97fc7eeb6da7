"""EfficientSAM ViT-T / ViT-S (docs/reference_systems.md section 2.4), box prompts only.

The encoder takes the already normalised 1024 x 1024 image (resize and ImageNet mean/std
happen in ``infer.preprocess``). A box is given to the decoder as EfficientSAM's point list:
top-left (label 2), bottom-right (label 3), then padding points at coordinate -1 with label -1
up to the decoder's 6 points, exactly as ``EfficientSam.predict_masks`` pads them.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from train.models.layers import RandomFourierPE, TwoWayTransformer, embedding_neck
from train.models.sam_heads import chosen_tokens, decode_tokens, token_masks

MAX_POINTS = 6
PRETRAIN_GRID = 224 // 16


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.num_heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """Plain ViT with global attention; image (B, 3, 1024, 1024) -> (B, 256, 64, 64)."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.embedding_size = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        # Absolute positions of the 224-pixel pre-training grid, plus the (unused) class token.
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID * PRETRAIN_GRID + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.neck = embedding_neck(embed_dim, out_chans)

    def position_embedding(self) -> torch.Tensor:
        """(1, g, g, C): the pre-training grid bicubically resized to the embedding grid."""
        side = int(math.isqrt(self.pos_embed.shape[1] - 1))
        grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        g = self.embedding_size
        if side != g:
            grid = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1) + self.position_embedding()
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.reshape(b, h, w, c).permute(0, 3, 1, 2))


class PromptEncoder(nn.Module):
    """EfficientSAM's point encoder: label -1 invalid, 1 point, 2 box top-left, 3 box bottom-right."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024)) -> None:
        super().__init__()
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = RandomFourierPE(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) XYXY in 1024-space pixels -> (B, 6, C): two corners and four padding points."""
        b = boxes.shape[0]
        corners = boxes.float().reshape(b, 2, 2)
        corners = torch.where(corners >= 0, corners, torch.full_like(corners, -1.0))  # as get_rescaled_pts
        padding = torch.full((b, MAX_POINTS - 2, 2), -1.0, dtype=corners.dtype, device=corners.device)
        pe = self.pe_layer.points(torch.cat([corners, padding], dim=1) + 0.5, self.input_image_size)
        labels = torch.cat([self.bbox_top_left_embeddings.weight, self.bbox_bottom_right_embeddings.weight,
                            self.invalid_points.weight.expand(MAX_POINTS - 2, -1)])
        return pe + labels[None]


class MLPBlock(nn.Module):
    """``num_layers`` (Linear, GELU) pairs then a linear ``fc`` (keys ``layers.{i}.0``, ``fc``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(dims[:-1], dims[1:]))
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class MaskDecoder(nn.Module):
    """SAM-style decoder with GELU everywhere, GroupNorm(1) in the upscaler and no dense prompt."""

    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3, depth: int = 2,
                 num_heads: int = 8, mlp_dim: int = 2048, upscaling_layer_dims=(64, 32),
                 iou_head_depth: int = 2, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth, transformer_dim, num_heads,
                                             lambda: MLPBlock(transformer_dim, mlp_dim, transformer_dim, 1),
                                             first_block_residual=True)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        layers, dim = [], transformer_dim
        for i, out in enumerate(upscaling_layer_dims):
            norm = nn.GroupNorm(1, out) if i < len(upscaling_layer_dims) - 1 else nn.Identity()
            layers.append(nn.Sequential(nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2), norm, nn.GELU()))
            dim = out
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(transformer_dim, transformer_dim, dim, 2) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLPBlock(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as the LiteMedSAM decoder, without the dense prompt."""
        iou_out, mask_out, upscaled = decode_tokens(self.transformer, self.iou_token, self.mask_tokens,
                                                    image_embeddings, image_pe, sparse)
        for layer in self.final_output_upscaling_layers:
            upscaled = layer(upscaled)
        chosen = chosen_tokens(multimask_output, self.num_mask_tokens)
        masks = token_masks(upscaled, self.output_hypernetworks_mlps, mask_out, chosen)
        return masks, self.iou_prediction_head(iou_out)[:, chosen.start:chosen.stop]
