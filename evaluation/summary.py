"""Per-modality summary of a metrics table: mean and std of DSC and NSD, case counts.

Statistics are taken over the rounded per-case values of the CSV (so anyone can recompute them from
the file), with the population standard deviation (`ddof=0`). NaN case values (a ground-truth label
id absent from both masks, a ground truth without labels, an unreadable ground truth) are left out of
the mean and std and counted in `n_nan`; failed predictions score 0 and are included.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.csvio import write_csv
from evaluation.scoring import CaseResult

__all__ = ["ModalityStats", "summarise", "format_table", "write_summary_csv", "summary_path"]

ALL = "All"


@dataclass(frozen=True)
class ModalityStats:
    """Summary of one modality (or `All`). NSD fields are NaN when NSD was not computed."""

    modality: str
    n_cases: int
    n_failed: int
    n_nan: int
    dsc_mean: float
    dsc_std: float
    nsd_mean: float
    nsd_std: float


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite))


def _stats(name: str, results: Sequence[CaseResult]) -> ModalityStats:
    dsc = np.array([r.dsc for r in results], dtype=np.float64)
    nsd = np.array([np.nan if r.nsd is None else r.nsd for r in results], dtype=np.float64)
    n_nan = sum(np.isnan(r.dsc) or (r.nsd is not None and np.isnan(r.nsd)) for r in results)
    return ModalityStats(name, len(results), sum(bool(r.error) for r in results), n_nan,
                         *_mean_std(dsc), *_mean_std(nsd))


def summarise(results: Sequence[CaseResult]) -> list[ModalityStats]:
    """One row per modality (sorted by name), then an `All` row over every case."""
    modalities = sorted({r.modality for r in results})
    rows = [_stats(m, [r for r in results if r.modality == m]) for m in modalities]
    return rows + [_stats(ALL, results)]


def _cell(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.4f}"


def format_table(stats: Sequence[ModalityStats]) -> str:
    """Fixed-width text table of the summary, for the terminal."""
    header = ("modality", "cases", "failed", "NaN", "DSC mean", "DSC std", "NSD mean", "NSD std")
    lines = [(s.modality, str(s.n_cases), str(s.n_failed), str(s.n_nan), _cell(s.dsc_mean), _cell(s.dsc_std),
              _cell(s.nsd_mean), _cell(s.nsd_std)) for s in stats]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def summary_path(metrics_csv: Path) -> Path:
    """Where the summary of `metrics.csv` goes: `metrics_summary.csv` beside it."""
    return metrics_csv.with_name(f"{metrics_csv.stem}_summary.csv")


def write_summary_csv(stats: Sequence[ModalityStats], path: Path) -> None:
    """Columns: modality, n_cases, n_failed, n_nan, dsc_mean, dsc_std, nsd_mean, nsd_std (4 decimals)."""
    header = ["modality", "n_cases", "n_failed", "n_nan", "dsc_mean", "dsc_std", "nsd_mean", "nsd_std"]
    rows = [[s.modality, s.n_cases, s.n_failed, s.n_nan,
             *(float(np.round(v, 4)) for v in (s.dsc_mean, s.dsc_std, s.nsd_mean, s.nsd_std))] for s in stats]
    write_csv(path, header, rows)
