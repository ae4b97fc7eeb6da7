"""How a SimpleITK image maps to the challenge arrays, and back.

A SimpleITK image of size ``(X, Y, Z)`` (index order i, j, k) becomes the NumPy array
``sitk.GetArrayFromImage(image)`` of shape ``(Z, Y, X)`` = ``(D, H, W)``: ``array[k, j, i]``
is voxel ``(i, j, k)``, so box x = i (column), y = j (row), z = k (slice). No resampling
ever happens. The npz ``spacing`` is ``image.GetSpacing()``, i.e. ``(sx, sy, sz)`` in ITK
order although the array axes are ``(z, y, x)``: that is what the organisers stored
(docs/reference_systems.md section 1.1).

Optionally the volume is first re-oriented with ``sitk.DICOMOrient`` (an exact permutation
and flip of the voxel grid, no interpolation) so that, for example, ``LPS`` puts axial slices
on the D axis whatever the storage order. The original geometry is kept in the side JSON and
:func:`image_from_array` undoes the re-orientation, so a mask lands voxel for voxel on the
source grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

# Grids match when they differ by less than these (NIfTI stores float32 geometry).
SPACING_RTOL = 1e-4
DIRECTION_ATOL = 1e-4
ORIGIN_VOXEL_FRACTION = 1e-3

_VALID_AXES = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}


def orientation_code(image: sitk.Image) -> str:
    """Three-letter DICOM-convention code (``LPS`` = identity direction) of a 3D image."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def check_orientation_code(code: str) -> str:
    """Upper-cased ``code`` if it names each patient axis once (``LPS``, ``RAS``, ``PIL`` ...)."""
    upper = code.upper()
    if len(upper) != 3 or any(c not in _VALID_AXES for c in upper) or len({_VALID_AXES[c] for c in upper}) != 3:
        raise ValueError(f"orientation {code!r} must be three letters naming L/R, A/P and S/I once each, e.g. LPS")
    return upper


def reorient(image: sitk.Image, code: str | None) -> sitk.Image:
    """``image`` permuted/flipped to ``code`` (3D only); unchanged when ``code`` is None."""
    if code is None:
        return image
    if image.GetDimension() != 3:
        raise ValueError(f"re-orientation needs a 3D image, got a {image.GetDimension()}D one")
    return sitk.DICOMOrient(image, check_orientation_code(code))


def geometry_record(image: sitk.Image) -> dict[str, Any]:
    """JSON-able grid of ``image``: ITK-order ``size``, ``spacing``, ``origin``, row-major ``direction``."""
    record: dict[str, Any] = {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }
    if image.GetDimension() == 3:
        record["orientation"] = orientation_code(image)
    return record


def grid_mismatch(image: sitk.Image, record: dict[str, Any]) -> str | None:
    """Why ``image`` is not on the grid ``record`` describes, or None when it is."""
    if list(image.GetSize()) != list(record["size"]):
        return f"size {list(image.GetSize())} differs from {list(record['size'])}"
    spacing = np.asarray(record["spacing"])
    if not np.allclose(image.GetSpacing(), spacing, rtol=SPACING_RTOL, atol=0):
        return f"spacing {_fmt(image.GetSpacing())} differs from {_fmt(spacing)}"
    if not np.allclose(image.GetOrigin(), record["origin"], rtol=0, atol=ORIGIN_VOXEL_FRACTION * spacing.min()):
        return f"origin {_fmt(image.GetOrigin())} differs from {_fmt(record['origin'])}"
    if not np.allclose(image.GetDirection(), record["direction"], rtol=0, atol=DIRECTION_ATOL):
        return f"direction {_fmt(image.GetDirection())} differs from {_fmt(record['direction'])}"
    return None


def apply_record(image: sitk.Image, record: dict[str, Any]) -> sitk.Image:
    """Set the exact spacing/origin/direction of ``record`` on ``image`` (in place; returned)."""
    image.SetSpacing([float(v) for v in record["spacing"]])
    image.SetOrigin([float(v) for v in record["origin"]])
    image.SetDirection([float(v) for v in record["direction"]])
    return image


def image_from_array(array: np.ndarray, source: dict[str, Any], oriented: dict[str, Any]) -> sitk.Image:
    """Put a (D, H, W) or (H, W) label array made on the ``oriented`` grid back on the ``source`` grid.

    Raises:
        ValueError: the array shape is not the oriented grid's, or undoing the orientation
            does not land on the source grid (a corrupted side file).
    """
    expected = tuple(reversed(oriented["size"]))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match the case's {expected}")
    image = apply_record(sitk.GetImageFromArray(array), oriented)
    if source.get("orientation") != oriented.get("orientation"):
        image = sitk.DICOMOrient(image, source["orientation"])
    problem = grid_mismatch(image, source)
    if problem is not None:
        raise ValueError(f"undoing the re-orientation does not restore the source grid: {problem}")
    return apply_record(image, source)


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
