"""Per-layer profile of an OpenVINO encoder or box-decoder IR on this CPU (OpenVINO's PERF_COUNT).

Compiles the IR as ``infer.session`` does (f32, latency hint, one stream) plus ``PERF_COUNT``,
runs a few inferences on a random image (encoder) or a random embedding and ``--batch`` random
boxes (decoder: its second input, (B, 4) in model pixels), and prints the CPU flags that pick OpenVINO's kernels,
the load average (the machine may be shared), the OpenVINO version, the wall time per call, the
time per layer type (summed over the graph, median over calls) and the slowest nodes.

    python bench/encoder_profile.py [--model work_dir/litemedsam/encoder.xml] [--threads 2] [--runs 10] [--top 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import openvino as ov

from infer.precision import cpu_summary
from infer.session import host_threads

REPO = Path(__file__).resolve().parents[1]

Node = tuple[str, str, float]  # layer type, kernel, ms


def profile(model: Path, threads: int, runs: int, batch: int = 1) -> tuple[list[float], list[dict[str, Node]]]:
    """Wall ms per call and, per call, node name -> (layer type, kernel, ms) of the nodes that ran."""
    core = ov.Core()
    graph = core.read_model(model)
    rng = np.random.default_rng(0)
    shape = [batch, *list(graph.input(0).get_partial_shape().get_min_shape())[1:]]
    feeds = {}
    if len(graph.inputs) == 2:  # a box decoder: one embedding, (batch, 4) XYXY boxes (min corner, max corner)
        shape[0] = 1
        feeds[1] = np.sort(rng.uniform(0, 256, (batch, 2, 2)), axis=1).reshape(batch, 4).astype(np.float32)
        graph.reshape({0: shape, 1: [batch, 4]})
    elif graph.input(0).get_partial_shape().is_dynamic:
        graph.reshape({0: shape})  # a dynamic batch axis: compile for this batch, with static shapes
    feeds[0] = rng.uniform(0, 1, shape).astype(np.float32)
    compiled = core.compile_model(graph, "CPU", {
        "PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    request.infer(feeds)  # warm-up
    walls, nodes = [], []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer(feeds)
        walls.append((time.perf_counter() - start) * 1e3)
        nodes.append({p.node_name: (p.node_type, p.exec_type, p.real_time.total_seconds() * 1e3)
                      for p in request.get_profiling_info() if p.status == p.Status.EXECUTED})
    return walls, nodes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=REPO / "work_dir/litemedsam/encoder.xml")
    p.add_argument("--threads", type=int, default=host_threads())
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--batch", type=int, default=1,
                   help="images per call (an encoder IR with a dynamic batch axis, or one of that batch); boxes for a decoder")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)

    walls, calls = profile(args.model, args.threads, args.runs, args.batch)
    node_ms = {name: (kind, kernel, statistics.median(c[name][2] for c in calls))
               for name, (kind, kernel, _) in calls[0].items()}
    by_type: dict[str, list[float]] = defaultdict(list)
    kernels: dict[str, set[str]] = defaultdict(set)
    for kind, kernel, ms in node_ms.values():
        by_type[kind].append(ms)
        kernels[kind].add(kernel)
    total = sum(ms for *_, ms in node_ms.values())

    print(f"CPU: {cpu_summary()}; load average (1 min) {os.getloadavg()[0]:.2f}")
    print(f"OpenVINO {ov.get_version()}; {args.model}; {args.threads} threads; batch {args.batch}")
    print(f"wall per call: median {statistics.median(walls):.1f} ms (min {min(walls):.1f}, {args.runs} calls); "
          f"sum of node times {total:.1f} ms")
    print(f"\n{'layer type':<18} {'nodes':>5} {'ms':>8} {'%':>6}  kernels")
    for kind, times in sorted(by_type.items(), key=lambda kv: -sum(kv[1])):
        print(f"{kind:<18} {len(times):>5} {sum(times):>8.2f} {100 * sum(times) / total:>6.1f}  "
              f"{', '.join(sorted(kernels[kind]))}")
    print(f"\ntop {args.top} nodes")
    for name, (kind, kernel, ms) in sorted(node_ms.items(), key=lambda kv: -kv[1][2])[:args.top]:
        print(f"{ms:>8.2f} ms {100 * ms / total:>5.1f}%  {kind:<16} {kernel:<20} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
