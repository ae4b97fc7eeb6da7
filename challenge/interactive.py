"""The CVPR 2025 interactive format ("Foundation Models for Interactive 3D Biomedical Image
Segmentation"): read its input files safely, and write them the way the organisers' evaluator does.

An input case (docs/interactive.md) holds ``imgs`` (D, H, W), ``spacing`` (3,) and, depending on
the step of the interaction, ``boxes``, ``clicks``, ``clicks_order`` and ``prev_pred``. The
evaluator writes ``boxes``, ``clicks`` and (when it holds ``None``) ``clicks_order`` as Python
lists of dicts through ``np.savez_compressed``, so they are stored as pickled object arrays, which
``np.load(allow_pickle=False)`` refuses. Those members are read here with a restricted unpickler
that admits only numpy's array, dtype and scalar reconstruction; Python's containers, numbers,
strings and None need no global at all. Any other global (``os.system``, ``builtins.eval``, a
class) is refused before it is looked up, so nothing in the file runs. Members are inflated only
up to a bound, and every problem is a :class:`~challenge.npz.NpzError` naming the file and the key.

Axis order: clicks are voxel indices ``(z, y, x)`` of the ``(D, H, W)`` array (the evaluator takes
them from ``np.argwhere`` on that array); box fields keep the evaluator's names (``z_mid_x_min`` is
a column index on slice ``z_mid``). Class k (0-based) of every per-class list is the k-th smallest
non-zero label of the ground truth.

numpy only.
"""
from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from challenge.atomic import atomic_path
from challenge.npz import DEFAULT_MAX_MEMBER_BYTES, NpzArchive, NpzError, open_npz

__all__ = ["BOX_FIELDS", "CLICK_KINDS", "MAX_PICKLE_BYTES", "ClassBox", "ClassClicks", "InteractiveCase",
           "ClickKind", "boxes_from_labels", "read_interactive_case", "read_pickled_array",
           "write_interactive_case"]

BOX_FIELDS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")
"""Keys of one class's box dict, in the order the organisers' ``get_boxes.py`` fills it."""

ClickKind = Literal["fg", "bg"]
CLICK_KINDS: tuple[ClickKind, ClickKind] = ("fg", "bg")

MAX_PICKLE_BYTES = 16 * 2**20
"""Largest pickled member inflated (16 MiB). Real ones are a few kB: one dict per class, at most
five clicks each."""

_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
"""numpy 1.x pickles (the evaluator pins numpy 1.26) name ``numpy.core``; numpy 2 ``numpy._core``."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray  # the objects both spellings name

    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in _MULTIARRAY:
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    return table


_ALLOWED = _allowed_globals()


class _Refused(Exception):
    """A global the restricted unpickler does not admit; ``name`` is ``module.name``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only numpy's array/dtype/scalar reconstruction; never imports anything."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {pid!r}")


def read_pickled_array(archive: NpzArchive, key: str, max_pickle_bytes: int = MAX_PICKLE_BYTES) -> np.ndarray:
    """The array stored under ``key``: numeric members as :meth:`NpzArchive.read` reads them, object
    members through the restricted unpickler.

    Raises:
        NpzError: missing key, unreadable member, a pickle larger than ``max_pickle_bytes``, a refused
            global (``'clicks': pickle refused: global posix.system is not allowed ...``), a corrupt
            or truncated pickle, a pickle that is not the object array its header declares.
    """
    with archive.member(key) as handle:
        shape, _, dtype = archive.read_header(key, handle)
        payload = handle.read(max_pickle_bytes + 1) if dtype.hasobject else b""
    if not dtype.hasobject:
        return archive.read(key)
    if len(payload) > max_pickle_bytes:
        raise NpzError(archive.path, f"'{key}': pickled member larger than {max_pickle_bytes} bytes (refused)")
    try:
        value = _ArrayUnpickler(io.BytesIO(payload)).load()
    except _Refused as exc:
        raise NpzError(archive.path, f"'{key}': pickle refused: global {exc.name} is not allowed "
                                     "(only numpy array, dtype and scalar reconstruction)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise NpzError(archive.path, f"'{key}': not a readable pickle ({type(exc).__name__}: {detail})") from None
    if not isinstance(value, np.ndarray) or value.dtype != object or value.shape != tuple(shape):
        what = f"{type(value).__name__}" if not isinstance(value, np.ndarray) else f"{value.dtype} {value.shape}"
        raise NpzError(archive.path, f"'{key}': pickle holds {what}, not the object array {tuple(shape)} its header declares")
    return value


@dataclass(frozen=True)
class ClassBox:
    """One class's box prompt, as the organisers' ``get_boxes.py`` makes it: the class's slice range
    ``z_min..z_max`` (inclusive) and a 2D box on its middle slice ``z_mid`` (x = column, y = row,
    maxima inclusive)."""

    z_min: int
    z_max: int
    z_mid: int
    z_mid_x_min: int
    z_mid_y_min: int
    z_mid_x_max: int
    z_mid_y_max: int

    def as_dict(self) -> dict[str, np.int64]:
        """The dict the organisers store (values ``np.int64``, as ``np.min`` gives them)."""
        return {name: np.int64(getattr(self, name)) for name in BOX_FIELDS}


@dataclass(frozen=True)
class ClassClicks:
    """One class's clicks: ``fg`` and ``bg`` are int64 (n, 3) arrays of voxel indices (z, y, x), in
    the order they were given within each kind (``InteractiveCase.clicks_order`` interleaves them)."""

    fg: np.ndarray
    bg: np.ndarray

    @staticmethod
    def empty() -> ClassClicks:
        return ClassClicks(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64))

    def add(self, kind: ClickKind, zyx: Sequence[int]) -> ClassClicks:
        """A copy with one more click of ``kind``."""
        row = np.asarray(zyx, np.int64).reshape(1, 3)
        if kind == "fg":
            return ClassClicks(np.concatenate([self.fg, row]), self.bg)
        return ClassClicks(self.fg, np.concatenate([self.bg, row]))

    def as_dict(self) -> dict[str, list[list[np.int64]]]:
        """The dict the evaluator stores: ``{'fg': [[z, y, x], ...], 'bg': [...]}`` of ``np.int64``."""
        return {kind: [[np.int64(v) for v in row] for row in getattr(self, kind)] for kind in CLICK_KINDS}


@dataclass(frozen=True)
class InteractiveCase:
    """A validated input case of the interactive format.

    Attributes:
        imgs: (D, H, W) numeric image as stored (the organisers' files hold uint8).
        spacing: (3,) float64 as stored, or None when the file has none (the evaluator needs it).
        boxes: one :class:`ClassBox` per class, or None when the file has no ``boxes`` (then the
            evaluator skips the box step).
        clicks: one :class:`ClassClicks` per class, or None before the first click step.
        clicks_order: per class, one entry per click step: ``'fg'``, ``'bg'`` or None (no click:
            the class was already right); None when the file has no ``clicks_order``.
        prev_pred: (D, H, W) the previous step's prediction (uint8 from the evaluator), or None.
    """

    path: Path
    imgs: np.ndarray
    spacing: np.ndarray | None
    boxes: tuple[ClassBox, ...] | None
    clicks: tuple[ClassClicks, ...] | None
    clicks_order: tuple[tuple[ClickKind | None, ...], ...] | None
    prev_pred: np.ndarray | None

    @property
    def num_classes(self) -> int | None:
        """Classes the prompts describe (None when the file has neither boxes nor clicks)."""
        for prompts in (self.boxes, self.clicks, self.clicks_order):
            if prompts is not None:
                return len(prompts)
        return None

    def ordered_clicks(self, index: int) -> list[tuple[ClickKind, tuple[int, int, int]]]:
        """Class ``index``'s clicks in the order they were given (needs ``clicks``; uses
        ``clicks_order`` to interleave fg and bg, else all fg then all bg)."""
        if self.clicks is None:
            return []
        clicks = self.clicks[index]
        fg: ClickKind = "fg"
        bg: ClickKind = "bg"
        kinds = ([k for k in self.clicks_order[index] if k is not None] if self.clicks_order is not None
                 else [fg] * len(clicks.fg) + [bg] * len(clicks.bg))
        seen = {"fg": 0, "bg": 0}
        out: list[tuple[ClickKind, tuple[int, int, int]]] = []
        for kind in kinds:
            z, y, x = (int(v) for v in getattr(clicks, kind)[seen[kind]])
            seen[kind] += 1
            out.append((kind, (z, y, x)))
        return out


def _integer(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None


def _entries(path: Path, key: str, array: np.ndarray) -> list[Any]:
    """The per-class entries of a 1-D object array (an empty float array, what ``np.array([])``
    stores for zero classes, is zero entries)."""
    if array.dtype != object:
        if array.size == 0:
            return []
        raise NpzError(path, f"'{key}' must be a pickled list with one entry per class, got a {array.dtype} array "
                             f"{array.shape}")
    if array.ndim != 1:
        raise NpzError(path, f"'{key}' must be a list with one entry per class, got an object array {array.shape}")
    return list(array)


def _parse_boxes(path: Path, array: np.ndarray, shape: tuple[int, ...]) -> tuple[ClassBox, ...]:
    boxes = []
    depth, height, width = shape
    for index, entry in enumerate(_entries(path, "boxes", array)):
        if not isinstance(entry, Mapping):
            raise NpzError(path, f"'boxes' entry {index} is a {type(entry).__name__}, expected a dict with {', '.join(BOX_FIELDS)}")
        missing = [name for name in BOX_FIELDS if name not in entry]
        if missing:
            raise NpzError(path, f"'boxes' entry {index} has no {', '.join(missing)} (has {sorted(map(str, entry))})")
        values = {name: _integer(entry[name]) for name in BOX_FIELDS}
        bad = [name for name, v in values.items() if v is None]
        if bad:
            raise NpzError(path, f"'boxes' entry {index}: {bad[0]} is {entry[bad[0]]!r}, expected an integer")
        box = ClassBox(**{name: int(v) for name, v in values.items() if v is not None})
        inside = (0 <= box.z_min <= box.z_mid <= box.z_max < depth and 0 <= box.z_mid_x_min <= box.z_mid_x_max < width
                  and 0 <= box.z_mid_y_min <= box.z_mid_y_max < height)
        if not inside:
            fields = ", ".join(f"{name}={getattr(box, name)}" for name in BOX_FIELDS)
            raise NpzError(path, f"'boxes' entry {index} ({fields}) is not an ordered box inside the image "
                                 f"(D, H, W) = {shape}")
        boxes.append(box)
    return tuple(boxes)


def _click_rows(path: Path, index: int, kind: str, rows: Any, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(rows, (list, tuple, np.ndarray)):
        raise NpzError(path, f"'clicks' entry {index} '{kind}' is a {type(rows).__name__}, expected a list of [z, y, x]")
    out = np.zeros((len(rows), 3), np.int64)
    for row, click in enumerate(rows):
        found = [_integer(v) for v in click] if isinstance(click, (list, tuple, np.ndarray)) else []
        values = [v for v in found if v is not None]
        if len(found) != 3 or len(values) != 3:
            raise NpzError(path, f"'clicks' entry {index} '{kind}' click {row} is {click!r}, expected 3 integers [z, y, x]")
        if not all(0 <= v < n for v, n in zip(values, shape)):
            raise NpzError(path, f"'clicks' entry {index} '{kind}' click {row} {values} (z, y, x) is outside the image "
                                 f"(D, H, W) = {shape}")
        out[row] = values
    return out


def _parse_clicks(path: Path, array: np.ndarray, shape: tuple[int, ...]) -> tuple[ClassClicks, ...]:
    clicks = []
    for index, entry in enumerate(_entries(path, "clicks", array)):
        if not isinstance(entry, Mapping) or set(entry) != set(CLICK_KINDS):
            what = sorted(map(str, entry)) if isinstance(entry, Mapping) else type(entry).__name__
            raise NpzError(path, f"'clicks' entry {index} must be a dict with keys 'fg' and 'bg', got {what}")
        clicks.append(ClassClicks(*(_click_rows(path, index, kind, entry[kind], shape) for kind in CLICK_KINDS)))
    return tuple(clicks)


def _parse_order(path: Path, array: np.ndarray) -> tuple[tuple[ClickKind | None, ...], ...]:
    """``clicks_order``: a (classes, steps) array (unicode, or object when it holds None), or a 1-D
    object array of per-class lists."""
    if array.size == 0 and array.ndim == 1:
        return ()
    if array.dtype.kind == "U" and array.ndim == 2:
        rows: list[Any] = [list(row) for row in array]
    elif array.dtype == object and array.ndim == 2:
        rows = [list(row) for row in array]
    elif array.dtype == object and array.ndim == 1:
        rows = list(array)
    else:
        raise NpzError(path, f"'clicks_order' must hold one list per class, got a {array.dtype} array {array.shape}")
    order = []
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise NpzError(path, f"'clicks_order' entry {index} is a {type(row).__name__}, expected a list")
        kinds: list[ClickKind | None] = []
        for value in row:
            if value is None or value in CLICK_KINDS:
                kinds.append(None if value is None else ("fg" if value == "fg" else "bg"))
            else:
                raise NpzError(path, f"'clicks_order' entry {index} holds {value!r}; expected 'fg', 'bg' or None")
        order.append(tuple(kinds))
    return tuple(order)


def _check_consistent(path: Path, case: InteractiveCase) -> None:
    counts = {name: len(value) for name, value in (("boxes", case.boxes), ("clicks", case.clicks),
                                                    ("clicks_order", case.clicks_order)) if value is not None}
    if len(set(counts.values())) > 1:
        raise NpzError(path, "per-class prompts disagree on the number of classes ("
                       + ", ".join(f"{name}: {n}" for name, n in counts.items()) + ")")
    if case.clicks is not None and case.clicks_order is not None:
        for index, (clicks, order) in enumerate(zip(case.clicks, case.clicks_order)):
            if order.count("fg") != len(clicks.fg) or order.count("bg") != len(clicks.bg):
                raise NpzError(path, f"class {index}: 'clicks_order' {list(order)} does not match {len(clicks.fg)} fg and "
                                     f"{len(clicks.bg)} bg clicks in 'clicks'")


def read_interactive_case(path: str | Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                          max_pickle_bytes: int = MAX_PICKLE_BYTES) -> InteractiveCase:
    """Read and check one input file of the interactive format.

    ``imgs`` is required; ``spacing``, ``boxes``, ``clicks``, ``clicks_order`` and ``prev_pred``
    are read when present (other keys, e.g. a training file's ``gts``, are not read). Numeric
    members above ``max_member_bytes`` and pickled members above ``max_pickle_bytes`` are refused
    before they are inflated.

    Raises:
        NpzError: one line naming the file and the key: unreadable or truncated file, missing
            ``imgs``, a refused pickle global, ``imgs`` not (D, H, W), ``spacing`` not 3 numbers,
            boxes/clicks of the wrong structure or outside the image, ``prev_pred`` of another
            shape, per-class lists of different lengths, ``clicks_order`` not matching ``clicks``.
    """
    path = Path(path)
    with open_npz(path, max_member_bytes) as archive:
        archive.require("imgs")
        imgs = archive.read("imgs")
        if imgs.ndim != 3 or imgs.size == 0 or imgs.dtype.kind not in "biuf":
            raise NpzError(path, f"'imgs' must be a non-empty numeric (D, H, W) array, got {imgs.dtype} {imgs.shape}")
        present = set(archive.keys)
        spacing = None
        if "spacing" in present:
            raw = archive.read("spacing")
            if raw.dtype.kind not in "iuf" or raw.size != 3:
                raise NpzError(path, f"'spacing' must be 3 numbers, got {raw.dtype} {raw.shape}")
            spacing = raw.astype(np.float64).ravel()
        shape = tuple(int(n) for n in imgs.shape)
        boxes = (_parse_boxes(path, read_pickled_array(archive, "boxes", max_pickle_bytes), shape)
                 if "boxes" in present else None)
        clicks = (_parse_clicks(path, read_pickled_array(archive, "clicks", max_pickle_bytes), shape)
                  if "clicks" in present else None)
        order = (_parse_order(path, read_pickled_array(archive, "clicks_order", max_pickle_bytes))
                 if "clicks_order" in present else None)
        prev_pred = None
        if "prev_pred" in present:
            prev_pred = archive.read("prev_pred")
            if prev_pred.shape != imgs.shape:
                raise NpzError(path, f"'prev_pred' has shape {prev_pred.shape}, the image {imgs.shape}")
    case = InteractiveCase(path, imgs, spacing, boxes, clicks, order, prev_pred)
    _check_consistent(path, case)
    return case


def boxes_from_labels(gts: np.ndarray, rng: np.random.Generator | None = None, max_shift: int = 5
                      ) -> tuple[ClassBox, ...]:
    """One box per non-zero label of a (D, H, W) label map, ascending, as the organisers'
    ``get_boxes.py`` builds them: ``z_min``/``z_max`` the label's slice range, ``z_mid`` the middle
    one of the slices it occupies (``z[len(z) // 2]`` of the sorted distinct slice indices), and
    the label's 2D box on that slice.

    ``rng`` None gives the tight box. With a generator, each box grows like theirs: a shift s drawn
    from 0..``max_shift``, ``int(s * W / 256)`` columns and ``int(s * H / 256)`` rows on each side,
    clipped to the image (their draws come from ``np.random.seed(2025)`` in a process pool, so
    their exact shifts cannot be reproduced).
    """
    if gts.ndim != 3:
        raise ValueError(f"labels must be (D, H, W), got shape {gts.shape}")
    depth, height, width = gts.shape
    boxes = []
    for label in np.unique(gts[gts != 0]):
        z, y, x = np.nonzero(gts == label)
        z_mid = int(np.unique(z)[len(np.unique(z)) // 2])
        on_mid = z == z_mid
        x_min, x_max = int(x[on_mid].min()), int(x[on_mid].max())
        y_min, y_max = int(y[on_mid].min()), int(y[on_mid].max())
        if rng is not None:
            shift = int(rng.integers(0, max_shift + 1))
            dx, dy = int(shift * width / 256), int(shift * height / 256)
            x_min, x_max = max(0, x_min - dx), min(width - 1, x_max + dx)
            y_min, y_max = max(0, y_min - dy), min(height - 1, y_max + dy)
        boxes.append(ClassBox(int(z.min()), int(z.max()), z_mid, x_min, y_min, x_max, y_max))
    return tuple(boxes)


def _as_lists(order: Sequence[Sequence[ClickKind | None]]) -> Any:
    """``clicks_order`` as the evaluator passes it to ``np.savez``: a list of per-class lists, which
    numpy stores as a (classes, steps) array, unicode when it holds no None."""
    lists = [list(row) for row in order]
    try:
        return np.asarray(lists)
    except ValueError:  # per-class lists of different lengths (never written by the evaluator)
        out = np.empty(len(lists), object)
        out[:] = lists
        return out


def _object_list(entries: list[Any]) -> np.ndarray:
    """A 1-D object array of dicts: what ``np.savez`` makes of the evaluator's list of dicts."""
    out = np.empty(len(entries), object) if entries else np.array([])
    for index, entry in enumerate(entries):
        out[index] = entry
    return out


def write_interactive_case(path: str | Path, imgs: np.ndarray, spacing: np.ndarray | Sequence[float], *,
                           boxes: Sequence[ClassBox] | np.ndarray | None = None,
                           clicks: Sequence[ClassClicks] | None = None,
                           clicks_order: Sequence[Sequence[ClickKind | None]] | None = None,
                           prev_pred: np.ndarray | None = None, gts: np.ndarray | None = None) -> None:
    """Write an input file as the evaluator does (``np.savez_compressed``, keys in its order
    ``imgs, gts, spacing, clicks, clicks_order, prev_pred, boxes``), atomically.

    ``boxes`` is a sequence of :class:`ClassBox` (stored as dicts of ``np.int64``) or an object
    array read by :func:`read_pickled_array`, stored as it is (the evaluator re-saves the array it
    loaded). ``gts`` is only for training files. For tests and for the interactive harness;
    numpy pickles the object members, so only trusted values belong here.
    """
    members: dict[str, Any] = {"imgs": imgs}
    if gts is not None:
        members["gts"] = gts
    members["spacing"] = np.asarray(spacing)
    if clicks is not None:
        members["clicks"] = _object_list([c.as_dict() for c in clicks])
    if clicks_order is not None:
        members["clicks_order"] = _as_lists(clicks_order)
    if prev_pred is not None:
        members["prev_pred"] = prev_pred
    if boxes is not None:
        members["boxes"] = boxes if isinstance(boxes, np.ndarray) else _object_list([b.as_dict() for b in boxes])
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **members)
