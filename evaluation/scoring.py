"""Score a folder of predictions against a folder of ground truths, one process per worker.

Per case (every `*.npz` in the ground-truth folder, sorted by name): DSC and NSD rounded to 4
decimals as in the organisers' CSV. A prediction that is missing, unreadable or of the wrong shape
scores DSC 0 and NSD 0 and carries a one-line `error`; an unreadable or malformed ground truth
(shape, spacing, labels) scores NaN (the case cannot be judged) and its `error` names the ground truth. Nothing in one case stops the others.
"""
from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from challenge.folders import case_files
from evaluation.cases import case_modality, is_3d_case, load_key
from evaluation.csvio import parse_float, read_csv, write_csv
from evaluation.metrics import check_ground_truth, score_case

__all__ = ["CaseResult", "list_cases", "evaluate_case", "evaluate_folder", "write_metrics_csv",
           "read_metrics_csv"]

METRICS_HEADER = ("case", "dsc", "nsd", "modality", "image_size", "error")


@dataclass(frozen=True)
class CaseResult:
    """One row of the metrics CSV. `dsc`/`nsd` are rounded to 4 decimals; `nsd` None = not computed;
    `image_size` is the ground-truth shape as `D x H x W` text; `error` is '' for a scored case."""

    case: str
    modality: str
    image_size: str
    dsc: float
    nsd: float | None
    error: str = ""


def _named(path: Path, error: ValueError) -> str:
    """``error`` as ``<path>: <problem>`` (npz read errors already start with the path)."""
    return str(error) if str(error).startswith(str(path)) else f"{path}: {error}"


def _round4(value: float | None) -> float | None:
    return None if value is None else float(np.round(value, 4))


def list_cases(gt_dir: Path) -> list[str]:
    """Sorted file names of the `*.npz` ground truths in `gt_dir` (hidden names skipped; a
    dangling link is listed, and fails as an unreadable ground truth)."""
    return [p.name for p in case_files(gt_dir)]


def evaluate_case(case: str, seg_dir: Path, gt_dir: Path, compute_nsd: bool = True) -> CaseResult:
    """Score the prediction `seg_dir/case` (key `segs`) against `gt_dir/case` (keys `gts`, `spacing`).

    Never raises for bad data: the problem goes into `CaseResult.error`.
    """
    modality = case_modality(case)
    failed_nsd = 0.0 if compute_nsd else None
    gt_path = gt_dir / case
    try:
        gts, steps = check_ground_truth(load_key(gt_path, "gts"), load_key(gt_path, "spacing")
                                        if is_3d_case(case) else None)
        spacing = steps if is_3d_case(case) else None
    except ValueError as error:
        return CaseResult(case, modality, "", float("nan"), None if failed_nsd is None else float("nan"),
                          f"ground truth: {_named(gt_path, error)}")
    size = "x".join(str(n) for n in gts.shape)
    seg_path = seg_dir / case
    try:
        segs = load_key(seg_path, "segs")
        scores = score_case(gts, segs, spacing, compute_nsd)
    except ValueError as error:
        return CaseResult(case, modality, size, 0.0, failed_nsd, _named(seg_path, error))
    except Exception as error:  # a bug or resource failure in one case must not stop the batch
        return CaseResult(case, modality, size, 0.0, failed_nsd, f"{seg_path}: {type(error).__name__}: {error}")
    return CaseResult(case, modality, size, float(np.round(scores.dsc, 4)), _round4(scores.nsd))


def _ignore_signals() -> None:
    """Workers leave Ctrl-C to the parent, which stops them with SIGTERM: that one must end a worker
    without a traceback, so it gets the default action back (the parent's handler is inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def evaluate_folder(seg_dir: Path, gt_dir: Path, num_workers: int = 1, compute_nsd: bool = True,
                    progress: bool = True) -> list[CaseResult]:
    """Score every ground-truth case, in `num_workers` processes (1 = in this process); sorted by case."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    cases = list_cases(gt_dir)
    work = partial(evaluate_case, seg_dir=seg_dir, gt_dir=gt_dir, compute_nsd=compute_nsd)
    bar = tqdm(total=len(cases), desc="scoring", unit="case", disable=not progress)
    results = []
    with bar:
        if num_workers == 1 or len(cases) <= 1:
            for case in cases:
                results.append(work(case))
                bar.update()
        else:
            with multiprocessing.Pool(min(num_workers, len(cases)), _ignore_signals) as pool:
                for result in pool.imap_unordered(work, cases):
                    results.append(result)
                    bar.update()
    return sorted(results, key=lambda r: r.case)


def write_metrics_csv(results: list[CaseResult], path: Path, compute_nsd: bool = True) -> None:
    """Columns `case, dsc, nsd, modality, image_size, error` (no `nsd` column when not computed)."""
    header = [h for h in METRICS_HEADER if compute_nsd or h != "nsd"]
    rows = [[getattr(r, h) for h in header] for r in results]
    write_csv(path, header, rows)


def read_metrics_csv(path: Path) -> list[CaseResult]:
    """Rows of a CSV written by `write_metrics_csv` (empty cells read as NaN)."""
    rows = read_csv(path)
    return [CaseResult(row["case"], row.get("modality", case_modality(row["case"])), row.get("image_size", ""),
                       parse_float(row["dsc"]), parse_float(row["nsd"]) if "nsd" in row else None,
                       row.get("error", "")) for row in rows]
