"""Boxes from a label map or from a boxes file, in the challenge convention.

Array layout (D, H, W) or (H, W); boxes are inclusive voxel indices, x = column (W axis),
y = row (H axis), z = slice (D axis): 3D ``[x_min, y_min, z_min, x_max, y_max, z_max]``,
2D ``[x_min, y_min, x_max, y_max]``, int64.

Boxes file (``.csv`` or ``.json``), one box per row, in ITK index order (x, y[, z]):

* CSV with a header naming ``x_min,y_min,z_min,x_max,y_max,z_max`` (2D: without the z
  columns) and optionally ``label``; other columns are ignored.
* JSON ``{"boxes": [[x_min, y_min, z_min, x_max, y_max, z_max], ...], "labels": [...]}``
  (``labels`` optional) or just the list of boxes.

Coordinates are either ``voxel`` indices of the source image as stored (what ITK and
NIfTI call (i, j, k)) or ``physical`` millimetres in ITK/DICOM world space (LPS; 3D Slicer
shows RAS, i.e. x and y negated). A physical box's 8 corners are mapped to continuous
indices of the output grid, their bounding box is rounded to the nearest voxel.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from scipy import ndimage

from convert.blocks import slabs
from convert.errors import ConversionError

BoxCoords = Literal["voxel", "physical"]
MAX_BOXES = int(np.iinfo(np.uint16).max)  # segs are uint16
_LUT_LIMIT = 1 << 24  # label values index a lookup table of this many entries at most


def box_columns(ndim: int) -> list[str]:
    """Column names of a box for a ``ndim``-D image (ITK order: mins then maxes)."""
    axes = "xyz"[:ndim]
    return [f"{a}_min" for a in axes] + [f"{a}_max" for a in axes]


def apply_lut(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``lut[labels]`` slab by slab, so NumPy's int64 index copies stay small on large volumes."""
    out = np.empty(labels.shape, dtype=lut.dtype)
    for rows in slabs(labels):
        out[rows] = lut[labels[rows]]
    return out


def relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the labels present (> 0) to 1..N in increasing order.

    Returns ``(gts, values)``: ``gts`` uint8 (N <= 255) or uint16, same shape, and the
    original value of each new label, ``values[k - 1]`` for label k.

    Raises:
        ValueError: no label, negative or non-integer values, or more than 65535 labels.
    """
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise ValueError("label map has non-integer values")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map has non-numeric type {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"label map has negative values (minimum {low})")
    if high == 0:
        raise ValueError("label map is empty (no voxel > 0)")
    if high >= _LUT_LIMIT:
        raise ValueError(f"label value {high} is too large; relabel to values below {_LUT_LIMIT}")
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.uint32)
    counts = np.zeros(high + 1, dtype=np.int64)
    for rows in slabs(labels):
        counts += np.bincount(labels[rows].ravel(), minlength=high + 1)
    values = np.flatnonzero(counts[1:]) + 1
    if values.size > MAX_BOXES:
        raise ValueError(f"label map has {values.size} labels; at most {MAX_BOXES} are supported")
    dtype = np.uint8 if values.size <= np.iinfo(np.uint8).max else np.uint16
    lut = np.zeros(high + 1, dtype=dtype)
    lut[values] = np.arange(1, values.size + 1)
    return apply_lut(lut, labels), values.astype(np.int64)


def boxes_from_labels(gts: np.ndarray) -> np.ndarray:
    """Tight box of each label 1..N of ``gts`` (consecutive labels, as :func:`relabel` makes them)."""
    rows = []
    for label, slices in enumerate(ndimage.find_objects(gts), start=1):
        if slices is None:
            raise ValueError(f"label {label} is missing; labels must be consecutive from 1")
        rows.append([s.start for s in reversed(slices)] + [s.stop - 1 for s in reversed(slices)])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2 * gts.ndim)


def grow_boxes(boxes: np.ndarray, size: tuple[int, ...], margin: int = 0, margin_z: int = 0) -> np.ndarray:
    """Widen boxes by ``margin`` voxels in x and y and ``margin_z`` in z, clipped to ``size`` (ITK order)."""
    if margin < 0 or margin_z < 0:
        raise ValueError(f"margins must be >= 0, got {margin} and {margin_z}")
    ndim = len(size)
    grow = np.array([margin, margin, margin_z][:ndim] * 2) * np.repeat([-1, 1], ndim)
    return np.clip(boxes + grow, 0, np.array(list(size) * 2) - 1)


def read_boxes_file(path: Path, ndim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(boxes, labels)``: boxes float64 (N, 2 * ndim) as written, labels int64 (N,) or None.

    Raises:
        ConversionError: unknown suffix, missing columns, non-numeric or non-finite values,
            inverted boxes, no boxes.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            rows, row_labels = _parse_csv(path, ndim)
        elif suffix == ".json":
            rows, row_labels = _parse_json(path, ndim)
        else:
            raise ValueError("unknown boxes file format; expected .csv or .json")
        boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 2 * ndim)
        labels = None if row_labels is None else np.asarray(row_labels, dtype=np.int64)
    except (ValueError, TypeError, KeyError, OSError, csv.Error) as exc:
        raise ConversionError(path, str(exc)) from None
    if boxes.shape[0] == 0:
        raise ConversionError(path, "no boxes")
    if not np.isfinite(boxes).all():
        raise ConversionError(path, "boxes contain NaN or infinite values")
    inverted = np.flatnonzero((boxes[:, :ndim] > boxes[:, ndim:]).any(axis=1))
    if inverted.size:
        raise ConversionError(path, f"box {inverted[0]} {boxes[inverted[0]].tolist()} has a minimum above its maximum")
    if labels is not None and (labels.shape != (boxes.shape[0],) or (labels <= 0).any()):
        raise ConversionError(path, "labels must be one positive integer per box")
    return boxes, labels


def _parse_csv(path: Path, ndim: int) -> tuple[list[list[float]], list[int] | None]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = box_columns(ndim)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"CSV header lacks column(s) {', '.join(missing)} (needs {','.join(columns)})")
        rows = list(reader)
    has_labels = "label" in (reader.fieldnames or [])
    boxes, labels = [], []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            boxes.append([float(row[c]) for c in columns])
            labels.append(int(row["label"]) if has_labels else 0)
        except (TypeError, ValueError):
            raise ValueError(f"CSV line {number} has a missing or non-numeric value") from None
    return boxes, labels if has_labels else None


def _parse_json(path: Path, ndim: int) -> tuple[list[list[float]], list[int] | None]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    boxes, labels = (data.get("boxes"), data.get("labels")) if isinstance(data, dict) else (data, None)
    if not isinstance(boxes, list) or any(not isinstance(b, list) or len(b) != 2 * ndim for b in boxes):
        raise ValueError(f"JSON needs a list of boxes with {2 * ndim} numbers each ({', '.join(box_columns(ndim))})")
    return boxes, labels


def boxes_to_grid(
    boxes: np.ndarray,
    coords: BoxCoords,
    source_size: tuple[int, ...],
    to_output_index: Callable[[tuple[float, ...]], tuple[float, ...]],
    output_size: tuple[int, ...],
) -> np.ndarray:
    """Map file boxes to int64 boxes on the output grid (ITK order), checking they lie inside.

    ``to_output_index(point)`` maps one corner (a voxel index of the source as stored, or a
    physical point, as ``coords`` says) to a continuous index of the output grid.

    Raises:
        ValueError: a box lies (partly) outside the image; voxel boxes must lie within
            ``[0, size - 1]`` of the source, physical ones within half a voxel of the grid.
    """
    ndim = len(output_size)
    size = np.asarray(source_size)
    out = np.empty(boxes.shape, dtype=np.int64)
    for row, box in enumerate(boxes):
        lo, hi = box[:ndim], box[ndim:]
        if coords == "voxel" and ((lo < 0).any() or (hi > size - 1).any()):
            raise ValueError(f"box {row} {box.tolist()} lies outside the image of size {list(source_size)}")
        corners = np.array([to_output_index(c) for c in itertools.product(*zip(lo, hi))])
        first, last = np.rint(corners.min(axis=0)), np.rint(corners.max(axis=0))
        if (first < 0).any() or (last > np.asarray(output_size) - 1).any():
            raise ValueError(f"box {row} {box.tolist()} lies outside the image of size {list(source_size)}")
        out[row] = np.concatenate([first, last]).astype(np.int64)
    return out
