"""Index challenge training data once into a compact cache at model resolution (format: :mod:`train.cache`).

    python -m train.prepare --data-root DATA --out CACHE [--modalities PET Microscopy] [--datasets ...]

``DATA`` is laid out as the challenge ships it: ``<root>/<Modality>/<Dataset>/*.npz``, each with
``imgs`` (2D: (H, W, 3) or (H, W) uint8; 3D: (D, H, W) uint8) and ``gts`` (same spatial shape,
integer labels, 0 = background). The modality is the folder name, canonicalised with the same
alias rules as case file names (``Microscopy`` = ``Microscope``, ``XRay`` = ``X-Ray``). 2D images
become one entry each, 3D volumes one entry per slice with a label. Unreadable or malformed files
are reported by name and reason, skipped and counted; nothing is dropped silently. The cache is
assembled under a temporary name and renamed when complete.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from challenge.names import canonical_modality
from challenge.npz import NpzError, read_npz
from infer.preprocess import PreprocessSpec, geometry_for, preprocess_image, resize_for_model
from train.cache import CACHE_FORMAT, CACHE_VERSION, INFO_NAME, MANIFEST_NAME, Entry, write_manifest
from train.models import ARCHITECTURES, get_architecture

__all__ = ["PrepareSummary", "prepare", "main"]

_MAX_LABEL = np.iinfo(np.uint16).max


class BadFile(ValueError):
    """A source file that cannot be indexed; the message is the reason."""


@dataclass
class PrepareSummary:
    """What one preparation did (also written to ``cache.json``)."""

    entries: int = 0
    files: int = 0
    bad: list[dict[str, str]] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    vanished_slices: int = 0  # labelled slices whose every object disappeared at model resolution
    modalities: Counter = field(default_factory=Counter)
    datasets: Counter = field(default_factory=Counter)

    def line(self) -> str:
        mods = ", ".join(f"{m} {n}" for m, n in sorted(self.modalities.items()))
        return (f"{self.entries} entries from {self.files} files ({mods or 'none'}); {len(self.bad)} bad files "
                f"skipped; {len(self.unlabelled)} files without labels; {self.vanished_slices} labelled slices "
                "lost every object at model resolution")


def _resize_labels(labels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    g = geometry_for(spec, labels.shape[0], labels.shape[1])
    return cv2.resize(labels, (g.resized_w, g.resized_h), interpolation=cv2.INTER_NEAREST)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """``imgs`` and ``gts`` of ``path`` as (slices, H, W[, 3]) and (slices, H, W), and whether it is 3D.

    Raises:
        BadFile: unreadable file, missing key, wrong dtype, mismatched shapes, labels outside uint16.
    """
    try:
        arrays = read_npz(path, ("imgs", "gts"))
    except NpzError as exc:
        raise BadFile(exc.problem) from None
    imgs, gts = arrays["imgs"], arrays["gts"]
    if imgs.dtype != np.uint8:
        raise BadFile(f"imgs dtype {imgs.dtype}, expected uint8")
    if not (np.issubdtype(gts.dtype, np.integer) or gts.dtype == np.bool_):
        raise BadFile(f"gts dtype {gts.dtype}, expected integer labels")
    is_3d = gts.ndim == 3
    if not is_3d and gts.ndim == 2 and (imgs.shape == gts.shape or imgs.shape == (*gts.shape, 3)):
        imgs, gts = imgs[None], gts[None]
    elif not (is_3d and imgs.shape == gts.shape):
        raise BadFile(f"imgs shape {imgs.shape} and gts shape {gts.shape} do not match "
                      "(expected (H, W[, 3]) with (H, W), or (D, H, W) with (D, H, W))")
    if 0 in gts.shape:
        raise BadFile(f"empty arrays (gts shape {gts.shape})")
    lo, hi = int(gts.min()), int(gts.max())
    if lo < 0 or hi > _MAX_LABEL:
        raise BadFile(f"labels range {lo}..{hi}, expected 0..{_MAX_LABEL}")
    return imgs, gts, is_3d


@dataclass(frozen=True)
class _Job:
    path: Path
    source: str  # relative to the data root
    modality: str
    dataset: str
    out: Path  # staging cache root
    spec: PreprocessSpec


@dataclass
class _Result:
    source: str
    entries: list[Entry]
    bad: str | None = None
    vanished: int = 0


def _index_file(job: _Job) -> _Result:
    """Resize every labelled slice of one file, write its arrays, return its entries (or why it was skipped)."""
    try:
        imgs, gts, is_3d = _read_arrays(job.path)
    except BadFile as exc:
        return _Result(job.source, [], bad=str(exc))
    labelled = np.flatnonzero(gts.reshape(gts.shape[0], -1).any(axis=1))
    rel = Path("data") / job.path.parent.parent.name / job.dataset / job.path.stem
    images: list[np.ndarray] = []
    label_maps: list[np.ndarray] = []
    entries: list[Entry] = []
    vanished = 0
    label_dtype = np.uint8 if int(gts.max()) <= 255 else np.uint16
    for z in labelled:
        small_labels = _resize_labels(gts[z].astype(label_dtype), job.spec)
        present = np.unique(small_labels)
        present = present[present > 0]
        if present.size == 0:
            vanished += 1
            continue
        small = resize_for_model(imgs[z], job.spec)
        if not images and not np.array_equal(preprocess_image(small, job.spec)[0],
                                             preprocess_image(imgs[z], job.spec)[0]):
            raise RuntimeError(f"{job.source}: cached image does not reproduce infer.preprocess's model input")
        h, w = small_labels.shape
        entries.append(Entry(job.source, int(z) if is_3d else -1, job.modality, job.dataset, rel.as_posix(),
                             len(images), h, w, tuple(int(v) for v in present)))
        images.append(small)
        label_maps.append(small_labels)
    if images:
        target = job.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(f"{target}.imgs.npy", np.stack(images), allow_pickle=False)
        np.save(f"{target}.gts.npy", np.stack(label_maps), allow_pickle=False)
    return _Result(job.source, entries, vanished=vanished)


def _select(names: Sequence[str], wanted: Sequence[str] | None, what: str, key=lambda s: s) -> set[str]:
    """The subset of ``names`` matching ``wanted`` (all when None); a value matching nothing is an error."""
    if wanted is None:
        return set(names)
    by_key = {key(n): n for n in names}
    unknown = [w for w in wanted if key(w) not in by_key]
    if unknown:
        raise ValueError(f"{what} {', '.join(map(repr, unknown))} not found; "
                         f"the data has {', '.join(sorted(set(names))) or 'none'}")
    return {by_key[key(w)] for w in wanted}


def _canonical(folder: str) -> str:
    return canonical_modality(folder) or folder


def _jobs(data_root: Path, out: Path, spec: PreprocessSpec, modalities: Sequence[str] | None,
          datasets: Sequence[str] | None) -> list[_Job]:
    files = sorted(p for p in data_root.glob("*/*/*.npz") if p.is_file())
    if not files:
        raise ValueError(f"{data_root}: no <Modality>/<Dataset>/*.npz files")
    mods = _select([_canonical(p.parent.parent.name) for p in files], modalities, "modality",
                   key=lambda s: _canonical(s).lower())
    files = [p for p in files if _canonical(p.parent.parent.name) in mods]
    sets = _select([p.parent.name for p in files], datasets, "dataset")
    return [_Job(p, p.relative_to(data_root).as_posix(), _canonical(p.parent.parent.name), p.parent.name, out, spec)
            for p in files if p.parent.name in sets]


def _run(jobs: list[_Job], workers: int) -> Iterator[_Result]:
    if workers <= 1:
        yield from map(_index_file, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_index_file, jobs, chunksize=4)


def prepare(data_root: str | Path, out: str | Path, spec: PreprocessSpec, *, modalities: Sequence[str] | None = None,
            datasets: Sequence[str] | None = None, workers: int = 1, force: bool = False,
            report=lambda line: print(line, file=sys.stderr)) -> PrepareSummary:
    """Build the cache ``out`` from ``data_root``; ``report`` receives one line per skipped file.

    Raises:
        ValueError: missing data root or no files, a filter value that matches nothing, a spec
            the cache cannot store (only longest-side resize with min-max normalisation),
            or ``out`` exists without ``force``.
        FileExistsError: ``out`` exists and ``force`` is false.
    """
    data_root, out = Path(data_root), Path(out)
    if spec.resize != "longest_side" or spec.normalization != "minmax":
        raise ValueError(f"the cache stores uint8 images before min-max; preprocessing {spec.resize}/"
                         f"{spec.normalization} is not supported (LiteMedSAM-style specs only)")
    if not data_root.is_dir():
        raise ValueError(f"{data_root}: data root not found")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        jobs = _jobs(data_root, staging, spec, modalities, datasets)
        summary, entries = PrepareSummary(), []
        for result in _run(jobs, workers):
            if result.bad is not None:
                summary.bad.append({"source": result.source, "reason": result.bad})
                report(f"skipped {result.source}: {result.bad}")
            elif not result.entries:
                summary.unlabelled.append(result.source)
            summary.vanished_slices += result.vanished
            summary.files += bool(result.entries)
            for e in result.entries:
                summary.modalities[e.modality] += 1
                summary.datasets[f"{e.modality}/{e.dataset}"] += 1
            entries.extend(result.entries)
        summary.entries = len(entries)
        write_manifest(staging / MANIFEST_NAME, entries)
        info = {
            "format": CACHE_FORMAT, "version": CACHE_VERSION, "preprocess": spec.to_json(),
            "data_root": str(data_root.resolve()),
            "filters": {"modalities": list(modalities) if modalities else None,
                        "datasets": list(datasets) if datasets else None},
            "entries": summary.entries, "files": summary.files, "modalities": dict(sorted(summary.modalities.items())),
            "datasets": dict(sorted(summary.datasets.items())), "bad_files": summary.bad,
            "unlabelled_files": summary.unlabelled, "vanished_slices": summary.vanished_slices,
        }
        (staging / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True, help="folder of <Modality>/<Dataset>/*.npz")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    p.add_argument("--modalities", nargs="+",
                   help="only these modality folders (aliases accepted: Microscopy/Microscope, XRay/X-Ray)")
    p.add_argument("--datasets", nargs="+", help="only these dataset folders")
    p.add_argument("--arch", default="litemedsam",
                   help="architecture whose pre-processing the cache uses "
                        f"(default litemedsam; {', '.join(ARCHITECTURES)})")
    p.add_argument("--workers", type=int, default=1, help="processes indexing files in parallel (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing cache")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        spec = get_architecture(args.arch).preprocess
        summary = prepare(args.data_root, args.out, spec, modalities=args.modalities, datasets=args.datasets,
                          workers=args.workers, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {summary.line()}")
    return 0 if summary.entries else 1


if __name__ == "__main__":
    raise SystemExit(main())
