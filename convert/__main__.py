"""Command line: ``python -m convert to-npz ...`` and ``python -m convert from-npz ...``.

Each bad input ends in one line ``error: <file>: <problem>`` on stderr; ``from-npz`` goes
on with the other cases and exits 1 if any failed. SIGINT/SIGTERM: one line, no temporary file
left, exit 130/143.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from challenge.folders import case_files
from challenge.interrupt import run_interruptible
from convert.errors import ConversionError
from convert.from_npz import DEFAULT_SUFFIX, MASK_SUFFIXES, convert_from_npz, load_geometry
from convert.intensity import CT_WINDOWS, INTENSITY_METHODS, resolve_window
from challenge.names import MODALITIES
from convert.to_npz import convert_to_npz


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert NIfTI / DICOM / 2D images to challenge npz files, and segs npz files back to "
        "label images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    to = commands.add_parser("to-npz", help="NIfTI / DICOM folder / 2D image -> challenge npz (+ gts, geometry JSON)")
    to.add_argument("image", type=Path, help="NIfTI/MHA/NRRD volume, DICOM series folder, or PNG/JPEG/TIFF/BMP image")
    to.add_argument(
        "--modality", required=True, help=f"one of {', '.join(MODALITIES)} (aliases such as MRI, XRay accepted)"
    )
    to.add_argument("--out", "--out-dir", dest="out_dir", type=Path, required=True, help="writes imgs/, gts/ and geometry/ below this folder")
    prompts = to.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--labels", type=Path, help="label map on the image grid: one box per label, plus a gts npz")
    prompts.add_argument("--boxes", type=Path, help="boxes file (.csv or .json; see docs/convert.md)")
    to.add_argument(
        "--box-coords", choices=("voxel", "physical"), default="voxel", help="coordinates in --boxes (default: voxel)"
    )
    to.add_argument("--id", dest="case_id", help="case id in <2D|3D>Box_<Modality>_<id>.npz (default: the input name)")
    to.add_argument("--margin", type=int, default=0, help="voxels added to every box side in x and y (default: 0)")
    to.add_argument("--margin-z", type=int, default=0, help="voxels added to every box side in z (default: 0)")
    to.add_argument(
        "--intensity", choices=("auto", *INTENSITY_METHODS), default="auto",
        help="auto: a window when --window* is given, else 2D pictures 8bit, CT volumes window, "
        "other volumes percentile (default: auto)",
    )
    presets = ", ".join(f"{name} {level:g}/{width:g}" for name, (level, width) in CT_WINDOWS.items())
    to.add_argument("--window", help=f"CT window preset: {presets} (default: abdomen)")
    to.add_argument("--window-level", type=float, help="custom CT window level (HU), with --window-width")
    to.add_argument("--window-width", type=float, help="custom CT window width (HU), with --window-level")
    to.add_argument(
        "--orient", help="re-orient volumes to this code first, e.g. LPS for axial slices (default: as stored)"
    )
    to.add_argument("--series-uid", help="DICOM series to read when the folder holds several")
    to.add_argument("--overwrite", action="store_true", help="replace existing output files")

    back = commands.add_parser("from-npz", help="segs npz -> label image on the source grid (NIfTI for 3D, PNG for 2D)")
    back.add_argument("segs", type=Path, nargs="+", help="segs npz files or folders of them")
    back.add_argument("--geometry", type=Path, required=True, help="the to-npz geometry/ folder (or one JSON file)")
    back.add_argument("--out", type=Path, required=True, help="output folder (or a file name for a single case)")
    back.add_argument(
        "--format", choices=sorted({s for v in MASK_SUFFIXES.values() for s in v}),
        help="output suffix in a folder (default: .nii.gz for 3D, .png for 2D)",
    )
    back.add_argument(
        "--box-labels", action="store_true", help="keep box numbers 1..N instead of the original label values"
    )
    back.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def run_to_npz(args: argparse.Namespace) -> int:
    window = resolve_window(args.window, args.window_level, args.window_width)
    window_given = args.window is not None or args.window_level is not None
    intensity = "window" if window_given and args.intensity == "auto" else args.intensity
    written = convert_to_npz(
        args.image, args.out_dir, args.modality, case_id=args.case_id, labels_path=args.labels,
        boxes_path=args.boxes, box_coords=args.box_coords, margin=args.margin, margin_z=args.margin_z,
        intensity=intensity, window=window, orient=args.orient, series_uid=args.series_uid,
        overwrite=args.overwrite,
    )
    for path in written:
        print(path)
    return 0


def _segs_files(paths: list[Path]) -> list[Path]:
    """Files given, and the cases of folders given (hidden temporary files skipped)."""
    files: list[Path] = []
    for path in paths:
        files.extend(case_files(path) if path.is_dir() else [path])
    return files


def run_from_npz(args: argparse.Namespace) -> int:
    files = _segs_files(args.segs)
    single_file = len(files) == 1 and not args.out.is_dir() and args.out.name.lower().endswith(
        tuple(s for v in MASK_SUFFIXES.values() for s in v)
    )
    failed = 0
    for segs in files:
        try:
            geometry = args.geometry if args.geometry.is_file() else args.geometry / f"{segs.stem}.json"
            if single_file:
                out = args.out
            else:
                suffix = args.format or DEFAULT_SUFFIX[int(load_geometry(geometry)["dimension"])]
                out = args.out / f"{segs.stem}{suffix}"
            print(convert_from_npz(segs, geometry, out, box_labels=args.box_labels, overwrite=args.overwrite))
        except (ConversionError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
        except Exception as exc:  # a bug must cost one case, not the rest of the folder
            print(f"error: {segs}: internal error ({type(exc).__name__}: {exc})", file=sys.stderr)
            failed += 1
    if not files:
        print("error: no segs npz files given", file=sys.stderr)
    return 1 if failed or not files else 0


def main(argv: list[str] | None = None) -> int:
    return run_interruptible("python -m convert", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_to_npz(args) if args.command == "to-npz" else run_from_npz(args)
    except (ConversionError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
