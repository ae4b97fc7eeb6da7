"""Exported models, loaded on first use and kept for the process (compile once per model).

A model is a folder under the models directory (``work_dir/<name>``) described by its sidecar
(:mod:`infer.model_spec`). :class:`ModelPool` loads a folder only when a case routed to it
arrives, so a run over 2D cases never compiles the PET model. A folder's points decoder (clicks
and mask prompts) compiles only when a case first asks for it, so box-only runs never pay for it.
"""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infer.errors import ModelError
from infer.model_spec import POINTS_DECODER, ModelSpec, load_model_spec
from infer.precision import choose_precision, cpu_flags
from infer.session import Session, open_session

__all__ = ["LazySession", "LoadedModel", "ModelPool", "load_model"]


class LazySession:
    """A session compiled on its first :meth:`run` (thread-safe), for a graph few cases use."""

    def __init__(self, path: Path, backend: str, threads: int, cache_dir: Path | None = None) -> None:
        self._args = (path, backend, threads, cache_dir)
        self._session: Session | None = None
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._session is None:
                self._session = open_session(*self._args)
        return self._session.run(feeds)


@dataclass(frozen=True)
class LoadedModel:
    """A model folder's sidecar with its compiled encoder and decoder, the precision the encoder
    runs in (:mod:`infer.precision`; the decoders, a small part of the time, stay f32), and
    ``points_decoder``, the point / mask prompt graph (None when the folder has none)."""

    spec: ModelSpec
    encoder: Session
    decoder: Session
    precision: str = "f32"
    points_decoder: Session | None = None


def load_model(folder: Path, backend: str, threads: int, cache_dir: Path | None = None,
               precision: str = "f32") -> LoadedModel:
    """Read ``folder``'s sidecar and compile its encoder and decoder for ``backend``;
    ``precision`` is a request (``auto``, ``f32``, ``bf16``, ``int8``) resolved for this CPU
    and this folder by :func:`infer.precision.choose_precision` (a warning goes to stderr when an
    explicit request lacks CPU support or a passed gate; onnxruntime runs f32 only).

    Raises:
        ModelError: missing folder, bad sidecar, missing model files, runtime rejection, a
            precision the backend cannot run.
    """
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    try:
        spec = load_model_spec(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelError(str(exc)) from None
    if backend != "openvino" and precision in ("auto", "f32"):
        chosen = "f32"
    else:
        try:
            chosen, warning = choose_precision(precision, spec, cpu_flags())
        except ValueError as exc:
            raise ModelError(f"{folder}: {exc}") from None
        if warning:
            print(warning, file=sys.stderr, flush=True)
    try:
        paths = [spec.model_file(part, backend, chosen) for part in ("encoder", "decoder")]
    except KeyError as exc:
        raise ModelError(f"{folder / 'model.json'}: 'files' lacks {exc}") from None
    if chosen == "int8" and paths[0] == spec.model_file("encoder", backend):
        raise ModelError(f"{folder / 'model.json'}: no int8 encoder (model.json lists none under precisions.int8.files)")
    # The runtimes release the GIL while compiling: both parts at once halve the start-up cost.
    with ThreadPoolExecutor(max_workers=2) as pool:
        encoder, decoder = pool.map(lambda part_path: _open(part_path, backend, threads, cache_dir, chosen),
                                    zip(("encoder", "decoder"), paths))
    points = (LazySession(spec.model_file(POINTS_DECODER, backend), backend, threads, cache_dir)
              if spec.accepts_points else None)
    return LoadedModel(spec, encoder, decoder, chosen, points)


def _open(part_path: tuple[str, Path], backend: str, threads: int, cache_dir: Path | None, precision: str) -> Session:
    part, path = part_path
    try:
        return open_session(path, backend, threads, cache_dir, precision if part == "encoder" else "f32")
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None


class ModelPool:
    """Models of one run, by folder name under ``models_dir``; each compiled at most once.

    A folder that failed to load keeps failing with the same message, without retrying.
    :meth:`prefetch` starts loading in a background thread (the caller meanwhile reads its case).
    """

    def __init__(self, models_dir: Path, backend: str, threads: int, cache_dir: Path | None = None,
                 precision: str = "auto") -> None:
        self.models_dir = models_dir
        self.backend = backend
        self.threads = threads
        self.cache_dir = cache_dir
        self.precision = precision
        self._loaded: dict[str, LoadedModel | ModelError] = {}
        self._loading: dict[str, threading.Thread] = {}

    def folder(self, name: str) -> Path:
        return self.models_dir / name

    def _load(self, name: str) -> None:
        try:
            self._loaded[name] = load_model(self.folder(name), self.backend, self.threads, self.cache_dir, self.precision)
        except ModelError as exc:
            self._loaded[name] = exc
        except Exception as exc:  # surfaces in get(), in the thread of the case that needs it
            self._loaded[name] = ModelError(f"{self.folder(name)}: cannot load ({type(exc).__name__}: {exc})")

    def prefetch(self, name: str) -> None:
        """Start loading folder ``name`` in the background, if not loaded or loading yet."""
        if name not in self._loaded and name not in self._loading:
            self._loading[name] = threading.Thread(target=self._load, args=(name,), daemon=True)
            self._loading[name].start()

    def wait(self) -> None:
        """Let background loads finish (a runtime must not be torn down mid-compilation)."""
        for thread in self._loading.values():
            thread.join()

    def get(self, name: str) -> LoadedModel:
        """The loaded model of folder ``name``, compiling it on the first call.

        Raises:
            ModelError: as :func:`load_model`.
        """
        if name in self._loading:
            self._loading.pop(name).join()
        if name not in self._loaded:
            self._load(name)
        found = self._loaded[name]
        if isinstance(found, ModelError):
            raise found
        return found
