"""Latency of every zoo architecture in PyTorch, ONNX Runtime and OpenVINO on this machine.

For each architecture: encoder latency (median of repeated runs after warm-up), the encoder's
multiply-accumulate count (counted with ``torch.utils.flop_counter``) and the achieved GFLOP/s
(2 x MAC / latency), and the decoder's latency per box at B = 1, 8 and 64 boxes per call.
Models are exported with random weights (latency does not depend on the weights) unless
``--models DIR`` points at existing model folders named after their architecture.

    python bench/bench_models.py [--arch litemedsam ...] [--threads N] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from infer.model_spec import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
from train.export import Source, export_model
from train.models import ARCHITECTURES, get_architecture

BOX_COUNTS = (1, 8, 64)


def _median_seconds(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _macs(model, image: torch.Tensor, boxes: torch.Tensor) -> tuple[float, float]:
    """(encoder MAC, decoder MAC per box)."""
    with FlopCounterMode(display=False) as counter:
        embedding = model.embed(image)
    encoder = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        model.decode(embedding.detach(), boxes)
    return encoder, counter.get_total_flops() / 2 / len(boxes)


def _backends(folder: Path, threads: int):
    """name -> (encode(image), decode(embedding, boxes)) for ONNX Runtime and OpenVINO."""
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    enc = ort.InferenceSession(str(folder / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / "decoder.onnx"), options, providers=["CPUExecutionProvider"])
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    ov_enc = core.compile_model(str(folder / "encoder.xml"), "CPU", config).create_infer_request()
    ov_dec = core.compile_model(str(folder / "decoder.xml"), "CPU", config).create_infer_request()
    return {
        "onnxruntime": (lambda x: enc.run([ENCODER_OUTPUT], {ENCODER_INPUT: x})[0],
                        lambda e, b: dec.run(list(DECODER_OUTPUTS), {DECODER_INPUTS[0]: e, DECODER_INPUTS[1]: b})),
        "openvino": (lambda x: ov_enc.infer({ENCODER_INPUT: x}),
                     lambda e, b: ov_dec.infer({DECODER_INPUTS[0]: e, DECODER_INPUTS[1]: b})),
    }


def bench_architecture(name: str, folder: Path, threads: int, repeat: int) -> list[dict]:
    arch = get_architecture(name)
    size = arch.preprocess.image_size
    torch.manual_seed(0)
    model = arch.build().eval()
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    boxes = {n: np.sort(rng.uniform(0, size - 1, (n, 2, 2)), axis=1).transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]
             .astype(np.float32) for n in BOX_COUNTS}
    enc_mac, dec_mac = _macs(model, torch.from_numpy(image), torch.from_numpy(boxes[8]))
    with torch.no_grad():
        embedding = model.embed(torch.from_numpy(image))
    runners = {"pytorch": (lambda x: model.embed(torch.from_numpy(x)),
                           lambda e, b: model.decode(torch.from_numpy(e), torch.from_numpy(b)))}
    runners.update(_backends(folder, threads))
    rows = []
    for backend, (encode, decode) in runners.items():
        with torch.no_grad():
            enc_s = _median_seconds(lambda: encode(image), repeat)
            per_box = {n: _median_seconds(lambda n=n: decode(embedding.numpy(), boxes[n]), repeat) / n
                       for n in BOX_COUNTS}
        rows.append({"arch": name, "backend": backend, "encoder_ms": enc_s * 1e3, "encoder_gmac": enc_mac / 1e9,
                     "gflops": 2 * enc_mac / enc_s / 1e9, "decoder_gmac_per_box": dec_mac / 1e9,
                     **{f"dec_ms_per_box_B{n}": per_box[n] * 1e3 for n in BOX_COUNTS}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--models", type=Path, help="folder holding <arch>/ model folders (default: export random-init)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads} (torch, ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS); "
          f"median of {args.repeat} runs after 2 warm-up runs; random-init weights")
    header = (f"{'arch':18} {'backend':12} {'enc ms':>9} {'enc GMAC':>9} {'GFLOP/s':>8} {'dec GMAC/box':>12} "
              + " ".join(f"{'ms/box B=' + str(n):>12}" for n in BOX_COUNTS))
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.arch:
            folder = args.models / name if args.models else Path(tmp) / name
            if not args.models:
                torch.manual_seed(0)
                export_model(get_architecture(name).build(), get_architecture(name), folder,
                             Source(False, "random-init seed 0", seed=0))
            for r in bench_architecture(name, folder, args.threads, args.repeat):
                print(f"{r['arch']:18} {r['backend']:12} {r['encoder_ms']:9.1f} {r['encoder_gmac']:9.2f} "
                      f"{r['gflops']:8.1f} {r['decoder_gmac_per_box']:12.3f} "
                      + " ".join(f"{r[f'dec_ms_per_box_B{n}']:12.2f}" for n in BOX_COUNTS), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
