"""The public LiteMedSAM baseline's inference, rebuilt on our PyTorch model: the yardstick for fidelity.

It follows the behaviour of bowang-lab/MedSAM ``CVPR24_LiteMedSAM_infer.py`` (branch LiteMedSAM) as
docs/reference_baseline.md describes it, step by step and deliberately without any of our runtime's
code (no ``infer`` import), so that a shared mistake cannot hide:

* 2D: the (H, W, 3) image resized so its longest side is 256 (``cv2.INTER_AREA`` on uint8, sizes
  ``int(x * 256 / max(H, W) + 0.5)``), min-max over the whole resized image, zero padding at the
  bottom/right, one encoder call; each box scaled by ``int(b * 256 / max(H, W))`` and decoded alone
  (single-mask output), logits cropped to the resized region, bilinearly upsampled to (H, W)
  (``align_corners=False``), ``sigmoid > 0.5``; box k paints label k + 1, later boxes win.
* 3D: per box, from the middle slice ``int((z_max - z_min) / 2 + z_min)`` up to ``z_max`` and down to
  ``z_min`` (inclusive), each slice replicated to three channels and pre-processed as in 2D. The
  middle slice (and any slice after an empty mask) is prompted with the 3D box's xy; other slices
  with the bounding box of the neighbour's mask after an ``INTER_AREA`` resize of the uint8 label
  map to model space, grown by 3 px and clamped to [0, 256].

Deviations, none of which changes a mask: an embedding is computed once per slice and reused for
every box (the baseline re-encodes each (box, slice); the result is identical), and a single-slice
box is segmented instead of failing the baseline's ``z_min < z_max`` assertion.

    python -m train.reference -i IMGS -o SEGS [--checkpoint lite_medsam.pth]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from challenge.npz import read_npz, write_npz
from train.models import PromptableSegmenter, build_model
from train.models.sam import LiteMedSAM

SIZE = 256
BOX_SHIFT = 3


def _resize_longest_side(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = SIZE / max(h, w)
    return cv2.resize(image, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_AREA)


def _pad(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    pad = [(0, SIZE - h), (0, SIZE - w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad)


def _scale_box(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ratio = SIZE / max(shape)
    return np.array([int(v * ratio) for v in box], dtype=np.int64)


def _mask_box(mask_256: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask_256 > 0)
    h, w = mask_256.shape
    return np.array([max(0, xs.min() - BOX_SHIFT), max(0, ys.min() - BOX_SHIFT),
                     min(w, xs.max() + BOX_SHIFT), min(h, ys.max() + BOX_SHIFT)], dtype=np.int64)


class Baseline:
    """The baseline's encode / decode steps on one PyTorch LiteMedSAM."""

    def __init__(self, model: PromptableSegmenter) -> None:
        if not isinstance(model, LiteMedSAM):  # build_model's registry types every architecture alike
            raise TypeError(f"the baseline runs a LiteMedSAM, not a {type(model).__name__}")
        self.model = model.eval()

    @torch.no_grad()
    def encode(self, image_3c: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        resized = _resize_longest_side(image_3c)
        norm = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
        tensor = torch.tensor(_pad(norm)).float().permute(2, 0, 1).unsqueeze(0)
        return self.model.image_encoder(tensor), resized.shape[:2]

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, box_256: np.ndarray, new_size: tuple[int, int],
               original_size: tuple[int, int]) -> np.ndarray:
        pe = self.model.prompt_encoder
        box = torch.as_tensor(box_256[None], dtype=torch.float)
        logits, _ = self.model.mask_decoder(embedding, pe.get_dense_pe(), pe.embed_boxes(box), pe.dense_embedding())
        logits = logits[..., : new_size[0], : new_size[1]]
        up = F.interpolate(logits, size=original_size, mode="bilinear", align_corners=False)
        return (torch.sigmoid(up).squeeze().numpy() > 0.5).astype(np.uint8)


def segment_2d(baseline: Baseline, imgs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    h, w = imgs.shape[:2]
    embedding, new_size = baseline.encode(imgs)
    segs = np.zeros((h, w), dtype=np.uint16)
    for idx, box in enumerate(boxes, start=1):
        segs[baseline.decode(embedding, _scale_box(box, (h, w)), new_size, (h, w)) > 0] = idx
    return segs


def segment_3d(baseline: Baseline, imgs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    depth, h, w = imgs.shape
    segs = np.zeros(imgs.shape, dtype=np.uint16)
    embeddings: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}

    def embed(z: int) -> tuple[torch.Tensor, tuple[int, int]]:
        if z not in embeddings:
            embeddings[z] = baseline.encode(np.repeat(imgs[z][:, :, None], 3, axis=-1))
        return embeddings[z]

    for idx, box3d in enumerate(boxes, start=1):
        x_min, y_min, z_min, x_max, y_max, z_max = (int(v) for v in box3d)
        z_mid = int((z_max - z_min) / 2 + z_min)
        mid_box = _scale_box(np.array([x_min, y_min, x_max, y_max]), (h, w))
        temp = np.zeros(imgs.shape, dtype=np.uint8)  # the baseline's uint8 per-box volume
        sweeps = [(range(z_mid, min(z_max + 1, depth)), -1), (range(z_mid - 1, max(-1, z_min - 1), -1), +1)]
        for zs, neighbour in sweeps:
            for z in zs:
                embedding, new_size = embed(z)
                prompt = mid_box
                if z != z_mid:
                    previous = _resize_longest_side(temp[z + neighbour])
                    if previous.max() > 0:
                        prompt = _mask_box(_pad(previous))
                temp[z][baseline.decode(embedding, prompt, new_size, (h, w)) > 0] = idx % 256
        segs[temp > 0] = idx
    return segs


def segment_file(baseline: Baseline, path: Path) -> np.ndarray:
    arrays = read_npz(path, ("imgs", "boxes"))
    imgs, boxes = arrays["imgs"], arrays["boxes"]
    if path.name.startswith("3D"):
        return segment_3d(baseline, imgs, boxes)
    return segment_2d(baseline, imgs, boxes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.reference", description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--input", type=Path, required=True, help="folder of challenge .npz cases")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the segs .npz files")
    p.add_argument("--checkpoint", type=Path, help="LiteMedSAM weights (default: the verified official file)")
    args = p.parse_args(argv)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from assets import fetch, get

        checkpoint = fetch(get("lite_medsam.pth"))
    baseline = Baseline(build_model("litemedsam", checkpoint))
    args.output.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.input.glob("*.npz")):
        segs = segment_file(baseline, path)
        write_npz(args.output / path.name, {"segs": segs})
        print(f"{path.name}: {len(np.unique(segs)) - 1} labels", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
