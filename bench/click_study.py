"""Click-step variants side by side, in one process, on the evaluator's own click trajectories.

    python bench/click_study.py --cases IN [IN ...] [--only propagate "local reach=0" "local reach=3"]
        [--models work_dir] [--model litemedsam] [--emb-cache DIR] [--out FILE.csv]

Each IN holds ``imgs/`` (CVPR 2025 interactive inputs, e.g. from ``python -m
evaluation.interactive_inputs``) and ``gts/``. Per case the box step runs once; then every variant
runs its own five click steps, each click placed by the evaluator's rule on that variant's previous
prediction (``evaluation.clicks``), scored like ``python -m evaluation.interactive`` (DSC / NSD per
step, AUC over the click steps). It is the harness without the fresh process per step: slice
embeddings are kept by content in ``--emb-cache``, so a variant costs only its decoder calls, and
the masks are the ones ``predict.sh`` gives with the same options (the same per-step means as the
harness for ``propagate`` and ``local reach=0`` on the cases of docs/interactive.md).

A variant is ``propagate`` or ``local``, then ``key=value`` options of
:class:`infer.interactive.InteractiveOptions`: ``reach`` (edit_reach), ``mask`` (mask_prompt, 0/1),
``rounds`` (refine_rounds), ``agree`` (agree_dice).
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from official_accuracy import add_common_arguments, memo_predictor
from challenge.interactive import ClassClicks, ClickKind, InteractiveCase, read_interactive_case
from evaluation.interactive import N_CLICKS, add_next_clicks, auc, evaluator_labels, score_step
from infer.interactive import EmbeddingCache, InteractiveOptions, click_step, segment_interactive
from infer.predictor import SlicePredictor

DEFAULT_VARIANTS = ("propagate", "local reach=0", "local reach=3")
MARGIN = 3.0
_KEYS = {"reach": ("edit_reach", float), "mask": ("mask_prompt", lambda v: bool(int(v))),
         "rounds": ("refine_rounds", int), "agree": ("agree_dice", float)}


def parse_variant(text: str) -> InteractiveOptions:
    """``"local reach=3"`` -> the options it names (module docstring)."""
    mode, *pairs = text.split()
    if mode not in ("local", "propagate"):
        raise ValueError(f"variant {text!r}: starts with local or propagate")
    fields: dict[str, object] = {"local_edits": mode == "local"}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in _KEYS:
            raise ValueError(f"variant {text!r}: unknown option {key!r} (of {', '.join(_KEYS)})")
        name, convert = _KEYS[key]
        fields[name] = convert(value)
    return InteractiveOptions(**fields)  # type: ignore[arg-type]


def trajectory(predictor: SlicePredictor, start: InteractiveCase, box_segs: np.ndarray, gts: np.ndarray,
               options: InteractiveOptions) -> list[tuple[float, float]]:
    """(DSC, NSD) after the box step and after each of the evaluator's click steps."""
    labels = [int(v) for v in evaluator_labels(gts)]
    spacing = [float(s) for s in np.ravel(start.spacing)]
    segs = box_segs
    clicks = [ClassClicks.empty() for _ in labels]
    order: list[list[ClickKind | None]] = [[] for _ in labels]
    scores = [score_step(gts, segs, labels, spacing)[:2]]
    for _ in range(N_CLICKS):
        add_next_clicks(segs, gts, labels, clicks, order)
        case = replace(start, clicks=tuple(clicks), clicks_order=tuple(tuple(o) for o in order), prev_pred=segs)
        segs = click_step(predictor, case, MARGIN, options, EmbeddingCache(predictor, case.imgs)).astype(np.uint8)
        scores.append(score_step(gts, segs, labels, spacing)[:2])
    return [(float(d), float(n)) for d, n in scores]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(p)
    p.add_argument("--out", type=Path, help="CSV: case, variant, step, dsc, nsd")
    args = p.parse_args()
    variants = {text: parse_variant(text) for text in (args.only or DEFAULT_VARIANTS)}
    predictor = memo_predictor(args)
    rows, curves = [], {name: [] for name in variants}
    for folder in args.cases:
        for path in sorted((folder / "imgs").glob("*.npz")):
            start = read_interactive_case(path)
            with np.load(folder / "gts" / path.name, allow_pickle=False) as archive:
                gts = archive["gts"].reshape(start.imgs.shape)
            box_segs = segment_interactive(predictor, start, MARGIN).astype(np.uint8).reshape(gts.shape)
            for name, options in variants.items():
                scores = trajectory(predictor, start, box_segs, gts, options)
                curves[name].append(scores)
                rows += [(path.name, name, step + 1, d, n) for step, (d, n) in enumerate(scores)]
                print(f"{path.name:28s} {name:22s} DSC " + " ".join(f"{d:.3f}" for d, _ in scores)
                      + f"  AUC {auc([d for d, _ in scores]):.3f}", flush=True)
    print(f"\nmeans over {len(next(iter(curves.values())))} cases: DSC / NSD after the box and each click; "
          "AUC of DSC over the click steps; final minus box")
    for name, per_case in curves.items():
        mean = np.mean(np.array(per_case), axis=0)
        steps = " | ".join(f"{d:.3f} / {n:.3f}" for d, n in mean)
        area = np.mean([auc([d for d, _ in scores]) for scores in per_case])
        print(f"| {name} | {steps} | {area:.3f} | {mean[-1, 0] - mean[0, 0]:+.4f} |")
    if args.out:
        with args.out.open("w", newline="") as handle:
            csv.writer(handle).writerows([("case", "variant", "step", "dsc", "nsd"), *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
