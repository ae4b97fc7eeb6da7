"""Accuracy of the official LiteMedSAM through our pipeline, per strategy variant, on labelled cases.

    python bench/official_accuracy.py --cases test_demo test_demo/real [--models work_dir] [--out results.csv]
        [--emb-cache DIR]

Each CASES folder holds ``imgs/`` and ``gts/``. Every variant below runs in this one process on one
OpenVINO model whose encoder results are kept per distinct image (``--emb-cache``, across runs too),
so the variants (which differ
only in prompts, views and crops) cost one encoder call per distinct slice in all, and are compared
on identical embeddings. Prints DSC / NSD per case and variant (organiser-exact scoring) and the mean
per variant and group; 3D and 2D variants are listed separately.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np

from evaluation.metrics import score_case
from infer import volume
from infer.cases import load_case
from infer.embedding_store import EmbeddingStore
from infer.models import load_model
from infer.pipeline import segment_case
from infer.predictor import SlicePredictor
from infer.routing import Route

REPO = Path(__file__).resolve().parents[1]


def memo_predictor(args: argparse.Namespace) -> SlicePredictor:
    """The model of ``args`` with every slice encoded once across variants and runs: embeddings
    kept by content in ``--emb-cache`` (:class:`infer.embedding_store.EmbeddingStore`), so
    variants differ only in prompts."""
    args.emb_cache.mkdir(parents=True, exist_ok=True)
    return SlicePredictor(load_model(args.models / args.model, "openvino", args.threads),
                          store=EmbeddingStore(args.emb_cache, budget_bytes=1 << 40))


@contextlib.contextmanager
def prompts_may_leave_the_box() -> Iterator[None]:
    """The propagation rule before the keep-inside-the-3D-box rule: the grown mask box, clipped to
    the image only."""

    def unclipped(mask, home, margin, shape, rule=None):
        if mask is None:
            return home.copy()
        grow = np.array([-margin[0], -margin[1], margin[0], margin[1]])
        prompt = np.array(mask.bbox(), np.float64) + grow
        return np.clip(prompt, 0.0, [shape[1] - 1.0, shape[0] - 1.0] * 2)

    with mock.patch.object(volume, "_next_prompt", unclipped):
        yield


Variant = tuple[str, str, str, float, Callable[[], contextlib.AbstractContextManager], tuple[str, ...]]
"""(name, dimension, strategy, margin, context, modalities it runs on: () = all)"""

VARIANTS: list[Variant] = [
    ("axial m3 (default)", "3D", "axial", 3.0, contextlib.nullcontext, ()),
    ("axial m0", "3D", "axial", 0.0, contextlib.nullcontext, ()),
    ("axial m7", "3D", "axial", 7.0, contextlib.nullcontext, ()),
    ("axial m3, prompt may leave the 3D box", "3D", "axial", 3.0, prompts_may_leave_the_box, ()),
    ("three-view vote m3", "3D", "three_view_vote", 3.0, contextlib.nullcontext, ("PET",)),
    ("image (default)", "2D", "image", 3.0, contextlib.nullcontext, ()),
    ("image_zoom", "2D", "image_zoom", 3.0, contextlib.nullcontext, ()),
]


def _cases(folders: list[Path]) -> list[tuple[str, Path, Path]]:
    found = []
    for folder in folders:
        for img in sorted((folder / "imgs").glob("*.npz")):
            found.append((folder.name, img, folder / "gts" / img.name))
    return found


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options this bench shares with bench/propagation_study.py."""
    p.add_argument("--cases", type=Path, nargs="+", required=True, help="folders with imgs/ and gts/")
    p.add_argument("--models", type=Path, default=REPO / "work_dir")
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    p.add_argument("--emb-cache", type=Path, default=REPO / "test_demo" / "benchmark" / "embeddings",
                   help="folder keeping embeddings across variants and runs, 4 MiB each (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--out", type=Path, help="CSV of every (case, variant) score")
    args = p.parse_args(argv)
    predictor = memo_predictor(args)
    rows = []
    for group, img, gt in _cases(args.cases):
        dimension = "3D" if img.name.startswith("3D") else "2D"
        case = load_case(img, dimension)
        with np.load(gt, allow_pickle=False) as data:
            gts = data["gts"]
            spacing = data["spacing"] if dimension == "3D" else None
        modality = img.name.split("_")[1]
        for name, dim, strategy, margin, context, modalities in VARIANTS:
            if dim != dimension or (modalities and modality not in modalities) or (args.only and name not in args.only):
                continue
            start, calls = time.perf_counter(), predictor.stats.encoder_calls
            with context():
                segs, _ = segment_case(case, Route(dimension, "*", args.model, strategy), predictor, margin)
            scores = score_case(gts, segs, spacing)
            rows.append({"group": group, "case": img.name, "variant": name, "dsc": scores.dsc, "nsd": scores.nsd,
                         "new_encoder_calls": predictor.stats.encoder_calls - calls,
                         "seconds": time.perf_counter() - start})
            print(f"{group:10s} {img.name:34s} {name:40s} DSC {scores.dsc:.4f} NSD {scores.nsd:.4f}", flush=True)
    print("\nmeans (DSC / NSD):")
    for group in dict.fromkeys(r["group"] for r in rows):
        for name, *_ in VARIANTS:
            sel = [r for r in rows if r["group"] == group and r["variant"] == name]
            if sel:
                print(f"  {group:10s} {name:40s} {np.mean([r['dsc'] for r in sel]):.4f} / "
                      f"{np.mean([r['nsd'] for r in sel]):.4f}  ({len(sel)} cases)")
    if args.out:
        write_rows(args.out, rows)
    return 0


def write_rows(path: Path, rows: list[dict]) -> None:
    """Every score row as CSV (both benches)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    raise SystemExit(main())
