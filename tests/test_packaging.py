"""pyproject.toml: the console scripts exist, every declared dependency is pinned in a requirements
file, and the project builds into a wheel holding our packages and the routing tables."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower()


def test_console_scripts_point_at_main_functions():
    for script, target in PROJECT["scripts"].items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), script


def test_every_declared_dependency_is_pinned_in_a_requirements_file():
    pinned = {_name(line) for path in [REPO / "infer" / "requirements.txt", *REPO.glob("requirements*.txt")]
              for line in path.read_text().splitlines() if "==" in line}
    declared = {_name(r) for r in PROJECT["dependencies"]}
    declared |= {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    assert declared - {PROJECT["name"]} <= pinned
    runtime = {_name(line) for line in (REPO / "infer" / "requirements.txt").read_text().splitlines() if "==" in line}
    assert {_name(r) for r in PROJECT["dependencies"]} == runtime


@pytest.mark.slow
def test_the_project_builds_a_wheel_of_our_packages(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    source = tmp_path / "src"
    for name in tracked:
        if (REPO / name).is_file() and not name.startswith(("work_dir/", "tests/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("medsam_laptop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("challenge/npz.py", "infer/segmenter.py", "infer/routing.json", "convert/__main__.py",
                     "evaluation/compute_metrics.py", "train/export.py", "assets/catalog.py"):
        assert expected in names
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "medsam-infer = infer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
