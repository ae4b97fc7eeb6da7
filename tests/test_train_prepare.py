"""train.prepare: indexing the challenge training layout into the model-resolution cache."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from infer.preprocess import LITEMEDSAM_PREPROCESS, geometry_for, preprocess_image
from tests._train_fixtures import write_training_tree
from train import prepare as prepare_cli
from train.cache import CacheError, open_cache
from train.prepare import prepare


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("challenge")
    write_training_tree(root, 12)
    good = root / "CT" / "Synth" / "3DBox_CT_t000000.npz"
    damaged = bytearray(good.read_bytes())
    damaged[len(damaged) // 3: len(damaged) // 2] = bytes(len(damaged) // 2 - len(damaged) // 3)
    (root / "CT" / "Synth" / "damaged.npz").write_bytes(bytes(damaged))
    (root / "CT" / "Synth" / "text.npz").write_text("not an npz\n")
    np.savez(root / "PET" / "Synth" / "nogts.npz", imgs=np.zeros((4, 8, 8), np.uint8))
    np.savez(root / "US" / "Synth" / "mismatch.npz", imgs=np.zeros((10, 10, 3), np.uint8),
             gts=np.ones((12, 12), np.uint8))
    np.savez(root / "MR" / "Synth" / "float.npz", imgs=np.zeros((2, 8, 8), np.float32),
             gts=np.ones((2, 8, 8), np.uint8))
    np.savez(root / "OCT" / "Synth" / "empty.npz", imgs=np.zeros((8, 8, 3), np.uint8), gts=np.zeros((8, 8), np.uint8))
    return root


BAD = {"CT/Synth/damaged.npz": "not a readable npz file (member 'imgs': zlib.error: ",
       "CT/Synth/text.npz": "not a readable npz file (not a zip archive, or truncated)",
       "PET/Synth/nogts.npz": "missing key 'gts' (has ['imgs'])",
       "US/Synth/mismatch.npz": "imgs shape (10, 10, 3) and gts shape (12, 12) do not match",
       "MR/Synth/float.npz": "imgs dtype float32, expected uint8"}


def test_corrupt_files_are_reported_by_name_and_the_rest_is_indexed_exactly(tree, tmp_path):
    lines: list[str] = []
    summary = prepare(tree, tmp_path / "cache", LITEMEDSAM_PREPROCESS, report=lines.append)

    assert {b["source"]: b["reason"] for b in summary.bad}.keys() == BAD.keys()
    for bad in summary.bad:
        assert bad["reason"].startswith(BAD[bad["source"]]), bad
    assert sorted(lines) == sorted(f"skipped {b['source']}: {b['reason']}" for b in summary.bad)
    assert summary.unlabelled == ["OCT/Synth/empty.npz"]

    cache = open_cache(tmp_path / "cache")
    info = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert info["bad_files"] == summary.bad and info["entries"] == len(cache.entries) == summary.entries
    good = sorted(p for p in tree.glob("*/*/*Box_*.npz"))
    assert summary.files == len(good) == 12
    expected_entries = 0
    for path in good:
        with np.load(path) as npz:
            imgs, gts = npz["imgs"], npz["gts"]
        rel = path.relative_to(tree).as_posix()
        mine = [e for e in cache.entries if e.source == rel]
        if gts.ndim == 2:
            imgs, gts = imgs[None], gts[None]
            assert [e.slice for e in mine] == [-1]
        else:
            assert [e.slice for e in mine] == list(np.flatnonzero(gts.any(axis=(1, 2))))
        expected_entries += len(mine)
        for e in mine:
            image, labels = cache.arrays(e)
            original, gt = imgs[max(e.slice, 0)], gts[max(e.slice, 0)]
            g = geometry_for(LITEMEDSAM_PREPROCESS, *gt.shape)
            assert (e.height, e.width) == labels.shape == (g.resized_h, g.resized_w) and image.dtype == np.uint8
            # The stored crop goes through infer's pre-processing to exactly the original's model input.
            assert np.array_equal(preprocess_image(image, LITEMEDSAM_PREPROCESS)[0],
                                  preprocess_image(original, LITEMEDSAM_PREPROCESS)[0])
            assert np.array_equal(labels, cv2.resize(gt.astype(np.uint16), (g.resized_w, g.resized_h),
                                                     interpolation=cv2.INTER_NEAREST))
            assert e.labels == tuple(int(v) for v in np.unique(labels) if v)
    assert expected_entries == len(cache.entries) and summary.vanished_slices == 0
    # Modality from the folder, with the file-name aliases; datasets from the folder below it.
    assert {e.modality for e in cache.entries} == {"CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy",
                                                    "Fundus", "Microscope", "Mammography", "OCT"}
    assert {e.dataset for e in cache.entries} == {"Synth"}


def test_cli_filters_by_modality_aliases_and_refuses_unknown_values(tree, tmp_path, capsys):
    out = tmp_path / "pet_micro"
    assert prepare_cli.main(["--data-root", str(tree), "--out", str(out), "--modalities", "PET", "Microscope"]) == 0
    assert {e.modality for e in open_cache(out).entries} == {"PET", "Microscope"}
    assert capsys.readouterr().err.splitlines() == ["skipped PET/Synth/nogts.npz: missing key 'gts' (has ['imgs'])"]

    assert prepare_cli.main(["--data-root", str(tree), "--out", str(out), "--modalities", "xray"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {out}: already exists (use --force to replace it)"
    assert prepare_cli.main(["--data-root", str(tree), "--out", str(out), "--modalities", "xray", "--force"]) == 0
    assert {e.modality for e in open_cache(out).entries} == {"X-Ray"}

    assert prepare_cli.main(["--data-root", str(tree), "--out", str(tmp_path / "x"), "--modalities", "Retina"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: modality 'Retina' not found; the data has CT, Dermoscopy,")
    assert not (tmp_path / "x").exists()
    assert prepare_cli.main(["--data-root", str(tree), "--out", str(tmp_path / "y"), "--datasets", "Other"]) == 1
    assert capsys.readouterr().err.strip() == "error: dataset 'Other' not found; the data has Synth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pet_micro"]  # nothing half-written


def test_wide_labels_stay_uint16_and_a_raw_folder_is_not_a_cache(tmp_path):
    root = tmp_path / "data" / "Microscopy" / "Cells"
    root.mkdir(parents=True)
    gts = np.zeros((40, 30), np.uint16)
    gts[:20, :10], gts[25:, 20:] = 300, 7
    np.savez(root / "cells.npz", imgs=np.full((40, 30, 3), 9, np.uint8), gts=gts)
    prepare(tmp_path / "data", tmp_path / "cache", LITEMEDSAM_PREPROCESS)
    (entry,) = open_cache(tmp_path / "cache").entries
    assert entry.labels == (7, 300) and entry.modality == "Microscope" and entry.dataset == "Cells"
    assert np.load(tmp_path / "cache" / f"{entry.file}.gts.npy").dtype == np.uint16
    with pytest.raises(CacheError, match=r"not a prepared training cache, no cache\.json \(it holds "
                                         r"<Modality>/<Dataset>/\*\.npz: prepare it first"):
        open_cache(tmp_path / "data")
