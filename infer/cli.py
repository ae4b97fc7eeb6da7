"""``python -m infer -i INPUT_DIR -o OUTPUT_DIR``: segment every ``*.npz`` case of a folder.

Exit code 0 when every case produced its output, 1 when some case failed (each failure is one
``error: <file>: <problem>`` line on stderr and the other cases still run) or the output folder is
not writable, 2 for bad arguments (unreadable routing table, missing or unreadable input folder,
an output folder that would overwrite the inputs, an unwritable ``--efficiency-csv``), 130/143
when interrupted by SIGINT/SIGTERM (finished outputs kept, no partial file left).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from challenge.folders import case_files, overwrites_inputs
from challenge.interrupt import run_interruptible
from challenge.atomic import writable_file
from infer.cases import MAX_ARRAY_BYTES
from infer.clock import since_process_start
from infer.errors import RoutingError
from infer.embedding_store import DEFAULT_STORE_BYTES
from infer.interactive import InteractiveOptions
from infer.pipeline import CaseResult
from infer.report import log_line, write_efficiency_csv
from infer.routing import DEFAULT_ROUTING, load_routing
from infer.precision import REQUESTS
from infer.segmenter import DEFAULT_MODELS, Segmenter
from infer.session import BACKENDS

__all__ = ["DEFAULT_MODELS", "build_parser", "main"]


def _at_least(kind: type[int] | type[float], low: int | float):
    """An argparse type: ``kind`` (int or float) that is at least ``low``."""
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = "integer" if kind is int else "number"
    return parse


_positive_int = _at_least(int, 1)


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
    parser.add_argument("--max-array-bytes", type=_positive_int, default=MAX_ARRAY_BYTES,
                        help="largest input array to inflate, checked from its header first "
                             f"(default: {MAX_ARRAY_BYTES}, 1 GiB)")
    parser.add_argument("--precision", choices=REQUESTS, default="auto",
                        help="encoder precision: auto (default) runs bf16/int8 only on a CPU that has them natively "
                             "and where the model folder records them passing the fidelity gate, else f32")
    parser.add_argument("--cache-dir", default=None,
                        help="OpenVINO compiled-model cache (default: MODELS/ov_cache; '' disables it)")
    parser.add_argument("--mask-prompt", action="store_true",
                        help="interactive cases: give the clicked slice's previous mask as the mask prompt")
    parser.add_argument("--click-edits", choices=("local", "propagate"), default="local",
                        help="interactive cases: local (default) edits only the clicked slice around the click; "
                             "propagate re-decodes outward from the clicked slice while the masks change")
    parser.add_argument("--edit-reach", type=_at_least(float, 0.0), default=InteractiveOptions.edit_reach, metavar="R",
                        help="interactive cases: a local edit changes pixels within R times the click's distance to "
                             "the previous mask's edge (default %(default)s; 0: the whole region)")
    parser.add_argument("--refine-rounds", type=int, default=0, choices=range(0, 9), metavar="K",
                        help="interactive cases: decode the clicked slice K more times with its own low-res "
                             "mask as the mask prompt (default 0)")
    parser.add_argument("--embedding-store-mib", type=_at_least(int, 0), default=DEFAULT_STORE_BYTES >> 20, metavar="MIB",
                        help="interactive cases: keep slice embeddings in OUTPUT/.medsam-embeddings between the steps "
                             "of a case, up to MIB (default %(default)s; 0 disables); removed after the last step")
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


def _progress() -> tuple[Callable[[list], Iterable], Callable[[str, TextIO], None]]:
    """A tqdm bar over cases on a terminal, and a line printer that does not break it. Elsewhere
    (log files, the challenge container) no bar, and tqdm is not even imported (0.1 s start-up)."""
    if not sys.stderr.isatty():
        return iter, lambda line, stream: print(line, file=stream, flush=True)
    from tqdm import tqdm

    return (lambda items: tqdm(items, unit="case", file=sys.stderr, dynamic_ncols=True),
            lambda line, stream: tqdm.write(line, file=stream))


def _arguments_problem(args: argparse.Namespace) -> str | None:
    """The one-line error for inputs and outputs that cannot work, checked before any case runs."""
    try:
        cases = case_files(args.input)
    except FileNotFoundError:
        return f"{args.input}: input folder not found"
    except OSError as exc:
        return f"{args.input}: input folder cannot be read ({exc.strerror or exc})"
    clash = overwrites_inputs(args.input, args.output, cases)
    if clash is not None:
        return f"{args.output}: {clash}; refusing to overwrite the inputs"
    if args.efficiency_csv is not None:
        problem = writable_file(args.efficiency_csv)
        if problem is not None:
            return f"{args.efficiency_csv}: efficiency CSV cannot be written ({problem})"
    return None


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 must not end the run
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    return run_interruptible("python -m infer", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        table = load_routing(args.routing)
    except RoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _arguments_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    problem = _writable_folder(args.output)
    if problem is not None:
        print(f"error: {args.output}: output folder is not writable ({problem})", file=sys.stderr)
        return 1
    cache_dir, warning = _cache_dir(args.cache_dir, args.models) if args.backend == "openvino" else (None, None)
    if warning:
        print(warning, file=sys.stderr)
    segmenter = Segmenter(args.models, table, args.backend, args.threads, cache_dir, args.max_array_bytes, args.precision,
                          InteractiveOptions(mask_prompt=args.mask_prompt, refine_rounds=args.refine_rounds,
                                             local_edits=args.click_edits == "local",
                                             edit_reach=args.edit_reach, store_bytes=args.embedding_store_mib << 20))
    progress, write = _progress()

    def report(result: CaseResult) -> None:
        if result.ok:
            write(log_line(result), sys.stdout)
        else:
            write(f"error: {result.error}", sys.stderr)

    results = segmenter.run_folder(args.input, args.output, on_result=report, progress=progress)
    failed = sum(not r.ok for r in results)
    firsts = [r.stats.first_encoder_time for r in results if r.stats.first_encoder_time is not None]
    startup = f", first encoder call {since_process_start(min(firsts)):.2f} s after start" if firsts else ""
    print(f"{len(results)} cases: {len(results) - failed} done, {failed} failed, "
          f"{time.perf_counter() - started:.1f} s{startup}")
    if args.efficiency_csv is not None:
        write_efficiency_csv(args.efficiency_csv, sorted(results, key=lambda r: r.path.name))
    return 1 if failed else 0
