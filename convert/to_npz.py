"""NIfTI / DICOM / 2D picture (+ label map or boxes file) -> challenge npz files.

Outputs, for a case named ``<2D|3D>Box_<Modality>_<id>``, under ``out_dir``::

    imgs/<name>.npz       imgs, boxes (+ spacing for 3D): the inference input
    gts/<name>.npz        gts (+ spacing for 3D), only when a label map was given
    geometry/<name>.json  source and array grids, box -> original label, intensity record

All three are validated and computed first, then written atomically together.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from challenge.names import require_modality
from convert.boxes import BoxCoords, boxes_from_labels, boxes_to_grid, grow_boxes, read_boxes_file, relabel
from convert.errors import ConversionError
from convert.geometry import geometry_record, grid_mismatch, reorient
from convert.intensity import CT_WINDOWS, DEFAULT_CT_WINDOW, to_rgb, to_uint8
from convert.reading import LOSSY_SUFFIXES, PICTURE_SUFFIXES, VOLUME_SUFFIXES, file_kind, read_image
from convert.writing import json_writer, npz_writer, write_all

GEOMETRY_FORMAT = "medsam-convert-geometry/1"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def case_id_from_path(path: Path) -> str:
    """Default case id: the file (or DICOM folder) name without its suffixes, made file-name safe."""
    name = path.resolve().name
    suffix = next((s for s in VOLUME_SUFFIXES + PICTURE_SUFFIXES if name.lower().endswith(s)), "")
    name = name[: len(name) - len(suffix)]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "case"


def convert_to_npz(
    image_path: Path,
    out_dir: Path,
    modality: str,
    *,
    case_id: str | None = None,
    labels_path: Path | None = None,
    boxes_path: Path | None = None,
    box_coords: BoxCoords = "voxel",
    margin: int = 0,
    margin_z: int = 0,
    intensity: str = "auto",
    window: tuple[float, float] = CT_WINDOWS[DEFAULT_CT_WINDOW],
    orient: str | None = None,
    series_uid: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Convert one case; returns the written paths (imgs npz, [gts npz], geometry JSON).

    Args:
        image_path: NIfTI/MHA/NRRD file, DICOM series folder, or PNG/JPEG/TIFF/BMP picture.
        modality: any spelling :func:`challenge.names.require_modality` accepts.
        labels_path / boxes_path: exactly one; a label map gives one box per label and a gts file.
        box_coords: ``voxel`` or ``physical`` coordinates in the boxes file.
        margin / margin_z: voxels added to each box side in x/y and in z, clipped to the image.
        intensity: ``auto`` (pictures ``8bit``; volumes ``window`` for CT, else ``percentile``),
            or one of ``window``, ``percentile``, ``8bit``.
        window: CT ``(level, width)`` used by the ``window`` method.
        orient: re-orient a volume to this DICOM code (e.g. ``LPS``) before slicing; None keeps
            the stored voxel order, as the organisers did.

    Raises:
        ConversionError: bad input, with the file and the problem on one line.
        ValueError: inconsistent arguments.
    """
    image_path, out_dir = Path(image_path), Path(out_dir)
    modality = require_modality(modality)
    if (labels_path is None) == (boxes_path is None):
        raise ValueError("give exactly one of a label map and a boxes file")
    case_id = case_id or case_id_from_path(image_path)
    if not _ID_PATTERN.match(case_id):
        raise ValueError(f"case id {case_id!r} may only hold letters, digits, '.', '_' and '-'")

    kind = file_kind(image_path)
    source = read_image(image_path, series_uid)
    ndim = source.GetDimension()
    if ndim not in (2, 3):
        raise ConversionError(image_path, f"{ndim}D image; expected a 2D image or a 3D volume")
    if ndim == 3 and source.GetNumberOfComponentsPerPixel() != 1:
        components = source.GetNumberOfComponentsPerPixel()
        raise ConversionError(image_path, f"{components} values per voxel; expected a grey volume")
    if ndim == 2 and orient is not None:
        raise ValueError("re-orientation applies to 3D volumes only")
    image = reorient(source, orient)

    array = sitk.GetArrayViewFromImage(image)
    imgs, intensity_record = _intensities(image_path, array, kind, modality, intensity, window)
    gts = None
    values: np.ndarray | None  # the label value of each box; a boxes file may have none
    if labels_path is not None:
        gts, values = _labels(Path(labels_path), source, kind, orient)
        tight = boxes_from_labels(gts)
    else:
        assert boxes_path is not None  # exactly one of the two, checked above
        tight, values = _file_boxes(Path(boxes_path), box_coords, source, image, orient)
    boxes = grow_boxes(tight, image.GetSize(), margin, margin_z)

    name = f"{ndim}DBox_{modality}_{case_id}"
    spacing = {"spacing": np.asarray(image.GetSpacing(), dtype=np.float64)} if ndim == 3 else {}
    record: dict[str, Any] = {
        "format": GEOMETRY_FORMAT,
        "case": name,
        "source": str(image_path.resolve()),
        "dimension": ndim,
        "modality": modality,
        "source_grid": geometry_record(source),
        "array_grid": geometry_record(image),
        "array_shape": list(imgs.shape),
        "intensity": intensity_record,
        "boxes": int(boxes.shape[0]),
        "box_labels": None if values is None else [int(v) for v in values],
    }
    writers = {out_dir / "imgs" / f"{name}.npz": npz_writer(imgs=imgs, boxes=boxes, **spacing)}
    if gts is not None:
        writers[out_dir / "gts" / f"{name}.npz"] = npz_writer(gts=gts, **spacing)
    writers[out_dir / "geometry" / f"{name}.json"] = json_writer(record)
    return write_all(writers, overwrite)


def _checked(path: Path, function, *args):
    """Call ``function``; a ValueError becomes a ConversionError naming ``path``."""
    try:
        return function(*args)
    except ConversionError:
        raise
    except ValueError as exc:
        raise ConversionError(path, str(exc)) from None


def _intensities(
    path: Path, array: np.ndarray, kind: str, modality: str, method: str, window: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """uint8 ``imgs``: (D, H, W) for volumes, (H, W, 3) for 2D images."""
    if method == "auto":
        method = "8bit" if kind == "picture" else ("window" if modality == "CT" else "percentile")
    is_2d = array.ndim == 2 or (kind == "picture" and array.ndim == 3)
    if is_2d and array.ndim == 3:
        array = _checked(path, to_rgb, array)  # drop alpha before min-max
    imgs, record = _checked(path, to_uint8, array, method, window)
    return (to_rgb(imgs) if is_2d else imgs), record


def _labels(path: Path, source: sitk.Image, kind: str, orient: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Relabelled (1..N) label array on the output grid and the original value of each label."""
    if file_kind(path) == "dicom":
        raise ConversionError(path, "a label map must be a file, not a folder")
    if path.name.lower().endswith(LOSSY_SUFFIXES):
        raise ConversionError(path, "JPEG is lossy and cannot hold a label map; use PNG")
    labels = read_image(path)
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise ConversionError(path, f"label map has {labels.GetNumberOfComponentsPerPixel()} channels; expected one")
    if labels.GetDimension() != source.GetDimension():
        raise ConversionError(path, f"label map is {labels.GetDimension()}D but the image is {source.GetDimension()}D")
    expected = geometry_record(source)
    if kind == "picture":  # pictures carry no geometry worth comparing
        expected = geometry_record(labels) | {"size": expected["size"]}
    problem = grid_mismatch(labels, expected)
    if problem is not None:
        raise ConversionError(path, f"label map does not match the image: {problem}")
    if orient is not None:
        labels = reorient(labels, orient)
    return _checked(path, relabel, sitk.GetArrayViewFromImage(labels))


def _file_boxes(
    path: Path, coords: BoxCoords, source: sitk.Image, image: sitk.Image, orient: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes of a boxes file on the output grid and their optional labels."""
    if coords not in ("voxel", "physical"):
        raise ValueError(f"box coordinates {coords!r} must be 'voxel' or 'physical'")
    raw, labels = read_boxes_file(path, source.GetDimension())

    def to_index(corner: np.ndarray) -> tuple[float, ...]:
        point = tuple(float(v) for v in corner)
        if coords == "voxel":
            if orient is None:
                return point
            point = source.TransformContinuousIndexToPhysicalPoint(point)
        return image.TransformPhysicalPointToContinuousIndex(point)

    return _checked(path, boxes_to_grid, raw, coords, source.GetSize(), to_index, image.GetSize()), labels
