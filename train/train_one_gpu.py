"""Fine-tune on one GPU (or the CPU): ``python train/train_one_gpu.py -data_root CACHE ...``.

Also runnable as ``python -m train.train_one_gpu``. Flags: ``--help`` and docs/training.md; the
loop is :func:`train.engine.fit`.
"""
from __future__ import annotations

import sys

from train.cache import CacheError
from train.checkpoint import CheckpointError
from train.config import config_from_argv
from train.engine import fit


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_argv(argv, "train_one_gpu.py", __doc__.split("\n\n")[0])
        result = fit(config)
    except (ValueError, CacheError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
    print(f"done: {result.step} steps, {result.epochs_done} epochs, best {best} -> {result.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
