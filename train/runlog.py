"""The run folder's ``log.csv`` (one row per step and per epoch) and its ``loss.png``.

Floats are written with ``repr`` so a log read back holds exactly the values computed. A resumed
run first drops the rows after its checkpoint's step (steps that the interrupted process ran but
did not save), so the log of an interrupted-then-resumed run is that of an uninterrupted one.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from challenge.atomic import atomic_path
from typing import Any

__all__ = ["COLUMNS", "RunLog", "read_log"]

COLUMNS = ("kind", "epoch", "step", "loss", "dice_loss", "bce_loss", "iou_loss", "dice", "lr", "val_dice",
           "samples_per_s", "seconds")
_INT = {"epoch", "step"}


def _parse(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row["kind"]}
    for key in COLUMNS[1:]:
        text = row.get(key, "")
        out[key] = None if text == "" else int(text) if key in _INT else float(text)
    return out


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``log.csv`` with numbers parsed (empty cells -> None)."""
    with open(path, newline="") as fh:
        return [_parse(row) for row in csv.DictReader(fh)]


class RunLog:
    """Appends rows to ``folder/log.csv``; keeps them to compute epoch means and draw the curve."""

    def __init__(self, folder: Path, keep_until_step: int | None = None) -> None:
        self.path = folder / "log.csv"
        self.rows: list[dict[str, Any]] = []
        if keep_until_step is not None and self.path.is_file():
            self.rows = [r for r in read_log(self.path) if r["step"] <= keep_until_step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            writer.writerows([self._cells(r) for r in self.rows])

    @staticmethod
    def _cells(row: dict[str, Any]) -> list[str]:
        return ["" if row.get(k) is None else repr(row[k]) if isinstance(row[k], float) else str(row[k])
                for k in COLUMNS]

    def append(self, **row: Any) -> None:
        self.rows.append(row)
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow(self._cells(row))

    def epoch_means(self, epoch: int) -> dict[str, float]:
        """Means of the epoch's step rows (including rows kept from before a resume)."""
        steps = [r for r in self.rows if r["kind"] == "step" and r["epoch"] == epoch]
        keys = ("loss", "dice_loss", "bce_loss", "iou_loss", "dice")
        return {k: math.fsum(r[k] for r in steps) / len(steps) for k in keys} if steps else {}

    def plot(self, path: Path) -> None:
        """Step and epoch loss (left), training and validation Dice per epoch (right)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        steps = [r for r in self.rows if r["kind"] == "step"]
        epochs = [r for r in self.rows if r["kind"] == "epoch"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        left.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.6, label="step")
        left.plot([r["step"] for r in epochs], [r["loss"] for r in epochs], "o-", label="epoch mean")
        left.set(xlabel="step", ylabel="loss (Dice + BCE + IoU MSE)", title="training loss")
        left.legend()
        right.plot([r["epoch"] for r in epochs], [r["dice"] for r in epochs], "o-", label="training Dice")
        val = [r for r in epochs if r["val_dice"] is not None]
        if val:
            right.plot([r["epoch"] for r in val], [r["val_dice"] for r in val], "s-", label="validation Dice")
        right.set(xlabel="epoch", ylabel="Dice", title="Dice", ylim=(0, 1))
        right.legend()
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
