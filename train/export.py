"""Export a zoo model to a self-describing model folder (ONNX + OpenVINO IR + ``model.json``).

    python -m train.export --arch litemedsam --checkpoint lite_medsam.pth --out work_dir/litemedsam
    python -m train.export --checkpoint runs/<run>/best.pth --out work_dir/<name>  # --arch from the run
    python -m train.export --arch efficientsam_vitt --random-init --seed 0 --out /tmp/esam_random

The folder layout and tensor contract are those of :mod:`infer.model_spec`. After writing the
files, the export runs them in ONNX Runtime and OpenVINO against PyTorch on fixed random
inputs (several box counts) and fails, naming the worst difference, beyond :data:`TOLERANCE`.
The folder is assembled under a temporary name and renamed at the end, so a failed export
never leaves half a model behind.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from assets import by_sha256
from infer.model_spec import (DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, FORMAT_VERSION,
                              POINTS_DECODER, POINTS_DECODER_INPUTS, SIDECAR_NAME)
from train.checkpoint import CheckpointError, load_weights, sha256_of
from train.export_graphs import export_onnx, onnx_to_openvino
from train.export_verify import TOLERANCE, VerificationError, verify_folder
from train.models import ARCHITECTURES, Architecture, PromptableSegmenter, get_architecture, parameter_count
from train.train_checkpoint import recorded_arch

# 1.1: TinyViT graphs without the transposes around local_conv; 1.2: decoder graphs that compute
# the image side once per call, not per prompt (docs/encoder_speed.md)
EXPORTER_VERSION = "1.2"


@dataclass(frozen=True)
class Source:
    """Where the weights came from: a checkpoint file or a seeded random initialisation."""

    trained: bool
    description: str
    checkpoint: str | None = None
    sha256: str | None = None
    seed: int | None = None
    provenance: dict | None = None  # the assets catalogue entry when the checkpoint is a catalogued file

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import openvino

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__}


def _parts(model: PromptableSegmenter) -> tuple[str, ...]:
    return ("encoder", "decoder", POINTS_DECODER) if model.accepts_points else ("encoder", "decoder")


def _points_tensors(emb: list[int], low: int, m: int) -> dict:
    names = POINTS_DECODER_INPUTS
    return {
        "inputs": {names[0]: emb, names[1]: ["B", "N", 2], names[2]: ["B", "N"], names[3]: ["B", 1, low, low],
                   names[4]: ["B"]},
        "outputs": {DECODER_OUTPUTS[0]: ["B", m, low, low], DECODER_OUTPUTS[1]: ["B", m]},
        "point_coordinates": "xy in model-input pixels (mapped like boxes by infer.preprocess)",
        "point_labels": "1 foreground, 0 background, 2 / 3 box corners, -1 padding point",
    }


def _sidecar(arch: Architecture, model: PromptableSegmenter, name: str, source: Source, report: dict,
             note: str | None) -> dict:
    size = arch.preprocess.image_size
    emb = [1, *report["embedding_shape"][1:]]
    low = report["low_res_size"]
    m = model.mask_outputs
    prompts = {"decoder": ["box"], **({POINTS_DECODER: ["box", "points", "mask"]} if model.accepts_points else {})}
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "arch": arch.name,
        "description": arch.description,
        **({"note": note} if note else {}),
        "parameters": parameter_count(model),
        "preprocess": arch.preprocess.to_json(),
        "mask_outputs": m,
        "mask_selection": arch.mask_selection,
        "low_res_size": low,
        "files": {part: {"onnx": f"{part}.onnx", "openvino": f"{part}.xml"} for part in _parts(model)},
        "prompts": prompts,
        "tensors": {
            "encoder": {"inputs": {ENCODER_INPUT: [1, 3, size, size]}, "outputs": {ENCODER_OUTPUT: emb}},
            "decoder": {
                "inputs": {DECODER_INPUTS[0]: emb, DECODER_INPUTS[1]: ["B", 4]},
                "outputs": {DECODER_OUTPUTS[0]: ["B", m, low, low], DECODER_OUTPUTS[1]: ["B", m]},
                "box_coordinates": "XYXY in model-input pixels (after box scaling by infer.preprocess)",
            },
            **({POINTS_DECODER: _points_tensors(emb, low, m)} if model.accepts_points else {}),
        },
        "source": source.to_json(),
        "exporter": {"name": "train.export", "version": EXPORTER_VERSION, **_library_versions()},
        "verification": report["verification"],
    }


def export_model(model: PromptableSegmenter, arch: Architecture, out: Path, source: Source,
                 force: bool = False, name: str | None = None, note: str | None = None) -> dict:
    """Write and verify the model folder ``out``; returns the sidecar.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is false.
        VerificationError: an exported backend differs from PyTorch beyond the tolerance.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the container's non-root user must read it
    try:
        export_onnx(model, arch.preprocess.image_size, staging)
        for part in _parts(model):
            onnx_to_openvino(staging / f"{part}.onnx", staging / f"{part}.xml")
        report = verify_folder(model, arch.preprocess.image_size, staging)
        sidecar = _sidecar(arch, model, name or out.name, source, report, note)
        (staging / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sidecar


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing target is moved aside first and deleted last."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{new.name}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _arch_name(given: str | None, checkpoint: Path | None) -> str:
    """``--arch``, else the architecture a training checkpoint records; both must agree when both exist."""
    recorded = recorded_arch(checkpoint) if checkpoint is not None else None
    if given and recorded and given != recorded:
        raise ValueError(f"--arch {given} but {checkpoint} was trained as {recorded}")
    name = given or recorded
    if name is None:
        raise ValueError("--arch is needed: " + (f"{checkpoint} records no architecture" if checkpoint
                                                 else "--random-init has no checkpoint to take it from"))
    return name


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", help=f"architecture: {', '.join(ARCHITECTURES)} (default: the one a training "
                   "checkpoint records)")
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="state_dict file (plain, {'model': ...}, DDP prefix ok)")
    weights.add_argument("--random-init", action="store_true", help="untrained weights, for tests and benchmarks")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. work_dir/litemedsam")
    p.add_argument("--name", help="model name recorded in the sidecar (default: the folder name)")
    p.add_argument("--note", help="free text recorded in the sidecar (what the model is for, how it was trained)")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true", help="replace an existing folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        arch = get_architecture(_arch_name(args.arch, args.checkpoint))
        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out}: already exists (use --force to replace it)")
        if args.random_init:
            torch.manual_seed(args.seed)
            model = arch.build()
            source = Source(False, f"random-init seed {args.seed} (untrained; for tests and benchmarks only)",
                            seed=args.seed)
        else:
            model = arch.build()
            load_weights(model, args.checkpoint)
            digest = sha256_of(args.checkpoint)
            known = by_sha256(digest)
            source = Source(True, f"checkpoint {args.checkpoint.name}", checkpoint=args.checkpoint.name,
                            sha256=digest, provenance=known.provenance() if known else None)
        sidecar = export_model(model, arch, args.out, source, force=args.force, name=args.name, note=args.note)
    except (ValueError, FileExistsError, CheckpointError, VerificationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    worst = sidecar["verification"]["max_abs_diff"]
    print(f"exported {arch.name} ({sidecar['source']['description']}) to {args.out}; "
          f"max |diff| vs PyTorch: {json.dumps(worst)} (tolerance {json.dumps(TOLERANCE)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
