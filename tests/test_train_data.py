"""train.data and train.losses: batch order, sampling, augmentation, split, loss values."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from infer.preprocess import LITEMEDSAM_PREPROCESS, geometry_for, preprocess_image
from train.cache import Entry, open_cache
from train.data import (Augment, EpochBatchSampler, SampleKey, TrainSamples, ValSamples, balanced_weights,
                        split_by_source)
from train.losses import hard_dice, mask_iou, segmentation_loss, soft_dice_loss
from train.prepare import prepare


def test_one_global_batch_split_over_ranks_is_the_single_process_batch_and_resume_skips_exactly():
    single = EpochBatchSampler(range(10, 30), 4, 20, seed=3)
    ranks = [EpochBatchSampler(range(10, 30), 2, 20, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in (single, *ranks):
        s.set_epoch(1)
    one, two = list(single), [list(r) for r in ranks]
    assert len(one) == len(two[0]) == len(two[1]) == 5
    assert all(batch == two[0][t] + two[1][t] for t, batch in enumerate(one))
    assert sorted(k.entry for b in one for k in b) == list(range(10, 30))  # a permutation
    assert [k.position for b in one for k in b] == list(range(20)) and {k.epoch for b in one for k in b} == {1}
    single.set_epoch(2)
    assert [k.entry for b in single for k in b] != [k.entry for b in one for k in b]
    single.set_epoch(1, start_step=3)
    assert len(single) == 2 and list(single) == one[3:]
    with pytest.raises(ValueError, match=r"^3 samples per epoch make no global batch of 2 x 2 process\(es\)"):
        EpochBatchSampler(range(3), 2, 3, seed=0, world_size=2)


def _entry(source: str, modality: str) -> Entry:
    return Entry(source, -1, modality, "D", source, 0, 8, 8, (1,))


def test_balanced_draw_gives_every_modality_the_same_share():
    entries = [_entry(f"ct{i}", "CT") for i in range(18)] + [_entry(f"pet{i}", "PET") for i in range(2)]
    idx = list(range(20))
    sampler = EpochBatchSampler(idx, 10, 4000, seed=0, weights=balanced_weights(entries, idx))
    counts = Counter(entries[k.entry].modality for b in sampler for k in b)
    assert abs(counts["PET"] - 2000) < 150 and counts["CT"] + counts["PET"] == 4000
    plain = EpochBatchSampler(idx, 10, 4000, seed=0)
    assert Counter(entries[k.entry].modality for b in plain for k in b)["PET"] == 400


def test_split_holds_out_whole_sources_per_modality():
    entries = ([Entry(f"ct{i // 3}", i % 3, "CT", "D", "f", 0, 8, 8, (1,)) for i in range(30)]
               + [_entry("pet0", "PET")] + [_entry(f"us{i}", "US") for i in range(4)])
    train, val = split_by_source(entries, range(len(entries)), 0.2, seed=1)
    assert sorted(train + val) == list(range(len(entries)))
    val_sources = {entries[i].source for i in val}
    assert not val_sources & {entries[i].source for i in train}
    assert Counter(s[:2] for s in val_sources) == {"ct": 2, "us": 1}  # PET has one file: all of it trains
    assert split_by_source(entries, range(len(entries)), 0.0, seed=1) == (list(range(len(entries))), [])


@pytest.fixture(scope="module")
def two_object_cache(tmp_path_factory):
    """One 2D image (120 x 90, objects of intensity 200 and 100 on 40) and a 3-slice volume."""
    root = tmp_path_factory.mktemp("data")
    image, gts = np.full((120, 90, 3), 40, np.uint8), np.zeros((120, 90), np.uint8)
    image[10:50, 20:60], gts[10:50, 20:60] = 200, 1
    image[70:100, 5:30], gts[70:100, 5:30] = 100, 2
    (root / "Dermoscopy" / "A").mkdir(parents=True)
    np.savez(root / "Dermoscopy" / "A" / "img.npz", imgs=image, gts=gts)
    vol, vgt = np.zeros((3, 50, 60), np.uint8), np.zeros((3, 50, 60), np.uint8)
    vol[1, 10:30, 10:40], vgt[1, 10:30, 10:40] = 255, 3
    (root / "CT" / "B").mkdir(parents=True)
    np.savez(root / "CT" / "B" / "vol.npz", imgs=vol, gts=vgt)
    prepare(root, root.parent / "cache", LITEMEDSAM_PREPROCESS)
    cache = open_cache(root.parent / "cache")
    assert [e.source for e in cache.entries] == ["CT/B/vol.npz", "Dermoscopy/A/img.npz"]  # sorted by path
    return cache, image, gts


def test_samples_keep_image_mask_and_box_aligned_under_augmentation(two_object_cache):
    cache, _, _ = two_object_cache
    samples = TrainSamples(cache, Augment(box_margin=5, max_shift=4, flip=True), seed=7)
    seen_labels, flips = set(), set()
    for position in range(40):
        s = samples[SampleKey(1, 0, position)]
        image, mask, box = s["image"][0].numpy(), s["mask"][0].numpy() > 0, s["box"].numpy()
        values, counts = np.unique(image[mask], return_counts=True)
        value = values[counts.argmax()]  # the object's intensity (its resized edges are blended)
        # Object 1 is the brightest (1.0); object 2 (100) sits on the background's 40 or a shift's 0 fill.
        assert counts.max() > 0.8 * mask.sum() and value in (1.0, 0.375, 0.5)
        seen_labels.add(float(value == 1.0))
        ys, xs = np.nonzero(mask)
        tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.all(box[:2] <= tight[:2]) and np.all(box[2:] >= tight[2:])
        assert np.all(tight[:2] - box[:2] <= 5) and np.all(box[2:] - tight[2:] <= 5)
        assert box.min() >= 0 and box[2] <= 191 and box[3] <= 255  # inside the valid 256 x 192 region
        assert not image[:, 192:].any() and not mask[:, 192:].any()  # padding stays right/bottom
        flips.add(bool(xs.mean() > 96))
        again = samples[SampleKey(1, 0, position)]
        assert all(torch.equal(s[k], again[k]) for k in s)  # a key fixes the sample
    assert seen_labels == {0.0, 1.0} and flips == {True, False}


def test_unaugmented_sample_is_exactly_infer_preprocessing_with_the_tight_box(two_object_cache):
    cache, image, gts = two_object_cache
    s = TrainSamples(cache, Augment(box_margin=0, max_shift=0, flip=False), seed=0)[SampleKey(1, 0, 0)]
    assert np.array_equal(s["image"].numpy(), preprocess_image(image, LITEMEDSAM_PREPROCESS)[0][0])
    _, labels = cache.arrays(cache.entries[1])
    (label,) = [v for v in (1, 2) if np.array_equal(s["mask"][0, :256, :192].numpy() > 0, labels == v)]
    ys, xs = np.nonzero(labels == label)
    assert s["box"].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    val = ValSamples(cache, [0, 1], box_margin=2, limit=10, seed=0)
    assert [(cache.entries[i].source, lab) for i, lab in val.pairs] == [("CT/B/vol.npz", 3),
                                                                         ("Dermoscopy/A/img.npz", 1),
                                                                         ("Dermoscopy/A/img.npz", 2)]
    g = geometry_for(LITEMEDSAM_PREPROCESS, 50, 60)
    assert val[0]["valid"][0].sum().item() == g.resized_h * g.resized_w == 213 * 256
    assert len(ValSamples(cache, [0, 1], 2, limit=2, seed=0)) == 2


def test_loss_terms_match_hand_computed_values():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[-2.0, -2.0], [-2.0, -2.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    p = torch.sigmoid(logits[0, 0]).flatten().tolist()
    t = [1, 0, 1, 1]
    dice0 = 1 - (2 * sum(a * b for a, b in zip(p, t)) + 1e-5) / (sum(a * a for a in p) + 3 + 1e-5)
    assert soft_dice_loss(logits, target)[0].item() == pytest.approx(dice0, rel=1e-6)
    assert hard_dice(logits, target).tolist() == pytest.approx([2 * 2 / (2 + 3), 1.0])  # both empty -> 1
    assert mask_iou(logits, target).tolist() == pytest.approx([2 / 3, 1.0])
    iou_pred = torch.tensor([[0.5], [0.25]])
    terms = segmentation_loss(logits, iou_pred, target)
    assert terms.iou.item() == pytest.approx(((0.5 - 2 / 3) ** 2 + (0.25 - 1) ** 2) / 2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item()
    assert terms.bce.item() == pytest.approx(bce)
    assert terms.total.item() == pytest.approx(terms.dice.item() + bce + terms.iou.item())
    assert not math.isnan(terms.total.item())


def test_training_takes_only_preprocessing_and_modality_helpers_from_infer():
    import ast
    from pathlib import Path

    train = Path(__file__).resolve().parents[1] / "train"
    used = {}
    for path in sorted(train.rglob("*.py")):
        if path.name.startswith("export"):  # the exporter writes infer's model-folder contract by design
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name == "infer" or name.startswith("infer."):
                    used.setdefault(name, set()).add(path.name)
    assert set(used) == {"infer.preprocess"}, used


def _flip_shift(array: np.ndarray, flip_x: bool, flip_y: bool, dy: int, dx: int) -> np.ndarray:
    """The test's own copy of a sample's geometry: flips, then a zero-filled translation by (dy, dx)."""
    array = array[:, ::-1] if flip_x else array
    array = array[::-1] if flip_y else array
    h, w = array.shape[:2]
    py, px = abs(dy), abs(dx)  # out[y, x] = array[y - dy, x - dx], zero where that is outside
    padded = np.pad(array, ((py, py), (px, px)) + ((0, 0),) * (array.ndim - 2))
    return padded[py - dy:py - dy + h, px - dx:px - dx + w]


def test_k_objects_of_a_sample_share_the_image_and_one_flip_and_shift(two_object_cache):
    cache, _, _ = two_object_cache
    image, labels = cache.arrays(cache.entries[1])  # 256 x 192, objects 1 and 2
    h, w = labels.shape
    samples = TrainSamples(cache, Augment(box_margin=5, max_shift=4, flip=True), seed=7, objects=3)
    geometries, own_margins = set(), False
    for position in range(24):
        s = samples[SampleKey(1, 0, position)]
        assert s["image"].shape == (3, 256, 256) and s["mask"].shape == (3, 256, 256) and s["box"].shape == (12,)
        masks, boxes = s["mask"].numpy()[:, :h, :w] > 0, s["box"].numpy().reshape(3, 4)
        assert not s["mask"][:, :, w:].any()
        # The one geometry that carries the cached label map onto every mask also gives the sample's image.
        found = [(fx, fy, dy, dx) for fx in (False, True) for fy in (False, True)
                 for dy in range(-4, 5) for dx in range(-4, 5)
                 if all(any(np.array_equal(m, _flip_shift(labels, fx, fy, dy, dx) == v) for v in (1, 2))
                        for m in masks)]
        assert len(found) == 1, (position, found)
        moved = _flip_shift(image, *found[0])
        assert np.array_equal(s["image"].numpy(), preprocess_image(moved, LITEMEDSAM_PREPROCESS)[0][0])
        geometries.add(found[0])
        for mask, box in zip(masks, boxes):
            ys, xs = np.nonzero(mask)
            tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
            assert np.all(tight[:2] - box[:2] >= 0) and np.all(tight[:2] - box[:2] <= 5)
            assert np.all(box[2:] - tight[2:] >= 0) and np.all(box[2:] - tight[2:] <= 5)
        same = [(i, j) for i in range(3) for j in range(i) if np.array_equal(masks[i], masks[j])]
        assert same  # two labels, three draws: with replacement
        own_margins |= any(not np.array_equal(boxes[i], boxes[j]) for i, j in same)
    assert {g[:2] for g in geometries} == {(False, False), (False, True), (True, False), (True, True)}
    assert any(g[2:] != (0, 0) for g in geometries) and own_margins


def test_an_entry_with_one_label_still_gives_k_objects(two_object_cache):
    cache, _, _ = two_object_cache
    s = TrainSamples(cache, Augment(), seed=0, objects=4)[SampleKey(0, 3, 5)]  # the CT slice: label 3 only
    assert s["mask"].shape[0] == 4 and all(torch.equal(s["mask"][0], m) for m in s["mask"]) and s["mask"].any()
    with pytest.raises(ValueError, match=r"^objects per sample must be >= 1, got 0$"):
        TrainSamples(cache, Augment(), seed=0, objects=0)
