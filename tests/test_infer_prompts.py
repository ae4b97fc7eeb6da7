"""Interactive prompts on the predictor: clicks mapped like boxes, SAM's token layout, mask
prompts, grouping by token count, the error for folders without the points graph, and parity of
the exported points decoder with PyTorch through the predictor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _infer_fakes import fake_model

from infer.errors import ModelError
from infer.models import load_model
from infer.postprocess import mask_from_logits, valid_low_res
from infer.predictor import Prompt, SlicePredictor
from infer.preprocess import LITEMEDSAM_PREPROCESS, boxes_to_model, geometry_for, points_to_model


def _image(h: int = 96, w: int = 160) -> np.ndarray:
    image = np.full((h, w), 30, np.uint8)
    image[20:60, 30:110] = 220
    return np.repeat(image[:, :, None], 3, axis=2)


def test_clicks_map_like_box_corners():
    geometry = geometry_for(LITEMEDSAM_PREPROCESS, 300, 517)
    points = np.array([[10, 20], [516, 299], [3.7, 0]])
    box = boxes_to_model(np.array([[10, 20, 516, 299]]), LITEMEDSAM_PREPROCESS, geometry)
    mapped = points_to_model(points, LITEMEDSAM_PREPROCESS, geometry)
    assert mapped.dtype == np.float32 and mapped.shape == (3, 2)
    np.testing.assert_array_equal(mapped[:2].reshape(1, 4), box)
    assert mapped[2, 0] == np.trunc(3.7 * 256 / 517)


def test_a_mask_prompt_decodes_back_to_the_mask():
    predictor = SlicePredictor(fake_model(points=True))
    predictor.set_image(_image(180, 300))
    mask = np.zeros((180, 300), bool)
    mask[40:120, 50:210] = True
    logits = predictor.mask_prompt(mask)
    assert logits.shape == (256, 256) and logits.dtype == np.float32 and logits.max() == 8.0
    geometry = predictor.image_state.geometry
    back = mask_from_logits(logits, valid_low_res(LITEMEDSAM_PREPROCESS, geometry, 256), (180, 300))
    full = np.zeros_like(mask)
    full[back.top:back.top + back.mask.shape[0], back.left:back.left + back.mask.shape[1]] = back.mask
    assert (full & mask).sum() / (full | mask).sum() > 0.97


def _full(mask, shape):
    out = np.zeros(shape, bool)
    if mask is not None:
        out[mask.top:mask.top + mask.mask.shape[0], mask.left:mask.left + mask.mask.shape[1]] = mask.mask
    return out


def test_prompts_follow_sams_token_layout_and_group_by_token_count():
    model = fake_model(points=True)
    predictor = SlicePredictor(model)
    predictor.set_image(_image())
    one_click = Prompt(np.array([[60, 40]]), np.array([1]))
    with_box = Prompt(np.array([[60, 40]]), np.array([1]), box=np.array([30, 20, 109, 59]),
                      mask=np.zeros((256, 256), np.float32))
    two_clicks = Prompt(np.array([[60, 40], [100, 40]]), np.array([1, 0]))
    masks, iou, logits = predictor.predict_prompts([one_click, with_box, two_clicks])
    assert len(masks) == 3 and iou.shape == (3,) and logits.shape == (3, 256, 256)
    feeds = model.points_decoder.feeds
    assert len(feeds) == 2 and predictor.stats.decoder_calls == 2 and predictor.stats.decoded_boxes == 3
    np.testing.assert_array_equal(feeds[0]["point_labels"], [[1, -1]])  # no box: SAM's padding point
    np.testing.assert_array_equal(feeds[1]["point_labels"], [[1, 2, 3], [1, 0, -1]])
    np.testing.assert_array_equal(feeds[1]["has_mask_input"], [1, 0])
    truth = _image()[:, :, 0] > 100
    boxed = _full(masks[1], truth.shape)
    assert (boxed & truth).sum() / (boxed | truth).sum() > 0.95
    assert _full(masks[0], truth.shape)[40, 60] and not _full(masks[2], truth.shape)[40, 100]


def test_a_box_only_folder_refuses_clicks_with_a_clear_error():
    predictor = SlicePredictor(fake_model())
    predictor.set_image(_image())
    with pytest.raises(ModelError, match="has no decoder_points graph, so it decodes boxes only; re-export it"):
        predictor.predict_prompts([Prompt(np.array([[60, 40]]), np.array([1]))])


@pytest.fixture(scope="module")
def tiny_points_folder(tmp_path_factory):
    from train.export import Source, export_model
    from train.models import ARCHITECTURES, Architecture, sam_heads
    from train.models.sam import LiteMedSAM
    from train.models.tiny_vit import TinyViT

    def build() -> LiteMedSAM:
        encoder = TinyViT(embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2), out_chans=32)
        return LiteMedSAM(encoder, sam_heads.MaskDecoder(transformer_dim=32, num_heads=2, mlp_dim=64,
                                                         iou_head_hidden_dim=32))

    base = ARCHITECTURES["litemedsam"]
    arch = Architecture("tiny_points", build, base.preprocess, base.mask_selection, "test-only")
    torch.manual_seed(3)
    model = build().eval()
    folder = tmp_path_factory.mktemp("models") / "tiny_points"
    sidecar = export_model(model, arch, folder, Source(False, "random-init seed 3", seed=3))
    return folder, model, sidecar


def test_the_points_graph_is_exported_beside_the_box_graph_and_verified(tiny_points_folder):
    folder, _, sidecar = tiny_points_folder
    assert sidecar["prompts"] == {"decoder": ["box"], "decoder_points": ["box", "points", "mask"]}
    assert sidecar["files"]["decoder_points"] == {"onnx": "decoder_points.onnx", "openvino": "decoder_points.xml"}
    for backend, diffs in sidecar["verification"]["points_decoder"]["max_abs_diff"].items():
        assert diffs["logits_abs"] <= 1e-3 and diffs["iou_abs"] <= 1e-3, backend
    assert (folder / "decoder_points.xml").is_file() and (folder / "decoder_points.bin").is_file()


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_predict_prompts_matches_pytorch(tiny_points_folder, backend):
    folder, model, _ = tiny_points_folder
    predictor = SlicePredictor(load_model(folder, backend, 2))
    image = _image(150, 230)
    predictor.set_image(image)
    geometry = predictor.image_state.geometry
    prev = np.zeros((150, 230), bool)
    prev[30:70, 40:120] = True
    prompts = [Prompt(np.array([[50, 40], [90, 45]]), np.array([1, 0]), box=np.array([30, 20, 130, 80]),
                      mask=predictor.mask_prompt(prev)),
               Prompt(np.array([[70, 50]]), np.array([1]))]
    _, iou, logits = predictor.predict_prompts(prompts)
    emb = torch.from_numpy(predictor.image_state.embedding)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            coords = points_to_model(prompt.points, LITEMEDSAM_PREPROCESS, geometry)
            if prompt.box is not None:
                corners = boxes_to_model(prompt.box, LITEMEDSAM_PREPROCESS, geometry).reshape(2, 2)
                labels = np.r_[prompt.labels, 2, 3]
            else:
                corners, labels = np.zeros((1, 2), np.float32), np.r_[prompt.labels, -1]
            mask = np.zeros((1, 1, 256, 256), np.float32) if prompt.mask is None else prompt.mask[None, None]
            ref, ref_iou = model.decode_prompts(emb, torch.from_numpy(np.concatenate([coords, corners]))[None],
                                                torch.tensor(labels, dtype=torch.float32)[None],
                                                torch.from_numpy(mask), torch.tensor([float(prompt.mask is not None)]))
            assert np.abs(logits[i] - ref[0, 0].numpy()).max() <= 1e-3
            assert abs(iou[i] - ref_iou[0, 0].item()) <= 1e-3
