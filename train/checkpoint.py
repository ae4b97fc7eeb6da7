"""Reading checkpoints in the layouts users bring, safely, with errors that say what is wrong.

Accepted layouts (docs/reference_systems.md section 2.5): a plain state_dict (``lite_medsam.pth`` and its
fine-tunes), ``{"model": state_dict, ...}`` (EfficientSAM, training checkpoints of the
reference scripts and ours) and Lightning's ``{"state_dict": ...}``; a ``module.`` prefix
left by DistributedDataParallel is removed. Files are read with ``weights_only=True``, so
a file holding pickled Python objects is refused rather than executed.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from assets import sha256_file as sha256_of

__all__ = ["CheckpointError", "read_checkpoint", "load_state_dict", "load_weights", "extract_state_dict", "sha256_of"]

_SHOWN = 5  # keys listed per category in a mismatch message


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


def read_checkpoint(path: Path, mmap: bool = False) -> Any:
    """What a torch.save file holds, read with ``weights_only=True``; raises :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise CheckpointError(
                f"{path}: holds pickled Python objects ({refused.group(1)}), which are refused "
                "(weights_only=True); save a plain state_dict instead") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (not a torch.save file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict inside ``obj`` (see the module docstring), with any ``module.`` prefix removed."""
    for candidate in (obj, *(obj.get(key) for key in ("model", "state_dict") if isinstance(obj, Mapping))):
        if _is_state_dict(candidate):
            state = dict(candidate)
            if all(k.startswith("module.") for k in state):
                state = {k[len("module."):]: v for k, v in state.items()}
            return state
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{source}: no state_dict found (expected tensors by name, or one under 'model' or 'state_dict'; got {keys})")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``path`` and return its state_dict; raises :class:`CheckpointError`."""
    path = Path(path)
    return extract_state_dict(read_checkpoint(path), str(path))


def _mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    return "; ".join(parts)


def load_weights(model: nn.Module, checkpoint: str | Path | Mapping[str, torch.Tensor], source: str | None = None) -> None:
    """Load a checkpoint file (or an in-memory state_dict) into ``model`` with ``strict=True``.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not match; the message names
            the file and lists the first missing and unexpected keys and shape mismatches.
    """
    if isinstance(checkpoint, Mapping):
        state, source = extract_state_dict(checkpoint, source or "state_dict"), source or "state_dict"
    else:
        state, source = load_state_dict(checkpoint), str(checkpoint)
    report = _mismatch_report(model, state)
    if report:
        raise CheckpointError(f"{source}: does not fit {type(model).__name__}: {report}")
    model.load_state_dict(state, strict=True)
