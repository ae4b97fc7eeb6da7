"""Synthetic NIfTI / DICOM / PNG inputs for the converter tests (written with SimpleITK)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

# A rotation about an oblique axis (no axis-aligned direction), anisotropic spacing.
OBLIQUE_DIRECTION = (
    0.5265407680703219, -0.8459449684120575, -0.08445060018180041,
    0.6275068678987428, 0.45374424378193307, -0.6327332320600423,
    0.5735764554964101, 0.28016650165668984, 0.7697511313033237,
)
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-12.3, 45.6, 78.9)


def volume_image(array: np.ndarray, direction=OBLIQUE_DIRECTION, spacing=SPACING, origin=ORIGIN) -> sitk.Image:
    """SimpleITK image of a (z, y, x) array on the given grid."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def ct_volume(seed: int = 0, shape=(12, 20, 16)) -> np.ndarray:
    """int16 HU-like values spanning more than every CT window."""
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


def label_volume(shape=(12, 20, 16)) -> np.ndarray:
    """Labels 5 and 2 (non-consecutive, deliberately out of order) and 9 on one voxel."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:5, 3:9, 4:7] = 5  # z 2..4, y 3..8, x 4..6
    labels[7, 10:12, 1:15] = 2  # z 7, y 10..11, x 1..14
    labels[11, 19, 15] = 9  # the last voxel
    return labels


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str = "1.2.826.0.1.3680043.2.1125.7") -> list[Path]:
    """One CT DICOM file per slice with positions/orientation from ``image``'s grid."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        tags = {
            "0008|0060": "CT",
            "0020|000d": series_uid + ".0",
            "0020|000e": series_uid,
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1),
            "0008|0018": f"{series_uid}.{k + 1}",
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        files.append(folder / f"{series_uid[-1]}_{k:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        writer.Execute(piece)
    return files


def write_scanner_dicom_series(image: sitk.Image, folder: Path, intercept: int = -1024) -> list[Path]:
    """The series a CT scanner writes, with pydicom (independent of ITK's writer): unsigned 16-bit
    stored values ``HU - intercept``, RescaleIntercept/RescaleSlope for the reader to apply, and
    ImagePositionPatient / ImageOrientationPatient / PixelSpacing from ``image``'s grid."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    stored = sitk.GetArrayFromImage(image).astype(np.int32) - intercept
    if stored.min() < 0 or stored.max() > np.iinfo(np.uint16).max:
        raise ValueError("HU values do not fit unsigned 16-bit storage with this intercept")
    d, (sx, sy, sz) = image.GetDirection(), image.GetSpacing()
    series = "1.2.826.0.1.3680043.2.1125.8"
    files = []
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, f"{series}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{series}.{k + 1}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = f"{series}.0", series, "CT"
        ds.PatientName, ds.PatientID, ds.InstanceNumber = "Phantom^CT", "phantom", k + 1
        ds.ImagePositionPatient = [f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])]
        ds.PixelSpacing, ds.SliceThickness = [f"{sy:.10f}", f"{sx:.10f}"], f"{sz:.10f}"  # row spacing first
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(intercept), "1", "HU"
        ds.PixelData = stored[k].astype("<u2").tobytes()
        files.append(folder / f"CT{k:04d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def save_segs(path: Path, segs: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, segs=segs.astype(np.uint16))
    return path


def written_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
