"""Test doubles for the inference engine.

* :class:`FakeEncoder` / :class:`FakeDecoder`: numpy sessions honouring the exported-model tensor
  contract (infer/model_spec.py). The fake "segments" the bright pixels (normalised intensity
  above 0.5) inside the prompt box, so masks follow the image and 3D propagation has something
  to follow. Both count their calls.
* :func:`write_tiny_model`: a real model folder (sidecar + ONNX + OpenVINO IR) whose decoder
  returns exactly the prompt box (logit = distance inside the box + 0.5), so CLI tests can
  predict every output pixel, and run in milliseconds with both runtimes.
* :func:`make_work_dir`: a models folder laid out as the default routing table expects;
  :func:`tiny_work_dir` one of tiny models.
* :func:`run_cli` / :func:`save_case`: run ``python -m infer`` in-process, write an input case.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infer.model_spec import ModelSpec
from infer.models import LoadedModel
from infer.preprocess import EFFICIENTSAM_PREPROCESS, LITEMEDSAM_PREPROCESS, PreprocessSpec

LOW_RES = 256


def _low_res_grid(size: int) -> np.ndarray:
    """Model-input coordinate of each low-res pixel centre."""
    return (np.arange(LOW_RES, dtype=np.float32) + 0.5) * (size / LOW_RES) - 0.5


class FakeEncoder:
    """(1, 3, S, S) -> (1, 256, 64, 64): the block mean of channel 0, on every channel."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feeds["image"]
        assert image.shape == (1, 3, self.size, self.size) and image.dtype == np.float32
        self.calls += 1
        k = self.size // 64
        pooled = image[0, 0].reshape(64, k, 64, k).mean(axis=(1, 3))
        return {"image_embeddings": np.repeat(pooled[None, None], 256, axis=1).astype(np.float32)}


class FakeDecoder:
    """Logits positive on bright pixels inside each box; M masks (1 or 3) where mask ``best``
    is that and the others are empty, with predicted IoU highest for ``best``."""

    def __init__(self, size: int, mask_outputs: int = 1, best: int = 0) -> None:
        self.size, self.mask_outputs, self.best = size, mask_outputs, best
        self.calls = 0
        self.batch_sizes: list[int] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb, boxes = feeds["image_embeddings"], feeds["boxes"]
        assert emb.shape == (1, 256, 64, 64) and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
        self.calls += 1
        self.batch_sizes.append(len(boxes))
        grid = _low_res_grid(self.size)
        bright = np.repeat(np.repeat(emb[0, 0], 4, 0), 4, 1)  # 256 x 256, values in [0, 1] (min-max input)
        x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
        inside = np.minimum(np.minimum(grid[None, None, :] - x0, x1 - grid[None, None, :]),
                            np.minimum(grid[None, :, None] - y0, y1 - grid[None, :, None])) + 0.5
        logits = np.minimum(inside, (bright[None] - 0.5) * 8).astype(np.float32)
        masks = np.full((len(boxes), self.mask_outputs, LOW_RES, LOW_RES), -5.0, np.float32)
        masks[:, self.best] = logits
        iou = np.full((len(boxes), self.mask_outputs), 0.2, np.float32)
        iou[:, self.best] = 0.9
        return {"low_res_masks": masks, "iou_predictions": iou}


class FakePointsDecoder:
    """The points decoder's contract: the region is the box (labels 2, 3) when given, else the
    square of +-``reach`` model pixels around the foreground clicks; logits are positive on
    bright pixels inside it, except within ``reach / 2`` of a background click. Records every
    call's feeds in ``feeds``."""

    def __init__(self, size: int, reach: float = 24.0) -> None:
        self.size, self.reach = size, reach
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb, coords, labels = feeds["image_embeddings"], feeds["point_coords"], feeds["point_labels"]
        b = len(coords)
        assert emb.shape == (1, 256, 64, 64) and coords.shape[:2] == labels.shape and coords.shape[2] == 2
        assert feeds["mask_input"].shape == (b, 1, LOW_RES, LOW_RES) and feeds["has_mask_input"].shape == (b,)
        self.feeds.append(feeds)
        grid = _low_res_grid(self.size)
        bright = np.repeat(np.repeat(emb[0, 0], 4, 0), 4, 1)
        masks = np.full((b, 1, LOW_RES, LOW_RES), -5.0, np.float32)
        for i in range(b):
            corners, fg = coords[i][labels[i] >= 2], coords[i][labels[i] == 1]
            if len(corners) == 2:
                (x0, y0), (x1, y1) = corners
            elif len(fg):
                (x0, y0), (x1, y1) = fg.min(0) - self.reach, fg.max(0) + self.reach
            else:
                continue
            inside = np.minimum(np.minimum(grid[None, :] - x0, x1 - grid[None, :]),
                                np.minimum(grid[:, None] - y0, y1 - grid[:, None])) + 0.5
            logits = np.minimum(inside, (bright - 0.5) * 8)
            for x, y in coords[i][labels[i] == 0]:
                near = np.hypot(grid[None, :] - x, grid[:, None] - y) < self.reach / 2
                logits[near] = -5.0
            masks[i, 0] = logits
        return {"low_res_masks": masks, "iou_predictions": np.full((b, 1), 0.9, np.float32)}


def fake_spec(preprocess: PreprocessSpec = LITEMEDSAM_PREPROCESS, mask_outputs: int = 1,
              selection: str = "single", name: str = "fake") -> ModelSpec:
    files = {part: {"onnx": f"{part}.onnx", "openvino": f"{part}.xml"} for part in ("encoder", "decoder")}
    return ModelSpec(Path(name), name, "fake", preprocess, mask_outputs, selection,  # type: ignore[arg-type]
                     LOW_RES, files, False, "test double", {})


def fake_model(preprocess: PreprocessSpec = LITEMEDSAM_PREPROCESS, mask_outputs: int = 1,
               selection: str = "single", best: int = 0, points: bool = False) -> LoadedModel:
    """A LoadedModel over the numpy fakes (``model.encoder.calls`` counts encoder calls);
    ``points``: with a :class:`FakePointsDecoder`."""
    size = preprocess.image_size
    return LoadedModel(fake_spec(preprocess, mask_outputs, selection), FakeEncoder(size),
                       FakeDecoder(size, mask_outputs, best), points_decoder=FakePointsDecoder(size) if points else None)


def _tiny_graphs(size: int, mask_outputs: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = size // 64
    enc_nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("ReduceMean", ["pooled"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("Expand", ["grey", "emb_shape"], ["image_embeddings"]),
    ]
    enc = helper.make_graph(
        enc_nodes, "tiny_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64])],
        [numpy_helper.from_array(np.array([1, 256, 64, 64], np.int64), "emb_shape")])
    grid = _low_res_grid(size)
    consts = [
        numpy_helper.from_array(grid.reshape(1, 1, 1, LOW_RES), "gx"),
        numpy_helper.from_array(grid.reshape(1, 1, LOW_RES, 1), "gy"),
        numpy_helper.from_array(np.array([-1, 4, 1, 1], np.int64), "box_shape"),
        numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "split4"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1000.0, np.float32), "far"),
        numpy_helper.from_array(np.array([[0.2, 0.9, 0.5]], np.float32) if mask_outputs == 3
                                else np.ones((1, 1), np.float32), "iou"),
    ]
    nodes = [
        helper.make_node("Reshape", ["boxes", "box_shape"], ["b4"]),
        helper.make_node("Split", ["b4", "split4"], ["x0", "y0", "x1", "y1"], axis=1),
        helper.make_node("Sub", ["gx", "x0"], ["dx0"]),
        helper.make_node("Sub", ["x1", "gx"], ["dx1"]),
        helper.make_node("Sub", ["gy", "y0"], ["dy0"]),
        helper.make_node("Sub", ["y1", "gy"], ["dy1"]),
        helper.make_node("Min", ["dx0", "dx1", "dy0", "dy1"], ["inside"]),
        # depend on the embedding (times zero) so both inputs stay in the graph
        helper.make_node("ReduceMean", ["image_embeddings"], ["emb_mean"], keepdims=1),
        helper.make_node("Mul", ["emb_mean", "zero"], ["emb_zero"]),
        helper.make_node("Add", ["inside", "half"], ["inside_half"]),
        helper.make_node("Add", ["inside_half", "emb_zero"], ["best"]),
        helper.make_node("ReduceSum", ["boxes", "axis1"], ["box_sum"], keepdims=1),
        helper.make_node("Mul", ["box_sum", "zero"], ["box_zero"]),
        helper.make_node("Add", ["box_zero", "iou"], ["iou_predictions"]),
    ]
    if mask_outputs == 1:
        nodes.append(helper.make_node("Identity", ["best"], ["low_res_masks"]))
    else:  # mask 1 has the highest IoU and is the box; masks 0 and 2 are empty
        nodes.append(helper.make_node("Sub", ["best", "far"], ["empty"]))
        nodes.append(helper.make_node("Concat", ["empty", "best", "empty"], ["low_res_masks"], axis=1))
    dec = helper.make_graph(
        nodes, "tiny_decoder",
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("low_res_masks", TensorProto.FLOAT, ["B", mask_outputs, LOW_RES, LOW_RES]),
         helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, ["B", mask_outputs])],
        consts)
    models = []
    for graph in (enc, dec):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        models.append(model)
    return models


def write_tiny_model(folder: Path, kind: str = "litemedsam") -> Path:
    """Write a tiny model folder: ``litemedsam`` (256, longest side, one mask) or
    ``efficientsam`` (1024, stretch, three masks: only mask 1, the one with the highest predicted
    IoU, is the box)."""
    import onnx
    import openvino as ov

    preprocess = LITEMEDSAM_PREPROCESS if kind == "litemedsam" else EFFICIENTSAM_PREPROCESS
    mask_outputs = 1 if kind == "litemedsam" else 3
    folder.mkdir(parents=True, exist_ok=True)
    for part, model in zip(("encoder", "decoder"), _tiny_graphs(preprocess.image_size, mask_outputs)):
        onnx.save(model, folder / f"{part}.onnx")
        ov.save_model(ov.convert_model(str(folder / f"{part}.onnx")), str(folder / f"{part}.xml"),
                      compress_to_fp16=False)
    sidecar = {
        "format_version": 1, "name": folder.name, "arch": f"tiny_{kind}", "preprocess": preprocess.to_json(),
        "mask_outputs": mask_outputs, "mask_selection": "single" if mask_outputs == 1 else "best_iou",
        "low_res_size": LOW_RES,
        "files": {part: {"onnx": f"{part}.onnx", "openvino": f"{part}.xml"} for part in ("encoder", "decoder")},
        "source": {"trained": False, "description": "tiny test model: the mask is the prompt box"},
    }
    (folder / "model.json").write_text(json.dumps(sidecar, indent=2))
    return folder


def make_work_dir(root: Path, litemedsam: Path, efficientsam: Path, finetuned: Path | None = None) -> Path:
    """A models folder with the default routing table's folder names, as symlinks."""
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("litemedsam", litemedsam), ("litemedsam_finetuned", finetuned or litemedsam),
                         ("efficientsam_vitt", efficientsam)):
        (root / name).symlink_to(target, target_is_directory=True)
    return root


def tiny_work_dir(root: Path) -> Path:
    """A models folder of tiny LiteMedSAM- and EfficientSAM-style models under ``root``."""
    lite = write_tiny_model(root / "tiny_litemedsam", "litemedsam")
    esam = write_tiny_model(root / "tiny_efficientsam", "efficientsam")
    return make_work_dir(root / "work_dir", lite, esam)


def run_cli(capsys, inputs: Path, outputs: Path, models: Path, *extra: str) -> tuple[int, str, str]:
    """``python -m infer`` in this process: exit code, stdout, stderr."""
    from infer.cli import main

    code = main(["-i", str(inputs), "-o", str(outputs), "--models", str(models), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def save_case(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    """``folder/name`` as ``np.savez_compressed`` writes it (folder created)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / name, **arrays)
    return folder / name
