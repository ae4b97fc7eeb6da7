"""The fidelity gate of a lower encoder precision, recorded in the model folder's sidecar.

    python -m train.export_precision --model work_dir/litemedsam --precision bf16 \\
        --cases test_demo/real test_demo [--routing infer/routing_official.json]

Runs every case of the CASES folders (``imgs/`` with ``gts/``) through the whole pipeline twice,
f32 and the candidate precision, and passes the candidate when every case's labels agree with
f32's (mean Dice over the labels present in either, >= 0.98) and the mean DSC against the ground
truth falls by at most 0.005. The outcome, with the figures, the cases and the machine, goes to
``precisions.<precision>.gate`` in ``model.json`` (written atomically); ``infer --precision
auto`` uses a precision only where the gate passed AND the CPU runs it natively
(:mod:`infer.precision`). bf16 can be gated only on a CPU that has it (elsewhere OpenVINO runs
f32); int8 runs on any CPU, so its gate checks the numbers anywhere, its speed only on VNNI/AMX.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from challenge.atomic import atomic_path
from challenge.names import parse_case_name
from evaluation.metrics import score_case
from infer.cases import load_case
from infer.model_spec import SIDECAR_NAME
from infer.precision import NATIVE_FLAGS, PRECISIONS, cpu_flags, native_precisions
from infer.routing import DEFAULT_ROUTING, load_routing
from infer.segmenter import Segmenter

__all__ = ["MIN_CASE_DICE", "MAX_DSC_DROP", "CaseGate", "label_agreement", "run_gate", "record_gate", "main"]

MIN_CASE_DICE = 0.98
MAX_DSC_DROP = 0.005


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the labels present in either map (1.0 when both are empty)."""
    labels = np.union1d(np.unique(a), np.unique(b))
    labels = labels[labels != 0]
    if len(labels) == 0:
        return 1.0
    scores = []
    for label in labels:
        x, y = a == label, b == label
        scores.append(2.0 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y)))
    return float(np.mean(scores))


@dataclass(frozen=True)
class CaseGate:
    case: str
    agreement: float
    dsc_f32: float
    dsc: float


def _cases(folders: list[Path]) -> list[tuple[Path, Path]]:
    pairs = [(img, folder / "gts" / img.name) for folder in folders for img in sorted((folder / "imgs").glob("*.npz"))]
    if not pairs:
        raise SystemExit(f"no cases in {[str(f / 'imgs') for f in folders]}")
    return pairs


def run_gate(model: Path, precision: str, folders: list[Path], routing: Path = DEFAULT_ROUTING) -> list[CaseGate]:
    """Segment every case with ``model`` (all routes sent to it) in f32 and in ``precision``."""
    table = load_routing(routing)
    table = dataclasses.replace(table, routes=tuple(dataclasses.replace(r, model=model.name) for r in table.routes))
    segmenters = {p: Segmenter(model.parent, table, precision=p) for p in ("f32", precision)}
    rows = []
    for img, gt in _cases(folders):
        dimension = parse_case_name(img).dimension
        case = load_case(img, dimension)  # type: ignore[arg-type]
        modality = parse_case_name(img).modality
        segs = {p: s.segment(case.imgs, case.boxes, dimension, modality) for p, s in segmenters.items()}  # type: ignore[arg-type]
        with np.load(gt, allow_pickle=False) as data:
            gts = data["gts"]
            spacing = data["spacing"] if dimension == "3D" else None
        dsc = {p: score_case(gts, seg, spacing, compute_nsd=False).dsc for p, seg in segs.items()}
        rows.append(CaseGate(img.name, label_agreement(segs["f32"], segs[precision]), dsc["f32"], dsc[precision]))
        print(f"{img.name:32s} agreement with f32 {rows[-1].agreement:.4f}  DSC f32 {dsc['f32']:.4f} "
              f"{precision} {dsc[precision]:.4f}", flush=True)
    return rows


def record_gate(model: Path, precision: str, rows: list[CaseGate]) -> dict:
    """Write the gate's outcome into ``model/model.json`` and return it."""
    drop = float(np.mean([r.dsc_f32 for r in rows]) - np.mean([r.dsc for r in rows]))
    worst = min(rows, key=lambda r: r.agreement)
    flags = sorted(cpu_flags() & set().union(*NATIVE_FLAGS.values()))
    gate = {
        "passed": bool(worst.agreement >= MIN_CASE_DICE and drop <= MAX_DSC_DROP),
        "rule": f"every case's labels agree with f32's (mean Dice >= {MIN_CASE_DICE}) and mean DSC drops <= {MAX_DSC_DROP}",
        "min_case_agreement": round(worst.agreement, 5), "worst_case": worst.case,
        "mean_dsc_f32": round(float(np.mean([r.dsc_f32 for r in rows])), 5),
        "mean_dsc": round(float(np.mean([r.dsc for r in rows])), 5), "cases": [r.case for r in rows],
        "machine": f"{platform.processor() or platform.machine()}; native flags: {', '.join(flags) or 'none (emulated)'}",
    }
    path = model / SIDECAR_NAME
    data = json.loads(path.read_text())
    data.setdefault("precisions", {}).setdefault(precision, {})["gate"] = gate
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return gate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.export_precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model folder (its model.json is updated)")
    p.add_argument("--precision", choices=[x for x in PRECISIONS if x != "f32"], required=True)
    p.add_argument("--cases", type=Path, nargs="+", required=True, help="folders with imgs/ and gts/")
    p.add_argument("--routing", type=Path, default=DEFAULT_ROUTING,
                   help="routing table for the strategies (its routes are sent to --model)")
    args = p.parse_args(argv)
    if args.precision == "bf16" and "bf16" not in native_precisions(cpu_flags()):
        p.error("this CPU has no native bf16 (avx512_bf16 / amx_bf16): OpenVINO would run f32 and the gate "
                "would compare f32 with itself; run it on a bf16 CPU")
    gate = record_gate(args.model, args.precision, run_gate(args.model, args.precision, args.cases, args.routing))
    verdict = "passed" if gate["passed"] else "FAILED"
    print(f"{args.precision} gate {verdict}: worst agreement {gate['min_case_agreement']} ({gate['worst_case']}), "
          f"mean DSC {gate['mean_dsc_f32']} -> {gate['mean_dsc']}; recorded in {args.model / SIDECAR_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
