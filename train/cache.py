"""The prepared training cache: its on-disk format, written by :mod:`train.prepare`, read by :mod:`train.data`.

Why a cache: the challenge ships full-resolution npz files (3D volumes of hundreds of slices,
2D images up to 4032 x 3024); decoding and resizing them for every sample would dominate
training, and the public scripts' float64 full-resolution npy copies (docs/reference_systems.md section 7 #21) are
~40x larger than needed. Each entry is stored once, at model resolution, as uint8::

    CACHE/cache.json       format, pre-processing spec, data root, filters, counts, skipped files
    CACHE/manifest.csv     one row per entry: source, slice, modality, dataset, file, row, height, width, labels
    CACHE/data/<Modality>/<Dataset>/<stem>.imgs.npy   (K, h, w) grey or (K, h, w, 3) RGB uint8
    CACHE/data/<Modality>/<Dataset>/<stem>.gts.npy    (K, h, w) uint8 or uint16 label maps

Row ``k`` of a source file's arrays is one entry: the image resized exactly as
:func:`infer.preprocess.preprocess_image` resizes it (longest side to S, ``INTER_AREA``), before
min-max, cropped to the valid (unpadded) ``h x w`` region; the label map went through the same
geometry with ``INTER_NEAREST``. Because ``max(h, w) == S``, ``preprocess_image`` applied to the
stored crop reproduces the original image's model input bit for bit (checked while preparing).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from infer.preprocess import PreprocessSpec

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "CacheError", "Entry", "Cache", "open_cache", "write_manifest"]

CACHE_FORMAT = "medsam-laptop-train-cache"
CACHE_VERSION = 1
INFO_NAME = "cache.json"
MANIFEST_NAME = "manifest.csv"
_COLUMNS = ("source", "slice", "modality", "dataset", "file", "row", "height", "width", "labels")


class CacheError(ValueError):
    """A folder that is not a complete prepared cache, or one that does not fit the requested model."""


@dataclass(frozen=True)
class Entry:
    """One training image: a 2D image (``slice == -1``) or one labelled slice of a 3D volume.

    ``source`` is relative to the data root, ``file`` (the arrays' stem) relative to the cache;
    ``height`` x ``width`` is the valid region at model resolution; ``labels`` the label values
    present there, ascending.
    """

    source: str
    slice: int
    modality: str
    dataset: str
    file: str
    row: int
    height: int
    width: int
    labels: tuple[int, ...]


def write_manifest(path: Path, entries: Iterable[Entry]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(_COLUMNS)
        for e in entries:
            writer.writerow([e.source, e.slice, e.modality, e.dataset, e.file, e.row, e.height, e.width,
                             " ".join(map(str, e.labels))])


def _read_manifest(path: Path) -> list[Entry]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, ()))
        if header != _COLUMNS:
            raise CacheError(f"{path}: unexpected columns {list(header)}; expected {list(_COLUMNS)}")
        try:
            return [Entry(src, int(z), mod, ds, f, int(row), int(h), int(w), tuple(int(v) for v in labels.split()))
                    for src, z, mod, ds, f, row, h, w, labels in reader]
        except ValueError as exc:
            raise CacheError(f"{path}: line {reader.line_num}: {exc}") from None


@dataclass(frozen=True)
class Cache:
    """A prepared cache opened for reading (entries in manifest order)."""

    root: Path
    info: dict[str, Any]
    spec: PreprocessSpec
    entries: list[Entry]

    def arrays(self, entry: Entry) -> tuple[np.ndarray, np.ndarray]:
        """(image (h, w) or (h, w, 3) uint8, labels (h, w) uint8/uint16) of ``entry``, memory-mapped rows."""
        base = self.root / entry.file
        images = np.load(f"{base}.imgs.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(f"{base}.gts.npy", mmap_mode="r", allow_pickle=False)
        return np.array(images[entry.row]), np.array(labels[entry.row])


def open_cache(root: str | Path) -> Cache:
    """Open a cache written by ``python -m train.prepare``.

    Raises:
        CacheError: no ``cache.json`` (not a cache, or preparation did not finish), another
            format or version, or an unreadable manifest.
    """
    root = Path(root)
    info_path = root / INFO_NAME
    if not info_path.is_file():
        hint = (" (it holds <Modality>/<Dataset>/*.npz: prepare it first with "
                f"python -m train.prepare --data-root {root} --out CACHE)") if any(root.glob("*/*/*.npz")) else ""
        raise CacheError(f"{root}: not a prepared training cache, no {INFO_NAME}{hint}")
    info = json.loads(info_path.read_text())
    if info.get("format") != CACHE_FORMAT or info.get("version") != CACHE_VERSION:
        raise CacheError(f"{info_path}: format {info.get('format')!r} version {info.get('version')!r}; "
                         f"expected {CACHE_FORMAT!r} version {CACHE_VERSION}")
    return Cache(root, info, PreprocessSpec.from_json(info["preprocess"]), _read_manifest(root / MANIFEST_NAME))
