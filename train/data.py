"""Training and validation samples over a prepared cache, and the per-epoch batch order.

A training sample is one cache entry's image and K random objects of it (K = 1 by default; drawn
with replacement), each prompted by its tight box plus its own random margin per side (model
pixels), after random flips and a small shift common to the image and all K objects, then
normalised by :func:`infer.preprocess.preprocess_image` itself, so training sees exactly what
inference feeds the model; K > 1 lets the engine encode each image once for K decoder prompts.
Everything random is drawn from ``default_rng([seed, kind, epoch, position])``: a sample depends
only on where it sits in the epoch's global order, never on the process, the worker or how many
steps ran before, which makes resumed and multi-process runs reproduce single uninterrupted ones.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from infer.preprocess import PreprocessSpec, preprocess_image
from train.cache import Cache, Entry

__all__ = ["Augment", "SampleKey", "split_by_source", "balanced_weights", "EpochBatchSampler", "TrainSamples",
           "ValSamples", "tight_box"]

_ORDER, _SAMPLE, _VAL = 0, 1, 2  # independent random streams


@dataclass(frozen=True)
class Augment:
    """Sampling parameters, in model pixels: box margins are drawn from 0..box_margin per side,
    shifts from -max_shift..max_shift per axis; flips are horizontal and vertical, p = 0.5 each."""

    box_margin: int = 5
    max_shift: int = 4
    flip: bool = True


class SampleKey(NamedTuple):
    """What the batch sampler hands the dataset: the entry and where it sits in the epoch."""

    entry: int
    epoch: int
    position: int


def split_by_source(entries: Sequence[Entry], indices: Sequence[int], val_fraction: float,
                    seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) subsets of ``indices``, holding out whole source files per modality.

    Slices of one volume never straddle the split. Each modality with at least two source files
    holds out ``round(val_fraction * files)`` of them, at least one and never all.
    """
    by_modality: dict[str, set[str]] = {}
    for i in indices:
        by_modality.setdefault(entries[i].modality, set()).add(entries[i].source)
    held: set[str] = set()
    rng = np.random.default_rng([seed, _VAL])
    for modality in sorted(by_modality):
        sources = sorted(by_modality[modality])
        if val_fraction <= 0 or len(sources) < 2:
            continue
        n_val = min(len(sources) - 1, max(1, round(val_fraction * len(sources))))
        held.update(sources[i] for i in rng.permutation(len(sources))[:n_val])
    train = [i for i in indices if entries[i].source not in held]
    val = [i for i in indices if entries[i].source in held]
    return train, val


def balanced_weights(entries: Sequence[Entry], indices: Sequence[int]) -> np.ndarray:
    """Per-index sampling probabilities giving every modality the same total weight."""
    counts = Counter(entries[i].modality for i in indices)
    w = np.array([1.0 / counts[entries[i].modality] for i in indices])
    return w / w.sum()


class EpochBatchSampler(Sampler[list[SampleKey]]):
    """One process's batches of an epoch: ``DistributedSampler(shuffle=True, drop_last=True)`` with
    ``set_epoch``, plus optional balancing weights and a start step for exact mid-epoch resume.

    The epoch's global order is a permutation of the training indices (repeated when
    ``samples_per_epoch`` exceeds them) or, with ``weights``, a weighted draw with replacement.
    Global step ``t`` consumes positions ``[t G, (t + 1) G)`` with ``G = batch_size x world_size``;
    rank ``r`` takes the ``r``-th run of ``batch_size`` of them, so the union over ranks of one
    step is what one process with batch ``G`` sees.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, samples_per_epoch: int, seed: int, rank: int = 0,
                 world_size: int = 1, weights: np.ndarray | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.samples_per_epoch, self.seed, self.weights = samples_per_epoch, seed, weights
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = samples_per_epoch // self.global_batch
        if self.steps_per_epoch < 1:
            raise ValueError(f"{samples_per_epoch} samples per epoch make no global batch of {batch_size} x "
                             f"{world_size} process(es); lower --batch-size or add data")
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def global_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _ORDER, epoch])
        n = self.steps_per_epoch * self.global_batch
        if self.weights is not None:
            return self.indices[rng.choice(len(self.indices), size=n, p=self.weights)]
        rounds = -(-n // len(self.indices))
        return np.concatenate([self.indices[rng.permutation(len(self.indices))] for _ in range(rounds)])[:n]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self) -> Iterator[list[SampleKey]]:
        order = self.global_order(self.epoch)
        for step in range(self.start_step, self.steps_per_epoch):
            first = step * self.global_batch + self.rank * self.batch_size
            yield [SampleKey(int(order[p]), self.epoch, p) for p in range(first, first + self.batch_size)]


def tight_box(mask: np.ndarray) -> np.ndarray:
    """[x_min, y_min, x_max, y_max] (inclusive pixel indices) of a non-empty (h, w) mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)


def _model_input(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray,
                 spec: PreprocessSpec) -> dict[str, torch.Tensor]:
    """Normalise and pad through infer's pre-processing; the crop's longest side is already S.

    masks (K, h, w), boxes (K, 4) -> "mask" (K, S, S) and "box" (4 K,): the K boxes in a row, so
    one object keeps the (4,) layout and a batch's ``box.reshape(-1, 4)`` follows the masks' order.
    """
    tensor, geometry = preprocess_image(image, spec)
    k, h, w = masks.shape
    if (geometry.resized_h, geometry.resized_w) != (h, w):
        raise ValueError(f"cached crop {h} x {w} is not at model resolution {spec.image_size}")
    target = np.zeros((k, spec.image_size, spec.image_size), dtype=np.float32)
    target[:, :h, :w] = masks
    return {"image": torch.from_numpy(tensor[0]), "mask": torch.from_numpy(target),
            "box": torch.from_numpy(boxes.reshape(-1).astype(np.float32))}


def _shift(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate the first two axes by (dy, dx), filling with zeros."""
    out = np.zeros_like(array)
    h, w = array.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = array[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


class TrainSamples(Dataset):
    """``dataset[SampleKey]`` -> {"image" (3, S, S) float32, "mask" (K, S, S) float32 in {0, 1},
    "box" (4 K,) float32 XYXY model pixels}: ``objects`` = K random objects of the entry (with
    replacement, so an entry with fewer labels still gives K), augmented together.

    The random draws come in the order label(s), flips, shift, margins, so K = 1 draws exactly
    what one-object sampling always drew: the same key gives the same sample.
    """

    def __init__(self, cache: Cache, augment: Augment, seed: int, objects: int = 1) -> None:
        if objects < 1:
            raise ValueError(f"objects per sample must be >= 1, got {objects}")
        self.cache, self.augment, self.seed, self.objects = cache, augment, seed, objects

    def __len__(self) -> int:
        return len(self.cache.entries)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        entry = self.cache.entries[key.entry]
        image, labels = self.cache.arrays(entry)
        rng = np.random.default_rng([self.seed, _SAMPLE, key.epoch, key.position])
        chosen = np.asarray(entry.labels)[rng.integers(len(entry.labels), size=self.objects)]
        a = self.augment
        flips = rng.random(2) < 0.5
        if a.flip and flips[0]:
            image, labels = image[:, ::-1], labels[:, ::-1]
        if a.flip and flips[1]:
            image, labels = image[::-1], labels[::-1]
        masks = labels[:, :, None] == chosen  # (h, w, K): _shift moves the first two axes
        dy, dx = rng.integers(-a.max_shift, a.max_shift + 1, size=2)
        if a.max_shift and (dy or dx):
            shifted = _shift(masks, int(dy), int(dx))
            if shifted.any(axis=(0, 1)).all():  # an object pushed out of the frame: nothing moves
                image, masks = _shift(image, int(dy), int(dx)), shifted
        masks = masks.transpose(2, 0, 1)
        h, w = masks.shape[1:]
        margins = rng.integers(0, a.box_margin + 1, size=(self.objects, 4))
        boxes = np.stack([tight_box(m) for m in masks]) + margins * np.array([-1, -1, 1, 1])
        boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1])
        return _model_input(np.ascontiguousarray(image), masks, boxes, self.cache.spec)


class ValSamples(Dataset):
    """A fixed validation set: up to ``limit`` (entry, object) pairs of the held-out entries, drawn
    once from ``seed``; each prompted by its tight box grown by ``box_margin`` (no augmentation).
    Samples also carry "valid" (1, S, S): 1 on the unpadded region, where inference keeps the mask."""

    def __init__(self, cache: Cache, indices: Sequence[int], box_margin: int, limit: int, seed: int) -> None:
        self.cache, self.box_margin = cache, box_margin
        pairs = [(i, label) for i in indices for label in cache.entries[i].labels]
        if len(pairs) > limit:
            keep = np.sort(np.random.default_rng([seed, _VAL, 1]).permutation(len(pairs))[:limit])
            pairs = [pairs[k] for k in keep]
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry_index, label = self.pairs[index]
        image, labels = self.cache.arrays(self.cache.entries[entry_index])
        mask = labels == label
        h, w = mask.shape
        box = np.clip(tight_box(mask) + self.box_margin * np.array([-1, -1, 1, 1]), 0, [w - 1, h - 1, w - 1, h - 1])
        sample = _model_input(image, mask[None], box[None], self.cache.spec)
        sample["valid"] = torch.zeros_like(sample["mask"])
        sample["valid"][0, :h, :w] = 1
        return sample
