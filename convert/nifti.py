"""Refuse a truncated NIfTI before ITK reads it: ITK fills the missing voxels with zeros and
reports success, so a cut-off download would become a corrupt case.

The header says how many bytes the image holds (``vox_offset`` + voxels x ``bitpix`` / 8); the file
(uncompressed: its size; gzip: its inflated length, streamed, never held in memory) must hold them.
Headers that do not parse are left to ITK, which reports them.
"""
from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

from convert.errors import ConversionError

__all__ = ["NIFTI_SUFFIXES", "check_nifti_complete"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHUNK = 1 << 20


_LAYOUTS = {348: (("8h", 40), ("h", 72), ("f", 108)), 540: (("8q", 16), ("h", 14), ("q", 168))}
"""NIfTI-1 / NIfTI-2 (by ``sizeof_hdr``): format and offset of ``dim``, ``bitpix``, ``vox_offset``."""


def _expected_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1 or NIfTI-2 file with this header holds, None when the header does not parse."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
        if size not in _LAYOUTS or len(header) < size:
            continue
        dims, bitpix, offset = (struct.unpack_from(endian + fmt, header, at) for fmt, at in _LAYOUTS[size])
        shape = dims[1:dims[0] + 1]
        if not 1 <= dims[0] <= 7 or min(shape) < 1 or bitpix[0] < 1 or not offset[0] >= 0:
            return None
        return int(offset[0]) + math.prod(shape) * bitpix[0] // 8
    return None


def _length(handle: io.BufferedIOBase, first: bytes) -> int:
    size = len(first)
    while chunk := handle.read(_CHUNK):
        size += len(chunk)
    return size


def check_nifti_complete(path: Path) -> None:
    """Raise unless ``path`` (``.nii`` or ``.nii.gz``) holds every byte its header declares.

    A ``.nii.gz`` that is not gzip at all is checked as the plain file ITK then reads.

    Raises:
        ConversionError: ``NIfTI file is truncated (... of ... bytes)`` or a gzip stream that ends early
            or is corrupt.
    """
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as handle:
                return _check(path, handle)
        except gzip.BadGzipFile:
            pass
    with open(path, "rb") as handle:
        _check(path, handle)


def _check(path: Path, handle: io.BufferedIOBase) -> None:
    try:
        first = handle.read(540)
        expected = _expected_bytes(first)
        if expected is None:
            return
        size = _length(handle, first)
    except EOFError:
        raise ConversionError(path, "NIfTI file is truncated (the gzip stream ends early)") from None
    except zlib.error as exc:
        raise ConversionError(path, f"NIfTI file is corrupt ({exc})") from None
    if size < expected:
        raise ConversionError(path, f"NIfTI file is truncated ({size} of {expected} bytes)")
