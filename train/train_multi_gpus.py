"""Fine-tune with one process per GPU under torchrun (DDP).

    torchrun --nproc_per_node NGPUS train/train_multi_gpus.py -data_root CACHE ...

Rendezvous is ``env://`` (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
several nodes: ``torchrun --nnodes N --node_rank R --master_addr HOST ...``). NCCL on GPUs,
gloo on CPUs (``--device cpu``, for tests). ``-batch_size`` is per process: the global batch is
``batch_size x world_size``. Same flags as ``train_one_gpu.py`` (plus ``--sync-bn``).
"""
from __future__ import annotations

import sys

import torch.distributed as torch_dist

from train.cache import CacheError
from train.checkpoint import CheckpointError
from train.config import config_from_argv
from train.distributed import init_from_env
from train.engine import fit


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_argv(argv, "train_multi_gpus.py", __doc__.split("\n\n")[0])
        dist, device = init_from_env(config.device)
    except (ValueError, RuntimeError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        result = fit(config, dist, device)
    except (ValueError, CacheError, CheckpointError) as exc:
        print(f"error: rank {dist.rank}: {exc}", file=sys.stderr)
        return 1
    finally:
        torch_dist.destroy_process_group()
    if dist.is_main:
        best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
        print(f"done: {result.step} steps, {result.epochs_done} epochs on {dist.world_size} processes, "
              f"best {best} -> {result.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
