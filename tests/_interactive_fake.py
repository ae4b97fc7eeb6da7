"""A fake interactive pipeline, run by tests as the command of `python -m evaluation.interactive`.

For each case in ``$INPUT_DIR``: reads it with :func:`challenge.interactive.read_interactive_case`,
works out the step from the input (0 without ``clicks_order``, else the number of click steps so
far), appends what it saw to ``$FAKE_LOG`` (one JSON line), and copies
``$FAKE_PLAN/<case stem>/step<k>.npz`` to ``$OUTPUT_DIR/<case>``. A plan file
``step<k>.fail`` makes it exit 3 without output; a step with neither file writes nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from challenge.folders import case_files
from challenge.interactive import read_interactive_case


def main() -> int:
    inputs, outputs = Path(os.environ["INPUT_DIR"]), Path(os.environ["OUTPUT_DIR"])
    plan, log = Path(os.environ["FAKE_PLAN"]), Path(os.environ["FAKE_LOG"])
    code = 0
    for case in case_files(inputs):
        parsed = read_interactive_case(case)
        step = 0 if parsed.clicks_order is None else len(parsed.clicks_order[0])
        with zipfile.ZipFile(case) as archive:
            keys = [name.removesuffix(".npy") for name in archive.namelist()]
        classes = parsed.num_classes or 0
        record = {
            "case": case.name, "step": step, "keys": keys,
            "clicks": [[[kind, list(zyx)] for kind, zyx in parsed.ordered_clicks(i)] for i in range(classes)]
            if parsed.clicks is not None else None,
            "clicks_order": [list(row) for row in parsed.clicks_order] if parsed.clicks_order is not None else None,
            "prev_pred_voxels": None if parsed.prev_pred is None else int((parsed.prev_pred != 0).sum()),
            "prev_pred_dtype": None if parsed.prev_pred is None else str(parsed.prev_pred.dtype),
            "boxes": None if parsed.boxes is None else len(parsed.boxes),
        }
        with open(log, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        source = plan / case.stem / f"step{step}.npz"
        if (plan / case.stem / f"step{step}.fail").exists():
            code = 3
        elif source.is_file():
            shutil.copy(source, outputs / case.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
