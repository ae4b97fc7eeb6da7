"""Read an image (NIfTI and other ITK volume files, a DICOM series folder, a 2D picture).

Everything goes through SimpleITK. A DICOM folder is checked before it is stacked: exactly
one series (or the one chosen by ``series_uid``), no DICOM-looking file left out of every
series (GDCM skips a corrupt file without a word), identical slice size and orientation, and
slice positions along the slice normal that are distinct, evenly spaced (no missing slice)
and not sheared (no gantry tilt), because ITK would otherwise stack such a series silently.
"""
from __future__ import annotations

import locale
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from convert.errors import ConversionError, itk_reason
from convert.nifti import NIFTI_SUFFIXES, check_nifti_complete

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# Slice gaps may differ by this fraction of the median gap (rounding in the DICOM headers).
_GAP_TOLERANCE = 0.01


def file_kind(path: Path) -> str:
    """``"dicom"`` (a folder), ``"volume"`` (ITK medical format) or ``"picture"`` (2D photo formats).

    Raises:
        ConversionError: the path does not exist or its suffix is not a known format.
    """
    if path.is_dir():
        return "dicom"
    if not path.is_file():
        raise ConversionError(path, "no such file or folder")
    name = path.name.lower()
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    if name.endswith(PICTURE_SUFFIXES):
        return "picture"
    raise ConversionError(
        path,
        f"unknown format; expected a DICOM series folder, a volume ({', '.join(VOLUME_SUFFIXES)}) "
        f"or a 2D image ({', '.join(PICTURE_SUFFIXES)})",
    )


def read_image(path: Path, series_uid: str | None = None) -> sitk.Image:
    """Read ``path`` (file or DICOM folder) into a SimpleITK image, validated as described above."""
    path = Path(path)
    if file_kind(path) == "dicom":
        with _locale_kept():
            return _read_dicom_series(path, series_uid)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ConversionError(path, f"unreadable image ({itk_reason(exc)})") from None


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    uids = _quietly(sitk.ImageSeriesReader.GetGDCMSeriesIDs, str(folder))
    if not uids:
        raise ConversionError(folder, "no DICOM series found in the folder")
    if series_uid is None:
        if len(uids) > 1:
            listed = ", ".join(uids)
            raise ConversionError(
                folder, f"mixed DICOM series: {len(uids)} series in one folder ({listed}); choose one by its UID"
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise ConversionError(folder, f"no DICOM series {series_uid!r}; the folder holds {', '.join(uids)}")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    in_series = {Path(name).name for uid in uids for name in (
        files if uid == series_uid else sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))}
    stray = next(_dicom_like_files(folder, in_series), None)
    if stray is not None:  # GDCM drops a corrupt slice silently; at either end no gap shows it
        raise ConversionError(folder, f"unreadable DICOM file {stray}: it belongs to no series (corrupt or truncated?)")
    _check_slices(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise ConversionError(folder, f"unreadable DICOM series ({itk_reason(exc)})") from None


def _dicom_like_files(folder: Path, skip: set[str]):
    """Names of files in ``folder`` (not ``skip``, not DICOMDIR) that look like DICOM: a ``.dcm``
    or ``.dicom`` suffix, or the ``DICM`` tag after the 128-byte preamble."""
    for entry in sorted(folder.iterdir()):
        if entry.name in skip or entry.name.upper() == "DICOMDIR" or not entry.is_file():
            continue
        if entry.suffix.lower() in (".dcm", ".dicom"):
            yield entry.name
            continue
        with entry.open("rb") as handle:
            if handle.read(132)[128:] == b"DICM":
                yield entry.name


@contextmanager
def _locale_kept():
    """Restore the process locale after GDCM, which switches it to "C" (and with it the default
    text encoding of everything the process opens afterwards, subprocess pipes included)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _quietly(function, *args):
    """Call a SimpleITK function with ITK's stderr warnings off (we raise our own errors)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return function(*args)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _check_slices(folder: Path, files: tuple[str, ...]) -> None:
    """Raise unless the files stack into a regular volume (see the module docstring)."""
    origins: list[tuple[float, ...]] = []
    first: tuple[tuple[int, ...], list[float]] | None = None
    for name in files:
        info = sitk.ImageFileReader()
        info.SetFileName(name)
        try:
            info.ReadImageInformation()
        except RuntimeError as exc:
            raise ConversionError(folder, f"unreadable DICOM file {Path(name).name} ({itk_reason(exc)})") from None
        header = (info.GetSize()[:2], np.round(info.GetDirection(), 4).tolist())
        if first is None:
            first, spacing = header, info.GetSpacing()
        elif header != first:
            raise ConversionError(
                folder, f"slice {Path(name).name} has size/orientation {header}, unlike the first slice {first}"
            )
        origins.append(info.GetOrigin())
    if first is None or len(files) < 2:
        return
    normal = np.asarray(first[1], dtype=np.float64).reshape(3, 3)[:, 2]
    positions = np.asarray(origins, dtype=np.float64)
    along = positions @ normal
    gaps = np.diff(along)
    if gaps.min() <= 1e-6:
        raise ConversionError(folder, "DICOM series has duplicate slice positions")
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() > _GAP_TOLERANCE * median:
        raise ConversionError(
            folder,
            f"missing or unevenly spaced DICOM slices: gaps between slice positions range from "
            f"{gaps.min():.4g} to {gaps.max():.4g} mm",
        )
    shear = positions - positions[0] - np.outer(along - along[0], normal)
    if np.linalg.norm(shear, axis=1).max() > _GAP_TOLERANCE * min(spacing[:2]):
        raise ConversionError(folder, "DICOM slices are not stacked along the slice normal (gantry tilt?)")
