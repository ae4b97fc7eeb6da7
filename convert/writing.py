"""All-or-nothing output: every file is written under a temporary name, then renamed."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from challenge.atomic import temporary_name
from challenge.npz import save_npz
from convert.errors import ConversionError

Writer = Callable[[Path], None]


def write_all(writers: dict[Path, Writer], overwrite: bool = False) -> list[Path]:
    """Run each ``writer(temp_path)`` then rename every temp to its final path.

    Temporary names sit in the final folder (``.tmp-<pid>-<name>``, same suffix, so ITK
    picks the right format) and are removed if any writer fails, so a failure leaves
    neither a partial file nor a partial set of files.

    Raises:
        ConversionError: a final path exists and ``overwrite`` is False.
    """
    if not overwrite:
        for final in writers:
            if final.exists():
                raise ConversionError(final, "already exists (use --overwrite to replace it)")
    temps: dict[Path, Path] = {}
    try:
        for final, write in writers.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            temps[final] = temporary_name(final)
            write(temps[final])
        for final, temp in temps.items():
            os.replace(temp, final)
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    return list(writers)


def npz_writer(**arrays: np.ndarray) -> Writer:
    """Writer of a compressed npz holding ``arrays`` (as the challenge files are)."""

    def write(path: Path) -> None:
        save_npz(path, arrays)

    return write


def json_writer(data: dict[str, Any]) -> Writer:
    """Writer of ``data`` as indented JSON."""

    def write(path: Path) -> None:
        path.write_text(json.dumps(data, indent=2) + "\n")

    return write


def image_writer(image: sitk.Image) -> Writer:
    """Writer of a SimpleITK image, format chosen by suffix, compressed where supported."""
    return lambda path: sitk.WriteImage(image, str(path), useCompression=True)
