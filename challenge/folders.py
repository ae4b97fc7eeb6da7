"""List a folder's cases, and refuse an output folder that would overwrite them.

Hidden names (``.tmp-PID-...``, left by an interrupted writer) are never cases; anything else named
``*.npz`` that is not a folder is one (a dangling link or a FIFO is listed, so that reading it
fails with a message, instead of the case vanishing without a word).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["case_files", "overwrites_inputs"]


def case_files(folder: Path) -> list[Path]:
    """Sorted ``*.npz`` entries of ``folder`` that are not hidden and not folders.

    Raises:
        OSError: the folder cannot be listed (permission denied, not a folder).
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.endswith(".npz") and not e.name.startswith(".")
                 and not e.is_dir()]
    return [folder / name for name in sorted(names)]


def overwrites_inputs(input_dir: Path, output_dir: Path, cases: list[Path]) -> str | None:
    """Why writing ``output_dir/<case name>`` would replace an input (None when it would not):
    the same folder (through links or ``..`` too), or an output name that is an input file."""
    if output_dir.exists() and input_dir.resolve() == output_dir.resolve():
        return f"output folder is the input folder {input_dir}"
    for case in cases:
        target = output_dir / case.name
        if target.exists() and case.exists() and os.path.samefile(target, case):
            return f"output {target} is the input file {case}"
    return None
