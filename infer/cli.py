"""``python -m infer -i INPUT_DIR -o OUTPUT_DIR``: segment every ``*.npz`` case of a folder.

Exit code 0 when every case produced its output, 1 when some case failed (each failure is one
``error: <file>: <problem>`` line on stderr and the other cases still run) or the output folder is
not writable, 2 for bad arguments (unreadable routing table, missing input folder).
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from infer.clock import since_process_start
from infer.errors import RoutingError
from challenge.names import parse_case_name
from infer.models import ModelPool
from infer.pipeline import CaseResult, run_case
from infer.routing import DEFAULT_ROUTING, Route, RoutingTable, load_routing
from infer.session import BACKENDS, host_threads

__all__ = ["DEFAULT_MODELS", "build_parser", "main"]

DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "work_dir"
CSV_COLUMNS = ("case", "time", "cpu_time", "status", "encoder_calls", "decoder_calls", "decoded_boxes",
               "encoder_time", "decoder_time", "first_encoder_call", "first_encoder_call_cpu")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infer", description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of input cases (*.npz)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder receiving one segs npz per case")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help=f"folder of exported model folders (default: {DEFAULT_MODELS})")
    parser.add_argument("--routing", type=Path, default=DEFAULT_ROUTING,
                        help="routing table JSON (default: the table shipped in infer/)")
    parser.add_argument("--backend", choices=BACKENDS, default="openvino", help="inference runtime (default: openvino)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads per model (default: all this process may use)")
    parser.add_argument("--efficiency-csv", type=Path, default=None,
                        help="write per-case seconds and encoder/decoder call counts to this CSV")
    parser.add_argument("--cache-dir", default=None,
                        help="OpenVINO compiled-model cache (default: MODELS/ov_cache; '' disables it)")
    return parser


def _writable_folder(folder: Path) -> str | None:
    """None when ``folder`` exists (created if needed) and accepts files, else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test_"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _cache_dir(arg: str | None, models: Path) -> tuple[Path | None, str | None]:
    """The cache folder to use (None: no cache) and a warning when the asked one is unusable."""
    if arg == "":
        return None, None
    folder = Path(arg) if arg is not None else models / "ov_cache"
    problem = _writable_folder(folder)
    if problem is None:
        return folder, None
    return None, f"warning: {folder}: OpenVINO cache folder not usable ({problem}); compiling without a cache"


def _plan(cases: list[Path], table: RoutingTable,
          pool: ModelPool) -> tuple[list[tuple[Path, Route]], list[CaseResult], list[str]]:
    """Route every case; cases that cannot run (no 2D/3D prefix, missing model folder) fail here,
    before any model is compiled."""
    runnable, failed, warnings = [], [], []
    for path in cases:
        name = parse_case_name(path)
        if name.dimension is None:
            failed.append(CaseResult(path, False, 0.0, f"{path}: file name must start with '2D' or '3D' "
                                                       "(<2D|3D>Box_<Modality>_<id>.npz)"))
            continue
        route = table.route_for(name.dimension, name.modality)
        if name.modality is None:
            warnings.append(f"warning: {path}: unknown modality {name.token!r}; using the {name.dimension} "
                            f"default route -> {route.model} ({route.strategy})")
        folder = pool.folder(route.model)
        if not folder.is_dir():
            failed.append(CaseResult(path, False, 0.0, f"{path}: model folder {folder} not found (route "
                                                       f"{route.describe()}); {table.export_hint(folder)}",
                                     route=route))
            continue
        runnable.append((path, route))
    return runnable, failed, warnings


def _log_line(result: CaseResult) -> str:
    route = result.route
    modality = parse_case_name(result.path).modality or "unknown modality"
    where = f"{route.dimension} {modality} -> {route.model} ({route.strategy})" if route else ""
    shape = "x".join(str(s) for s in result.shape)
    text = (f"{result.path.name}: {where}, {shape}, {result.boxes} boxes, {result.encoder_calls} encoder calls, "
            f"{result.decoded_boxes} decoded boxes, {result.seconds:.2f} s")
    return "; ".join([text, *result.notes])


def _progress(items: list) -> tuple[Iterable, Callable[[str, TextIO], None]]:
    """A tqdm bar over cases on a terminal, and a line printer that does not break it. Elsewhere
    (log files, the challenge container) no bar, and tqdm is not even imported (0.1 s start-up)."""
    if not sys.stderr.isatty():
        return items, lambda line, stream: print(line, file=stream, flush=True)
    from tqdm import tqdm

    bar = tqdm(items, unit="case", file=sys.stderr, dynamic_ncols=True)
    return bar, lambda line, stream: tqdm.write(line, file=stream)


def _write_csv(path: Path, results: list[CaseResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            first = "" if r.first_encoder_time is None else f"{since_process_start(r.first_encoder_time):.3f}"
            first_cpu = "" if r.first_encoder_cpu is None else f"{r.first_encoder_cpu:.3f}"
            writer.writerow([r.path.name, f"{r.seconds:.3f}", f"{r.cpu_seconds:.3f}", "ok" if r.ok else "error",
                             r.encoder_calls, r.decoder_calls, r.decoded_boxes, f"{r.encoder_seconds:.3f}",
                             f"{r.decoder_seconds:.3f}", first, first_cpu])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        table = load_routing(args.routing)
    except RoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.input.is_dir():
        print(f"error: {args.input}: input folder not found", file=sys.stderr)
        return 2
    problem = _writable_folder(args.output)
    if problem is not None:
        print(f"error: {args.output}: output folder is not writable ({problem})", file=sys.stderr)
        return 1
    cache_dir, warning = _cache_dir(args.cache_dir, args.models) if args.backend == "openvino" else (None, None)
    if warning:
        print(warning, file=sys.stderr)
    pool = ModelPool(args.models, args.backend, args.threads or host_threads(), cache_dir)
    cases = sorted(p for p in args.input.glob("*.npz") if p.is_file())
    if not cases:
        print(f"warning: {args.input}: no *.npz cases", file=sys.stderr)
    runnable, results, warnings = _plan(cases, table, pool)
    for line in warnings:
        print(line, file=sys.stderr)
    for result in results:
        print(f"error: {result.error}", file=sys.stderr)
    if runnable:
        pool.prefetch(runnable[0][1].model)  # compiles while the first case is read
    progress, write = _progress(runnable)
    for path, route in progress:
        result = run_case(path, route, pool, args.output, table.propagation_margin)
        results.append(result)
        if result.ok:
            write(_log_line(result), sys.stdout)
        else:
            write(f"error: {result.error}", sys.stderr)
    pool.wait()
    failed = sum(not r.ok for r in results)
    firsts = [r.first_encoder_time for r in results if r.first_encoder_time is not None]
    startup = f", first encoder call {since_process_start(min(firsts)):.2f} s after start" if firsts else ""
    print(f"{len(results)} cases: {len(results) - failed} done, {failed} failed, "
          f"{time.perf_counter() - started:.1f} s{startup}")
    if args.efficiency_csv is not None:
        _write_csv(args.efficiency_csv, sorted(results, key=lambda r: r.path.name))
    return 1 if failed else 0
