"""Round trip a CT-sized NIfTI through ``python -m convert`` and print time and peak memory.

    .venv/bin/python bench/convert_roundtrip.py [--shape 300 512 512] [--work-dir DIR]

Synthesises an int16 CT phantom (air, body, bones, noise) with six labelled organs on an
anisotropic grid, then runs ``to-npz`` (labels -> boxes, abdomen window) and ``from-npz``
(the gts as an identity segmentation) as separate processes, each measured for wall seconds
CPU seconds and peak resident memory (Linux ``VmHWM``), and checks the mask equals the labels.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def phantom(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int16 HU volume, uint8 labels 1..6), both (D, H, W)."""
    depth, height, width = shape
    z, y, x = np.ogrid[:depth, :height, :width]
    rng = np.random.default_rng(seed)
    body = ((y - height / 2) / (0.42 * height)) ** 2 + ((x - width / 2) / (0.47 * width)) ** 2 <= 1
    volume = np.where(body, np.int16(40), np.int16(-1000)) + rng.normal(0, 20, size=shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    for label in range(1, 7):
        cz, cy, cx = rng.uniform(0.2, 0.8, 3) * shape
        rz, ry, rx = rng.uniform(0.05, 0.15, 3) * shape
        organ = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        labels[organ & body] = label
        volume[organ & body] += np.int16(20 * label)
    spine = ((y - 0.7 * height) / (0.05 * height)) ** 2 + ((x - width / 2) / (0.05 * width)) ** 2 <= 1
    volume[np.broadcast_to(spine, shape)] = 700
    return volume, labels


# Runs the CLI and reports the process's own peak RSS (VmHWM: the high-water mark of this
# process image, unlike ru_maxrss, which keeps the forking parent's peak across exec).
_WRAPPER = """
import atexit, resource, runpy, sys
def report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open('/proc/self/status') as status:
        sys.stderr.write(next(line for line in status if line.startswith('VmHWM:')))
    sys.stderr.write(f'CPU: {usage.ru_utime + usage.ru_stime}\\n')
atexit.register(report)
sys.argv = ['convert', *sys.argv[1:]]
runpy.run_module('convert', run_name='__main__', alter_sys=True)
"""


def measured(arguments: list[str]) -> tuple[float, float, float]:
    """Run ``python -m convert ARGUMENTS``; return (wall s, CPU s, peak RSS MiB)."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", _WRAPPER, *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"convert {' '.join(arguments)} failed: {run.stderr.strip()}")
    peak_kib = int(run.stderr.rsplit("VmHWM:", 1)[1].split()[0])
    cpu = float(run.stderr.rsplit("CPU:", 1)[1].split()[0])
    return seconds, cpu, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("D", "H", "W"))
    parser.add_argument("--work-dir", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    volume, labels = phantom(tuple(args.shape))
    for array, name in ((volume, "ct.nii.gz"), (labels, "labels.nii.gz")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.78, 0.78, 2.5))
        image.SetOrigin((-200.0, -180.0, -600.0))
        image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
        sitk.WriteImage(image, str(work / name), useCompression=True)

    to_s, to_cpu, to_mb = measured(
        ["to-npz", str(work / "ct.nii.gz"), "--modality", "CT", "--labels", str(work / "labels.nii.gz"),
               "--out-dir", str(work / "out"), "--id", "bench", "--overwrite"]
    )
    name = "3DBox_CT_bench"
    gts = np.load(work / "out" / "gts" / f"{name}.npz")["gts"]
    (work / "segs").mkdir(exist_ok=True)
    np.savez_compressed(work / "segs" / f"{name}.npz", segs=gts.astype(np.uint16))
    from_s, from_cpu, from_mb = measured(
        ["from-npz", str(work / "segs" / f"{name}.npz"), "--geometry", str(work / "out" / "geometry"),
               "--out", str(work / "masks"), "--overwrite"]
    )
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "masks" / f"{name}.nii.gz")))
    same = bool(np.array_equal(mask, labels))
    boxes = np.load(work / "out" / "imgs" / f"{name}.npz")["boxes"]
    print(f"volume {tuple(args.shape)} int16, {boxes.shape[0]} labels -> boxes, files in {work}")
    print(f"to-npz   wall {to_s:6.1f} s  CPU {to_cpu:6.1f} s  peak RSS {to_mb:5.0f} MiB")
    print(f"from-npz wall {from_s:6.1f} s  CPU {from_cpu:6.1f} s  peak RSS {from_mb:5.0f} MiB")
    print(f"mask equals the label map voxel for voxel: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
