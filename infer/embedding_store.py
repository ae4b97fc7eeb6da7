"""Slice embeddings kept on disk between the steps of one interactive case.

The CVPR 2025 evaluator runs each of a case's six steps in a fresh container but keeps the
mounted outputs folder (docs/interactive.md), so the box step's slice embeddings, saved there,
spare the click steps their encoder calls: an embedding is 4 MiB to read against about a second
of encoder on a laptop CPU. Embeddings are stored exactly (float32), so a step gives the same
masks with or without the store.

Layout: ``<outputs>/.medsam-embeddings/<case stem>/`` holds ``model.txt`` (which model and
precision made the embeddings) and one ``<key>.npy`` per slice, the key a hash of the slice's
pixels. Bounded and short-lived: writes stop at ``budget_bytes``; opening the store for a case
removes every other case's folder (the evaluator runs one case at a time, so those are stale)
and this case's folder when another model made it; the last click step removes it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from challenge.atomic import atomic_path
from infer.models import LoadedModel

__all__ = ["STORE_DIR", "DEFAULT_STORE_BYTES", "EmbeddingStore", "model_fingerprint"]

STORE_DIR = ".medsam-embeddings"
DEFAULT_STORE_BYTES = 2 << 30
"""2 GiB: 512 slices of LiteMedSAM's (1, 256, 64, 64) float32 embedding."""

_FINGERPRINT_FILE = "model.txt"


def model_fingerprint(model: LoadedModel) -> str:
    """What the embeddings depend on: the model folder and its sidecar, the encoder file's size
    and time, the runtime and the precision."""
    spec = model.spec
    encoder = next((spec.folder / name for name in spec.files["encoder"].values()
                    if (spec.folder / name).is_file()), None)
    stat = encoder.stat() if encoder is not None else None
    parts = [str(spec.folder.resolve()), json.dumps(spec.raw, sort_keys=True), type(model.encoder).__name__,
             model.precision, f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "-"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class EmbeddingStore:
    """One case's slice embeddings on disk (see the module docstring)."""

    def __init__(self, folder: Path, budget_bytes: int) -> None:
        self.folder, self.budget = folder, budget_bytes
        self.used = sum(path.stat().st_size for path in folder.glob("*.npy"))

    @classmethod
    def open(cls, root: Path, case: str, fingerprint: str, budget_bytes: int = DEFAULT_STORE_BYTES) -> EmbeddingStore:
        """The store of ``case`` under ``root``, after removing the stale ones (other cases, or
        this case's made by another model)."""
        root.mkdir(parents=True, exist_ok=True)
        for other in root.iterdir():
            if other.name != case:
                _remove(other)
        folder = root / case
        marker = folder / _FINGERPRINT_FILE
        if folder.exists() and (not marker.is_file() or marker.read_text() != fingerprint):
            _remove(folder)
        if not folder.exists():
            folder.mkdir()
            _write_text(marker, fingerprint)
        return cls(folder, budget_bytes)

    @staticmethod
    def key(image: np.ndarray) -> str:
        """The slice's identity: a hash of its shape, type and pixels."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{image.shape}{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.hexdigest()

    def load(self, key: str) -> np.ndarray | None:
        """The stored embedding of ``key`` when there is a readable one (float32, one image), else None."""
        path = self.folder / f"{key}.npy"
        try:
            embedding = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if embedding.dtype != np.float32 or embedding.ndim != 4 or embedding.shape[0] != 1:
            return None
        return embedding

    def save(self, key: str, embedding: np.ndarray) -> None:
        """Store ``embedding`` while the budget allows (atomically; a full disk only stops storing)."""
        path = self.folder / f"{key}.npy"
        size = embedding.nbytes + 128  # the .npy header
        if self.used + size > self.budget or path.exists():
            return
        try:
            with atomic_path(path) as temp:
                np.save(temp, np.ascontiguousarray(embedding, np.float32), allow_pickle=False)
        except OSError:
            return
        self.used += size

    def remove(self) -> None:
        """Drop this case's store (its last step is done), and the root folder when it is empty."""
        _remove(self.folder)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass  # another case's store, or already gone


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text)
