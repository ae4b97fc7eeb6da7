"""Read and validate one input case (the format: :mod:`challenge.npz`).

Inputs are untrusted: the file is opened with ``allow_pickle=False``, and every problem is a
:class:`~infer.errors.CaseError` whose one-line message names the file and the key. What can be
repaired without guessing is repaired and noted (integer or whole-number float images that fit
0..255 become uint8; a missing or odd ``spacing`` is ignored, inference does not need it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from challenge.interactive import InteractiveCase, read_interactive_case
from challenge.names import Dimension
from challenge.npz import BOX_COLUMNS, BOX_LAYOUT, NpzError, open_npz
from infer.errors import CaseError

__all__ = ["MAX_ARRAY_BYTES", "MAX_BOXES", "INTERACTIVE_KEYS", "Case", "check_case", "is_interactive",
           "load_case", "load_interactive"]

MAX_ARRAY_BYTES = 1 << 30
"""Largest input array inference inflates (``--max-array-bytes``): 1 GiB, four times the largest
challenge volumes (a few hundred MB of uint8), so that an axial case at the bound (about 1.5 bytes
per voxel of working memory measured, plus the 1 GiB slice cache and the models) stays well inside
the challenge container's 8 GB. Larger declared sizes are refused from the NPY header
(docs/inference.md: memory)."""


@dataclass
class Case:
    """A validated case.

    ``imgs`` is uint8 (H, W, 3) for 2D or (D, H, W) for 3D; ``boxes`` float64 (N, 4) / (N, 6)
    in original pixels (x = column, y = row, z = slice, maxima inclusive), finite and
    non-negative, N may be 0; ``notes`` are the repairs made, for the case's log line.
    """

    path: Path
    dimension: Dimension
    imgs: np.ndarray
    boxes: np.ndarray
    notes: list[str] = field(default_factory=list)


def _read_arrays(path: Path, max_member_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | str | None]:
    """``imgs``, ``boxes`` and ``spacing`` (an array, None when absent, or the read problem)."""
    try:
        with open_npz(path, max_member_bytes) as archive:
            archive.require("imgs", "boxes")
            imgs, boxes = archive.read("imgs"), archive.read("boxes")
            spacing: np.ndarray | str | None = None
            if "spacing" in archive.keys:
                try:
                    spacing = archive.read("spacing")
                except NpzError as exc:
                    spacing = exc.problem
    except NpzError as exc:
        raise CaseError(path, exc.problem) from None
    return imgs, boxes, spacing


def _fmt(value: float) -> str:
    return f"{value:g}"


def _as_uint8(path: Path, imgs: np.ndarray, notes: list[str]) -> np.ndarray:
    if imgs.dtype == np.uint8:
        return imgs
    if imgs.dtype.kind not in "biuf":
        raise CaseError(path, f"'imgs' must be numeric, got dtype {imgs.dtype}")
    if imgs.dtype.kind == "f" and not np.isfinite(imgs).all():
        raise CaseError(path, f"'imgs' is {imgs.dtype} and contains NaN or infinite values; expected uint8")
    lo, hi = imgs.min(), imgs.max()
    whole = imgs.dtype.kind != "f" or bool(np.all(imgs == np.round(imgs)))
    if lo < 0 or hi > 255 or not whole:
        what = "values outside 0..255" if (lo < 0 or hi > 255) else "non-integer values"
        raise CaseError(path, f"'imgs' is {imgs.dtype} with {what} (min {_fmt(lo)}, max {_fmt(hi)}); "
                              "expected uint8")
    notes.append(f"'imgs' converted from {imgs.dtype} to uint8 (values {_fmt(lo)}..{_fmt(hi)})")
    return imgs.astype(np.uint8)


def _check_imgs(path: Path, dimension: Dimension, imgs: np.ndarray) -> None:
    if dimension == "2D" and not (imgs.ndim == 3 and imgs.shape[2] == 3):
        raise CaseError(path, f"2D 'imgs' must have shape (H, W, 3), got {imgs.shape}")
    if dimension == "3D" and imgs.ndim != 3:
        raise CaseError(path, f"3D 'imgs' must have shape (D, H, W), got {imgs.shape}")
    if imgs.size == 0:
        raise CaseError(path, f"'imgs' is empty, shape {imgs.shape}")


MAX_BOXES = int(np.iinfo(np.uint16).max)
"""Box k is output label k + 1 in uint16 ``segs``."""


def _check_boxes(path: Path, dimension: Dimension, boxes: np.ndarray) -> np.ndarray:
    columns = BOX_COLUMNS[dimension]
    if boxes.dtype.kind not in "iuf":
        raise CaseError(path, f"'boxes' must be numeric, got dtype {boxes.dtype}")
    if boxes.size == 0:
        return np.zeros((0, columns), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != columns:
        raise CaseError(path, f"{dimension} 'boxes' must have shape (N, {columns}) {BOX_LAYOUT[dimension]}, "
                              f"got {boxes.shape}")
    if len(boxes) > MAX_BOXES:
        raise CaseError(path, f"'boxes' has {len(boxes)} rows; at most {MAX_BOXES} fit the uint16 output labels")
    values = boxes.astype(np.float64)
    for row, coordinates in enumerate(values):
        coords = "[" + ", ".join(_fmt(v) for v in coordinates) + "]"
        if not np.isfinite(coordinates).all():
            raise CaseError(path, f"'boxes' row {row} has a NaN or infinite coordinate {coords}")
        if (coordinates < 0).any():
            raise CaseError(path, f"'boxes' row {row} has a negative coordinate {coords}")
    return values


def _spacing_note(spacing: np.ndarray | str | None) -> str | None:
    if isinstance(spacing, np.ndarray):
        ok = spacing.dtype.kind in "iuf" and spacing.shape == (3,)
        if ok and np.isfinite(spacing).all() and (spacing > 0).all():
            return None
        problem = f"'spacing' {spacing.dtype} {spacing.shape} is not 3 positive numbers"
    else:
        problem = "no 'spacing'" if spacing is None else f"unreadable 'spacing' ({spacing})"
    return f"{problem}; not needed for inference, going on"


def load_case(path: str | Path, dimension: Dimension, max_member_bytes: int = MAX_ARRAY_BYTES) -> Case:
    """Read ``path`` (an ``.npz`` case) and validate it as a ``dimension`` case.

    A member declaring more than ``max_member_bytes`` is refused before it is inflated.

    Raises:
        CaseError: unreadable or truncated file, pickled or oversized arrays, missing ``imgs``/``boxes``,
            wrong image shape, image values that do not fit uint8, boxes of the wrong shape,
            more than :data:`MAX_BOXES`, with NaN/infinite or negative coordinates.
    """
    path = Path(path)
    imgs, boxes, spacing = _read_arrays(path, max_member_bytes)
    case = check_case(path, dimension, imgs, boxes)
    if dimension == "3D" and (note := _spacing_note(spacing)) is not None:
        case.notes.append(note)
    return case


def check_case(path: str | Path, dimension: Dimension, imgs: np.ndarray, boxes: np.ndarray) -> Case:
    """Validate in-memory arrays as a ``dimension`` case; ``path`` names it in messages.

    Raises:
        CaseError: as :func:`load_case`, for the arrays' shapes, dtypes and values.
    """
    path = Path(path)
    imgs, boxes = np.asarray(imgs), np.asarray(boxes)
    notes: list[str] = []
    _check_imgs(path, dimension, imgs)
    imgs = _as_uint8(path, imgs, notes)
    values = _check_boxes(path, dimension, boxes)
    return Case(path, dimension, imgs, values, notes)


INTERACTIVE_KEYS = ("clicks", "clicks_order", "prev_pred")
"""Keys only the CVPR 2025 interactive format has (docs/interactive.md)."""


def is_interactive(path: str | Path) -> bool:
    """Whether ``path`` is in the CVPR 2025 interactive format: it has clicks or a previous
    prediction, or its ``boxes`` are pickled dicts (an object array, known from the NPY header
    alone). An unreadable file is not: the 2024 reader then reports what is wrong with it."""
    try:
        with open_npz(path) as archive:
            if any(key in archive.keys for key in INTERACTIVE_KEYS):
                return True
            if "boxes" not in archive.keys:
                return False
            with archive.member("boxes") as handle:
                return archive.read_header("boxes", handle)[2].hasobject
    except NpzError:
        return False


def load_interactive(path: str | Path, dimension: Dimension, max_member_bytes: int = MAX_ARRAY_BYTES
                     ) -> tuple[InteractiveCase, list[str]]:
    """Read an interactive-format case safely (:func:`challenge.interactive.read_interactive_case`:
    a restricted unpickler for the dict members) and make its image uint8. A 2D case is a
    one-slice volume (1, H, W): the format has no other 2D layout.

    Raises:
        CaseError: everything the reader refuses, a 2D case with more than one slice, image values
            that do not fit uint8; one line naming the file.
    """
    path = Path(path)
    try:
        case = read_interactive_case(path, max_member_bytes)
    except NpzError as exc:
        raise CaseError(path, exc.problem) from None
    if dimension == "2D" and case.imgs.shape[0] != 1:
        raise CaseError(path, f"2D interactive 'imgs' must be one slice (1, H, W), got {case.imgs.shape}")
    notes: list[str] = []
    imgs = _as_uint8(path, case.imgs, notes)
    return replace(case, imgs=imgs), notes
