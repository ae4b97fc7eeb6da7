"""The converter is a runtime tool outside the submission path: no torch, no train, not imported by infer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, encoding="utf-8", check=True).stdout


def test_infer_does_not_import_the_converter():
    out = _python(
        "import sys, infer, infer.preprocess, infer.model_spec\n"
        "print('SimpleITK' in sys.modules, 'convert' in sys.modules)"
    )
    assert out.split() == ["False", "False"]


def test_converter_runs_without_torch_or_train():
    out = _python(
        "import sys; sys.modules['torch'] = None\n"
        "import convert.__main__, convert\n"
        "print(any(m == 'train' or m.startswith('train.') for m in sys.modules))"
    )
    assert out.split() == ["False"]
