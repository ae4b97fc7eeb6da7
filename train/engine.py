"""The training loop shared by ``train_one_gpu.py`` and ``train_multi_gpus.py``.

One call, :func:`fit`, runs a whole (or resumed) training: AdamW with linear warm-up then cosine
decay, gradient clipping, bf16 autocast on CUDA, validation Dice on held-out source files after
every epoch, ``latest.pth`` at every epoch end (and every ``save_every`` steps), ``best.pth`` by
validation Dice. A run folder ``runs/<run>/`` (``-work_dir``) holds ``config.json`` (the resolved
configuration and what was derived from it), ``log.csv``, ``loss.png`` and the checkpoints;
with LoRA also ``latest_adapters.pth`` and ``best_adapters.pth``. Under DDP every process trains
on its share of each global batch and rank 0 alone writes.

The checkpoint files are :class:`train.train_checkpoint.TrainCheckpoint`. The setup of a run
(data, model, optimiser, run folder) is in small functions; :class:`_Run` keeps the loop.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Subset

from challenge.atomic import atomic_path
from challenge.names import canonical_modality
from train.cache import Cache, CacheError, open_cache
from train.clicks import click_rounds
from train.checkpoint import CheckpointError, load_weights, sha256_of
from train.config import TrainConfig
from train.data import Augment, EpochBatchSampler, TrainSamples, ValSamples, balanced_weights, split_by_source
from train.distributed import SINGLE, DistContext, resolve_device
from train.lora import QVLoRA, save_adapters
from train.losses import LossWeights, hard_dice, segmentation_loss
from train.models import Architecture, PromptableSegmenter, get_architecture
from train.runlog import RunLog
from train.train_checkpoint import TrainCheckpoint

__all__ = ["FitResult", "fit", "lr_factor", "select_entries"]

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class FitResult:
    run_dir: Path
    step: int
    epochs_done: int
    best_metric: float | None
    stopped_early: bool  # max_steps reached before num_epochs


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of the peak lr for optimiser step ``step`` (0-based): linear warm-up, then cosine to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def select_entries(cache: Cache, modalities: list[str] | None, datasets: list[str] | None) -> list[int]:
    """Indices of the cache entries in the given modalities (aliases accepted) and dataset folders.

    Raises:
        ValueError: a requested modality or dataset is not in the cache (the message lists what is).
    """
    entries = cache.entries
    chosen = list(range(len(entries)))
    for wanted, attr, norm in ((modalities, "modality", lambda s: (canonical_modality(s) or s).lower()),
                               (datasets, "dataset", lambda s: s)):
        if not wanted:
            continue
        present = {norm(getattr(entries[i], attr)) for i in chosen}
        missing = [w for w in wanted if norm(w) not in present]
        if missing:
            have = sorted({getattr(entries[i], attr) for i in chosen})
            raise ValueError(f"{attr} {', '.join(map(repr, missing))} not in the cache {cache.root} "
                             f"(it has {', '.join(have) or 'nothing'})")
        keep = {norm(w) for w in wanted}
        chosen = [i for i in chosen if norm(getattr(entries[i], attr)) in keep]
    return chosen


class _Trainee(nn.Module):
    """What DDP wraps: the model and its adapters, so that both own the trainable parameters."""

    def __init__(self, model: PromptableSegmenter, lora: QVLoRA | None, click_prompts: int = 0) -> None:
        super().__init__()
        self.model, self.lora, self.click_prompts = model, lora, click_prompts

    def forward(self, image: torch.Tensor, boxes: torch.Tensor,
                target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, S, S), boxes (B K, 4), image 0's K boxes first -> masks (B K, M, 256, 256), IoU (B K, M).

        The encoder, most of a step's cost, runs once per image; each embedding is repeated for its
        image's K boxes in one decoder call (one forward: what DDP expects). K = 1 is the plain model call.
        With ``click_prompts`` R and a ``target``, R rounds of simulated clicks follow the box
        (:func:`train.clicks.click_rounds`): outputs ((R + 1) B K, ...), target repeated R + 1 times.
        """
        k = boxes.shape[0] // image.shape[0]
        if self.click_prompts and target is not None:
            embeddings = self.model.embed(image).repeat_interleave(k, dim=0)
            first = self.model.decode(embeddings, boxes)
            return click_rounds(self.model, embeddings, boxes, first, target, self.click_prompts, image.shape[-1])
        if k == 1:
            return self.model(image, boxes)
        return self.model.decode(self.model.embed(image).repeat_interleave(k, dim=0), boxes)


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device, got {device}")
    return precision


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _unreachable_parameters(model: PromptableSegmenter, size: int, clicks: bool = False) -> set[str]:
    """Parameters a box-prompted forward never uses (point and mask prompt embeddings, the
    hypernetworks of mask tokens the model does not return; with ``clicks``, those a
    point-and-mask forward does not use either): frozen, so AdamW leaves them alone and DDP
    needs no ``find_unused_parameters``."""
    was_training = model.training
    model.eval()
    named = [(n, p) for n, p in model.named_parameters()]
    box = torch.tensor([[0.0, 0.0, size - 1.0, size - 1.0]])
    masks, iou = model(torch.zeros(1, 3, size, size), box)
    total = masks.sum() + iou.sum()
    if clicks:
        low = masks.shape[-1]
        masks, iou = model.decode_prompts(model.embed(torch.zeros(1, 3, size, size)), box.reshape(1, 2, 2),
                                          torch.tensor([[2.0, 3.0]]), torch.zeros(1, 1, low, low), torch.ones(1))
        total = total + masks.sum() + iou.sum()
    grads = torch.autograd.grad(total, [p for _, p in named], allow_unused=True)
    model.train(was_training)
    return {n for (n, _), g in zip(named, grads) if g is None}


def _set_trainable(model: PromptableSegmenter, lora: QVLoRA | None, config: TrainConfig,
                   unreachable: set[str]) -> list[nn.Parameter]:
    for name, p in model.named_parameters():
        frozen = (lora is not None or name in unreachable
                  or (config.freeze_encoder and name.startswith("image_encoder.")))
        p.requires_grad_(not frozen)
    return list(lora.parameters()) if lora is not None else [p for p in model.parameters() if p.requires_grad]


def _set_train_modes(model: PromptableSegmenter, config: TrainConfig) -> None:
    """Training mode, except frozen parts: a frozen encoder must not move its BatchNorm statistics either."""
    model.train()
    if config.freeze_encoder or config.lora_rank:
        model.image_encoder.eval()
    if config.freeze_bn:
        for m in model.modules():
            if isinstance(m, _BATCHNORM):
                m.eval()


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only, not on biases, norms and embeddings of one row."""
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0})
            if g["params"]]


def _rng_state() -> dict[str, Any]:
    # legacy=False: the default tuple's MT19937 state as a dict, which numpy's stubs type (the tuple's is dict-or-tuple).
    mt = np.random.get_state(legacy=False)
    keys, pos = mt["state"]["key"], mt["state"]["pos"]
    version, state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(mt["has_gauss"]), "gauss": float(mt["gauss"])},
            "python": {"version": version, "state": list(state), "gauss": py_gauss}}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _restore_weights(model: PromptableSegmenter, lora: QVLoRA | None, ckpt: TrainCheckpoint, source: str) -> None:
    load_weights(model, ckpt.model, source=source)
    if lora is None:
        return
    if ckpt.lora is None:
        raise CheckpointError(f"{source}: a LoRA run's checkpoint without its 'lora' adapters")
    model.load_state_dict(ckpt.lora["base_qkv"], strict=False)  # the merged qkv weights back to the base
    lora.load_state_dict(ckpt.lora["adapters"], strict=True)


def _check_sync_bn(config: TrainConfig, dist: DistContext, device: torch.device) -> None:
    if config.sync_bn and not (dist.world_size > 1 and device.type == "cuda"):
        raise ValueError(f"sync_bn needs several CUDA processes (train_multi_gpus.py on GPUs); this run has "
                         f"{dist.world_size} process(es) on {device}")


def _open_matching_cache(config: TrainConfig, arch: Architecture) -> Cache:
    """The prepared cache, refused when it was prepared for another architecture's pre-processing."""
    cache = open_cache(config.data_root)
    if cache.spec != arch.preprocess:
        raise CacheError(f"{config.data_root}: prepared for {cache.spec.image_size} px "
                         f"({cache.spec.to_json()}) but {config.arch} expects "
                         f"{arch.preprocess.to_json()}; prepare again with --arch {config.arch}")
    return cache


@dataclass(frozen=True)
class _DataPlan:
    """Which entries train and validate, in which batches; the configuration with derived values filled in."""

    train_idx: list[int]
    val_idx: list[int]
    sampler: EpochBatchSampler
    total_steps: int
    config: TrainConfig


def _plan_data(config: TrainConfig, cache: Cache, dist: DistContext) -> _DataPlan:
    selected = select_entries(cache, config.modalities, config.datasets)
    train_idx, val_idx = split_by_source(cache.entries, selected, config.val_fraction, config.seed)
    if not train_idx:
        raise ValueError(f"{config.data_root}: no training entries left after the filters and the split")
    weights = balanced_weights(cache.entries, train_idx) if config.balance_modalities else None
    samples = config.samples_per_epoch or len(train_idx)
    sampler = EpochBatchSampler(train_idx, config.batch_size, samples, config.seed, dist.rank, dist.world_size, weights)
    total_steps = config.num_epochs * sampler.steps_per_epoch
    warmup = config.warmup_steps if config.warmup_steps is not None else round(0.05 * total_steps)
    resolved = replace(config, lr=config.resolved_lr(), samples_per_epoch=samples, warmup_steps=warmup)
    return _DataPlan(train_idx, val_idx, sampler, total_steps, resolved)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _build_model(config: TrainConfig, arch: Architecture,
                 ckpt: TrainCheckpoint | None) -> tuple[PromptableSegmenter, QVLoRA | None, set[str]]:
    """The model (pretrained or resumed weights, SyncBN when asked), its LoRA adapters, its unreachable parameters."""
    model = arch.build()
    if ckpt is None and config.pretrained_checkpoint:
        load_weights(model, config.pretrained_checkpoint)
    if config.click_prompts and not model.accepts_points:
        raise ValueError(f"--click-prompts needs a model with SAM's prompt encoder; {config.arch} takes boxes only")
    unreachable = _unreachable_parameters(model, arch.preprocess.image_size, config.click_prompts > 0)
    lora = QVLoRA(model.image_encoder, config.lora_rank, config.lora_alpha) if config.lora_rank else None
    if ckpt is not None:
        _restore_weights(model, lora, ckpt, str(config.resume))
    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, lora, unreachable


def _distribute(trainee: _Trainee, dist: DistContext, device: torch.device) -> nn.Module:
    """DDP around the trainee when several processes train; the trainee itself otherwise."""
    if dist.world_size == 1:
        return trainee
    return DistributedDataParallel(trainee, device_ids=[device.index] if device.type == "cuda" else None)


def _optimizer(params: list[nn.Parameter], config: TrainConfig, total_steps: int) -> tuple[torch.optim.AdamW, LambdaLR]:
    optimizer = torch.optim.AdamW(_param_groups(params, config.weight_decay), lr=config.resolved_lr(), betas=(0.9, 0.999), eps=1e-8)
    assert config.warmup_steps is not None  # filled in by _plan_data
    scheduler = LambdaLR(optimizer, partial(lr_factor, warmup=config.warmup_steps, total=total_steps,
                                            floor=config.min_lr_ratio))
    return optimizer, scheduler


def _run_dir(config: TrainConfig) -> Path:
    """A resumed run continues in its checkpoint's folder; a new one gets ``work_dir/<run name>``."""
    if config.resume:
        return Path(config.resume).parent
    return Path(config.work_dir) / (config.run_name or f"{config.arch}-{datetime.now():%Y%m%d-%H%M%S}")


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


@dataclass
class _State:
    """The mutable parts of a run that a checkpoint records."""

    step: int = 0
    epochs_done: int = 0
    best: float | None = None
    best_step: int | None = None
    last_val: float | None = None


class _Run:
    """One process's share of a training run (see :func:`fit`)."""

    def __init__(self, config: TrainConfig, dist: DistContext, device: torch.device | None) -> None:
        self.dist = dist
        self.device = device or resolve_device(config.device, dist.local_rank)
        self.precision = _resolve_precision(config.precision, self.device)
        _check_sync_bn(config, dist, self.device)
        self.arch = get_architecture(config.arch)
        self.cache = _open_matching_cache(config, self.arch)
        plan = _plan_data(config, self.cache, dist)
        self.train_idx, self.sampler, self.total_steps = plan.train_idx, plan.sampler, plan.total_steps
        self.config = config = plan.config
        self.val_set = ValSamples(self.cache, plan.val_idx, config.val_box_margin, config.val_samples, config.seed)

        _seed_everything(config.seed)
        ckpt = TrainCheckpoint.load(Path(config.resume)) if config.resume else None
        if ckpt is not None:
            self._check_same_data(ckpt.run)
        model, self.lora, unreachable = _build_model(config, self.arch, ckpt)
        self.model = model.to(self.device)
        if self.lora is not None:
            self.lora.to(self.device).attach(self.model.image_encoder)
        self.params = _set_trainable(self.model, self.lora, config, unreachable)  # after the move: the live tensors
        self.trainee = _Trainee(self.model, self.lora, config.click_prompts)
        self.net = _distribute(self.trainee, dist, self.device)
        self.optimizer, self.scheduler = _optimizer(self.params, config, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.loss_weights = LossWeights(config.dice_weight, config.bce_weight, config.iou_weight)
        self.state = _State()
        self.previous_run: dict[str, Any] | None = None  # what the checkpoint recorded about its run
        if ckpt is not None:
            self._restore_training_state(ckpt)
            self.previous_run = ckpt.run
        self.run_dir = _run_dir(config)
        self.config = config = replace(config, run_name=self.run_dir.name)
        self.unreachable = sorted(unreachable)

    def _check_same_data(self, run: dict[str, Any]) -> None:
        """A resumed run must see the same epochs: same training split, same global batch."""
        if run.get("train_entries") not in (None, len(self.train_idx)):
            raise CheckpointError(f"{self.config.resume}: the run trained on {run['train_entries']} entries, the cache "
                                  f"{self.config.data_root} now gives {len(self.train_idx)}; resume with the same data")
        if run.get("global_batch") not in (None, self.sampler.global_batch):
            raise CheckpointError(
                f"{self.config.resume}: the run took global batches of {run['global_batch']} ({self.config.batch_size} "
                f"x {run.get('world_size')} processes); resuming with {self.dist.world_size} process(es) would take "
                f"{self.sampler.global_batch}: resume with {run.get('world_size')} process(es)")

    def _restore_training_state(self, ckpt: TrainCheckpoint) -> None:
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        # The next step's lr from this run's schedule (it differs from the saved one when num_epochs grew).
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        if self.scaler.is_enabled() and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)
        _set_rng_state(ckpt.rng)
        m = ckpt.metrics
        self.state = _State(int(ckpt.step), int(ckpt.epoch), m.get("best"), m.get("best_step"), m.get("val_dice"))

    # ----------------------------------------------------------------------------------- files (rank 0)

    def _run_info(self) -> dict[str, Any]:
        c, cache = self.config, self.cache
        trainable = sum(p.numel() for p in self.params)
        return {
            "device": str(self.device), "precision": self.precision, "world_size": self.dist.world_size,
            "global_batch": self.sampler.global_batch, "steps_per_epoch": self.sampler.steps_per_epoch,
            "total_steps": self.total_steps, "train_entries": len(self.train_idx),
            "val_objects": len(self.val_set),
            "selection_metric": "val_dice" if len(self.val_set) else "train_dice",
            "trainable_parameters": trainable,
            "total_parameters": sum(p.numel() for p in self.model.parameters()) + (
                sum(p.numel() for p in self.lora.parameters()) if self.lora else 0),
            "unreachable_parameters": self.unreachable,
            "pretrained_sha256": sha256_of(c.pretrained_checkpoint) if c.pretrained_checkpoint and not c.resume
            and Path(c.pretrained_checkpoint).is_file() else None,
            "cache": {"path": str(Path(c.data_root).resolve()), "entries": len(cache.entries),
                      "modalities": sorted({cache.entries[i].modality for i in self.train_idx})},
            "torch": str(torch.__version__), "resumed_at_step": self.state.step if c.resume else None,
            "written": datetime.now().isoformat(timespec="seconds"),
        }

    def _open_run_folder(self) -> None:
        """Rank 0's: the run folder and its config.json; sets ``self.info`` and ``self.log``, which only rank 0 has."""
        if self.config.resume:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            try:
                self.run_dir.mkdir(parents=True)
            except FileExistsError:
                raise ValueError(f"{self.run_dir}: run folder exists; pick another --run-name or -resume it") from None
        self.info = self._run_info()
        if self.previous_run is not None:  # the pretrained file may be gone by now; keep what the run started from
            self.info["pretrained_sha256"] = self.previous_run.get("pretrained_sha256")
        (self.run_dir / "config.json").write_text(
            json.dumps({"config": self.config.to_json(), "run": self.info}, indent=2) + "\n")
        self.log = RunLog(self.run_dir, keep_until_step=self.state.step if self.config.resume else None)

    def _checkpoint(self) -> TrainCheckpoint:
        s = self.state
        lora = None
        if self.lora is not None:
            lora = {"rank": self.lora.rank, "alpha": self.lora.alpha, "targets": list(self.lora.targets),
                    "adapters": {k: v.detach().cpu() for k, v in self.lora.state_dict().items()},
                    "base_qkv": {k: v.cpu() for k, v in self.lora.base_qkv(self.model).items()}}
        return TrainCheckpoint(
            model={k: v.detach().cpu() for k, v in (self.lora.merged_state_dict(self.model) if self.lora
                                                     else self.model.state_dict()).items()},
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), epoch=s.epochs_done, step=s.step, rng=_rng_state(),
            config=self.config.to_json(), run=self.info,
            metrics={"best": s.best, "best_step": s.best_step, "val_dice": s.last_val,
                     "selection_metric": self.info["selection_metric"]},
            lora=lora)

    def _save(self, best: bool) -> None:
        latest = self.run_dir / "latest.pth"
        self._checkpoint().save(latest)
        if self.lora is not None:
            sha, pretrained = self.info["pretrained_sha256"], self.config.pretrained_checkpoint
            base = {"checkpoint": Path(pretrained).name, "sha256": sha} if sha and pretrained else None
            with atomic_path(self.run_dir / "latest_adapters.pth") as tmp:
                save_adapters(self.lora, tmp, self.config.arch, base)
        if best:
            _copy_atomic(latest, self.run_dir / "best.pth")
            if self.lora is not None:
                _copy_atomic(self.run_dir / "latest_adapters.pth", self.run_dir / "best_adapters.pth")

    # ----------------------------------------------------------------------------------- loop

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[list[float], float]:
        dev = self.device
        image, target, box = (batch[k].to(dev, non_blocking=True) for k in ("image", "mask", "box"))
        target, box = target.reshape(-1, 1, *target.shape[2:]), box.reshape(-1, 4)  # B K objects, image-major
        with _autocast(dev, self.precision):
            masks, iou = self.net(image, box, target)
        target = target.repeat(len(masks) // len(target), 1, 1, 1)  # click rounds: one copy per round
        terms = segmentation_loss(masks, iou, target, self.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values = torch.stack([terms.total, terms.dice, terms.bce, terms.iou,
                              hard_dice(masks.detach().float(), target).mean()]).detach().double()
        return self.dist.mean(values).tolist(), lr

    def validate(self) -> float | None:
        """Mean hard Dice over the fixed validation objects (valid region only), or None without any."""
        if not len(self.val_set):
            return None
        shard = Subset(self.val_set, range(self.dist.rank, len(self.val_set), self.dist.world_size))
        loader = DataLoader(shard, batch_size=self.config.batch_size, num_workers=self.config.num_workers)
        self.trainee.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for batch in loader:
                image, target, box, valid = (batch[k].to(self.device) for k in ("image", "mask", "box", "valid"))
                with _autocast(self.device, self.precision):
                    masks, _ = self.trainee(image, box)
                dice = hard_dice(masks.float().masked_fill(valid == 0, -1.0), target)
                total += torch.stack([dice.sum().double(), torch.tensor(float(len(dice)), device=self.device)])
        total = self.dist.sum(total).cpu()
        return float(total[0] / total[1])

    def fit(self) -> FitResult:
        c, s, main = self.config, self.state, self.dist.is_main
        spe = self.sampler.steps_per_epoch
        if main:
            self._open_run_folder()
            mods = ", ".join(self.info["cache"]["modalities"])
            print(f"run {self.run_dir}: {c.arch} on {self.device} x{self.dist.world_size} ({self.precision}); "
                  f"{len(self.train_idx)} training entries ({mods}), {len(self.val_set)} validation objects; "
                  f"{self.info['trainable_parameters']:,} trainable parameters; {spe} steps/epoch x {c.num_epochs} "
                  f"epochs (global batch {self.sampler.global_batch}"
                  + (f" images x {c.objects_per_image} objects)" if c.objects_per_image > 1 else ")")
                  + (f"; resumed at step {s.step}" if c.resume else ""), flush=True)
        loader = DataLoader(TrainSamples(self.cache, Augment(c.box_margin, c.max_shift, c.flip), c.seed,
                                         c.objects_per_image),
                            batch_sampler=self.sampler, num_workers=c.num_workers,
                            pin_memory=self.device.type == "cuda")
        start_epoch, start_step = s.epochs_done, s.step - s.epochs_done * spe
        stopped = False
        started = time.perf_counter()
        if start_epoch >= c.num_epochs and main:
            print(f"nothing to do: the run has finished {start_epoch} of {c.num_epochs} epochs "
                  "(raise -num_epochs to continue)", flush=True)
        for epoch in range(start_epoch, c.num_epochs):
            self.sampler.set_epoch(epoch, start_step if epoch == start_epoch else 0)
            _set_train_modes(self.model, c)
            tick = time.perf_counter()
            for batch in loader:
                (loss, dice_l, bce_l, iou_l, dice), lr = self._train_step(batch)
                s.step += 1
                now = time.perf_counter()
                rate, tick = self.sampler.global_batch / (now - tick), now
                epoch_end = s.step == (epoch + 1) * spe
                if main:
                    self.log.append(kind="step", epoch=epoch + 1, step=s.step, loss=loss, dice_loss=dice_l,
                                    bce_loss=bce_l, iou_loss=iou_l, dice=dice, lr=lr, samples_per_s=rate,
                                    seconds=now - started)
                    if s.step % c.log_every == 0:
                        print(f"epoch {epoch + 1}/{c.num_epochs} step {s.step}/{self.total_steps}: loss {loss:.4f} "
                              f"dice {dice:.3f} lr {lr:.2e} {rate:.1f} samples/s"
                              + (f" ({rate * c.objects_per_image:.1f} objects/s)" if c.objects_per_image > 1 else ""),
                              flush=True)
                if c.max_steps is not None and s.step >= c.max_steps and not epoch_end:
                    stopped = True
                    break
                if c.save_every and s.step % c.save_every == 0 and not epoch_end and main:
                    self._save(best=False)
            if stopped:
                if main:
                    self._save(best=False)
                    print(f"stopped at step {s.step} (max_steps); -resume {self.run_dir / 'latest.pth'} continues",
                          flush=True)
                break
            self._end_epoch(epoch)
            if c.max_steps is not None and s.step >= c.max_steps and epoch + 1 < c.num_epochs:
                stopped = True
                if main:
                    print(f"stopped at step {s.step} (max_steps) after epoch {epoch + 1}", flush=True)
                break
        self.dist.barrier()
        return FitResult(self.run_dir, s.step, s.epochs_done, s.best, stopped)

    def _end_epoch(self, epoch: int) -> None:
        s = self.state
        s.epochs_done = epoch + 1
        s.last_val = self.validate()
        if not self.dist.is_main:
            return
        means = self.log.epoch_means(epoch + 1)
        metric = s.last_val if s.last_val is not None else means.get("dice")
        is_best = metric is not None and (s.best is None or metric > s.best)
        if is_best:
            s.best, s.best_step = metric, s.step
        self.log.append(kind="epoch", epoch=epoch + 1, step=s.step, lr=self.optimizer.param_groups[0]["lr"],
                        val_dice=s.last_val, **means)
        self._save(best=is_best)
        self.log.plot(self.run_dir / "loss.png")
        val = "n/a" if s.last_val is None else f"{s.last_val:.4f}"
        print(f"epoch {epoch + 1}/{self.config.num_epochs}: loss {means.get('loss', float('nan')):.4f} train dice "
              f"{means.get('dice', float('nan')):.4f} val dice {val} (best {s.best:.4f} at step {s.best_step}) -> "
              f"latest.pth{', best.pth' if is_best else ''}", flush=True)


def fit(config: TrainConfig, dist: DistContext = SINGLE, device: torch.device | None = None) -> FitResult:
    """Train (or resume) as ``config`` says; every process of a DDP run calls this with its context.

    Raises:
        ValueError: inconsistent configuration or data (the message names the value).
        CacheError, CheckpointError: unusable cache, pretrained weights or resume checkpoint.
    """
    return _Run(config, dist, device).fit()
