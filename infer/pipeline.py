"""One case from input file to output file: read, route, segment, write atomically.

Output contract (docs/reference_systems.md section 1.3): ``<out>/<same name>.npz`` with one key ``segs``, uint16, the
spatial shape of ``imgs``; box k (0-based) is label k + 1 and a later box wins where masks
overlap. It is written by :func:`challenge.npz.write_npz`: to a temporary name beside the target,
then renamed, so a failed or interrupted case leaves no partial file; the zip entry has a fixed
timestamp, so the same input gives the same bytes run after run.

A case in the CVPR 2025 interactive format (boxes as dicts, clicks, ``prev_pred``; detected by
its keys, :func:`infer.cases.is_interactive`) is one step of an interaction
(:mod:`infer.interactive`); its ``segs`` has the image's (D, H, W) shape, class k label k + 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from challenge.npz import write_npz
from infer.boxes import prepare_boxes
from infer.cases import MAX_ARRAY_BYTES, Case, is_interactive, load_case, load_interactive
from infer.errors import CaseError
from infer.embedding_store import STORE_DIR, EmbeddingStore, model_fingerprint
from infer.interactive import InteractiveOptions, is_last_step, segment_interactive
from infer.models import ModelPool
from infer.predictor import CallStats, SlicePredictor
from infer.routing import Route
from infer.strategies import STRATEGIES
from infer.volume import DEFAULT_CACHE_BYTES

__all__ = ["CaseResult", "segment_case", "write_segs", "run_case"]

@dataclass
class CaseResult:
    """What happened to one case; ``error`` is the one-line message of a failed case.
    ``cpu_seconds`` is the CPU time of the whole process (all runtime threads) during the case."""

    path: Path
    ok: bool
    seconds: float
    error: str | None = None
    cpu_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    route: Route | None = None
    shape: tuple[int, ...] = ()
    boxes: int = 0
    stats: CallStats = field(default_factory=CallStats)
    precision: str = "f32"


def segment_case(case: Case, route: Route, predictor: SlicePredictor, margin: float,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> tuple[np.ndarray, list[str]]:
    """``segs`` (uint16, spatial shape of ``case.imgs``) and the box repairs made, by the route's strategy."""
    spatial = case.imgs.shape[:2] if case.dimension == "2D" else case.imgs.shape
    prepared = prepare_boxes(case.boxes, spatial)
    segment = STRATEGIES[route.strategy].segment
    segs = segment(predictor, case.imgs, prepared.boxes, prepared.labels, margin, cache_bytes)
    notes = list(prepared.notes)
    if len(case.boxes) == 0:
        notes.append("no boxes: wrote an all-zero mask")
    return segs, notes


def write_segs(path: Path, segs: np.ndarray) -> None:
    """Write ``segs`` to ``path`` atomically (:func:`challenge.npz.write_npz`).

    Raises:
        CaseError: the file cannot be written (no partial file is left).
    """
    try:
        write_npz(path, {"segs": segs})
    except OSError as exc:
        raise CaseError(path, f"cannot write the output ({exc.strerror or exc})") from None


def _run_interactive(path: Path, route: Route, pool: ModelPool, out_dir: Path, margin: float, max_array_bytes: int,
                     options: InteractiveOptions, result: CaseResult) -> tuple[np.ndarray, SlicePredictor]:
    """One step; slice embeddings are kept in ``out_dir``'s store between the steps of the case
    (:mod:`infer.embedding_store`) and dropped after its last step."""
    case, result.notes = load_interactive(path, route.dimension, max_array_bytes)
    result.shape, result.boxes = case.imgs.shape, case.num_classes or 0
    model = pool.get(route.model)
    step = "box step" if case.clicks is None else "click step"
    result.notes.append(f"interactive {step}" + (", no boxes" if case.boxes is None else ""))
    store = None
    if options.store_bytes:
        try:
            store = EmbeddingStore.open(out_dir / STORE_DIR, path.stem, model_fingerprint(model), options.store_bytes)
        except OSError as exc:  # only a saving lost: the step runs without it
            result.notes.append(f"no embedding store ({exc.strerror or exc})")
    predictor = SlicePredictor(model, store=store)
    segs = segment_interactive(predictor, case, margin, options)
    if predictor.stats.stored_embeddings:
        result.notes.append(f"{predictor.stats.stored_embeddings} stored embeddings read")
    if store is not None and is_last_step(case):
        store.remove()
    return segs, predictor


def run_case(path: Path, route: Route, pool: ModelPool, out_dir: Path, margin: float,
             cache_bytes: int = DEFAULT_CACHE_BYTES, max_array_bytes: int = MAX_ARRAY_BYTES,
             interactive: InteractiveOptions = InteractiveOptions()) -> CaseResult:
    """Segment the case at ``path`` with ``route`` and write ``out_dir/<name>``; an input array
    declaring more than ``max_array_bytes`` is refused before it is inflated. An interactive-format
    case runs one interaction step with the ``interactive`` options.

    Never raises for a bad case or model: the result carries the one-line error instead.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    result = CaseResult(path, ok=False, seconds=0.0, route=route)
    predictor: SlicePredictor | None = None
    try:
        if is_interactive(path):
            segs, predictor = _run_interactive(path, route, pool, out_dir, margin, max_array_bytes, interactive,
                                                   result)
        else:
            case = load_case(path, route.dimension, max_array_bytes)
            result.notes, result.shape, result.boxes = list(case.notes), case.imgs.shape, len(case.boxes)
            predictor = SlicePredictor(pool.get(route.model))
            segs, notes = segment_case(case, route, predictor, margin, cache_bytes)
            result.notes += notes
        write_segs(out_dir / path.name, segs)
        result.ok = True
    except CaseError as exc:
        result.error = str(exc)
    except RuntimeError as exc:  # ModelError, runtime failures: may span lines, the log wants one
        result.error = f"{path}: {' '.join(str(exc).split())}"
    except MemoryError:
        result.error = f"{path}: out of memory"
    except Exception as exc:  # a bug must cost one case, not the batch
        result.error = f"{path}: internal error ({type(exc).__name__}: {' '.join(str(exc).split())})"
    finally:
        result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if predictor is not None:
            result.stats, result.precision = predictor.stats, predictor.model.precision
    return result
