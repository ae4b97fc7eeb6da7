"""Process-group context: one process per GPU under torchrun, or a single process.

``init_from_env`` joins the group torchrun describes in the environment (``env://``: RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) with NCCL on GPUs and gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

__all__ = ["DistContext", "SINGLE", "init_from_env", "resolve_device"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and prints."""
        return self.rank == 0

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average of ``values`` over processes (a copy; the input itself when single)."""
        if self.world_size == 1:
            return values
        out = values.clone()
        torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
        return out / self.world_size

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return values
        out = values.clone()
        torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()


SINGLE = DistContext()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU when CUDA is available, else the CPU; ``cuda`` -> cuda:LOCAL_RANK.

    Raises:
        ValueError: CUDA requested but unavailable, or an index beyond the visible GPUs.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
    device = torch.device(name if ":" in name else f"cuda:{local_rank}")
    if device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def init_from_env(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group; returns the context and this process's device.

    Raises:
        RuntimeError: not started by torchrun (no RANK / WORLD_SIZE / LOCAL_RANK in the environment).
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"not launched by torchrun ({', '.join(missing)} unset); "
                           "run: torchrun --nproc_per_node NGPUS train/train_multi_gpus.py ...")
    ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    device = resolve_device(device_name, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                  rank=ctx.rank, world_size=ctx.world_size)
    return ctx, device
