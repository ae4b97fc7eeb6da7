"""The Python API example of docs/inference.md runs as written and segments what it says."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (REPO / "docs" / "inference.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs_and_segments_its_objects(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(_example(), "docs/inference.md", "exec"), namespace)  # noqa: S102 - our own docs
    labels, labels_3d = namespace["labels"], namespace["labels_3d"]
    assert labels.dtype == np.uint16 and labels.shape == (200, 240)
    assert capsys.readouterr().out.startswith("uint16 (200, 240) ")
    truth = np.zeros((200, 240), bool)
    truth[60:140, 70:170] = True
    assert 2 * (truth & (labels == 1)).sum() / (truth.sum() + (labels == 1).sum()) > 0.9
    truth_3d = np.zeros((24, 128, 128), bool)
    truth_3d[8:16, 40:90, 30:80] = True
    assert labels_3d.dtype == np.uint16 and set(np.unique(labels_3d)) <= {0, 1}
    assert 2 * (truth_3d & (labels_3d == 1)).sum() / (truth_3d.sum() + (labels_3d == 1).sum()) > 0.9
