"""Shared by the training tests: a tiny 64 px LiteMedSAM-shaped architecture and synthetic
challenge-layout training data (``<root>/<Modality>/<Dataset>/*.npz``) from test_demo's phantoms."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from infer.preprocess import LITEMEDSAM_PREPROCESS
from test_demo.generate import training_cases
from train.models import ARCHITECTURES, Architecture, sam_heads
from train.models.sam import LiteMedSAM
from train.models.tiny_vit import TinyViT

TINY = "tiny_train"
TINY_SPEC = dataclasses.replace(LITEMEDSAM_PREPROCESS, image_size=64)
# Folder names as the challenge's training set spells them (test-set spellings are the aliases).
FOLDERS = {"X-Ray": "XRay", "Microscope": "Microscopy"}


def _build_tiny() -> LiteMedSAM:
    encoder = TinyViT(img_size=64, embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2),
                      out_chans=32)
    return LiteMedSAM(encoder, sam_heads.MaskDecoder(transformer_dim=32, num_heads=2, mlp_dim=64,
                                                     iou_head_hidden_dim=32))


def tiny_architecture() -> Architecture:
    """LiteMedSAM's layout (TinyViT stages, SAM heads) at width 8-32 and 64 px: ~0.1 s per training step."""
    return Architecture(TINY, _build_tiny, TINY_SPEC, "single", "test-only tiny LiteMedSAM at 64 px")


@pytest.fixture
def tiny(monkeypatch) -> Architecture:
    """The tiny architecture registered for one test, torch on one thread (on a shared, loaded machine
    two OpenMP threads per process run several times slower than one), both undone afterwards."""
    arch = tiny_architecture()
    monkeypatch.setitem(ARCHITECTURES, TINY, arch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield arch
    torch.set_num_threads(threads)


def register_tiny() -> None:
    """For child processes, which monkeypatch cannot reach."""
    ARCHITECTURES[TINY] = tiny_architecture()


def write_training_tree(root: Path, n: int, seed: int = 0, dataset: str = "Synth") -> list[Path]:
    """``n`` training cases (all modalities in turn) as ``root/<Modality folder>/<dataset>/<name>.npz``."""
    paths = []
    for case in training_cases(n, seed):
        modality = case.name.split("_")[1]
        folder = root / FOLDERS.get(modality, modality) / dataset
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"imgs": case.imgs, "gts": case.gts}
        if case.spacing is not None:
            arrays["spacing"] = case.spacing
        paths.append(folder / f"{case.name}.npz")
        np.savez_compressed(paths[-1], **arrays)
    return paths


def make_cache(folder: Path, n: int = 12, seed: int = 0) -> Path:
    """Synthetic training data under ``folder/data`` prepared at the tiny model's 64 px into ``folder/cache``."""
    from train.prepare import prepare

    write_training_tree(folder / "data", n, seed)
    prepare(folder / "data", folder / "cache", TINY_SPEC, report=lambda line: None)
    return folder / "cache"


def tiny_config(cache: Path, work: Path, **overrides):
    """A run of the tiny model small enough for a unit test (overrides: any TrainConfig field)."""
    from train.config import TrainConfig

    values = dict(data_root=str(cache), work_dir=str(work), run_name="run", arch=TINY, batch_size=4, num_workers=0,
                  num_epochs=2, samples_per_epoch=8, val_samples=8, log_every=1000, lr=3e-3, seed=0)
    return TrainConfig(**{**values, **overrides})
