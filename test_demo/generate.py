"""Synthetic challenge cases with ground truth: demo cases, the benchmark workload, training cases.

Each case is a phantom of one modality written in the challenge format (docs/reference_systems.md section 1.1, section 1.4):
- imgs/<name>.npz: `imgs` uint8 (H, W, 3) for 2D or (D, H, W) for 3D; `boxes` int64 (N, 4)
  [x_min, y_min, x_max, y_max] or (N, 6) [x_min, y_min, z_min, x_max, y_max, z_max] (x = column,
  y = row, z = slice, maxima inclusive); `spacing` float64 (3,) in SimpleITK (x, y, z) order, 3D only.
- gts/<name>.npz: `gts` uint16 label map of the spatial shape, label k + 1 = box k; `spacing` for 3D.

Output is a pure function of (CaseSpec, seed): the same seed gives byte-identical files.

CLI: python -m test_demo.generate --out test_demo [--benchmark | --training N] [--seed N] [--overwrite]
(--training writes N training cases in the challenge training layout <out>/<Modality>/phantoms/<name>.npz
with imgs, gts and, for 3D, spacing in one file.)
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, cast

import numpy as np
from scipy import ndimage

from challenge.npz import write_npz

from . import scenes_2d, scenes_3d
from .shapes import Scene, render

__all__ = ["CaseSpec", "Case", "generate_case", "write_case", "bounding_boxes", "case_seed", "DEMO_CASES",
           "BENCHMARK_WORKLOAD", "training_cases", "SCENES", "main"]

Builder = Callable[[np.random.Generator, tuple[int, int, int], int], Scene]

# modality (challenge.names.MODALITIES, in that order) -> (dimension, scene builder)
SCENES: dict[str, tuple[str, Builder]] = {
    "CT": ("3D", scenes_3d.ct_scene),
    "MR": ("3D", scenes_3d.mr_scene),
    "PET": ("3D", scenes_3d.pet_scene),
    "US": ("2D", scenes_2d.us_scene),
    "X-Ray": ("2D", scenes_2d.xray_scene),
    "Dermoscopy": ("2D", scenes_2d.dermoscopy_scene),
    "Endoscopy": ("2D", scenes_2d.endoscopy_scene),
    "Fundus": ("2D", scenes_2d.fundus_scene),
    "Microscope": ("2D", scenes_2d.microscope_scene),
    "Mammography": ("2D", scenes_2d.mammography_scene),
    "OCT": ("2D", scenes_2d.oct_scene),
}

# Seed ranges: every case seed is START[kind] + base * SEED_STRIDE + index with 0 <= base, index
# < SEED_STRIDE, so demo seeds lie in [0, 2**40), benchmark seeds in [2**40, 2**41) and training
# seeds in [2**41, 2**41 + 2**40): a training case can never reproduce a demo case.
SEED_STRIDE = 2**20
SEED_START = {"demo": 0, "benchmark": 2**40, "training": 2**41}
MAX_ATTEMPTS = 8  # layouts tried until every label 1..n is visible


@dataclass(frozen=True)
class CaseSpec:
    """What to generate. shape: (H, W) for "2D" (stored as (H, W, 3)), (D, H, W) for "3D".
    name: `<2D|3D>Box_<Modality>_<id>`, the file name without `.npz`."""

    modality: str
    dim: Literal["2D", "3D"]
    shape: tuple[int, ...]
    n_objects: int
    name: str


@dataclass
class Case:
    """A generated case. imgs uint8 (H, W, 3) | (D, H, W); gts uint16 (H, W) | (D, H, W) with labels
    1..n; boxes int64 (n, 4) | (n, 6), tight (plus `box_margin`) with inclusive maxima; spacing
    float64 (3,) in (x, y, z) order for 3D, None for 2D; seed the case seed it came from."""

    name: str
    imgs: np.ndarray
    gts: np.ndarray
    boxes: np.ndarray
    spacing: np.ndarray | None
    seed: int


def case_seed(kind: str, base: int, index: int) -> int:
    """Seed of case `index` of a set ("demo", "benchmark", "training") generated from `base`."""
    if kind not in SEED_START:
        raise ValueError(f"unknown seed range {kind!r}; expected one of {sorted(SEED_START)}")
    for what, value in (("base seed", base), ("case index", index)):
        if not 0 <= value < SEED_STRIDE:
            raise ValueError(f"{what} {value} out of range [0, {SEED_STRIDE})")
    return SEED_START[kind] + base * SEED_STRIDE + index


def _check_spec(spec: CaseSpec) -> None:
    if spec.modality not in SCENES:
        raise ValueError(f"{spec.name}: unknown modality {spec.modality!r}; expected one of {sorted(SCENES)}")
    dim = SCENES[spec.modality][0]
    if spec.dim != dim:
        raise ValueError(f"{spec.name}: modality {spec.modality} is {dim}, spec says {spec.dim}")
    if len(spec.shape) != (3 if dim == "3D" else 2) or min(spec.shape) < 1:
        raise ValueError(f"{spec.name}: shape {spec.shape} is not a valid {dim} shape")
    if spec.n_objects < 1:
        raise ValueError(f"{spec.name}: n_objects must be >= 1, got {spec.n_objects}")
    tokens = spec.name.split("_")
    if len(tokens) < 3 or tokens[0] != f"{dim}Box" or tokens[1] != spec.modality:
        raise ValueError(f"{spec.name}: name must look like {dim}Box_{spec.modality}_<id>")


def bounding_boxes(gts: np.ndarray, n: int, margin: int = 0) -> np.ndarray | None:
    """Tight boxes of labels 1..n of a (H, W) or (D, H, W) label map, grown by `margin` and clipped.

    Returns int64 (n, 4) [x_min, y_min, x_max, y_max] or (n, 6) [x_min, y_min, z_min, x_max, y_max,
    z_max] with inclusive maxima, or None when some label is absent.
    """
    slices = ndimage.find_objects(gts, max_label=n)
    if len(slices) < n or any(s is None for s in slices):
        return None
    lo = np.array([[s.start for s in sl] for sl in slices], np.int64)
    hi = np.array([[s.stop - 1 for s in sl] for sl in slices], np.int64)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(hi + margin, np.array(gts.shape) - 1)
    return np.concatenate([lo[:, ::-1], hi[:, ::-1]], axis=1)  # axes (z,) y, x -> x, y (, z)


def generate_case(spec: CaseSpec, seed: int, box_margin: int = 0) -> Case:
    """Render the phantom of `spec` from `seed`; every label 1..n_objects is present.

    Raises ValueError for an inconsistent spec, RuntimeError if no layout shows all labels.
    """
    _check_spec(spec)
    builder = SCENES[spec.modality][1]
    shape3 = cast(tuple[int, int, int], tuple(spec.shape) if spec.dim == "3D" else (1, *spec.shape))
    for attempt in range(MAX_ATTEMPTS):
        scene = builder(np.random.default_rng([seed, 0, attempt]), shape3, spec.n_objects)
        imgs, gts = render(scene, shape3, seed)
        if spec.dim == "2D":
            imgs, gts = imgs[0], gts[0]
        boxes = bounding_boxes(gts, spec.n_objects, box_margin)
        if boxes is not None:
            break
    else:
        raise RuntimeError(f"{spec.name}: seed {seed}: no layout of {spec.n_objects} visible objects in {MAX_ATTEMPTS} attempts")
    spacing = None if scene.spacing is None else np.asarray(scene.spacing, np.float64)
    return Case(spec.name, imgs, gts, boxes, spacing, seed)


def write_case(case: Case, imgs_dir: str | Path, gts_dir: str | Path | None = None) -> list[Path]:
    """Write imgs_dir/<name>.npz (imgs, boxes[, spacing]) and, with gts_dir, gts_dir/<name>.npz
    (gts[, spacing]); each file is written atomically. Returns the paths written."""
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    jobs = [(Path(imgs_dir), {"imgs": case.imgs, "boxes": case.boxes, **extra})]
    if gts_dir is not None:
        jobs.append((Path(gts_dir), {"gts": case.gts, **extra}))
    paths = []
    for folder, arrays in jobs:
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{case.name}.npz")
        write_npz(paths[-1], arrays, compresslevel=1)
    return paths


def write_training_case(case: Case, modality: str, root: str | Path) -> Path:
    """Write root/<Modality>/phantoms/<name>.npz (imgs, gts[, spacing]), the challenge's training layout."""
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    folder = Path(root) / modality / "phantoms"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.name}.npz"
    write_npz(path, {"imgs": case.imgs, "gts": case.gts, **extra}, compresslevel=1)
    return path


def _spec(modality: str, shape: tuple[int, ...], n: int, case_id: str) -> CaseSpec:
    dim = SCENES[modality][0]
    return CaseSpec(modality, dim, shape, n, f"{dim}Box_{modality}_{case_id}")  # type: ignore[arg-type]


# Small cases of every modality: the whole set generates in seconds.
DEMO_CASES: list[CaseSpec] = [
    _spec("CT", (48, 160, 160), 5, "0001"),
    _spec("CT", (32, 192, 192), 8, "0002"),
    _spec("MR", (32, 144, 160), 4, "0001"),
    _spec("PET", (64, 128, 128), 3, "0001"),
    _spec("US", (384, 512), 2, "0001"),
    _spec("X-Ray", (256, 512), 8, "0001"),
    _spec("Dermoscopy", (384, 512), 1, "0001"),
    _spec("Endoscopy", (384, 480), 2, "0001"),
    _spec("Fundus", (512, 512), 3, "0001"),
    _spec("Microscope", (384, 512), 8, "0001"),
    _spec("Mammography", (512, 336), 3, "0001"),
    _spec("OCT", (384, 512), 4, "0001"),
]

# docs/reference_systems.md section 8: sized like the real challenge cases of section 1.1.
BENCHMARK_WORKLOAD: list[CaseSpec] = [
    _spec("CT", (287, 512, 512), 6, "bench"),
    _spec("MR", (64, 290, 320), 4, "bench"),
    _spec("PET", (264, 200, 200), 2, "bench"),
    _spec("Microscope", (1920, 2560), 241, "bench"),
    _spec("Dermoscopy", (3024, 4032), 1, "bench"),
    _spec("Mammography", (2604, 1726), 4, "bench"),
    _spec("X-Ray", (320, 640), 34, "bench"),
    _spec("US", (480, 640), 2, "bench"),
    _spec("Endoscopy", (576, 720), 1, "bench"),
    _spec("Fundus", (512, 512), 2, "bench"),
]


def training_cases(n: int, seed: int) -> Iterator[Case]:
    """`n` varied cases (all modalities in turn, random sizes and object counts) for training.

    Case k uses seed case_seed("training", seed, k), a range disjoint from every demo and
    benchmark seed (see SEED_START); its spec is drawn from that seed too. Names end in `t<k>`.
    """
    modalities = list(SCENES)
    for k in range(n):
        case = case_seed("training", seed, k)
        rng = np.random.default_rng([case, 2])
        modality = modalities[k % len(modalities)]
        if SCENES[modality][0] == "3D":
            shape: tuple[int, ...] = (int(rng.integers(24, 65)), int(rng.integers(96, 193)), int(rng.integers(96, 193)))
        else:
            shape = (int(rng.integers(192, 513)), int(rng.integers(192, 513)))
        most = {"Microscope": 40, "X-Ray": 16}.get(modality, 8)
        yield generate_case(_spec(modality, shape, int(rng.integers(1, most + 1)), f"t{k:06d}"), case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m test_demo.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("test_demo"), help="folder that receives imgs/ and gts/ (default: test_demo)")
    parser.add_argument("--benchmark", action="store_true", help="write the full-size benchmark workload into <out>/benchmark/ instead")
    parser.add_argument("--training", type=int, metavar="N",
                        help="write N training cases into <out>/<Modality>/phantoms/ instead (never equal to demo cases)")
    parser.add_argument("--seed", type=int, default=0, help=f"base seed, 0 <= N < {SEED_STRIDE} (default 0)")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace existing cases (--force: the old name)")
    args = parser.parse_args(argv)
    if args.training is not None:
        return _write_training_set(args.out, args.training, args.seed, args.overwrite)
    kind, specs = ("benchmark", BENCHMARK_WORKLOAD) if args.benchmark else ("demo", DEMO_CASES)
    root = args.out / "benchmark" if args.benchmark else args.out
    imgs_dir, gts_dir = root / "imgs", root / "gts"
    existing = [p for s in specs for p in (imgs_dir / f"{s.name}.npz", gts_dir / f"{s.name}.npz") if p.exists()]
    if existing and not args.overwrite:
        print(f"error: {existing[0]} exists ({len(existing)} existing files); pass --overwrite to replace them", file=sys.stderr)
        return 1
    try:
        seeds = [case_seed(kind, args.seed, i) for i in range(len(specs))]
    except ValueError as err:
        print(f"error: --seed: {err}", file=sys.stderr)
        return 2
    start, cpu_start = time.perf_counter(), time.process_time()
    for spec, seed in zip(specs, seeds):
        t0, cpu0 = time.perf_counter(), time.process_time()
        case = generate_case(spec, seed)
        write_case(case, imgs_dir, gts_dir)
        print(f"{case.name}: imgs {case.imgs.shape}, {len(case.boxes)} boxes, "
              f"{time.perf_counter() - t0:.2f} s wall, {time.process_time() - cpu0:.2f} s CPU")
    print(f"{len(specs)} cases in {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU -> {imgs_dir}, {gts_dir}")
    return 0


def _write_training_set(root: Path, n: int, seed: int, overwrite: bool) -> int:
    if root.exists() and any(root.iterdir()) and not overwrite:
        print(f"error: {root} is not empty; pass --overwrite to write into it", file=sys.stderr)
        return 1
    if not 0 <= seed < SEED_STRIDE:
        print(f"error: --seed: must satisfy 0 <= seed < {SEED_STRIDE}, got {seed}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    for case in training_cases(n, seed):
        write_training_case(case, case.name.split("_")[1], root)
    print(f"{n} training cases in {time.perf_counter() - start:.1f} s -> {root}/<Modality>/phantoms/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
