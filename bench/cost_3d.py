"""What a 3D case costs under each propagation schedule and precision, side by side in one run.

    python bench/cost_3d.py --set test_demo/real/imgs:test_demo/real/gts --set DEMO/imgs:DEMO/gts \
        [--workload CT,MR,PET] [--variants exact,stride3] [--precisions f32,bf16] [--models work_dir]

For every 3D case (the ``--set`` folders' ``3D*`` cases, labelled when a gts folder is given, and
the generated DESIGN workload volumes named by ``--workload``), each variant runs
``python -m infer`` on that case alone in a fresh process, like the organisers' one container per
case; the variants of one case run back to back, so they see the same machine load. Per run:
wall seconds (process start to exit), peak RSS, encoder calls, encoder milliseconds per call
(from the efficiency CSV), mean DSC against the labels, and the mean per-label DSC against the
first variant's output (``vs exact``: 1.0 means the same masks). Precisions the CPU does not run
natively are skipped (OpenVINO would compile them as f32; docs/precision.md). Prints the CPU
flags that matter, a table, the wall-time ratio of every variant to the first per case, and
writes OUT/cost_3d.json.

Variants: ``exact`` (the routing table as given, ``axial_iou``: every slice encoded) and
``stride3`` (the same with ``axial_iou_stride3``, docs/propagation.md), each at every precision
asked for.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.metrics import dice
from evaluation.process_run import run_measured
from infer.precision import cpu_flags, cpu_summary, native_precisions
from infer.routing import load_routing
from test_demo.generate import BENCHMARK_WORKLOAD, case_seed, generate_case, write_case

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {"exact": "axial_iou", "stride3": "axial_iou_stride3"}


@dataclass(frozen=True)
class Case:
    image: Path
    labels: Path | None


def _routing(base: Path, strategy: str, folder: Path) -> Path:
    """``base`` with every 3D route's strategy replaced by ``strategy``."""
    table = json.loads(base.read_text())
    for route in table["routes"]:
        if route["dimension"] == "3D":
            route["strategy"] = strategy
    path = folder / f"routing_{strategy}.json"
    path.write_text(json.dumps(table))
    load_routing(path)  # fail here, not in every child
    return path


def _cases(sets: list[str], workload: set[str], generated: Path) -> list[Case]:
    found = []
    for spec in sets:
        images, _, labels = spec.partition(":")
        for path in sorted(Path(images).glob("3D*.npz")):
            truth = Path(labels) / path.name if labels else None
            found.append(Case(path, truth if truth is not None and truth.is_file() else None))
    for index, spec in enumerate(BENCHMARK_WORKLOAD):
        if spec.modality in workload:
            path = generated / "imgs" / f"{spec.name}.npz"
            if not path.is_file():
                write_case(generate_case(spec, case_seed("benchmark", 0, index)), generated / "imgs", generated / "gts")
            found.append(Case(path, generated / "gts" / path.name))
    return found


def _mean_dice(reference: np.ndarray, segs: np.ndarray) -> float:
    """Mean over the labels of ``reference`` of the DSC of ``segs`` on that label."""
    labels = [int(v) for v in np.unique(reference) if v != 0]
    return float(np.mean([dice(reference == v, segs == v) for v in labels])) if labels else float("nan")


def _run(case: Path, routing: Path, precision: str, models: Path, work: Path) -> tuple[dict, np.ndarray]:
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    os.symlink(case.resolve(), work / "in" / case.name)
    argv = [sys.executable, "-m", "infer", "-i", str(work / "in"), "-o", str(work / "out"), "--models", str(models),
            "--routing", str(routing), "--precision", precision, "--efficiency-csv", str(work / "eff.csv")]
    run = run_measured(argv, work / "log.txt")
    if run.returncode != 0:
        raise RuntimeError(f"{case.name}: exit {run.returncode}: {(work / 'log.txt').read_text()[-500:]}")
    with open(work / "eff.csv") as handle:
        (row,) = csv.DictReader(handle)
    calls = int(row["encoder_calls"])
    segs = np.load(work / "out" / case.name, allow_pickle=False)["segs"]
    return {"wall_s": run.seconds, "peak_rss_mb": run.peak_rss_bytes / 2**20, "encoder_calls": calls,
            "encoder_ms": 1000 * float(row["encoder_time"]) / max(calls, 1)}, segs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="IMGS[:GTS]", help="a folder of cases")
    parser.add_argument("--workload", default="", help="DESIGN workload 3D modalities to generate (CT,MR,PET)")
    parser.add_argument("--variants", default="exact,stride3", help=f"of {', '.join(STRATEGIES)}")
    parser.add_argument("--precisions", default="f32,bf16,int8", help="asked for; non-native ones are skipped")
    parser.add_argument("--models", type=Path, default=REPO / "work_dir")
    parser.add_argument("--routing", type=Path, default=REPO / "infer" / "routing_official.json")
    parser.add_argument("--out", type=Path, default=REPO / "test_demo" / "benchmark" / "cost_3d")
    args = parser.parse_args(argv)
    native = native_precisions(cpu_flags())
    precisions = [p for p in args.precisions.split(",") if p in native]
    skipped = [p for p in args.precisions.split(",") if p not in native]
    print(f"{cpu_summary()}; {len(os.sched_getaffinity(0))} CPUs; load {os.getloadavg()[0]:.1f}; native precisions "
          f"{', '.join(native)}"
          + (f"; skipped (not native): {', '.join(skipped)}" if skipped else ""), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = _cases(args.set, set(filter(None, args.workload.split(","))), args.out / "workload")
    rows = []
    print(f"{'case':24} {'shape':>14} {'variant':>14} {'wall s':>7} {'ratio':>5} {'enc':>4} {'ms/enc':>6} "
          f"{'RSS MB':>6} {'DSC':>6} {'vs exact':>8}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cost_3d_", dir=args.out) as tmp:
        tables = {name: _routing(args.routing, STRATEGIES[name], Path(tmp)) for name in args.variants.split(",")}
        for case in cases:
            truth = np.load(case.labels, allow_pickle=False)["gts"] if case.labels else None
            first: tuple[dict, np.ndarray] | None = None
            for name, routing in tables.items():
                for precision in precisions:
                    run, segs = _run(case.image, routing, precision, args.models, Path(tmp) / "run")
                    first = first or (run, segs)
                    row = {"case": case.image.name, "shape": "x".join(map(str, segs.shape)),
                           "variant": f"{name} {precision}", **run,
                           "ratio": run["wall_s"] / first[0]["wall_s"],
                           "dsc": _mean_dice(truth, segs) if truth is not None else float("nan"),
                           "vs_exact": _mean_dice(first[1], segs)}
                    rows.append(row)
                    print(f"{row['case'][:24]:24} {row['shape']:>14} {row['variant']:>14} {run['wall_s']:7.1f} "
                          f"{row['ratio']:5.2f} {run['encoder_calls']:4d} {run['encoder_ms']:6.0f} "
                          f"{run['peak_rss_mb']:6.0f} {row['dsc']:6.3f} {row['vs_exact']:8.3f}", flush=True)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        labelled = [r["dsc"] for r in mine if not np.isnan(r["dsc"])]
        print(f"{variant:>14}: wall {sum(r['wall_s'] for r in mine):7.1f} s, ratio mean "
              f"{np.mean([r['ratio'] for r in mine]):.2f}, encoder calls {sum(r['encoder_calls'] for r in mine)}, "
              f"mean DSC {np.mean(labelled) if labelled else float('nan'):.4f} ({len(labelled)} labelled), "
              f"max RSS {max(r['peak_rss_mb'] for r in mine):.0f} MB")
    (args.out / "cost_3d.json").write_text(json.dumps({"cpu": cpu_summary(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
