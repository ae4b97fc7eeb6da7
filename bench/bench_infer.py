"""Inference benchmark on the workload of docs/reference_systems.md section 8, each case in a fresh process.

    python bench/bench_infer.py [--out DIR] [--models DIR] [--backend openvino] [--threads N]
                                [--cases CT,PET,...] [--repeats 3]

Generates `test_demo.generate.BENCHMARK_WORKLOAD` (sizes of the real challenge cases) into
OUT/cases, exports random-init models into OUT/models unless `--models` names a folder laid out
like the routing table (needs torch only for that export), warms the OpenVINO cache, then for
each case:

1. measures, in a fresh process, the isolated latency of one encoder call and of one decoder call
   with one box for the model the case is routed to (median of `--repeats` after three warm-up
   calls), once before and once after the case; the mean of the two is used (the machine's load
   may drift during a long case);
2. runs `python -m infer` on that case alone in a fresh process, like the organisers' one
   container per case, recording wall time and peak RSS (evaluation.process_run), and reads
   encoder calls, decoded boxes and the time of the first encoder call from its efficiency CSV.

Compute floor = encoder calls x encoder latency + decoded boxes x per-box decoder latency;
efficiency = floor / wall. On a shared machine the load drifts between the latency measurement and
the case; "cpu eff" repeats the ratio in CPU seconds (floor from the calls' CPU time, over the CPU
time the CLI reports for the case, start-up excluded), less sensitive to the load, and "busy" is
the wall time the case spent inside model calls over its wall time (same run, same load). A final row
times start-up alone: process start to the first encoder call on a tiny case (models cached).
Prints a table and writes OUT/bench_infer.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.process_run import run_measured
from challenge.names import parse_case_name
from infer.routing import DEFAULT_ROUTING, load_routing
from test_demo.generate import BENCHMARK_WORKLOAD, case_seed, generate_case, write_case

REPO = Path(__file__).resolve().parents[1]

RANDOM_MODELS = {"litemedsam": ("litemedsam", 0), "litemedsam_finetuned": ("litemedsam", 1),
                 "efficientsam_vitt": ("efficientsam_vitt", 0)}


def _export_random_models(models: Path, table) -> None:
    """Random-init model folders for every folder the routing table names."""
    models.mkdir(parents=True, exist_ok=True)
    for name in sorted({route.model for route in table.routes}):
        if (models / name / "model.json").is_file():
            continue
        arch, seed = RANDOM_MODELS.get(name, (table.models[name], 0))
        print(f"exporting random-init {arch} seed {seed} -> {models / name}", flush=True)
        subprocess.run([sys.executable, "-m", "train.export", "--arch", arch, "--random-init", "--seed", str(seed),
                        "--out", str(models / name)], check=True, stdout=subprocess.DEVNULL)


def _generate(cases_dir: Path, wanted: set[str] | None) -> list[Path]:
    paths = []
    for index, spec in enumerate(BENCHMARK_WORKLOAD):
        if wanted and spec.modality not in wanted:
            continue
        path = cases_dir / f"{spec.name}.npz"
        if not path.is_file():
            start = time.perf_counter()
            write_case(generate_case(spec, case_seed("benchmark", 0, index)), cases_dir)
            print(f"generated {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
        paths.append(path)
    return paths


_LATENCY_CHILD = """
import json, sys, time
import numpy as np
from pathlib import Path
from infer.models import load_model
from infer.predictor import SlicePredictor
folder, backend, cache = Path(sys.argv[1]), sys.argv[2], sys.argv[4]
threads, repeats = int(sys.argv[3]), int(sys.argv[5])
model = load_model(folder, backend, threads, Path(cache) if cache else None)
predictor = SlicePredictor(model)
image = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
box = np.array([[100.0, 120.0, 300.0, 330.0]])
def timed(fn):
    for _ in range(3):  # the first calls of a fresh process run slower (kernel selection, allocation)
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]
encoder, encoder_cpu = timed(lambda: predictor.set_image(image))
decoder, decoder_cpu = timed(lambda: predictor.predict_logits(box))
print(json.dumps({"encoder_s": encoder, "decoder_per_box_s": decoder, "encoder_cpu_s": encoder_cpu,
                  "decoder_per_box_cpu_s": decoder_cpu}))
"""


def _latency(folder: Path, backend: str, threads: int, cache: Path | None, repeats: int) -> dict[str, float]:
    """Isolated encoder latency and one-box decoder latency of a model, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _LATENCY_CHILD, str(folder), backend, str(threads), str(cache or ""),
                          str(repeats)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_case(case: Path, args, work: Path, cache: Path | None) -> dict:
    inputs, outputs = work / "inputs", work / "outputs"
    shutil.rmtree(work, ignore_errors=True)
    inputs.mkdir(parents=True)
    try:
        os.link(case, inputs / case.name)  # the inputs are never modified: a hard link is a free copy
    except OSError:
        shutil.copy(case, inputs / case.name)
    csv_path = work / "efficiency.csv"
    argv = [sys.executable, "-m", "infer", "-i", str(inputs), "-o", str(outputs), "--models", str(args.models),
            "--backend", args.backend, "--threads", str(args.threads), "--efficiency-csv", str(csv_path),
            "--cache-dir", str(cache or "")]
    run = run_measured(argv, work / "log.txt")
    log_tail = (work / "log.txt").read_text().strip().splitlines()[-3:]
    if run.returncode != 0:
        raise RuntimeError(f"{case.name}: python -m infer exited {run.returncode}: {log_tail}")
    with open(csv_path) as handle:
        (row,) = csv.DictReader(handle)
    return {"wall_s": run.seconds, "peak_rss_mb": run.peak_rss_bytes / 2**20, "case_s": float(row["time"]),
            "case_cpu_s": float(row["cpu_time"]), "in_model_s": float(row["encoder_time"]) + float(row["decoder_time"]),
            "first_encoder_call_cpu_s": float(row["first_encoder_call_cpu"] or "nan"),
            "encoder_calls": int(row["encoder_calls"]), "decoded_boxes": int(row["decoded_boxes"]),
            "first_encoder_call_s": float(row["first_encoder_call"] or "nan"), "log": log_tail[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "test_demo" / "benchmark" / "infer",
                        help="cases, models and results (default: test_demo/benchmark/infer)")
    parser.add_argument("--models", type=Path, default=None,
                        help="model folders (default: random-init export into OUT/models)")
    parser.add_argument("--backend", choices=("openvino", "onnxruntime"), default="openvino")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cases", default="", help="comma-separated modalities to run (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per latency measurement")
    args = parser.parse_args(argv)
    table = load_routing(DEFAULT_ROUTING)
    if args.models is None:
        args.models = args.out / "models"
        _export_random_models(args.models, table)
    cache = args.models / "ov_cache" if args.backend == "openvino" else None
    if cache is not None:
        subprocess.run([sys.executable, "-m", "infer.warm_cache", "--models", str(args.models), "--cache-dir",
                        str(cache)], check=True, stdout=subprocess.DEVNULL)
    cases = _generate(args.out / "cases", set(filter(None, args.cases.split(","))) or None)
    results = []
    header = (f"{'case':28} {'shape':>16} {'boxes':>5} {'wall s':>8} {'1st enc s':>9} {'enc calls':>9} "
              f"{'dec boxes':>9} {'enc s':>6} {'box s':>6} {'floor s':>8} {'effic.':>6} {'cpu eff':>7} {'busy':>5} "
              f"{'RSS MB':>7}")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_infer_", dir=args.out) as tmp:
        for case in cases:
            name = parse_case_name(case)
            route = table.route_for(name.dimension, name.modality)  # type: ignore[arg-type]
            folder = args.models / route.model
            before = _latency(folder, args.backend, args.threads, cache, args.repeats)
            run = _run_case(case, args, Path(tmp) / "run", cache)
            after = _latency(folder, args.backend, args.threads, cache, args.repeats)
            latency = {key: (before[key] + after[key]) / 2 for key in before}
            latency["measured"] = [before, after]
            floor = run["encoder_calls"] * latency["encoder_s"] + run["decoded_boxes"] * latency["decoder_per_box_s"]
            floor_cpu = (run["encoder_calls"] * latency["encoder_cpu_s"]
                         + run["decoded_boxes"] * latency["decoder_per_box_cpu_s"])
            with np.load(case) as archive:
                shape, boxes = archive["imgs"].shape, len(archive["boxes"])
            row = {"case": case.name, "shape": "x".join(map(str, shape)), "boxes": boxes, "model": route.model,
                   "strategy": route.strategy, **latency, **run, "floor_s": floor, "efficiency": floor / run["wall_s"],
                   "floor_cpu_s": floor_cpu, "cpu_efficiency": floor_cpu / run["case_cpu_s"],
                   "busy": run["in_model_s"] / run["wall_s"]}
            results.append(row)
            print(f"{case.name:28} {row['shape']:>16} {boxes:>5} {run['wall_s']:8.1f} "
                  f"{run['first_encoder_call_s']:9.2f} "
                  f"{run['encoder_calls']:9d} {run['decoded_boxes']:9d} {latency['encoder_s']:6.2f} "
                  f"{latency['decoder_per_box_s']:6.3f} {floor:8.1f} {row['efficiency']:6.2f} "
                  f"{row['cpu_efficiency']:7.2f} {row['busy']:5.2f} "
                  f"{run['peak_rss_mb']:7.0f}", flush=True)
        tiny = Path(tmp) / "tiny" / "2DBox_US_startup.npz"
        tiny.parent.mkdir()
        np.savez_compressed(tiny, imgs=np.zeros((64, 64, 3), np.uint8), boxes=np.array([[8, 8, 40, 40]]))
        runs = [_run_case(tiny, args, Path(tmp) / "run", cache) for _ in range(5)]
    startups = [r["first_encoder_call_s"] for r in runs]
    startup_cpu = [r["first_encoder_call_cpu_s"] for r in runs]
    print(f"start-up (process start -> first encoder call, tiny case, models cached): median "
          f"{statistics.median(startups):.2f} s of {', '.join(f'{s:.2f}' for s in startups)}; "
          f"CPU seconds used by then: median {statistics.median(startup_cpu):.2f}")
    three_d = [r for r in results if r["case"].startswith("3D")]
    if three_d:
        print(f"3D efficiency: min {min(r['efficiency'] for r in three_d):.2f}; "
              f"peak RSS max {max(r['peak_rss_mb'] for r in results):.0f} MB")
    summary = {"backend": args.backend, "threads": args.threads, "models": str(args.models),
               "startup_s": startups, "startup_cpu_s": startup_cpu, "cases": results}
    (args.out / "bench_infer.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
