"""Where a fresh ``python -m infer`` spends the time before its first encoder call.

    python bench/startup.py [--case CASE.npz] [--runs 7] [--models work_dir] [--routing FILE]

Runs ``python -X importtime -m infer`` on one small case ``--runs`` times, each in a fresh process
with the compiled-model cache warm (one untimed run first), and prints the median of: process start
to first encoder call (``--efficiency-csv``), the imports (``-X importtime``: the top-level
imports' cumulative time, and the heaviest third-party packages, counted where first imported), and
what remains (OpenVINO core, compiled-blob import, reading the case, pre-processing). Then, in one
more fresh process each, the model folder's load (compile from the cache) and the case's read
alone. Prints the CPU flags; the figures are wall seconds on this machine at its present load.
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from infer.precision import cpu_summary

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy", "cv2", "openvino", "scipy", "tqdm", "json", "pickle", "zipfile")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def parse_importtime(text: str) -> tuple[float, dict[str, float]]:
    """(total seconds of the top-level imports, seconds per package of ``PACKAGES`` where it was
    first imported, cumulative) from ``-X importtime`` output."""
    total, packages = 0.0, {}
    for match in _LINE.finditer(text):
        cumulative, indent, name = int(match.group(2)) / 1e6, len(match.group(3)), match.group(4)
        if indent == 1:
            total += cumulative
        if name in PACKAGES and name not in packages:
            packages[name] = cumulative
    return total, packages


def _run_infer(case: Path, args: argparse.Namespace, work: Path) -> tuple[float, float, dict[str, float]]:
    """(first encoder call s, import s, per-package s) of one fresh ``python -X importtime -m infer``."""
    inputs, csv_path = work / "in", work / "efficiency.csv"
    inputs.mkdir(exist_ok=True)
    (inputs / case.name).unlink(missing_ok=True)
    (inputs / case.name).symlink_to(case.resolve())
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "infer", "-i", str(inputs), "-o", str(work / "out"),
                           "--models", str(args.models), "--routing", str(args.routing), "--efficiency-csv", str(csv_path)],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{case}: python -m infer exited {done.returncode}: {done.stderr[-2000:]}")
    with csv_path.open() as handle:
        first = float(next(csv.DictReader(handle))["first_encoder_call"])
    total, packages = parse_importtime(done.stderr)
    return first, total, packages


_PHASE = """
import time
from pathlib import Path
from {module} import {name}
start = time.perf_counter()
{call}
print(time.perf_counter() - start)
"""


def _phase(module: str, name: str, call: str) -> float:
    """Seconds of ``call`` in a fresh process, after its import."""
    code = _PHASE.format(module=module, name=name, call=call)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return float(out.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=Path, default=REPO / "test_demo" / "imgs" / "2DBox_US_0001.npz",
                   help="a small 2D case (default: the demo's, `make demo` or python -m test_demo.generate)")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--models", type=Path, default=REPO / "work_dir")
    p.add_argument("--model", default="litemedsam", help="the folder the case routes to (for the load alone)")
    p.add_argument("--routing", type=Path, default=REPO / "infer" / "routing_official.json")
    args = p.parse_args()
    print(cpu_summary())
    firsts, imports, per_package = [], [], {name: [] for name in PACKAGES}
    with tempfile.TemporaryDirectory() as tmp:
        _run_infer(args.case, args, Path(tmp))  # warms the compiled-model cache and the file cache
        for _ in range(args.runs):
            first, total, packages = _run_infer(args.case, args, Path(tmp))
            firsts.append(first)
            imports.append(total)
            for name, seconds in packages.items():
                per_package[name].append(seconds)
    load = [_phase("infer.models", "load_model",
                   f"load_model(Path({str(args.models / args.model)!r}), 'openvino', 2, "
                   f"Path({str(args.models / 'ov_cache')!r}))") for _ in range(3)]
    read = [_phase("infer.cases", "load_case", f"load_case(Path({str(args.case)!r}), '2D')") for _ in range(3)]
    first, imported = statistics.median(firsts), statistics.median(imports)
    print(f"{args.case.name}, median of {args.runs} fresh processes (s):")
    print(f"  process start -> first encoder call {first:.3f}")
    print(f"  imports (top level, cumulative)     {imported:.3f}")
    for name, values in sorted(per_package.items(), key=lambda kv: -statistics.median(kv[1] or [0])):
        if values:
            print(f"    {name:<10} {statistics.median(values):.3f} (where first imported)")
    print(f"  the rest (interpreter, OpenVINO core, blob import, read, pre-processing) {first - imported:.3f}")
    print(f"  alone, fresh process, after its imports, median of 3: model folder load {statistics.median(load):.3f}, "
          f"case read {statistics.median(read):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
