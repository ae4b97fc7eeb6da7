"""Exported models, loaded on first use and kept for the process (compile once per model).

A model is a folder under the models directory (``work_dir/<name>``) described by its sidecar
(:mod:`infer.model_spec`). :class:`ModelPool` loads a folder only when a case routed to it
arrives, so a run over 2D cases never compiles the PET model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infer.errors import ModelError
from infer.model_spec import ModelSpec, load_model_spec
from infer.session import Session, open_session

__all__ = ["LoadedModel", "ModelPool", "load_model"]


@dataclass(frozen=True)
class LoadedModel:
    """A model folder's sidecar with its compiled encoder and decoder."""

    spec: ModelSpec
    encoder: Session
    decoder: Session


def load_model(folder: Path, backend: str, threads: int, cache_dir: Path | None = None) -> LoadedModel:
    """Read ``folder``'s sidecar and compile its encoder and decoder for ``backend``.

    Raises:
        ModelError: missing folder, bad sidecar, missing model files, runtime rejection.
    """
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    try:
        spec = load_model_spec(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelError(str(exc)) from None
    try:
        encoder = open_session(spec.model_file("encoder", backend), backend, threads, cache_dir)
        decoder = open_session(spec.model_file("decoder", backend), backend, threads, cache_dir)
    except KeyError as exc:
        raise ModelError(f"{folder / 'model.json'}: 'files' lacks {exc}") from None
    return LoadedModel(spec, encoder, decoder)


class ModelPool:
    """Models of one run, by folder name under ``models_dir``; each compiled at most once.

    A folder that failed to load keeps failing with the same message, without retrying.
    """

    def __init__(self, models_dir: Path, backend: str, threads: int, cache_dir: Path | None = None) -> None:
        self.models_dir = models_dir
        self.backend = backend
        self.threads = threads
        self.cache_dir = cache_dir
        self._loaded: dict[str, LoadedModel | ModelError] = {}

    def folder(self, name: str) -> Path:
        return self.models_dir / name

    def get(self, name: str) -> LoadedModel:
        """The loaded model of folder ``name``, compiling it on the first call.

        Raises:
            ModelError: as :func:`load_model`.
        """
        if name not in self._loaded:
            try:
                self._loaded[name] = load_model(self.folder(name), self.backend, self.threads, self.cache_dir)
            except ModelError as exc:
                self._loaded[name] = exc
        found = self._loaded[name]
        if isinstance(found, ModelError):
            raise found
        return found
