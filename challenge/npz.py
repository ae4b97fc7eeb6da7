"""The challenge's ``.npz`` files: what they hold, how to read them safely, how to write them.

Input case: ``imgs`` (2D: uint8 (H, W, 3); 3D: uint8 (D, H, W)), ``boxes`` (2D: (N, 4)
:data:`BOX_LAYOUT`; 3D: (N, 6)), 3D also ``spacing`` (3,). Ground truth: ``gts`` (labels, same
spatial shape), 3D ``spacing``. Output: ``segs``, same spatial shape, box k gets label k + 1.

Files are untrusted. Reading never unpickles, and it reads each member's NPY header before
inflating the member, refusing one whose declared size is above a bound: a few hundred bytes of
deflate can declare gigabytes. Every problem is an :class:`NpzError` whose one-line message names
the file and the member.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from challenge.atomic import atomic_path

__all__ = ["BOX_COLUMNS", "BOX_LAYOUT", "DEFAULT_MAX_MEMBER_BYTES", "NpzError", "NpzArchive", "open_npz",
           "read_npz", "save_npz", "write_npz"]

BOX_COLUMNS = {"2D": 4, "3D": 6}
BOX_LAYOUT = {"2D": "[x_min, y_min, x_max, y_max]", "3D": "[x_min, y_min, z_min, x_max, y_max, z_max]"}

DEFAULT_MAX_MEMBER_BYTES = 4 * 2**30
"""Largest array one member may declare (4 GiB: half the challenge container's 8 GB; the largest
challenge volumes are a few hundred MB)."""

_CORRUPT = (OSError, EOFError, zipfile.BadZipFile, zlib.error)
_MAX_HEADER_BYTES = 10_000
"""numpy's own bound on an NPY header (its ``max_header_size``); real headers are under 200 bytes."""
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _kind(exc: BaseException) -> str:
    return "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__


def _header_problem(exc: ValueError) -> str:
    """numpy words an oversized header as a pickling matter; say what is wrong instead."""
    if "max_header_size" in str(exc):
        return f"longer than {_MAX_HEADER_BYTES} bytes"
    return f"malformed ({' '.join(str(exc).split())})"


class NpzError(ValueError):
    """A file that cannot be read as the challenge's npz; ``problem`` is the message without the path."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class NpzArchive:
    """An open npz file; :meth:`read` checks and inflates one member."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, max_member_bytes: int) -> None:
        self.path = path
        self._zip = archive
        self._max_bytes = max_member_bytes
        self._members = {name.removesuffix(".npy"): name for name in archive.namelist()}

    @property
    def keys(self) -> list[str]:
        """Member names without ``.npy``, as ``np.load`` names them."""
        return list(self._members)

    def require(self, *keys: str) -> None:
        """Check that every key is present before anything is inflated.

        Raises:
            NpzError: naming the first missing key and the keys the file has.
        """
        for key in keys:
            if key not in self._members:
                raise NpzError(self.path, f"missing key '{key}' (has {sorted(self._members)})")

    def read(self, key: str) -> np.ndarray:
        """The array stored under ``key``.

        Raises:
            NpzError: missing key, not an NPY member, an object (pickled) array, a declared size
                above the bound, corrupt data.
        """
        self.require(key)
        member = self._members[key]
        try:
            with self._zip.open(member) as handle:
                self._check_header(key, handle)
            with self._zip.open(member) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except NpzError:
            raise
        except ValueError as exc:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': {exc})") from None
        except _CORRUPT as exc:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': {_kind(exc)}: {exc})") from None

    @contextmanager
    def member(self, key: str) -> Iterator[IO[bytes]]:
        """The raw (inflated) byte stream of one member, for readers of other NPY layouts
        (:mod:`challenge.interactive` reads pickled object arrays through it).

        Raises:
            NpzError: missing key; corrupt data met while the stream is read.
        """
        self.require(key)
        try:
            with self._zip.open(self._members[key]) as handle:
                yield handle
        except _CORRUPT as exc:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': {_kind(exc)}: {exc})") from None

    def read_header(self, key: str, handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
        """Shape, Fortran order and dtype from the NPY header at the start of ``handle``; the
        handle is left at the first data byte.

        Raises:
            NpzError: not an NPY array, truncated, unsupported version, malformed or oversized header.
        """
        if handle.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': not an NPY array)")
        raw = handle.read(2)
        if len(raw) < 2:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': NPY header truncated)")
        version = (raw[0], raw[1])
        if version not in _HEADER_READERS:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': unsupported NPY version {version})")
        try:
            shape, fortran_order, dtype = _HEADER_READERS[version](handle, max_header_size=_MAX_HEADER_BYTES)
        except ValueError as exc:
            raise NpzError(self.path, f"not a readable npz file (member '{key}': NPY header {_header_problem(exc)})"
                           ) from None
        return shape, fortran_order, dtype

    def _check_header(self, key: str, handle: IO[bytes]) -> None:
        shape, _, dtype = self.read_header(key, handle)
        if dtype.hasobject:
            raise NpzError(self.path, f"'{key}' is a pickled object array (refused: inputs are read with "
                                      "allow_pickle=False)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self._max_bytes:
            raise NpzError(self.path, f"'{key}' declares {nbytes} bytes ({dtype} {shape}), above the limit of "
                                      f"{self._max_bytes} bytes per array")


def _require_regular_file(path: Path) -> None:
    """Refuse what ``open`` would fail on or block on (a FIFO), with what it is."""
    if path.is_symlink() and not path.exists():
        raise NpzError(path, "dangling symbolic link")
    if not path.exists():
        raise NpzError(path, "file not found")
    if not path.is_file():
        raise NpzError(path, "not a regular file")


@contextmanager
def open_npz(path: str | Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[NpzArchive]:
    """Open ``path`` for :meth:`NpzArchive.read`; members above ``max_member_bytes`` are refused.

    Raises:
        NpzError: the file is missing, not a zip archive (or truncated), or its directory is corrupt.
    """
    path = Path(path)
    _require_regular_file(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise NpzError(path, f"cannot read the file ({exc.strerror or exc})") from None
    with handle:
        if not zipfile.is_zipfile(handle):
            raise NpzError(path, "not a readable npz file (not a zip archive, or truncated)")
        try:
            archive = zipfile.ZipFile(handle)
        except _CORRUPT as exc:
            raise NpzError(path, f"not a readable npz file ({_kind(exc)}: {exc})") from None
        with archive:
            yield NpzArchive(path, archive, max_member_bytes)


def read_npz(path: str | Path, keys: tuple[str, ...], max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
             ) -> dict[str, np.ndarray]:
    """Read ``keys`` from ``path`` (all of them must be there).

    Raises:
        NpzError: as :func:`open_npz` and :meth:`NpzArchive.read`; a missing key is reported
            before any member is inflated.
    """
    with open_npz(path, max_member_bytes) as archive:
        archive.require(*keys)
        return {key: archive.read(key) for key in keys}


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compresslevel: int | None = None) -> None:
    """Write ``arrays`` as a deflate-compressed npz that ``np.load`` reads (not atomic: see :func:`write_npz`).

    ``compresslevel`` None is zlib's default (what ``np.savez_compressed`` uses, and the same bytes);
    1 is two to four times faster for a slightly larger file. Entries carry zip's fixed 1980-01-01
    timestamp, so the same arrays give the same bytes, run after run.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for key, array in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compresslevel: int | None = None) -> None:
    """:func:`save_npz` through a temporary file in the same folder, renamed over ``path`` when complete."""
    with atomic_path(path) as tmp:
        save_npz(tmp, arrays, compresslevel)
