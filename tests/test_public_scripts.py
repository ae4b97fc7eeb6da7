"""The script paths users type from a checkout work, in the project's venv (`make setup` installs the
project editable), from the repository root and from any other working directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["evaluation/compute_metrics.py", "evaluation/time_eval.py", "train/train_one_gpu.py",
           "train/train_multi_gpus.py", "bench/bench_infer.py", "bench/bench_metrics.py", "bench/bench_models.py",
           "bench/official_accuracy.py", "bench/convert_roundtrip.py", "bench/propagation_study.py",
           "bench/graph_profile.py", "bench/encoder_ab.py", "bench/cost_3d.py", "bench/click_study.py",
           "bench/startup.py"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_path_prints_its_help_from_the_root_and_from_elsewhere(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for cwd, path in ((REPO, script), (tmp_path, str(REPO / script))):
        proc = subprocess.run([sys.executable, path, "--help"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{path} from {cwd}: {proc.stderr.strip().splitlines()[-1:]}"
        assert proc.stdout.startswith("usage:"), proc.stdout[:200]
