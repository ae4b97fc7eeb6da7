"""One tiny interface over OpenVINO and ONNX Runtime: ``session.run({name: array}) -> {name: array}``.

OpenVINO (default) compiles the IR (``.xml``/``.bin``) once per process, with a persistent
compiled-model cache directory so a later process imports the blob instead of compiling. The IR
is used rather than the ONNX file because OpenVINO keys its cache of an ONNX file by path only
(a re-exported model at the same path would silently reuse a stale blob), while it hashes IR
contents. ONNX Runtime runs the ``.onnx`` file with all graph optimisations on.

Both wrappers return arrays the caller owns: OpenVINO reuses one output buffer per infer request
(every earlier result would change under the caller, docs/reference_systems.md section 7 #1), so outputs are copied.
Inference precision is pinned to f32: on CPUs with AMX/bf16 OpenVINO would otherwise run bf16.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Protocol
from xml.etree import ElementTree

import numpy as np

from infer.errors import ModelError

__all__ = ["BACKENDS", "Session", "OpenVINOSession", "OnnxRuntimeSession", "open_session", "host_threads"]

BACKENDS = ("openvino", "onnxruntime")


class Session(Protocol):
    """A compiled model: named float32 inputs in, named outputs (owned copies) out."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def host_threads() -> int:
    """CPU threads this process may use: its affinity set, capped by a cgroup v2 CPU quota
    (``docker --cpus``), at least 1."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


_OV_CORES: dict[str, object] = {}
_OV_LOCK = threading.Lock()


def _openvino_core(cache_dir: Path | None) -> object:
    """One ``ov.Core`` per cache directory (a process normally has one); thread-safe."""
    key = str(cache_dir or "")
    with _OV_LOCK:
        if key not in _OV_CORES:
            import openvino as ov

            core = ov.Core()
            if cache_dir is not None:
                core.set_property({"CACHE_DIR": str(cache_dir)})
            _OV_CORES[key] = core
        return _OV_CORES[key]


def _runtime_message(exc: Exception) -> str:
    """The cause in a runtime's exception, without OpenVINO's ``Exception from src/...:132:`` location lines."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("Exception from ")) or type(exc).__name__


def _require_ir(path: Path) -> None:
    """Refuse an ``.xml`` that is not OpenVINO IR before OpenVINO tries every frontend on it (its
    TensorFlow frontend then logs parse errors straight to stderr)."""
    if path.suffix != ".xml":
        return
    try:
        _, root = next(ElementTree.iterparse(path, events=("start",)))
    except (ElementTree.ParseError, StopIteration, OSError) as exc:
        raise ModelError(f"{path}: not OpenVINO IR (not XML: {exc})") from None
    if root.tag != "net":
        raise ModelError(f"{path}: not OpenVINO IR (root element <{root.tag}>, expected <net>)")


class OpenVINOSession:
    """An OpenVINO CPU compiled model with one infer request."""

    def __init__(self, path: Path, threads: int, cache_dir: Path | None = None, precision: str = "f32") -> None:
        _require_ir(path)
        core = _openvino_core(cache_dir)
        # int8 lives in the quantized IR itself; its other operations stay f32
        hint = "bf16" if precision == "bf16" else "f32"
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        try:
            self._compiled = core.compile_model(str(path), "CPU", config)  # type: ignore[attr-defined]
        except Exception as exc:  # OpenVINO raises RuntimeError and its own exception classes
            raise ModelError(f"{path}: OpenVINO cannot compile it ({_runtime_message(exc)})") from None
        self._request = self._compiled.create_infer_request()
        self.output_names = [port.get_any_name() for port in self._compiled.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._request.infer(feeds)
        return {name: np.array(self._request.get_tensor(name).data, copy=True) for name in self.output_names}


class OnnxRuntimeSession:
    """An ONNX Runtime CPU session, graph optimisations on, threads pinned."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception classes (Fail, InvalidGraph, ...)
            raise ModelError(f"{path}: ONNX Runtime cannot load it ({_runtime_message(exc)})") from None
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(self.output_names, feeds)))


def open_session(path: Path, backend: str, threads: int, cache_dir: Path | None = None, precision: str = "f32") -> Session:
    """Compile the model file ``path`` for ``backend`` (``openvino`` or ``onnxruntime``);
    ``precision`` (:mod:`infer.precision`) other than f32 is OpenVINO's only.

    Raises:
        ValueError: unknown backend, or a precision the backend does not run.
        ModelError: the file is missing or the runtime rejects it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {list(BACKENDS)}")
    if backend != "openvino" and precision != "f32":
        raise ValueError(f"precision {precision} needs the openvino backend ({backend} runs f32 only)")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if backend == "openvino":
        return OpenVINOSession(path, threads, cache_dir, precision)
    return OnnxRuntimeSession(path, threads)
