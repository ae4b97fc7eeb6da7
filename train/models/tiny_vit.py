"""LiteMedSAM's image encoder: the TinyViT-5M variant at 256 x 256 (docs/reference_systems.md section 2.2).

Differences from the ImageNet TinyViT that LiteMedSAM made and we reproduce: the patch embedding
is two 1x1 convolutions (no down-sampling), so a 256 x 256 image reaches the 64 x 64 embedding
grid after two stride-2 patch mergings; the merging into the last stage (out_dim 320) has stride
1; there is no classification head, only the SAM neck to 256 channels.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from train.models.layers import embedding_neck


class Conv2d_BN(nn.Sequential):  # noqa: N801 - official class name kept for readability of keys
    """Conv without bias followed by BatchNorm (keys ``c.*`` and ``bn.*``)."""

    def __init__(self, in_ch: int, out_ch: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_ch)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2d_BN(in_chans, embed_dim // 2), nn.GELU(), Conv2d_BN(embed_dim // 2, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project (BN weight 0 at init), add, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2d_BN(dim, hidden)
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, pad=1, groups=hidden)
        self.conv3 = Conv2d_BN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, H*W, C) or (B, C, H, W) -> (B, H'*W', out_dim) tokens, through a strided depthwise conv."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, ks=3, stride=stride, pad=1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.permute(0, 2, 3, 1).flatten(1, 2)


class WindowAttention(nn.Module):
    """Attention inside one window with a learned bias per head and (|dy|, |dx|) offset.

    ``qkv`` is laid out per head as [q, k, v] (docs/reference_systems.md section 2.2), which LoRA must respect.
    """

    attention_bias_idxs: torch.Tensor  # a buffer (register_buffer below), declared to type as a Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets)) for a in points for b in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.key_dim, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows), depthwise 3x3 conv, MLP."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.input_resolution = resolution
        self.window_size = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, ks=3, pad=1, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        windows = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(windows).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        return x[:, :h, :w].reshape(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        x = x + self._windowed_attention(x)
        # Tokens <-> NCHW as permutes of the (b, h, w, c) view: OpenVINO runs the convolution channels-last and
        # then drops both permutes as layout changes (a transpose between reshapes costs a copy each way).
        x = self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, n, c)
        return x + self.mlp(x)


class Stage(nn.Module):
    """``blocks`` then an optional ``downsample`` (PatchMerging) into the next stage's width."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """Image (B, 3, S, S) -> embedding (B, out_chans, S/4, S/4)."""

    def __init__(self, img_size: int = 256, in_chans: int = 3, embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                 num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            side = img_size // 2 ** (i - 1 if i == 3 else i)
            res = (side, side)
            last = i == len(depths) - 1
            # The merging into the last stage keeps the resolution (official: out_dim 320/448/576).
            stride = 1 if i == len(depths) - 2 else 2
            downsample = None if last else PatchMerging(res, dim, embed_dims[i + 1], stride)
            blocks: list[nn.Module]  # MBConv in the first stage, TinyViTBlock in the others
            if i == 0:
                blocks = [MBConv(dim, mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dim, res, num_heads[i], window_sizes[i], mlp_ratio) for _ in range(depth)]
            self.layers.append(Stage(blocks, downsample))
        self.embedding_size = img_size // 4
        self.neck = embedding_neck(embed_dims[-1], out_chans)
        self.apply(_init_linear_and_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        side = self.embedding_size
        return self.neck(x.view(b, side, side, c).permute(0, 3, 1, 2))


def _init_linear_and_norm(m: nn.Module) -> None:
    """TinyViT's initialisation: truncated-normal linear weights (std 0.02), unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
