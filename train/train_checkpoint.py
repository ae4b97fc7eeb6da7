"""The training checkpoint (``latest.pth``, ``best.pth``): its fields, written and read here alone.

The file is a dict of plain tensors and containers, so ``torch.load(weights_only=True)``,
``build_model(arch, checkpoint=...)`` and ``train.export`` accept it as it is. ``"model"`` is
always the plain architecture's state_dict: with LoRA, the merged weights (``"lora"`` keeps
the adapters and the unmerged qkv weights, so that training resumes exactly).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from challenge.atomic import atomic_path
from train.checkpoint import CheckpointError, read_checkpoint

__all__ = ["TrainCheckpoint", "FORMAT", "VERSION", "read_saved_config", "recorded_arch"]

FORMAT = "medsam-laptop-train-checkpoint"
VERSION = 1


@dataclass
class TrainCheckpoint:
    """Everything a run needs to resume, plus what it recorded about itself (``run``, ``metrics``)."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    epoch: int
    step: int
    rng: dict[str, Any]
    config: dict[str, Any]  # TrainConfig.to_json()
    metrics: dict[str, Any]  # best, best_step, val_dice, selection_metric
    run: dict[str, Any]  # the run's derived facts (config.json's "run"); empty in files older than the field
    lora: dict[str, Any] | None = None  # rank, alpha, targets, adapters, base_qkv

    @property
    def arch(self) -> str | None:
        """The architecture the run trained, as its configuration records it."""
        arch = self.config.get("arch")
        return arch if isinstance(arch, str) else None

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees half a checkpoint."""
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, **asdict(self)}
        if self.lora is None:
            del data["lora"]
        with atomic_path(path) as tmp:
            torch.save(data, tmp)

    @classmethod
    def load(cls, path: Path) -> TrainCheckpoint:
        """Read a resumable checkpoint; raises :class:`CheckpointError` naming the file and what is missing."""
        data = read_checkpoint(path)
        names = [f.name for f in fields(cls) if f.name not in ("run", "lora")]
        missing = [k for k in names if not isinstance(data, dict) or k not in data]
        if missing:
            raise CheckpointError(f"{path}: not a resumable training checkpoint (missing {', '.join(missing)})")
        return cls(**{k: data[k] for k in names}, run=data.get("run") or {}, lora=data.get("lora"))


def read_saved_config(path: Path) -> dict[str, Any]:
    """The configuration a checkpoint recorded (memory-mapped: the weights are not read)."""
    data = read_checkpoint(path, mmap=True)
    saved = data.get("config") if isinstance(data, dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: not a training checkpoint of this package (no 'config')")
    return saved


def recorded_arch(path: Path) -> str | None:
    """The architecture a training checkpoint's configuration names; None for other weight files."""
    data = read_checkpoint(path)
    config = data.get("config") if isinstance(data, dict) else None
    arch = config.get("arch") if isinstance(config, dict) else None
    return arch if isinstance(arch, str) else None
