"""train_multi_gpus.py under torchrun: two CPU processes with gloo take the same step as one process
on the same global batch, and rank 0 alone writes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._train_fixtures import TINY, make_cache, tiny, tiny_config  # noqa: F401 (tiny: fixture)
from train.engine import fit
from train.runlog import read_log

REPO = Path(__file__).resolve().parents[1]


def test_two_gloo_processes_take_the_single_process_step_on_the_same_global_batch(tiny, tmp_path):
    cache = make_cache(tmp_path)
    torch.manual_seed(2)
    torch.save(tiny.build().state_dict(), tmp_path / "init.pth")
    initial = torch.load(tmp_path / "init.pth", weights_only=True)
    # BatchNorm statistics of a 2-sample shard differ from a 4-sample batch's (SyncBatchNorm is CUDA-only),
    # so BatchNorm runs on its running statistics in both runs; everything else is the real DDP path.
    # One step per epoch, stopped after the first: the step, the sharded validation and rank 0's saving.
    common = dict(pretrained_checkpoint=str(tmp_path / "init.pth"), num_epochs=2, samples_per_epoch=4, max_steps=1,
                  freeze_bn=True, lr=1e-3, device="cpu")
    argv = ["--arch", TINY, "-data_root", str(cache), "-work_dir", str(tmp_path / "ddp"), "--run-name", "run",
            "-batch_size", "2", "-num_workers", "0", "--val-samples", "8", "-num_epochs", "2",
            "--samples-per-epoch", "4", "--max-steps", "1", "--freeze-bn", "-lr", "1e-3", "--device", "cpu",
            "-pretrained_checkpoint", str(tmp_path / "init.pth")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "tests/_train_ddp_child.py", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("run ") == 1 and "x2 (fp32)" in proc.stdout  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["run"]
    assert sorted(p.name for p in (tmp_path / "ddp" / "run").iterdir()) == [
        "best.pth", "config.json", "latest.pth", "log.csv", "loss.png"]

    single = fit(tiny_config(cache, tmp_path / "one", batch_size=4, **common))
    a = torch.load(tmp_path / "ddp" / "run" / "latest.pth", weights_only=True)
    b = torch.load(single.run_dir / "latest.pth", weights_only=True)
    assert a["step"] == b["step"] == 1 and a["run"]["world_size"] == 2 and a["run"]["global_batch"] == 4
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in b["model"])
    moved = max((b["model"][k] - initial[k]).abs().max().item() for k in b["model"])
    assert worst <= 1e-6 and moved > 5e-4, (worst, moved)
    ddp_rows, one_rows = read_log(tmp_path / "ddp" / "run" / "log.csv"), read_log(single.run_dir / "log.csv")
    assert [r["kind"] for r in ddp_rows] == [r["kind"] for r in one_rows] == ["step", "epoch"]
    for key in ("loss", "dice", "val_dice"):  # the all-reduced step values and the sharded validation
        assert ddp_rows[-1][key] == pytest.approx(one_rows[-1][key], abs=1e-6), key
    assert a["metrics"]["val_dice"] == pytest.approx(b["metrics"]["val_dice"], abs=1e-6)
