"""Training configuration: one dataclass, the command-line flags that set it, and resume rules.

Precedence: the dataclass defaults, then a ``--config`` JSON file (field names as keys), then
the flags given on the command line; a flag not given never overrides anything. Resuming starts
from the configuration saved in the checkpoint instead, and only :data:`RESUME_OVERRIDES` may
change (anything else that differs is an error naming the fields). The engine fills the fields
left ``None`` (lr, warm-up, epoch size, device, precision) and records the result in the run folder.

Every flag has a ``--kebab-case`` name; the public training scripts' names (``-data_root``,
``-pretrained_checkpoint``, ``-work_dir``, ``-batch_size``, ``-num_workers``, ``-num_epochs``,
``-lr``, ``-resume``) are accepted as aliases.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from train.models import ARCHITECTURES, get_architecture
from train.train_checkpoint import read_saved_config

__all__ = ["TrainConfig", "RESUME_OVERRIDES", "build_parser", "config_from_argv", "resolve_config",
           "checkpoint_path", "DEFAULT_LR", "DEFAULT_LORA_LR"]

DEFAULT_LR = 5e-5  # fine-tuning pretrained weights (the public one-GPU script's value)
DEFAULT_LORA_LR = 5e-4  # adapters start at zero and need larger steps
PRECISIONS = ("auto", "bf16", "fp16", "fp32")

RESUME_OVERRIDES = frozenset({"resume", "num_epochs", "num_workers", "device", "max_steps", "log_every",
                              "save_every", "data_root"})
"""Fields a resumed run may change: where and how fast it runs, how long, not what it learns."""
_PER_INVOCATION = frozenset({"resume", "max_steps"})  # never inherited from the saved config


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Pixel quantities are in model space (S x S)."""

    data_root: str = ""  # a cache written by python -m train.prepare
    work_dir: str = "runs"  # run folders (checkpoints); work_dir/ holds only exported models
    run_name: str | None = None  # default: <arch>-<YYYYmmdd-HHMMSS>
    arch: str = "litemedsam"
    pretrained_checkpoint: str | None = None
    modalities: list[str] | None = None
    datasets: list[str] | None = None
    val_fraction: float = 0.1
    val_samples: int = 2000
    val_box_margin: int = 2
    balance_modalities: bool = False
    samples_per_epoch: int | None = None  # default: the training split's size
    batch_size: int = 8  # images per process
    objects_per_image: int = 1  # objects (box + mask) per training image; the encoder runs once per image
    num_workers: int = 4
    num_epochs: int = 10
    lr: float | None = None
    min_lr_ratio: float = 0.01
    warmup_steps: int | None = None  # default: 5 % of all steps
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    box_margin: int = 5
    max_shift: int = 4
    flip: bool = True
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    iou_weight: float = 1.0
    freeze_encoder: bool = False
    freeze_bn: bool = False
    sync_bn: bool = False
    click_prompts: int = 0  # rounds of simulated clicks after the box prediction (train.clicks)
    lora_rank: int = 0
    lora_alpha: float | None = None  # default: the rank (update scale 1)
    precision: str = "auto"  # bf16 on CUDA, fp32 on CPU
    device: str = "auto"
    seed: int = 0
    save_every: int = 0  # also write latest.pth every N steps (0: at epoch ends only)
    log_every: int = 10
    max_steps: int | None = None  # stop (and save latest.pth) after this global step
    resume: str | None = None

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        if not self.data_root:
            raise ValueError("data_root is required (-data_root / --data-root: a cache from python -m train.prepare)")
        positive = ("batch_size", "objects_per_image", "num_epochs", "val_samples", "log_every")
        non_negative = ("num_workers", "val_box_margin", "box_margin", "max_shift", "lora_rank", "save_every",
                        "click_prompts",
                        "seed", "weight_decay", "grad_clip", "dice_weight", "bce_weight", "iou_weight")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("samples_per_epoch", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        if self.lora_rank and self.freeze_encoder:
            raise ValueError("lora_rank > 0 already freezes the whole base model; drop freeze_encoder")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device {self.device!r}: expected auto, cpu, cuda or cuda:N")

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LORA_LR if self.lora_rank else DEFAULT_LR

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# (field, flag names, argparse keywords, help); the public scripts' names come first where they exist.
_FLAGS: list[tuple[str, tuple[str, ...], dict[str, Any], str]] = [
    ("data_root", ("-data_root", "--data-root"), {}, "prepared cache folder (python -m train.prepare --out)"),
    ("pretrained_checkpoint", ("-pretrained_checkpoint", "--pretrained-checkpoint"), {},
     "initial weights (plain state_dict, {'model': ...}, DDP prefix ok); default: random init"),
    ("work_dir", ("-work_dir", "--work-dir"), {}, "folder receiving the run folder (default runs)"),
    ("batch_size", ("-batch_size", "--batch-size"), {"type": int},
     "samples (images) per process and step (default 8)"),
    ("objects_per_image", ("--objects-per-image",), {"type": int},
     "objects (box + mask) per sample, drawn with replacement; one encoder pass per image (default 1)"),
    ("num_workers", ("-num_workers", "--num-workers"), {"type": int}, "data loader processes (default 4)"),
    ("num_epochs", ("-num_epochs", "--num-epochs"), {"type": int}, "epochs (default 10)"),
    ("lr", ("-lr", "--lr"), {"type": float}, f"peak learning rate (default {DEFAULT_LR}; {DEFAULT_LORA_LR} with LoRA)"),
    ("resume", ("-resume", "--resume"), {}, "latest.pth (or its run folder) to continue exactly where it stopped"),
    ("arch", ("--arch",), {}, f"architecture (default litemedsam): {', '.join(ARCHITECTURES)}"),
    ("run_name", ("--run-name",), {}, "run folder name under work_dir (default <arch>-<timestamp>)"),
    ("modalities", ("--modalities",), {"nargs": "+"}, "train on these modalities only (aliases accepted)"),
    ("datasets", ("--datasets",), {"nargs": "+"}, "train on these dataset folders only"),
    ("val_fraction", ("--val-fraction",), {"type": float}, "source files held out per modality (default 0.1)"),
    ("val_samples", ("--val-samples",), {"type": int}, "objects in the fixed validation set (default 2000)"),
    ("val_box_margin", ("--val-box-margin",), {"type": int}, "validation box margin, model px (default 2)"),
    ("balance_modalities", ("--balance-modalities",), {"action": "store_true"},
     "draw every modality equally often (with replacement)"),
    ("samples_per_epoch", ("--samples-per-epoch",), {"type": int}, "samples per epoch (default: training split size)"),
    ("min_lr_ratio", ("--min-lr-ratio",), {"type": float}, "final lr / peak lr of the cosine (default 0.01)"),
    ("warmup_steps", ("--warmup-steps",), {"type": int}, "linear warm-up steps (default 5%% of all steps)"),
    ("weight_decay", ("--weight-decay",), {"type": float}, "AdamW weight decay on weights (default 0.01)"),
    ("grad_clip", ("--grad-clip",), {"type": float}, "max gradient norm, 0 = off (default 1.0)"),
    ("box_margin", ("--box-margin", "-bbox_shift"), {"type": int},
     "max random box margin per side, model px (default 5)"),
    ("max_shift", ("--max-shift",), {"type": int}, "max random shift per axis, model px (default 4)"),
    ("flip", ("--no-flip",), {"action": "store_false"}, "no random flips"),
    ("dice_weight", ("--dice-weight",), {"type": float}, "Dice loss weight (default 1)"),
    ("bce_weight", ("--bce-weight",), {"type": float}, "BCE loss weight (default 1)"),
    ("iou_weight", ("--iou-weight",), {"type": float}, "IoU-prediction MSE weight (default 1)"),
    ("freeze_encoder", ("--freeze-encoder",), {"action": "store_true"}, "train prompt encoder and decoder only"),
    ("freeze_bn", ("--freeze-bn",), {"action": "store_true"},
     "BatchNorm uses and keeps its running statistics (small per-process batches)"),
    ("sync_bn", ("--sync-bn",), {"action": "store_true"}, "SyncBatchNorm across processes (multi-GPU, CUDA)"),
    ("click_prompts", ("--click-prompts",), {"type": int},
     "rounds of simulated clicks (from the error region) after the box, each decoded with the clicks so far "
     "and the last mask as prompt (default 0: boxes only)"),
    ("lora_rank", ("--lora-rank",), {"type": int}, "LoRA rank on the encoder's attention Q/V, base frozen (0 = off)"),
    ("lora_alpha", ("--lora-alpha",), {"type": float}, "LoRA alpha, update scale alpha/rank (default: the rank)"),
    ("precision", ("--precision",), {"choices": PRECISIONS}, "auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32"),
    ("device", ("--device",), {}, "auto, cpu, cuda or cuda:N (multi-GPU: each process its LOCAL_RANK's GPU)"),
    ("seed", ("--seed",), {"type": int}, "seed of initialisation, split, order and augmentation (default 0)"),
    ("save_every", ("--save-every",), {"type": int}, "also write latest.pth every N steps (default 0: epoch ends)"),
    ("log_every", ("--log-every",), {"type": int}, "print a progress line every N steps (default 10)"),
    ("max_steps", ("--max-steps",), {"type": int}, "stop after this global step, saving latest.pth"),
]


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The training flags; only flags actually given appear in the parsed namespace."""
    p = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig fields (flags override it)")
    for dest, names, kwargs, text in _FLAGS:
        p.add_argument(*names, dest=dest, help=text, **kwargs)
    return p


def checkpoint_path(resume: str | Path) -> Path:
    """The checkpoint ``resume`` names: a file, or a run folder's ``latest.pth``."""
    path = Path(resume)
    path = path / "latest.pth" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"{resume}: no checkpoint to resume from (expected latest.pth or its run folder)")
    return path


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable config file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of TrainConfig fields")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def resolve_config(given: dict[str, Any], saved: dict[str, Any] | None = None) -> TrainConfig:
    """The run's configuration from the given values and, when resuming, the saved configuration.

    Raises:
        ValueError: an invalid value, or a resumed run changing a field outside RESUME_OVERRIDES.
    """
    given = dict(given)
    config_file = given.pop("config", None)
    values = _read_config_file(Path(config_file)) if config_file else {}
    values.update(given)
    if saved is None:
        return TrainConfig(**values)
    # A field newer than the checkpoint ran at its default: the default reproduces what that run did.
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    base = {k: v for k, v in {**defaults, **saved}.items() if k not in _PER_INVOCATION}
    changed = sorted(k for k, v in values.items() if k not in RESUME_OVERRIDES and base.get(k) != v)
    if changed:
        detail = ", ".join(f"{k} {base.get(k)!r} -> {values[k]!r}" for k in changed)
        raise ValueError(f"a resumed run keeps its configuration; cannot change {detail} "
                         f"(changeable: {', '.join(sorted(RESUME_OVERRIDES))})")
    return TrainConfig(**{**base, **values})


def config_from_argv(argv: list[str] | None, prog: str, description: str) -> TrainConfig:
    """Parse ``argv``; with ``-resume``, start from the checkpoint's saved configuration."""
    given = vars(build_parser(prog, description).parse_args(argv))
    saved = None
    if "resume" in given:
        path = checkpoint_path(given["resume"])
        saved = read_saved_config(path)
        given["resume"] = str(path)
    return resolve_config(given, saved)
