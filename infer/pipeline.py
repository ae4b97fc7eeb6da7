"""One case from input file to output file: read, route, segment, write atomically.

Output contract (DESIGN.md 2): ``<out>/<same name>.npz`` with one key ``segs``, uint16, the
spatial shape of ``imgs``; box k (0-based) is label k + 1 and a later box wins where masks
overlap. It is written with ``np.savez_compressed`` to a temporary name beside the target and
renamed, so a failed or interrupted case leaves no partial file; the zip entry has a fixed
timestamp, so the same input gives the same bytes run after run.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infer.boxes import prepare_boxes
from infer.cases import Case, load_case
from infer.errors import CaseError
from infer.models import ModelPool
from infer.predictor import SlicePredictor
from infer.routing import Route
from infer.volume import IOU_PICK, DEFAULT_CACHE_BYTES, VIEWS, Rule, segment_volume
from infer.zoom import paint_zoomed, zoom_selection

__all__ = ["CaseResult", "segment_image", "segment_case", "write_segs", "run_case"]

_STRATEGY_VIEWS = {"axial": ("axial",), "three_view_vote": tuple(VIEWS), "axial_iou": ("axial",)}
_STRATEGY_RULES = {"axial_iou": IOU_PICK}


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
    encoder_calls: int = 0
    decoder_calls: int = 0
    decoded_boxes: int = 0
    encoder_seconds: float = 0.0
    decoder_seconds: float = 0.0
    first_encoder_time: float | None = None
    first_encoder_cpu: float | None = None


def segment_image(predictor: SlicePredictor, image: np.ndarray, boxes: np.ndarray,
                  box_labels: np.ndarray) -> np.ndarray:
    """(H, W) uint16 labels for an (H, W, 3) image and (K, 4) boxes inside it: one encoder call,
    boxes decoded in batches of ``predictor.max_batch``."""
    labels = np.zeros(image.shape[:2], np.uint16)
    if len(boxes) == 0:
        return labels
    predictor.set_image(image)
    for start in range(0, len(boxes), predictor.max_batch):
        chunk = slice(start, start + predictor.max_batch)
        for label, mask in zip(box_labels[chunk], predictor.predict(boxes[chunk])):
            if mask is not None:
                mask.paint(labels, int(label))
    return labels


def segment_case(case: Case, route: Route, predictor: SlicePredictor, margin: float,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> tuple[np.ndarray, list[str]]:
    """``segs`` (uint16, spatial shape of ``case.imgs``) and the box repairs made."""
    spatial = case.imgs.shape[:2] if case.dimension == "2D" else case.imgs.shape
    prepared = prepare_boxes(case.boxes, spatial)
    if route.strategy == "image":
        segs = segment_image(predictor, case.imgs, prepared.boxes, prepared.labels)
    elif route.strategy == "image_zoom":
        zoomed = zoom_selection(predictor, case.imgs.shape[:2], prepared.boxes)
        segs = segment_image(predictor, case.imgs, prepared.boxes[~zoomed], prepared.labels[~zoomed])
        paint_zoomed(predictor, case.imgs, prepared.boxes[zoomed], prepared.labels[zoomed], segs)
    elif len(prepared.boxes) == 0:
        segs = np.zeros(spatial, np.uint16)
    else:
        segs = segment_volume(predictor, case.imgs, prepared.boxes, prepared.labels,
                              _STRATEGY_VIEWS[route.strategy], margin, cache_bytes,
                              _STRATEGY_RULES.get(route.strategy, Rule()))
    notes = list(prepared.notes)
    if len(case.boxes) == 0:
        notes.append("no boxes: wrote an all-zero mask")
    return segs, notes


def write_segs(path: Path, segs: np.ndarray) -> None:
    """Write ``segs`` to ``path`` via a temporary file and ``os.replace``.

    Raises:
        CaseError: the file cannot be written (the temporary file is removed).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, segs=segs)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CaseError(path, f"cannot write the output ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_case(path: Path, route: Route, pool: ModelPool, out_dir: Path, margin: float,
             cache_bytes: int = DEFAULT_CACHE_BYTES) -> CaseResult:
    """Segment the case at ``path`` with ``route`` and write ``out_dir/<name>``.

    Never raises for a bad case or model: the result carries the one-line error instead.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    result = CaseResult(path, ok=False, seconds=0.0, route=route)
    predictor: SlicePredictor | None = None
    try:
        case = load_case(path, route.dimension)
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
            for name in ("encoder_calls", "decoder_calls", "decoded_boxes", "encoder_seconds", "decoder_seconds",
                         "first_encoder_time", "first_encoder_cpu"):
                setattr(result, name, getattr(predictor, name))
    return result
