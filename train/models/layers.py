"""Building blocks shared by the LiteMedSAM and EfficientSAM modules.

Attribute names follow the official implementations exactly, because they become the
state_dict keys that official checkpoints must match under ``strict=True``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW map (SAM's ``LayerNorm2d``, eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def embedding_neck(in_dim: int, out_dim: int) -> nn.Sequential:
    """The SAM neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (keys ``neck.{0,1,2,3}``)."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size=1, bias=False),
        LayerNorm2d(out_dim),
        nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_dim),
    )


class TokenAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections and an optional internal
    down-projection (SAM's two-way-transformer ``Attention``)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the internal dimension {internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1)
        out = (attn @ v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves and to the image, the image attends back to the tokens.

    ``first_block_residual`` is where SAM and EfficientSAM differ: in SAM's first block the
    self-attention output replaces the queries; EfficientSAM keeps the residual add.
    """

    def __init__(self, dim: int, num_heads: int, mlp: nn.Module, skip_first_layer_pe: bool,
                 first_block_residual: bool, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe
        self.first_block_residual = first_block_residual

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            attn_out = self.self_attn(queries, queries, queries)
            queries = queries + attn_out if self.first_block_residual else attn_out
        else:
            q = queries + query_pe
            if self.first_block_residual:  # EfficientSAM adds the PE to the values too
                queries = q
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """SAM's two-way transformer over (tokens, image) followed by a final token-to-image attention."""

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, make_mlp, first_block_residual: bool,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(embedding_dim, num_heads, make_mlp(), skip_first_layer_pe=(i == 0),
                        first_block_residual=first_block_residual,
                        attention_downsample_rate=attention_downsample_rate)
            for i in range(depth)
        )
        self.final_attn_token_to_image = TokenAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe (1 or B, C, h, w); point_embedding (B, T, C) -> (tokens, image
        tokens (B, hw, C)). An image of batch 1 is broadcast, not copied: its token view and the
        first image-side projections are computed once for all B prompts (in an export as well)."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class RandomFourierPE(nn.Module):
    """SAM's random-Fourier positional encoding of normalised (x, y) coordinates."""

    positional_encoding_gaussian_matrix: torch.Tensor  # a buffer (register_buffer below), declared to type as a Tensor

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., 2) in [0, 1] -> (..., 2 * num_pos_feats)."""
        proj = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Encoding of the cell centres of a height x width grid, (C, height, width)."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self.encode(coords).permute(2, 0, 1)

    def points(self, xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """xy (..., 2) in pixels of an input of image_size (H, W), pixel centres already applied."""
        size_xy = torch.tensor([image_size[1], image_size[0]], dtype=torch.float32, device=xy.device)
        return self.encode(xy.float() / size_xy)
