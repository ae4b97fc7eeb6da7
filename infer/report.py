"""What a batch says about its cases: the log line of a case and the efficiency CSV."""
from __future__ import annotations

import csv
from pathlib import Path

from challenge.atomic import atomic_path
from challenge.names import parse_case_name
from infer.clock import since_process_start
from infer.pipeline import CaseResult

__all__ = ["EFFICIENCY_COLUMNS", "log_line", "write_efficiency_csv"]

EFFICIENCY_COLUMNS = ("case", "time", "cpu_time", "status", "encoder_calls", "decoder_calls", "decoded_boxes",
                      "encoder_time", "decoder_time", "first_encoder_call", "first_encoder_call_cpu")


def log_line(result: CaseResult) -> str:
    """One line for a finished case: route, shape, work done, seconds, then any repairs."""
    route = result.route
    modality = parse_case_name(result.path).modality or "unknown modality"
    where = ""
    if route is not None:
        how = route.strategy if result.precision == "f32" else f"{route.strategy}, {result.precision}"
        where = f"{route.dimension} {modality} -> {route.model} ({how})"
    shape = "x".join(str(s) for s in result.shape)
    text = (f"{result.path.name}: {where}, {shape}, {result.boxes} boxes, {result.stats.encoder_calls} encoder "
            f"calls, {result.stats.decoded_boxes} decoded boxes, {result.seconds:.2f} s")
    return "; ".join([text, *result.notes])


def write_efficiency_csv(path: Path, results: list[CaseResult]) -> None:
    """Per-case seconds and encoder/decoder work (:data:`EFFICIENCY_COLUMNS`), one row per case;
    ``first_encoder_call`` is seconds after process start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EFFICIENCY_COLUMNS)
        for r in results:
            s = r.stats
            first = "" if s.first_encoder_time is None else f"{since_process_start(s.first_encoder_time):.3f}"
            first_cpu = "" if s.first_encoder_cpu is None else f"{s.first_encoder_cpu:.3f}"
            writer.writerow([r.path.name, f"{r.seconds:.3f}", f"{r.cpu_seconds:.3f}", "ok" if r.ok else "error",
                             s.encoder_calls, s.decoder_calls, s.decoded_boxes, f"{s.encoder_seconds:.3f}",
                             f"{s.decoder_seconds:.3f}", first, first_cpu])
