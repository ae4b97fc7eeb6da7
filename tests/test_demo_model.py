"""The embedded default: the committed demo model, run the way `make demo` runs it, reaches the
scores its README claims on the demo cases (which it was never trained on).

The claim is read from work_dir/demo/README.md, so the README and the test cannot drift apart."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.scoring import evaluate_folder
from infer.model_spec import load_model_spec
from test_demo.generate import DEMO_CASES
from test_demo.generate import main as generate_demo

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "work_dir" / "demo"
CLAIM = re.compile(r"mean over the 12 demo cases: DSC (\d\.\d+), NSD (\d\.\d+)")
SLACK = 0.005  # OpenVINO's kernels differ between CPUs by float32 rounding, a boundary pixel or two
TARGET = 0.85  # issue 5: DSC and NSD on the held-out demo cases


def _claimed_scores() -> tuple[float, float]:
    found = CLAIM.search((DEMO / "README.md").read_text())
    assert found, f"work_dir/demo/README.md states no scores matching {CLAIM.pattern!r}"
    return float(found[1]), float(found[2])


def test_demo_sidecar_says_what_the_model_is():
    spec = load_model_spec(DEMO)
    sidecar = json.loads((DEMO / "model.json").read_text())
    assert spec.trained and spec.arch == "litemedsam_small"
    assert "synthetic phantoms" in sidecar["note"] and "not for medical use" in sidecar["note"]
    readme = (DEMO / "README.md").read_text()
    assert "not for medical use" in readme and "python -m train.export" in readme
    size = sum(p.stat().st_size for p in DEMO.iterdir())
    assert size <= 25 * 2**20, f"demo model folder is {size / 2**20:.1f} MiB"


@pytest.mark.slow
def test_demo_model_reaches_its_scores_through_predict_sh(tmp_path):
    imgs, gts, segs = tmp_path / "imgs", tmp_path / "gts", tmp_path / "segs"
    assert generate_demo(["--out", str(tmp_path)]) == 0  # the cases `make demo` generates
    env = {**os.environ, "INPUT_DIR": str(imgs), "OUTPUT_DIR": str(segs), "PYTHON": sys.executable,
           "INFER_ARGS": f"--routing infer/routing_demo.json --cache-dir {tmp_path / 'ov_cache'}"}
    done = subprocess.run(["sh", "predict.sh"], cwd=REPO, env=env, capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    results = evaluate_folder(segs, gts, num_workers=2, progress=False)
    assert len(results) == len(DEMO_CASES) and not any(r.error for r in results)
    dsc, nsd = np.mean([r.dsc for r in results]), np.mean([r.nsd for r in results])
    claimed_dsc, claimed_nsd = _claimed_scores()
    assert dsc >= TARGET and nsd >= TARGET, f"DSC {dsc:.4f}, NSD {nsd:.4f}: below the target {TARGET}"
    assert dsc >= claimed_dsc - SLACK and nsd >= claimed_nsd - SLACK, \
        f"DSC {dsc:.4f}, NSD {nsd:.4f}; the README claims {claimed_dsc}, {claimed_nsd}"
