"""Where 3D propagation loses against the model's per-slice ability, per structure, and what closes it.

    python bench/propagation_study.py --cases test_demo/real DEMO [--baseline SEGS] [--only NAME ...]
        [--emb-cache DIR] [--out rows.csv]

Each CASES folder holds ``imgs/`` and ``gts/``; 3D cases only. Every variant runs in this one process
on one OpenVINO model whose encoder results are kept per distinct image (whole slice or crop) in
``--emb-cache`` across runs, so variants cost decoder time only and are
compared on identical embeddings. ``enc`` is the encoder calls the variant itself asks for (what a
fresh run pays); ``s`` its wall time in this process (decoder time and cache reads, not encoder
time). Variants:

* ``oracle``: the label's tight box on every slice it covers, decoded on that slice (the upper bound
  of box prompting; the 2D cases are prompted like this);
* ``home``: the 3D box's xy on every slice of its z-range (no propagation);
* propagation variants (``infer.volume``): margin, start slice (``gt-largest``: the slice where the
  label is largest, an oracle start that bounds what a start rule could gain), ``Rule`` (empty-mask
  handling, zoomed crops), and the reference rule without the keep-inside-the-3D-box bound;
* ``baseline``: the segmentations of ``python -m train.reference`` in ``--baseline``.

Prints DSC / NSD per case and variant (organiser-exact ``score_case``), per structure, and the
means per variant and group, and per structure-size class.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from evaluation.metrics import score_case
from infer import volume
from infer.boxes import prepare_boxes
from infer.postprocess import RegionMask
from infer.predictor import Prompt, SlicePredictor
# bench/ is no package: a script's own folder comes first on sys.path, so the scripts import each other by module name.
from official_accuracy import add_common_arguments, memo_predictor, prompts_may_leave_the_box, write_rows

SIZE_CLASSES = ((0, 1000, "< 1k voxels"), (1000, 5000, "1k-5k"), (5000, 10**12, ">= 5k"))


def _asked(predictor: SlicePredictor) -> int:
    """Images the predictor was given: the encoder calls a fresh run would make."""
    return predictor.stats.encoder_calls + predictor.stats.stored_embeddings


@contextlib.contextmanager
def pick_among(fractions: tuple[float, ...]) -> Iterator[None]:
    """Pick iou over more candidates: besides the propagated prompt and the 3D box's xy, the
    prompts ``fraction`` of the way between them; the mask with the highest predicted IoU wins."""
    original = volume._decode

    def decode(predictor, tracks, window, pick_iou):
        if not pick_iou or window is not None:
            return original(predictor, tracks, window, pick_iou)
        masks = []
        for track in tracks:
            prompts = [track.prompt, track.home] + [(1 - f) * track.prompt + f * track.home for f in fractions]
            found, iou = predictor.predict_scored(np.stack(prompts))
            masks.append(found[int(np.argmax(iou))])
        return masks

    with mock.patch.object(volume, "_decode", decode):
        yield


@contextlib.contextmanager
def previous_mask_prompt(home_too: bool, pick: bool = True, scale: float = 8.0, logits: bool = False,
                         erode: int = 0, plain_too: bool = False) -> Iterator[None]:
    """The propagated box also carries the box's mask on the previous decoded slice as SAM's mask
    prompt (points decoder): the binary mask as +-``scale`` logits (eroded by ``erode`` pixels
    first), or with ``logits`` the decoder's own low-res logits of that mask; with ``pick`` the 3D
    box's xy (with that mask too when ``home_too``) is decoded beside it and the higher predicted
    IoU wins; ``plain_too`` adds the propagated box without the mask as a third candidate. The
    start slice has no previous mask."""
    original = volume._decode
    kept: dict[int, tuple] = {}  # id(mask) -> (mask, its low-res logits)

    def decode(predictor, tracks, window, pick_iou):
        if window is not None:
            return original(predictor, tracks, window, pick_iou)
        shape = (predictor.image_state.geometry.orig_h, predictor.image_state.geometry.orig_w)
        none = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
        masks = []
        for track in tracks:
            prior = None
            if track.last_mask is not None and logits:
                prior = kept[id(track.last_mask)][1]
            elif track.last_mask is not None:
                full = np.zeros(shape, np.uint8)
                track.last_mask.paint(full, 1)
                if erode:
                    full = cv2.erode(full, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
                prior = predictor.mask_prompt(full, scale) if full.any() else None
            prompts = [Prompt(*none, box=track.prompt, mask=prior)]
            if pick:
                prompts.append(Prompt(*none, box=track.home, mask=prior if home_too else None))
            if plain_too and prior is not None:
                prompts.append(Prompt(*none, box=track.prompt))
            found, iou, low = predictor.predict_prompts(prompts)
            best = int(np.argmax(iou))
            masks.append(found[best])
            if found[best] is not None:
                kept[id(found[best])] = found[best], low[best]
        return masks

    with mock.patch.object(volume, "_decode", decode):
        yield


@dataclass(frozen=True)
class Variant:
    name: str
    margin: float = 3.0
    rule: volume.Rule = volume.Rule()
    start: str = "middle"
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    kind: str = "propagate"


R = volume.Rule
VARIANTS: list[Variant] = [
    Variant("oracle (tight box per slice)", kind="oracle"),
    Variant("home (3D box xy every slice)", kind="home"),
    Variant("axial m3 (today)"),
    Variant("axial m0", margin=0.0),
    Variant("axial m7", margin=7.0),
    Variant("axial m3, may leave the 3D box", context=prompts_may_leave_the_box),
    Variant("axial m3, start gt-largest", start="gt-largest"),
    Variant("axial m3, stop on empty", rule=R(on_empty="stop")),
    Variant("axial m7, stop on empty", margin=7.0, rule=R(on_empty="stop")),
    Variant("axial m10", margin=10.0),
    Variant("axial m15", margin=15.0),
    Variant("axial m3 grow 0.1", rule=R(grow=0.1)),
    Variant("axial m3 grow 0.2", rule=R(grow=0.2)),
    Variant("axial m3 blend 0.25", rule=R(blend=0.25)),
    Variant("axial m3 blend 0.5", rule=R(blend=0.5)),
    Variant("axial m3 blend 0.75", rule=R(blend=0.75)),
    Variant("axial m3 blend 1 (= home)", rule=R(blend=1.0)),
    Variant("axial m3 pick iou", rule=R(pick="iou")),
    Variant("axial m3 blend 0.5 pick iou", rule=R(blend=0.5, pick="iou")),
    Variant("pick iou stride 2 linear (dice 0.8, area 0.7)", rule=R(pick="iou", stride=2, agree_dice=0.8, agree_area=0.7,
                                                                   quadratic=False)),
    Variant("pick iou stride 2 (dice 0.8, area 0.7)", rule=R(pick="iou", stride=2, agree_dice=0.8, agree_area=0.7)),
    Variant("pick iou stride 2 (dice 0.7, area 0.5)", rule=R(pick="iou", stride=2, agree_dice=0.7, agree_area=0.5)),
    Variant("pick iou stride 2 (dice 0.9, area 0.8)", rule=R(pick="iou", stride=2, agree_dice=0.9, agree_area=0.8)),
    Variant("pick iou stride 3 (dice 0.8, area 0.7)", rule=R(pick="iou", stride=3, agree_dice=0.8, agree_area=0.7)),
    Variant("axial m7, start gt-largest", margin=7.0, start="gt-largest"),
    Variant("axial m3, start home-largest", start="home-largest"),
    Variant("axial m3, start home-iou", start="home-iou"),
    Variant("axial m7, start home-largest", margin=7.0, start="home-largest"),
    Variant("axial m7, start home-iou", margin=7.0, start="home-iou"),
    Variant("pick iou, start home-largest", rule=R(pick="iou"), start="home-largest"),
    Variant("pick iou, start home-iou", rule=R(pick="iou"), start="home-iou"),
    Variant("pick iou, start gt-largest", rule=R(pick="iou"), start="gt-largest"),
    Variant("pick iou among prompt, 0.5, home", rule=R(pick="iou"), context=lambda: pick_among((0.5,))),
    Variant("pick iou among prompt, 0.25, 0.5, 0.75, home", rule=R(pick="iou"),
            context=lambda: pick_among((0.25, 0.5, 0.75))),
    Variant("previous mask prompt", context=lambda: previous_mask_prompt(False, pick=False)),
    Variant("pick iou, previous mask prompt", rule=R(pick="iou"), context=lambda: previous_mask_prompt(False)),
    Variant("pick iou, previous mask prompt on both", rule=R(pick="iou"), context=lambda: previous_mask_prompt(True)),
    Variant("pick iou, previous mask prompt x4", rule=R(pick="iou"), context=lambda: previous_mask_prompt(False, scale=4.0)),
    Variant("pick iou, previous mask prompt x2", rule=R(pick="iou"), context=lambda: previous_mask_prompt(False, scale=2.0)),
    Variant("pick iou, previous logits prompt", rule=R(pick="iou"), context=lambda: previous_mask_prompt(False, logits=True)),
    Variant("pick iou, previous mask eroded 2 prompt", rule=R(pick="iou"), context=lambda: previous_mask_prompt(False, erode=2)),
    Variant("pick iou among prompt, prompt + mask x2, home", rule=R(pick="iou"),
            context=lambda: previous_mask_prompt(False, scale=2.0, plain_too=True)),
    Variant("pick iou among prompt, prompt + mask x4, home", rule=R(pick="iou"),
            context=lambda: previous_mask_prompt(False, scale=4.0, plain_too=True)),
    Variant("oracle, zoom c2", rule=R(zoom_context=2.0), kind="oracle"),
    Variant("zoom c2 m3", rule=R(zoom_context=2.0)),
    Variant("zoom c2 blend 1 (= home)", rule=R(zoom_context=2.0, blend=1.0)),
    Variant("zoom c2 m3, stop on empty", rule=R(on_empty="stop", zoom_context=2.0)),
    Variant("zoom c2 m7, stop on empty", margin=7.0, rule=R(on_empty="stop", zoom_context=2.0)),
]


@dataclass
class Outcome:
    segs: np.ndarray
    enc: int
    seconds: float
    notes: dict = field(default_factory=dict)


def _tight_slice_boxes(gts: np.ndarray, label: int) -> Iterator[tuple[int, np.ndarray]]:
    for z in np.flatnonzero((gts == label).any(axis=(1, 2))):
        ys, xs = np.nonzero(gts[z] == label)
        yield int(z), np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def _windows(rule: volume.Rule, imgs: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> dict[int, tuple | None]:
    """The crop each label's box is decoded on under ``rule`` (None: the whole slice)."""
    state = volume.init_state(imgs, 0.0, rule=rule)
    for label, box in zip(labels, boxes):
        volume.add_box(state, int(label), box)
    return {t.label: t.window for t in state.tracks}


def _home_start(how: str, predictor: SlicePredictor, imgs: np.ndarray, box: np.ndarray) -> int:
    """The slice whose mask from the 3D box's xy is largest (``home-largest``) or has the highest
    predicted IoU (``home-iou``): start rules an inference run could afford (decoder only: the
    sweeps need the same slices, so their embeddings can be kept; not counted in ``enc``)."""
    scores = []
    for z in range(int(box[2]), int(box[5]) + 1):
        predictor.set_image(imgs[z])
        logits, iou = predictor.predict_logits(box[None, [0, 1, 3, 4]])
        scores.append(float((logits > 0).sum()) if how == "home-largest" else float(iou[0]))
    return int(box[2]) + int(np.argmax(scores))


def run_variant(variant: Variant, predictor: SlicePredictor, imgs: np.ndarray, boxes: np.ndarray,
                labels: np.ndarray, gts: np.ndarray) -> Outcome:
    """Segment one case with ``variant``; ``gts`` feeds the oracle prompts and the oracle start."""
    start, asked, uncounted = time.perf_counter(), _asked(predictor), 0
    segs = np.zeros(imgs.shape, np.uint16)
    if variant.kind in ("oracle", "home"):
        windows = _windows(variant.rule, imgs, boxes, labels)
        per_region: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        for label, box in zip(labels, boxes):
            if variant.kind == "oracle":
                pairs = list(_tight_slice_boxes(gts, int(label)))
            else:
                pairs = [(z, box[[0, 1, 3, 4]]) for z in range(int(box[2]), int(box[5]) + 1)]
            for z, b in pairs:
                per_region.setdefault((z, windows[int(label)]), []).append((int(label), b))
        for (z, window), items in sorted(per_region.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            x0, y0, x1, y1 = window or (0, 0, imgs.shape[2], imgs.shape[1])
            predictor.set_image(imgs[z, y0:y1, x0:x1])
            shift = np.array([x0, y0, x0, y0], np.float64)
            for (label, _), mask in zip(items, predictor.predict(np.stack([b for _, b in items]) - shift)):
                if mask is not None:
                    RegionMask(mask.top + y0, mask.left + x0, mask.mask).paint(segs[z], label)
    else:
        state = volume.init_state(imgs, variant.margin, rule=variant.rule)
        for label, box in zip(labels, boxes):
            z_start = None
            if variant.start == "gt-largest":
                z_start = int(np.argmax((gts == label).sum(axis=(1, 2))))
            elif variant.start.startswith("home-"):
                before = _asked(predictor)
                z_start = _home_start(variant.start, predictor, imgs, box)
                uncounted += _asked(predictor) - before
            volume.add_box(state, int(label), box, z_start)
        with variant.context():
            for reverse in (False, True):
                for z, masks in volume.propagate(state, predictor, reverse):
                    for label, mask in masks:
                        mask.paint(segs[z], label)
    return Outcome(segs, _asked(predictor) - asked - uncounted, time.perf_counter() - start)


def _cases(folders: list[Path]) -> list[tuple[str, Path, Path]]:
    return [(f.name, img, f / "gts" / img.name) for f in folders for img in sorted((f / "imgs").glob("3D*.npz"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--baseline", type=Path, nargs="*", default=[], help="folders of train.reference outputs")
    p.add_argument("--out", type=Path, help="CSV of every (case, structure, variant) score")
    args = p.parse_args(argv)
    predictor = memo_predictor(args)
    variants = [v for v in VARIANTS if not args.only or v.name in args.only]
    baselines = {p.name: p for folder in args.baseline for p in folder.glob("3D*.npz")}
    rows, cases = [], []
    for group, img, gt in _cases(args.cases):
        with np.load(img, allow_pickle=False) as data:
            imgs, raw_boxes = data["imgs"], data["boxes"]
        with np.load(gt, allow_pickle=False) as data:
            gts, spacing = data["gts"], data["spacing"]
        prepared = prepare_boxes(raw_boxes.astype(np.float64), imgs.shape)
        outcomes = {v.name: run_variant(v, predictor, imgs, prepared.boxes, prepared.labels, gts) for v in variants}
        if img.name in baselines:
            with np.load(baselines[img.name]) as data:
                outcomes["baseline (train.reference)"] = Outcome(data["segs"], -1, float("nan"))
        cases.append((group, img.name))
        for name, outcome in outcomes.items():
            whole = score_case(gts, outcome.segs, spacing)
            row = {"group": group, "case": img.name, "structure": "all", "voxels": int((gts > 0).sum()),
                   "variant": name, "dsc": whole.dsc, "nsd": whole.nsd, "enc": outcome.enc, "seconds": outcome.seconds}
            rows.append(row)
            print(f"{group:10s} {img.name:22s} {name:40s} DSC {whole.dsc:.4f} NSD {whole.nsd:.4f} "
                  f"enc {outcome.enc:4d} {outcome.seconds:6.1f} s", flush=True)
            for label in range(1, int(gts.max()) + 1):
                one = score_case((gts == label).astype(np.uint8), (outcome.segs == label).astype(np.uint8), spacing)
                rows.append({**row, "structure": str(label), "voxels": int((gts == label).sum()),
                             "dsc": one.dsc, "nsd": one.nsd})
    _summarise(rows, [v.name for v in variants] + (["baseline (train.reference)"] if baselines else []))
    if args.out:
        write_rows(args.out, rows)
    return 0


def _summarise(rows: list[dict], names: list[str]) -> None:
    print("\nper group: mean case DSC / NSD, encoder calls, seconds; then mean structure DSC per size class")
    for group in dict.fromkeys(r["group"] for r in rows):
        print(f"  {group}")
        for name in names:
            sel = [r for r in rows if r["group"] == group and r["variant"] == name and r["structure"] == "all"]
            if not sel:
                continue
            parts = []
            for lo, hi, label in SIZE_CLASSES:
                st = [r["dsc"] for r in rows if r["group"] == group and r["variant"] == name
                      and r["structure"] != "all" and lo <= r["voxels"] < hi]
                parts.append(f"{label} {np.mean(st):.3f} ({len(st)})" if st else f"{label} -")
            print(f"    {name:40s} {np.mean([r['dsc'] for r in sel]):.4f} / {np.mean([r['nsd'] for r in sel]):.4f} "
                  f"enc {sum(r['enc'] for r in sel):5d} {sum(r['seconds'] for r in sel):7.1f} s | " + " | ".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())
