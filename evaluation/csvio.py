"""CSV files written atomically (temporary name, then rename), with NaN as an empty cell.

Empty cells for NaN are what pandas' `to_csv` writes, i.e. what the organisers' CSVs contain.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from challenge.atomic import atomic_path

__all__ = ["format_value", "parse_float", "write_csv", "read_csv"]


def format_value(value: object) -> str:
    """CSV text of a cell: NaN/None -> '', floats in Python's shortest round-trip form."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def parse_float(text: str) -> float:
    """Inverse of `format_value` for numbers: '' -> NaN."""
    return float(text) if text.strip() else float("nan")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write `rows` under `header` to `path` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([format_value(v) for v in row] for row in rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts keyed by the header."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
