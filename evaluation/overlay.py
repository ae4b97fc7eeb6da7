"""Pictures to look at before trusting a number: `python -m evaluation.overlay -i IMGS -g GTS -s SEGS -m METRICS.csv -o OUT`.

For the chosen cases (default: the `--worst` lowest-DSC cases of each modality in the metrics CSV;
or `--cases`), writes `OUT/<case>.png`: the image (2D) or each object's middle slice (3D) with the
ground-truth (green) and predicted (red) outlines and the box prompts (yellow). With a metrics CSV
also writes `OUT/summary.png`: DSC and NSD box plots per modality, and running time per case when
`--timing running_time.csv` is given. A case that cannot be drawn is reported and skipped;
exit code 1 then, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.cases import is_3d_case, load_key
from evaluation.csvio import parse_float, read_csv
from evaluation.figures import draw_case_2d, draw_case_3d, draw_summary
from evaluation.scoring import CaseResult, read_metrics_csv

__all__ = ["worst_cases", "draw_case", "main"]


def worst_cases(results: Sequence[CaseResult], per_modality: int) -> list[str]:
    """The `per_modality` lowest-DSC cases of each modality (NaN counts as lowest), sorted by name."""
    chosen = []
    for modality in sorted({r.modality for r in results}):
        group = [r for r in results if r.modality == modality]
        group.sort(key=lambda r: (-math.inf if math.isnan(r.dsc) else r.dsc, r.case))
        chosen += [r.case for r in group[:per_modality]]
    return sorted(chosen)


def _optional(path: Path, key: str) -> np.ndarray | None:
    """The array, or None when the file is absent (an unreadable file still raises)."""
    return load_key(path, key) if path.is_file() else None


def draw_case(case: str, imgs_dir: Path, gt_dir: Path | None, seg_dir: Path | None, out_dir: Path,
              caption: str = "", max_side: int = 1600) -> tuple[Path, tuple[int, int]]:
    """Draw one case to `out_dir/<case stem>.png`; returns the path and its (height, width) in pixels.

    Raises:
        ValueError: unreadable input, or ground truth / prediction not matching the image's shape.
    """
    image_path = imgs_dir / case
    image, boxes = load_key(image_path, "imgs"), load_key(image_path, "boxes")
    gts = _optional(gt_dir / case, "gts") if gt_dir else None
    segs = _optional(seg_dir / case, "segs") if seg_dir else None
    spatial = image.shape if is_3d_case(case) else image.shape[:2]
    for name, labels in (("gts", gts), ("segs", segs)):
        if labels is not None and labels.shape != spatial:
            raise ValueError(f"{case}: {name} shape {labels.shape} does not match image shape {spatial}")
    title = f"{case} {caption}".strip() + ("" if segs is not None else "  (no prediction)")
    out = out_dir / f"{Path(case).stem}.png"
    if is_3d_case(case):
        size = draw_case_3d(out, image, gts, segs, boxes, title)
    else:
        size = draw_case_2d(out, image, gts, segs, boxes, title, max_side)
    return out, size


def _caption(result: CaseResult | None) -> str:
    if result is None:
        return ""
    text = f"DSC {result.dsc:.4f}"
    return text + ("" if result.nsd is None else f"  NSD {result.nsd:.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.overlay", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-i", "--imgs-dir", type=Path, required=True, help="input cases (imgs, boxes)")
    parser.add_argument("-g", "--gt-dir", type=Path, default=None, help="ground truths (gts)")
    parser.add_argument("-s", "--seg-dir", type=Path, default=None, help="predictions (segs)")
    parser.add_argument("-m", "--metrics", type=Path, default=None, help="CSV from compute_metrics.py")
    parser.add_argument("-t", "--timing", type=Path, default=None, help="running_time.csv from time_eval.py")
    parser.add_argument("-o", "--out", "--out-dir", dest="out_dir", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--cases", nargs="+", default=None, help="case file names to draw")
    parser.add_argument("--worst", type=int, default=3, help="lowest-DSC cases drawn per modality")
    parser.add_argument("--max-size", type=int, default=1600, help="longest side of a 2D picture in pixels")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.imgs_dir.is_dir():
        print(f"error: imgs dir {args.imgs_dir} is not a folder", file=sys.stderr)
        return 2
    results = read_metrics_csv(args.metrics) if args.metrics else []
    if args.cases:
        cases = [Path(c).name if c.endswith(".npz") else f"{Path(c).name}.npz" for c in args.cases]
    elif results:
        cases = worst_cases(results, args.worst)
    else:
        print("error: give --metrics (to pick the worst cases) or --cases", file=sys.stderr)
        return 2
    by_case = {r.case: r for r in results}
    failed = 0
    for case in cases:
        try:
            out, (height, width) = draw_case(case, args.imgs_dir, args.gt_dir, args.seg_dir, args.out_dir,
                                             _caption(by_case.get(case)), args.max_size)
            print(f"{out} ({width}x{height})")
        except ValueError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
    if results:
        times = ({row["case"]: parse_float(row["time_mean_s"]) for row in read_csv(args.timing)}
                 if args.timing else None)
        draw_summary(args.out_dir / "summary.png", [r.modality for r in results], [r.dsc for r in results],
                     [r.nsd for r in results], times, [r.case for r in results])
        print(args.out_dir / "summary.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
