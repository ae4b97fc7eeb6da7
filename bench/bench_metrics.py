"""Seconds to score the benchmark workload (docs/reference_systems.md section 8) with evaluation.scoring.

Synthesises ground truths sized like the challenge cases (ellipsoid / ellipse objects, one label per
box), or takes them from `--gts DIR` (e.g. the team's phantoms from
`python -m test_demo.generate --benchmark`, in `test_demo/benchmark/gts`), and predictions that are
shifted, eroded or dilated copies (every case passes the DSC > 0.2 gate, so NSD is always computed:
the slow path). Writes them as compressed npz like real outputs, then times per-case scoring (one
process) and the whole folder with `--workers` processes. Prints wall seconds and CPU seconds
(user + system; CPU time depends much less on other load on the machine).

    python bench/bench_metrics.py [--workers 2] [--keep DIR] [--gts DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.cases import load_key
from evaluation.scoring import evaluate_case, evaluate_folder, list_cases

# name, shape, labels, object radius range (voxels / pixels), spacing (3D only)
WORKLOAD = [
    ("3DBox_CT_0566.npz", (287, 512, 512), 6, (15, 70), (0.8, 0.8, 2.5)),
    ("3DBox_MR_0121.npz", (64, 290, 320), 4, (8, 40), (1.0, 1.0, 5.0)),
    ("3DBox_PET_0001.npz", (264, 200, 200), 2, (10, 30), (4.0, 4.0, 4.0)),
    ("2DBox_Microscope_0016.npz", (1920, 2560), 241, (10, 40), None),
    ("2DBox_Dermoscopy_0003.npz", (3024, 4032), 1, (600, 1200), None),
    ("2DBox_Mammography_0001.npz", (2604, 1726), 4, (40, 180), None),
    ("2DBox_X-Ray_0053.npz", (320, 640), 34, (5, 25), None),
    ("2DBox_US_0001.npz", (600, 800), 1, (60, 150), None),
    ("2DBox_Endoscopy_0001.npz", (480, 640), 2, (30, 90), None),
    ("2DBox_Fundus_0001.npz", (1024, 1024), 2, (40, 200), None),
]


def synthesise(shape: tuple[int, ...], n_labels: int, radii: tuple[int, int], rng) -> np.ndarray:
    """Label map with `n_labels` random ellipsoids (later labels overwrite earlier ones)."""
    labels = np.zeros(shape, np.uint16)
    for label in range(1, n_labels + 1):
        radius = rng.uniform(*radii, size=len(shape))
        if len(shape) == 3:
            radius[0] = max(2.0, radius[0] * shape[0] / max(shape))  # fewer slices than rows
        centre = [rng.uniform(r, n - r) if n > 2 * r else n / 2 for r, n in zip(radius, shape)]
        box = tuple(slice(max(0, int(c - r)), min(n, int(c + r) + 1)) for c, r, n in zip(centre, radius, shape))
        grids = np.ogrid[box]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius)) <= 1.0
        labels[box][inside] = label
    return labels


def predict(labels: np.ndarray, rng) -> np.ndarray:
    """A plausible prediction: each label shifted by up to 2 voxels, sometimes eroded or dilated."""
    out = np.zeros_like(labels)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(0, s.start - 4), min(n, s.stop + 4)) for s, n in zip(box, labels.shape))
        mask = labels[grown] == index
        mask = np.roll(mask, int(rng.integers(-2, 3)), axis=int(rng.integers(labels.ndim)))
        if rng.random() < 0.5:
            mask = (ndimage.binary_erosion if rng.random() < 0.5 else ndimage.binary_dilation)(mask)
        out[grown][mask] = index
    return out


def write_workload(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "gts").mkdir(parents=True)
    (root / "segs").mkdir()
    for name, shape, n_labels, radii, spacing in WORKLOAD:
        gts = synthesise(shape, n_labels, radii, rng)
        extra = {"spacing": np.array(spacing)} if spacing else {}
        np.savez_compressed(root / "gts" / name, gts=gts.astype(np.uint8 if n_labels < 256 else np.uint16), **extra)
        np.savez_compressed(root / "segs" / name, segs=predict(gts, rng))


def write_predictions(gt_dir: Path, seg_dir: Path, seed: int = 0) -> None:
    """Predictions (see `predict`) for every ground truth of an existing workload."""
    rng = np.random.default_rng(seed)
    seg_dir.mkdir(parents=True)
    for name in list_cases(gt_dir):
        np.savez_compressed(seg_dir / name, segs=predict(load_key(gt_dir / name, "gts"), rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write the workload here and keep it")
    parser.add_argument("--gts", type=Path, default=None,
                        help="score these ground truths (e.g. test_demo/benchmark/gts) instead of synthesising them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_metrics_"))
    gt_dir, seg_dir = args.gts or root / "gts", root / "segs"
    try:
        if not seg_dir.is_dir():
            start = time.perf_counter()
            if args.gts:
                write_predictions(gt_dir, seg_dir)
            else:
                write_workload(root)
            print(f"synthesised {'predictions' if args.gts else 'workload'} in {time.perf_counter() - start:.1f} s ({root})")
        print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'case':30s} {'shape':>16s} {'labels':>6s} {'DSC':>7s} {'NSD':>7s} {'wall s':>7s} {'CPU s':>7s}")
        wall_total = cpu_total = 0.0
        for name in list_cases(gt_dir):
            n_labels = int(load_key(gt_dir / name, "gts").max())
            start, cpu = time.perf_counter(), time.process_time()
            result = evaluate_case(name, seg_dir, gt_dir)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            wall_total, cpu_total = wall_total + wall, cpu_total + cpu
            print(f"{name:30s} {result.image_size:>16s} {n_labels:6d} {result.dsc:7.4f} {result.nsd:7.4f} "
                  f"{wall:7.2f} {cpu:7.2f}{'  ' + result.error if result.error else ''}")
        print(f"total, one process: wall {wall_total:.2f} s, CPU {cpu_total:.2f} s")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        evaluate_folder(seg_dir, gt_dir, num_workers=args.workers, progress=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        print(f"total, {args.workers} worker processes (evaluate_folder): wall {time.perf_counter() - start:.2f} s, "
              f"CPU {cpu:.2f} s; load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
