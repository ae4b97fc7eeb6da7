"""Export: every registered architecture to ONNX and OpenVINO, checked here independently of the
exporter's own verification, plus the CLI's refusals and its all-or-nothing folder writing."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infer.model_spec import load_model_spec
from infer.preprocess import boxes_to_model, preprocess_image
from train import export as export_cli
from train.export_verify import TOLERANCE, VerificationError
from train.models import ARCHITECTURES, Architecture, get_architecture, sam_heads
from train.models.sam import LiteMedSAM
from train.models.tiny_vit import TinyViT


def _run_backends(folder: Path, image: np.ndarray, boxes: np.ndarray):
    import onnxruntime as ort
    import openvino as ov

    out = {}
    enc = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    emb = enc.run(None, {"image": image})[0]
    out["onnxruntime"] = (emb, *dec.run(["low_res_masks", "iou_predictions"], {"image_embeddings": emb, "boxes": boxes}))
    core = ov.Core()
    enc = core.compile_model(str(folder / "encoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    dec = core.compile_model(str(folder / "decoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    emb = enc({"image": image})["image_embeddings"].copy()
    res = dec({"image_embeddings": emb, "boxes": boxes})
    out["openvino"] = (emb, res["low_res_masks"].copy(), res["iou_predictions"].copy())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_exports_a_verified_untrained_folder(name, export_random_model):
    folder = export_random_model(name, 0)
    spec = load_model_spec(folder)
    sidecar = json.loads((folder / "model.json").read_text())
    assert spec.arch == name and not spec.trained
    assert sidecar["source"] == {"trained": False, "seed": 0,
                                 "description": "random-init seed 0 (untrained; for tests and benchmarks only)"}
    arch = get_architecture(name)
    assert spec.preprocess == arch.preprocess and spec.mask_selection == arch.mask_selection
    assert set(sidecar["verification"]["max_abs_diff"]) == {"onnxruntime", "openvino"}
    points = name.startswith("litemedsam")  # SAM's prompt encoder: clicks and mask prompts too
    assert spec.accepts_points == points and ("points_decoder" in sidecar["verification"]) == points
    for backend, diffs in sidecar["verification"]["max_abs_diff"].items():
        assert all(diffs[k] <= TOLERANCE[k] for k in TOLERANCE), (backend, diffs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["litemedsam", "efficientsam_vitt"])  # vits: its export's own check above
def test_exported_backends_match_pytorch_on_a_real_image(name, export_random_model, real_mammography_case):
    """Independent of the exporter's check: a real image, a new box count, PyTorch rebuilt here."""
    folder = export_random_model(name, 0)
    spec = load_model_spec(folder)
    arch = get_architecture(name)
    case = np.load(real_mammography_case, allow_pickle=False)
    image, geometry = preprocess_image(case["imgs"], spec.preprocess)
    boxes = boxes_to_model(np.concatenate([case["boxes"], case["boxes"][:3] + 40]), spec.preprocess, geometry)
    torch.manual_seed(0)  # the exporter builds the random model exactly like this
    model = arch.build().eval()
    with torch.no_grad():
        ref_emb = model.embed(torch.from_numpy(image))
        ref_masks, ref_iou = model.decode(ref_emb, torch.from_numpy(boxes))
    m = model.mask_outputs
    for backend, (emb, masks, iou) in _run_backends(folder, image, boxes).items():
        assert emb.shape == (1, 256, 64, 64)
        assert masks.shape == (7, m, 256, 256) and iou.shape == (7, m)
        scale = float(ref_emb.abs().max())
        assert np.abs(emb - ref_emb.numpy()).max() / scale <= TOLERANCE["embedding_rel"], backend
        # The decoder on the backend's own embedding: the end-to-end error a user sees.
        assert np.abs(masks - ref_masks.numpy()).max() <= 10 * TOLERANCE["logits_abs"], backend
        assert np.abs(iou - ref_iou.numpy()).max() <= 10 * TOLERANCE["iou_abs"], backend
        agree = np.mean((masks > 0) == (ref_masks.numpy() > 0))
        assert agree >= 0.999, (backend, agree)


def _tiny_architecture() -> Architecture:
    """A LiteMedSAM-shaped model small enough to export in seconds (for the CLI tests)."""
    def build() -> LiteMedSAM:
        encoder = TinyViT(embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2), out_chans=32)
        return LiteMedSAM(encoder, sam_heads.MaskDecoder(transformer_dim=32, num_heads=2, mlp_dim=64,
                                                         iou_head_hidden_dim=32))
    base = ARCHITECTURES["litemedsam"]
    return Architecture("tiny_test", build, base.preprocess, base.mask_selection, "test-only tiny LiteMedSAM")


@pytest.fixture
def tiny(monkeypatch) -> Architecture:
    arch = _tiny_architecture()
    monkeypatch.setitem(ARCHITECTURES, arch.name, arch)
    return arch


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_checkpoint_export_records_its_source_and_force_replaces(tmp_path, tiny, capsys):
    torch.manual_seed(5)
    ckpt = tmp_path / "weights.pth"
    torch.save({"model": tiny.build().state_dict(), "epoch": 2}, ckpt)
    out = tmp_path / "models" / "tiny"
    assert export_cli.main(["--arch", "tiny_test", "--random-init", "--seed", "1", "--out", str(out)]) == 0
    first = json.loads((out / "model.json").read_text())
    assert first["source"]["trained"] is False

    assert export_cli.main(["--arch", "tiny_test", "--checkpoint", str(ckpt), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {out}: already exists (use --force to replace it)"
    assert json.loads((out / "model.json").read_text()) == first  # untouched

    assert export_cli.main(["--arch", "tiny_test", "--checkpoint", str(ckpt), "--out", str(out), "--force",
                            "--note", "trained on phantoms"]) == 0
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["note"] == "trained on phantoms" and "note" not in first
    assert sidecar["source"] == {"trained": True, "description": "checkpoint weights.pth", "checkpoint": "weights.pth",
                                 "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert sidecar["tensors"]["decoder"]["outputs"] == {"low_res_masks": ["B", 1, 256, 256],
                                                        "iou_predictions": ["B", 1]}
    assert sidecar["tensors"]["encoder"]["outputs"] == {"image_embeddings": [1, 32, 64, 64]}
    assert _siblings(out) == ["tiny"]  # no staging or moved-aside folder left
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.json", "encoder.onnx", "encoder.xml", "encoder.bin", "decoder.onnx", "decoder.xml", "decoder.bin",
         "decoder_points.onnx", "decoder_points.xml", "decoder_points.bin"])
    assert out.stat().st_mode & 0o755 == 0o755


def test_cli_refusals_leave_nothing_behind(tmp_path, tiny, capsys):
    out = tmp_path / "models" / "x"
    out.parent.mkdir()
    assert export_cli.main(["--arch", "nope", "--random-init", "--out", str(out)]) == 1
    assert "error: unknown architecture 'nope'; choose one of litemedsam, " in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 64)
    assert export_cli.main(["--arch", "tiny_test", "--checkpoint", str(bad), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {bad}: not a readable PyTorch checkpoint (not a torch.save file)"
    assert _siblings(out) == []


def test_failed_verification_leaves_no_folder(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(TOLERANCE, "logits_abs", -1.0)  # impossible to meet
    out = tmp_path / "models" / "x"
    torch.manual_seed(0)
    source = export_cli.Source(False, "random-init seed 0", seed=0)
    with pytest.raises(VerificationError, match=r"exported model differs from PyTorch: onnxruntime logits_abs = .* > -1"):
        export_cli.export_model(tiny.build(), tiny, out, source)
    assert _siblings(out) == []
