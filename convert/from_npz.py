"""A ``segs`` npz (inference output) -> label image on the source grid (NIfTI, PNG, ...).

Box k's label (k + 1 in ``segs``) is mapped back to the original label value recorded in the
geometry JSON when the boxes came from a label map (or a boxes file with labels), so the
written mask uses the same label numbers as the user's own label map.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from challenge.npz import NpzError, read_npz
from convert.boxes import apply_lut
from convert.errors import ConversionError
from convert.geometry import image_from_array
from convert.to_npz import GEOMETRY_FORMAT
from convert.writing import image_writer, write_all

MASK_SUFFIXES = {3: (".nii.gz", ".nii", ".mha", ".nrrd"), 2: (".png", ".nii.gz", ".nii", ".mha", ".nrrd")}
DEFAULT_SUFFIX = {3: ".nii.gz", 2: ".png"}


def load_geometry(path: Path) -> dict[str, Any]:
    """The side JSON written by ``to-npz``, checked for its format tag and keys."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(path, f"unreadable geometry file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != GEOMETRY_FORMAT:
        raise ConversionError(path, f"not a geometry file written by to-npz (format {GEOMETRY_FORMAT!r})")
    missing = [k for k in ("dimension", "source_grid", "array_grid", "boxes", "box_labels") if k not in record]
    if missing:
        raise ConversionError(path, f"geometry file lacks {', '.join(missing)}")
    if record["dimension"] not in (2, 3):
        raise ConversionError(path, f"geometry file has dimension {record['dimension']!r}, expected 2 or 3")
    return record


def load_segs(path: Path) -> np.ndarray:
    """The ``segs`` array of an npz (never unpickled), checked to be non-negative integers."""
    try:
        segs = read_npz(path, ("segs",))["segs"]
    except NpzError as exc:
        raise ConversionError(path, exc.problem) from None
    if not np.issubdtype(segs.dtype, np.integer) or (segs.size and segs.min() < 0):
        raise ConversionError(path, f"segs must hold non-negative integers, got dtype {segs.dtype}")
    return segs


def original_labels(segs: np.ndarray, record: dict[str, Any], box_labels: bool) -> np.ndarray:
    """Map box labels 1..N to the recorded original label values (unless ``box_labels``).

    The result has the smallest unsigned dtype holding its values.
    """
    count = int(record["boxes"])
    top = int(segs.max()) if segs.size else 0
    if top > count:
        raise ValueError(f"segs holds label {top} but the case has {count} boxes")
    values = record["box_labels"]
    if values is not None and (not isinstance(values, list) or len(values) != count):
        raise ValueError(f"geometry's box_labels {values!r} is not a list of {count} labels")
    if box_labels or values is None:
        lut = np.arange(count + 1, dtype=np.int64)
    else:
        lut = np.asarray([0, *values], dtype=np.int64)
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if lut.max() <= np.iinfo(t).max)
    return apply_lut(lut.astype(dtype), segs)


def convert_from_npz(
    segs_path: Path, geometry_path: Path, out_path: Path, *, box_labels: bool = False, overwrite: bool = False
) -> Path:
    """Write ``segs`` of ``segs_path`` as a label image on the source grid at ``out_path``.

    The format follows ``out_path``'s suffix (:data:`MASK_SUFFIXES`); PNG holds labels up to
    65535.

    Raises:
        ConversionError: unreadable inputs, a shape or label count that does not match the
            case, an unsupported suffix.
    """
    segs_path, out_path = Path(segs_path), Path(out_path)
    record = load_geometry(geometry_path)
    ndim = int(record["dimension"])
    if not out_path.name.lower().endswith(MASK_SUFFIXES[ndim]):
        suffixes = ", ".join(MASK_SUFFIXES[ndim])
        raise ConversionError(out_path, f"unsupported mask format for a {ndim}D case; use {suffixes}")
    segs = load_segs(segs_path)
    try:
        labels = original_labels(segs, record, box_labels)
        if out_path.name.lower().endswith(".png") and labels.dtype == np.uint32:
            raise ValueError("labels above 65535 do not fit a PNG; write NIfTI instead")
    except ValueError as exc:
        raise ConversionError(segs_path, str(exc)) from None
    try:
        image = image_from_array(labels, record["source_grid"], record["array_grid"])
    except ValueError as exc:
        raise ConversionError(segs_path, str(exc)) from None
    except (KeyError, IndexError, TypeError) as exc:  # a grid without a field, or of the wrong length or type
        raise ConversionError(geometry_path, f"malformed geometry file ({type(exc).__name__}: {exc})") from None
    write_all({out_path: image_writer(image)}, overwrite)
    return out_path
