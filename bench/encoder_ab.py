"""A/B timing of OpenVINO encoder IRs and compile settings, interleaved in one process.

Each variant is ``LABEL=PATH[,KEY=VALUE...]``: an encoder IR and OpenVINO CPU properties that
override ``infer.session``'s (f32, LATENCY hint, one stream, all host threads), plus two keys of
this script: ``batch=N`` images per inference (an IR with a dynamic batch axis is reshaped to N
before compiling, so it runs with static shapes; a static IR must match) and
``requests=R`` inferences in flight at once (for multi-stream settings; each request gets its
own image batch). After a warm-up the variants run in turn, one round after another, so machine
load drifts over all of them alike; the medians per variant (wall and this process's CPU time per
image; on a loaded machine CPU time is the steadier figure) are printed with the load average.

    python bench/encoder_ab.py current=work_dir/litemedsam/encoder.xml \\
        fast=work_dir/litemedsam_fast/encoder.xml fast_b2=work_dir/litemedsam_fast/encoder.xml,batch=2 \\
        tput=work_dir/litemedsam/encoder.xml,PERFORMANCE_HINT=THROUGHPUT,NUM_STREAMS=2,requests=2
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import openvino as ov

from infer.precision import cpu_summary
from infer.session import host_threads


class Variant:
    def __init__(self, spec: str, core: ov.Core) -> None:
        self.label, _, rest = spec.partition("=")
        path, *options = rest.split(",")
        props: dict[str, str | int] = {"INFERENCE_NUM_THREADS": host_threads(), "INFERENCE_PRECISION_HINT": "f32",
                                       "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        for option in options:
            key, _, value = option.partition("=")
            props[key] = value
        self.batch = int(props.pop("batch", 1))
        requests = int(props.pop("requests", 1))
        model = core.read_model(path)
        shape = [self.batch, *list(model.input(0).get_partial_shape().get_min_shape())[1:]]
        if model.input(0).get_partial_shape().is_dynamic:
            model.reshape({0: shape})  # compile for this batch: static shapes, as the runtime would
        self.queue = ov.AsyncInferQueue(core.compile_model(model, "CPU", props), requests)
        rng = np.random.default_rng(0)
        self.images = [rng.uniform(0, 1, shape).astype(np.float32) for _ in range(requests)]
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []

    def run(self) -> None:
        """One round: every request once; records wall and process CPU milliseconds per image."""
        start, start_cpu = time.perf_counter(), time.process_time()
        for image in self.images:
            self.queue.start_async({0: image})
        self.queue.wait_all()
        images = self.batch * len(self.images)
        self.wall_ms.append((time.perf_counter() - start) * 1e3 / images)
        self.cpu_ms.append((time.process_time() - start_cpu) * 1e3 / images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="+", help="LABEL=PATH[,KEY=VALUE...]")
    p.add_argument("--rounds", type=int, default=10, help="timed runs of each variant (default 10)")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)

    core = ov.Core()
    variants = [Variant(spec, core) for spec in args.variants]
    for _ in range(args.warmup):
        for v in variants:
            v.run()
    for v in variants:
        v.wall_ms.clear()
        v.cpu_ms.clear()
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for v in variants:
            v.run()
    load_after = os.getloadavg()[0]

    print(f"CPU: {cpu_summary()}; OpenVINO {ov.get_version()}")
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after; {args.rounds} rounds, interleaved")
    base = statistics.median(variants[0].wall_ms)
    print(f"{'variant':<16} {'wall ms/image':>13} {'min':>8} {'vs first':>9} {'CPU ms/image':>13}")
    for v in variants:
        med = statistics.median(v.wall_ms)
        print(f"{v.label:<16} {med:>13.1f} {min(v.wall_ms):>8.1f} {med / base:>9.3f} {statistics.median(v.cpu_ms):>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
