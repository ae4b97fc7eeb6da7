"""Model zoo: sizes, official parameter names, strict checkpoint loading and its error messages."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from train.checkpoint import CheckpointError, load_state_dict
from train.models import ARCHITECTURES, build_model, get_architecture, parameter_count
from train.models.sam_heads import token_masks

# docs/reference_systems.md section 2.1 and section 2.5: parameters per part, state_dict tensors per prefix.
EXPECTED = {
    "litemedsam": ({"image_encoder": 5_726_740, "prompt_encoder": 6_220, "mask_decoder": 4_058_340},
                   {"image_encoder": 298, "prompt_encoder": 17, "mask_decoder": 120}),
    "efficientsam_vitt": ({"image_encoder": 6_163_840, "prompt_encoder": 1_024, "mask_decoder": 4_058_340},
                          {"image_encoder": 153, "prompt_encoder": 5, "mask_decoder": 120}),
    "efficientsam_vits": ({"image_encoder": 22_353_664, "prompt_encoder": 1_024, "mask_decoder": 4_058_340},
                          {"image_encoder": 153, "prompt_encoder": 5, "mask_decoder": 120}),
}

# Representative official keys and shapes, from docs/reference_systems.md section 2.5.
OFFICIAL_KEYS = {
    "litemedsam": {
        "image_encoder.patch_embed.seq.0.c.weight": (32, 3, 1, 1),
        "image_encoder.patch_embed.seq.2.bn.running_var": (64,),
        "image_encoder.layers.0.blocks.1.conv2.c.weight": (256, 1, 3, 3),
        "image_encoder.layers.1.downsample.conv1.c.weight": (160, 128, 1, 1),
        "image_encoder.layers.2.downsample.conv2.c.weight": (320, 1, 3, 3),
        "image_encoder.layers.1.blocks.0.attn.attention_biases": (4, 49),
        "image_encoder.layers.2.blocks.5.attn.attention_biases": (5, 196),
        "image_encoder.layers.3.blocks.1.attn.qkv.weight": (960, 320),
        "image_encoder.layers.2.blocks.0.mlp.fc1.weight": (640, 160),
        "image_encoder.layers.3.blocks.0.local_conv.c.weight": (320, 1, 3, 3),
        "image_encoder.neck.0.weight": (256, 320, 1, 1),
        "image_encoder.neck.3.bias": (256,),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
        "prompt_encoder.point_embeddings.3.weight": (1, 256),
        "prompt_encoder.not_a_point_embed.weight": (1, 256),
        "prompt_encoder.mask_downscaling.3.weight": (16, 4, 2, 2),
        "prompt_encoder.mask_downscaling.6.weight": (256, 16, 1, 1),
        "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.weight": (128, 256),
        "mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.weight": (256, 128),
        "mask_decoder.transformer.layers.0.mlp.lin1.weight": (2048, 256),
        "mask_decoder.transformer.final_attn_token_to_image.q_proj.weight": (128, 256),
        "mask_decoder.transformer.norm_final_attn.weight": (256,),
        "mask_decoder.mask_tokens.weight": (4, 256),
        "mask_decoder.output_upscaling.0.weight": (256, 64, 2, 2),
        "mask_decoder.output_upscaling.1.weight": (64,),
        "mask_decoder.output_upscaling.3.weight": (64, 32, 2, 2),
        "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight": (32, 256),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    },
    "efficientsam_vitt": {
        "image_encoder.pos_embed": (1, 197, 192),
        "image_encoder.patch_embed.proj.weight": (192, 3, 16, 16),
        "image_encoder.blocks.11.attn.qkv.weight": (576, 192),
        "image_encoder.blocks.0.mlp.fc2.weight": (192, 768),
        "image_encoder.neck.2.weight": (256, 256, 3, 3),
        "prompt_encoder.invalid_points.weight": (1, 256),
        "prompt_encoder.bbox_bottom_right_embeddings.weight": (1, 256),
        "mask_decoder.transformer.layers.1.mlp.layers.0.0.weight": (2048, 256),
        "mask_decoder.transformer.layers.1.mlp.fc.weight": (256, 2048),
        "mask_decoder.final_output_upscaling_layers.0.1.weight": (64,),
        "mask_decoder.final_output_upscaling_layers.1.0.weight": (64, 32, 2, 2),
        "mask_decoder.output_hypernetworks_mlps.0.layers.1.0.weight": (256, 256),
        "mask_decoder.output_hypernetworks_mlps.0.fc.weight": (32, 256),
        "mask_decoder.iou_prediction_head.fc.weight": (4, 256),
    },
}


@pytest.fixture(scope="module")
def litemedsam():
    torch.manual_seed(0)
    return build_model("litemedsam")


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Fill every float tensor with well-scaled random values, so no layer is an identity by accident."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if "running_var" in name:
                values = torch.rand(t.shape, generator=gen) * 0.2 + 0.9
            elif t.ndim >= 2:  # weights: unit-variance outputs for unit-variance inputs
                values = torch.randn(t.shape, generator=gen) / math.sqrt(t[0].numel())
            elif name.endswith("weight"):  # norm scales near 1
                values = 1 + 0.1 * torch.randn(t.shape, generator=gen)
            else:
                values = 0.1 * torch.randn(t.shape, generator=gen)
            t.copy_(values)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_parameter_counts_and_key_counts(name):
    model = build_model(name)
    params, keys = EXPECTED[name]
    assert {part: parameter_count(getattr(model, part)) for part in params} == params
    assert Counter(k.split(".")[0] for k in model.state_dict()) == keys


def test_totals_match_the_published_counts():
    assert parameter_count(build_model("litemedsam")) == 9_791_300
    # EfficientSAM's published totals include the 2 x 128 random-Fourier matrix (a buffer).
    pe = 2 * 128
    assert parameter_count(build_model("efficientsam_vitt")) + pe == 10_223_460
    assert parameter_count(build_model("efficientsam_vits")) + pe == 26_413_284


@pytest.mark.parametrize("name", list(OFFICIAL_KEYS))
def test_official_key_names_and_shapes(name):
    state = build_model(name).state_dict()
    got = {k: tuple(state[k].shape) for k in OFFICIAL_KEYS[name] if k in state}
    assert got == OFFICIAL_KEYS[name]
    assert not any("attention_bias_idxs" in k or k.endswith(".ab") for k in state)


def test_unknown_architecture_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown architecture 'litemedsam2'; choose one of litemedsam, litemedsam_small, "
                                         r"efficientsam_vitt, efficientsam_vits"):
        build_model("litemedsam2")
    assert set(ARCHITECTURES) >= {"litemedsam", "efficientsam_vitt", "efficientsam_vits"}


def test_built_models_are_in_eval_mode(litemedsam):
    assert not litemedsam.training
    assert all(not m.training for m in litemedsam.modules())


@pytest.mark.parametrize("layout", ["plain", "model_key", "training_checkpoint", "ddp_prefix"])
def test_strict_round_trip_through_a_file(tmp_path, layout):
    source = build_model("litemedsam")
    _randomise(source, seed=1)
    state = source.state_dict()
    payload = {
        "plain": state,
        "model_key": {"model": state},
        "training_checkpoint": {"model": state, "epoch": 3, "optimizer": {"state": {}, "param_groups": []},
                                "loss": 0.5},
        "ddp_prefix": {f"module.{k}": v for k, v in state.items()},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    loaded = build_model("litemedsam", checkpoint=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Non-persistent buffers (Fourier grid, bias index tables) are rebuilt identically.
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[20.0, 30.0, 120.0, 160.0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(embedding, boxes), source.eval().decode(embedding, boxes),
                                   rtol=0, atol=0)


def test_renamed_key_is_named_in_the_error(tmp_path):
    state = build_model("litemedsam").state_dict()
    state["mask_decoder.iou_token.weights"] = state.pop("mask_decoder.iou_token.weight")
    path = tmp_path / "lite_medsam.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        build_model("litemedsam", checkpoint=path)
    assert str(err.value) == (
        f"{path}: does not fit LiteMedSAM: 1 missing keys: mask_decoder.iou_token.weight; "
        "1 unexpected keys: mask_decoder.iou_token.weights")


def test_shape_mismatch_and_long_lists_are_summarised(tmp_path):
    state = build_model("litemedsam").state_dict()
    state["image_encoder.neck.0.weight"] = torch.zeros(128, 320, 1, 1)
    for key in [k for k in state if k.startswith("prompt_encoder.")]:
        del state[key]
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as err:
        build_model("litemedsam", checkpoint=path)
    message = str(err.value)
    assert message.startswith(f"{path}: does not fit LiteMedSAM: 17 missing keys: prompt_encoder.")
    assert "(+12 more)" in message
    assert "1 shape mismatches: image_encoder.neck.0.weight (128, 320, 1, 1) vs model (256, 320, 1, 1)" in message


def test_efficientsam_checkpoint_into_litemedsam_fails_clearly(tmp_path):
    path = tmp_path / "efficient_sam_vitt.pt"
    torch.save({"model": build_model("efficientsam_vitt").state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"does not fit LiteMedSAM: 352 missing keys: .*195 unexpected keys: .*1 shape mismatches"):
        build_model("litemedsam", checkpoint=path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model": build_model("litemedsam").state_dict(), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: holds pickled Python objects \(print\), which are refused \(weights_only=True\)"):
        load_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_missing_corrupt_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth: checkpoint file not found$"):
        load_state_dict(tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    torch.save(build_model("litemedsam").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: not a readable PyTorch checkpoint \("):
        load_state_dict(truncated)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a readable PyTorch checkpoint \("):
        load_state_dict(junk)
    nothing = tmp_path / "nothing.pth"
    torch.save({"epoch": 1}, nothing)
    with pytest.raises(CheckpointError, match=r"nothing\.pth: no state_dict found .*got epoch\)"):
        load_state_dict(nothing)


def test_box_embedding_is_the_sam_fourier_formula(litemedsam):
    """Independent NumPy evaluation of docs/reference_systems.md section 2.3: (box + 0.5) / 256, 2c - 1, @ G, x 2 pi, [sin, cos]."""
    pe = litemedsam.prompt_encoder
    boxes = np.array([[10, 20, 100, 200], [0, 0, 255, 255]], dtype=np.float32)
    with torch.no_grad():
        got = pe.embed_boxes(torch.from_numpy(boxes)).numpy()
    gauss = pe.pe_layer.positional_encoding_gaussian_matrix.numpy().astype(np.float64)
    corners = (boxes.reshape(-1, 2, 2).astype(np.float64) + 0.5) / 256
    proj = 2 * math.pi * ((2 * corners - 1) @ gauss)
    want = np.concatenate([np.sin(proj), np.cos(proj)], axis=-1)
    want[:, 0] += pe.point_embeddings[2].weight.detach().numpy()[0]
    want[:, 1] += pe.point_embeddings[3].weight.detach().numpy()[0]
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_dense_positional_encoding_uses_cell_centres(litemedsam):
    pe = litemedsam.prompt_encoder
    grid = pe.get_dense_pe()[0].detach().numpy()
    gauss = pe.pe_layer.positional_encoding_gaussian_matrix.numpy().astype(np.float64)
    y, x = 5, 40
    proj = 2 * math.pi * ((2 * np.array([(x + 0.5) / 64, (y + 0.5) / 64]) - 1) @ gauss)
    np.testing.assert_allclose(grid[:, y, x], np.concatenate([np.sin(proj), np.cos(proj)]), atol=2e-5)


@pytest.mark.parametrize("name", ["litemedsam", "efficientsam_vitt"])
def test_batched_decoding_equals_one_box_at_a_time(name):
    torch.manual_seed(3)
    model = build_model(name)
    _randomise(model, seed=4)
    size = get_architecture(name).preprocess.image_size
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(5))
    boxes = torch.tensor([[10, 10, 80, 90], [0, 0, 255, 255], [100, 50, 140, 60], [30, 200, 31, 201]],
                         dtype=torch.float32) * (size / 256)
    with torch.no_grad():
        masks, iou = model.decode(embedding, boxes)
        for i in range(len(boxes)):
            one_mask, one_iou = model.decode(embedding, boxes[i:i + 1])
            torch.testing.assert_close(one_mask, masks[i:i + 1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(one_iou, iou[i:i + 1], rtol=1e-5, atol=1e-5)
    m = model.mask_outputs
    assert masks.shape == (4, m, 256, 256) and iou.shape == (4, m)
    # Different boxes must give different masks (the prompt reaches the output).
    assert (masks[0] - masks[1]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["litemedsam", "efficientsam_vitt"])
def test_one_embedding_for_all_boxes_equals_one_embedding_per_box(name):
    """Inference passes one (1, C, h, w) embedding for B boxes, which the decoder broadcasts;
    training passes B embeddings. Both must give the same masks."""
    model = build_model(name)
    _randomise(model, seed=6)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(7))
    boxes = torch.tensor([[10, 10, 80, 90], [0, 0, 255, 255], [100, 50, 140, 60]], dtype=torch.float32)
    with torch.no_grad():
        shared = model.decode(embedding, boxes)
        per_box = model.decode(embedding.repeat(3, 1, 1, 1), boxes)
    for a, b in zip(shared, per_box):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_token_masks_are_the_hypernetwork_dot_products():
    torch.manual_seed(8)
    hypernetworks = nn.ModuleList(nn.Linear(16, 8) for _ in range(4))
    upscaled, tokens = torch.randn(2, 8, 12, 10), torch.randn(2, 4, 16)
    for chosen in (range(1), range(1, 4)):
        masks = token_masks(upscaled, hypernetworks, tokens, chosen)
        hyper = torch.stack([hypernetworks[i](tokens[:, i]) for i in chosen], dim=1)
        torch.testing.assert_close(masks, torch.einsum("bmc,bcyx->bmyx", hyper, upscaled), rtol=1e-5, atol=1e-5)
