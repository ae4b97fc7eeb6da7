"""LoRA on TinyViT's attention: rank-r updates of the query and value projections, per head.

``WindowAttention.qkv`` is one Linear(dim, 3 dim) whose output is read per head as
``[q (key_dim), k (key_dim), v (key_dim)]`` for head 0, then head 1, ... (train/models/tiny_vit.py).
The public LoRA adds its updates to output channels ``[:dim]`` and ``[-dim:]`` (docs/reference_systems.md
section 7 #19), which mixes queries, keys and values of different heads. Here the query update
``s B_q A_q x`` (``dim`` channels, head-major) goes into each head's q slice and the value update
into each head's v slice; keys are untouched. ``s = alpha / rank``; B starts at zero, so an
attached, untrained adapter leaves the model unchanged.

The adapters live in their own module and reach the model through forward hooks on ``qkv``: the
model's state_dict keeps the official names, adapters are saved on their own, and
:meth:`QVLoRA.merged_state_dict` folds them into a plain checkpoint that loads strictly.

    python -m train.lora merge --arch litemedsam --base lite_medsam.pth \
        --adapters runs/RUN/best_adapters.pth --out merged.pth
"""
from __future__ import annotations

import argparse
import math
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from train.checkpoint import CheckpointError, load_weights, sha256_of
from train.models import build_model
from train.models.tiny_vit import WindowAttention

__all__ = ["ADAPTER_FORMAT", "QVLoRA", "save_adapters", "load_adapters", "main"]

ADAPTER_FORMAT = "medsam-laptop-lora-qv"


class QVLoRA(nn.Module):
    """Q and V adapters for every :class:`WindowAttention` under ``encoder`` (in module order).

    Parameters ``a_q.i`` / ``a_v.i`` are (rank, dim), ``b_q.i`` / ``b_v.i`` (dim, rank) for target i.
    """

    def __init__(self, encoder: nn.Module, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        attentions = {name: m for name, m in encoder.named_modules() if isinstance(m, WindowAttention)}
        self.targets = list(attentions)
        if not self.targets:
            raise ValueError(f"{type(encoder).__name__} has no TinyViT WindowAttention to adapt")
        self.rank, self.alpha = rank, float(alpha if alpha is not None else rank)
        self.scale = self.alpha / rank
        self._heads: list[tuple[int, int]] = []
        self.a_q, self.b_q, self.a_v, self.b_v = (nn.ParameterList() for _ in range(4))
        for attn in attentions.values():
            dim = attn.qkv.in_features
            self._heads.append((attn.num_heads, attn.key_dim))
            for a_list, b_list in ((self.a_q, self.b_q), (self.a_v, self.b_v)):
                a = torch.empty(rank, dim)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                a_list.append(nn.Parameter(a))
                b_list.append(nn.Parameter(torch.zeros(attn.num_heads * attn.key_dim, rank)))
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def _update(self, i: int, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Interleave (..., dim) query and value updates into the (..., 3 dim) per-head qkv layout."""
        heads, key_dim = self._heads[i]
        lead = q.shape[:-1]
        q, v = q.reshape(*lead, heads, key_dim), v.reshape(*lead, heads, key_dim)
        return torch.stack([q, torch.zeros_like(q), v], dim=-2).reshape(*lead, 3 * heads * key_dim)

    def qkv_delta(self, i: int) -> torch.Tensor:
        """The (3 dim, dim) weight update of target ``i``'s qkv Linear."""
        q = self.scale * self.b_q[i] @ self.a_q[i]
        v = self.scale * self.b_v[i] @ self.a_v[i]
        return self._update(i, q.T, v.T).T

    def attach(self, encoder: nn.Module) -> None:
        """Add the adapters' updates to ``encoder``'s qkv outputs (idempotent)."""
        self.detach()
        for i, name in enumerate(self.targets):
            qkv = encoder.get_submodule(name).get_submodule("qkv")  # name "" when encoder is the attention itself

            def hook(_module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor, i: int = i) -> torch.Tensor:
                x = inputs[0]
                q = F.linear(F.linear(x, self.a_q[i]), self.b_q[i]) * self.scale
                v = F.linear(F.linear(x, self.a_v[i]), self.b_v[i]) * self.scale
                return output + self._update(i, q, v).to(output.dtype)

            self._hooks.append(qkv.register_forward_hook(hook))

    def detach(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def merged_state_dict(self, model: nn.Module, prefix: str = "image_encoder.") -> dict[str, torch.Tensor]:
        """``model``'s state_dict with every adapted qkv weight replaced by weight + update.

        ``model`` must hold the base weights (adapters attached or not); the result loads strictly
        into the plain architecture and computes what the adapted model computes.
        """
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for i, name in enumerate(self.targets):
                key = f"{prefix}{name}.qkv.weight"
                state[key] = state[key] + self.qkv_delta(i).to(state[key])
        return state

    def base_qkv(self, model: nn.Module, prefix: str = "image_encoder.") -> dict[str, torch.Tensor]:
        """The unmerged qkv weights (what a merged checkpoint lacks to resume LoRA training exactly)."""
        state = model.state_dict()
        return {f"{prefix}{n}.qkv.weight": state[f"{prefix}{n}.qkv.weight"].detach().clone() for n in self.targets}


def save_adapters(lora: QVLoRA, path: str | Path, arch: str, base: dict[str, str] | None = None) -> None:
    """Write the adapters alone (a few hundred KB): tensors plus rank, alpha, targets and base checkpoint."""
    torch.save({"format": ADAPTER_FORMAT, "version": 1, "arch": arch, "rank": lora.rank, "alpha": lora.alpha,
                "targets": list(lora.targets), "base": base or {},
                "tensors": {k: v.detach().cpu() for k, v in lora.state_dict().items()}}, path)


def load_adapters(path: str | Path, encoder: nn.Module) -> tuple[QVLoRA, dict[str, Any]]:
    """Rebuild the adapters saved in ``path`` for ``encoder``; returns them and the file's metadata.

    Raises:
        CheckpointError: not an adapter file, or its targets/shapes do not fit ``encoder``.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable adapter file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path}: not a LoRA adapter file (format {ADAPTER_FORMAT!r} expected)")
    lora = QVLoRA(encoder, int(data["rank"]), float(data["alpha"]))
    if lora.targets != list(data["targets"]):
        raise CheckpointError(f"{path}: adapts {len(data['targets'])} attention blocks, the model has "
                              f"{len(lora.targets)} ({data['targets'][:2]} vs {lora.targets[:2]})")
    try:
        lora.load_state_dict(data["tensors"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: adapters do not fit {data['arch']}: {str(exc).splitlines()[0]}") from None
    return lora, data


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.lora", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="fold adapters into a plain checkpoint (loads with build_model, exports)")
    merge.add_argument("--arch", required=True, help="architecture of the base model, e.g. litemedsam")
    merge.add_argument("--base", type=Path, required=True, help="checkpoint the adapters were trained on")
    merge.add_argument("--adapters", type=Path, required=True, help="adapter file written by training")
    merge.add_argument("--out", type=Path, required=True, help="merged checkpoint to write ({'model': state_dict})")
    merge.add_argument("--allow-other-base", action="store_true",
                       help="merge although --base differs from the checkpoint recorded in the adapter file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        model = build_model(args.arch)
        load_weights(model, args.base)
        lora, meta = load_adapters(args.adapters, model.image_encoder)
        recorded = meta.get("base", {}).get("sha256")
        if recorded and recorded != sha256_of(args.base) and not args.allow_other_base:
            raise ValueError(f"{args.base}: not the base these adapters were trained on "
                             f"({meta['base'].get('checkpoint')}, sha256 {recorded[:12]}...); "
                             "pass --allow-other-base to merge anyway")
        torch.save({"model": lora.merged_state_dict(model), "lora": {"rank": lora.rank, "alpha": lora.alpha}},
                   args.out)
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"merged {len(lora.targets)} adapted attention blocks (rank {lora.rank}) into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
