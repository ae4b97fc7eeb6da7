"""Labelled cases of the 2024 format -> inputs of the CVPR 2025 interactive format, to measure
the interactive pipeline with `python -m evaluation.interactive` on cases we have labels for:

    python -m evaluation.interactive_inputs -i IMGS -g GTS -o OUT [--widen SEED]

writes ``OUT/imgs/<case>.npz`` (``imgs``, ``spacing``, ``boxes`` as the organisers' dicts from the
labels, :func:`challenge.interactive.boxes_from_labels`) and ``OUT/gts/<case>.npz`` (``gts``
relabelled 1..N in ascending order, as their ``get_boxes.py`` does). 3D cases keep their volume and
spacing; a 2D case becomes a one-slice grey volume (1, H, W) (the channel mean; the format has no
2D layout) with spacing (1, 1, 1). ``--widen SEED`` widens the boxes like theirs (0..5 steps of
W/256, H/256 per side); without it boxes are tight.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from challenge.folders import case_files
from challenge.interactive import boxes_from_labels, write_interactive_case
from challenge.npz import read_npz, write_npz

__all__ = ["convert_case", "main"]


def convert_case(image_path: Path, gts_path: Path, out: Path, rng: np.random.Generator | None) -> None:
    """Write one case's interactive input and relabelled ground truth under ``out``."""
    arrays = read_npz(image_path, ("imgs",))
    imgs, gts = arrays["imgs"], read_npz(gts_path, ("gts",))["gts"]
    if imgs.ndim == 3 and gts.ndim == 3:
        spacing = read_npz(image_path, ("spacing",))["spacing"].astype(np.float64)
    else:
        imgs = np.rint(imgs.astype(np.float64).mean(-1))[None].astype(np.uint8) if imgs.ndim == 3 else imgs[None]
        gts, spacing = gts[None], np.ones(3)
    labels = np.unique(gts[gts != 0])
    relabelled = (np.searchsorted(labels, gts) + 1).astype(np.uint16) * (gts != 0)
    boxes = boxes_from_labels(relabelled, rng)
    write_interactive_case(out / "imgs" / image_path.name, imgs, spacing, boxes=boxes)
    write_npz(out / "gts" / image_path.name, {"gts": relabelled.astype(np.uint16) + 0})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.interactive_inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--imgs-dir", type=Path, required=True, help="2024-format cases (imgs)")
    parser.add_argument("-g", "--gts-dir", type=Path, required=True, help="their labels (gts)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="writes OUT/imgs and OUT/gts")
    parser.add_argument("--widen", type=int, default=None, metavar="SEED", help="widen boxes like the organisers")
    parser.add_argument("--only", nargs="*", default=None, help="case names to convert (default: all)")
    args = parser.parse_args(argv)
    rng = None if args.widen is None else np.random.default_rng(args.widen)
    (args.out / "imgs").mkdir(parents=True, exist_ok=True)
    (args.out / "gts").mkdir(parents=True, exist_ok=True)
    for path in case_files(args.imgs_dir):
        if args.only is None or path.name in args.only:
            convert_case(path, args.gts_dir / path.name, args.out, rng)
            print(f"{path.name}: written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
