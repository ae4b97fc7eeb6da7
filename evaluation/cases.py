"""Case names and reading of challenge `.npz` files for scoring (the format: `challenge`).

As in the organisers' metric script, a case is 3D exactly when its name starts with `3D`; the
modality is the second `_`-separated token, compared as a whole token (never a substring test: `OCT`
contains `CT`) and mapped to the test-set spelling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from challenge.names import canonical_modality, parse_case_name
from challenge.npz import read_npz

__all__ = ["is_3d_case", "case_modality", "load_key"]


def is_3d_case(name: str) -> bool:
    """True when the file name starts with `3D` (the organisers' rule for using `spacing`)."""
    return Path(name).name.startswith("3D")


def case_modality(name: str) -> str:
    """Modality token of a case name (`2DBox_Microscopy_7.npz` -> `Microscope`).

    Unknown tokens are returned unchanged (they still form their own group in summaries); a name
    without a second token gives `unknown`.
    """
    token = parse_case_name(name).token
    return (canonical_modality(token) or token) if token else "unknown"


def load_key(path: Path, key: str) -> np.ndarray:
    """Read one array from an `.npz` file without unpickling.

    Raises:
        challenge.npz.NpzError: a `ValueError` whose one line names the file and the problem
            (missing file, not a zip archive, missing key, object array, oversized or corrupt member).
    """
    return read_npz(path, (key,))[key]
