"""Case names and safe loading of challenge `.npz` files (REFERENCE.md sections 1.2-1.4).

A case name is `<2D|3D>Box_<Modality>_<id>.npz`. As in the organisers' metric script, a case is 3D
exactly when its name starts with `3D`; the modality is the second `_`-separated token, compared as a
whole token (never a substring test: `OCT` contains `CT`) and mapped to the test-set spelling.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["MODALITIES", "is_3d_case", "case_modality", "load_key"]

MODALITIES = ("CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscope",
              "Mammography", "OCT")
"""Test-set spellings of the challenge modalities."""
_ALIASES = {"Microscopy": "Microscope", "XRay": "X-Ray", "Xray": "X-Ray", "X-ray": "X-Ray"}


def is_3d_case(name: str) -> bool:
    """True when the file name starts with `3D` (the organisers' rule for using `spacing`)."""
    return Path(name).name.startswith("3D")


def case_modality(name: str) -> str:
    """Modality token of a case name (`2DBox_Microscopy_7.npz` -> `Microscope`).

    Unknown tokens are returned unchanged (they still form their own group in summaries); a name
    without a second token gives `unknown`.
    """
    tokens = Path(name).name.split("_")
    if len(tokens) < 2 or not tokens[1]:
        return "unknown"
    return _ALIASES.get(tokens[1], tokens[1])


def load_key(path: Path, key: str) -> np.ndarray:
    """Read one array from an `.npz` file without unpickling.

    Raises:
        ValueError: one line naming the file and the problem (missing file, not a zip archive,
            missing key, object array, corrupt member).
    """
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise ValueError(f"{path}: missing key '{key}' (has {sorted(archive.files)})")
            return archive[key]
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read '{key}' ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a readable npz file ({type(error).__name__}: {error})") from None
