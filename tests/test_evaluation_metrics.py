"""DSC/NSD against hand-computed values and an independent implementation of docs/reference_systems.md section 5."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from surface_distance.lookup_tables import _NEIGHBOUR_CODE_TO_NORMALS

import surface_distance

from evaluation.metrics import dice, score_case, surface_dice
from evaluation.surface import surface_distances

SQ2, SQ3 = math.sqrt(2.0), math.sqrt(3.0)


# --- independent implementation of the organisers' recipe (docs/reference_systems.md section 5) -----------------
def _area_table(spacing):
    s0, s1, s2 = spacing
    table = np.zeros(256)
    for code, normals in enumerate(_NEIGHBOUR_CODE_TO_NORMALS):
        for n0, n1, n2 in normals:
            table[code] += math.sqrt((n0 * s1 * s2) ** 2 + (n1 * s0 * s2) ** 2 + (n2 * s0 * s1) ** 2)
    table[0] = table[255] = 0.0
    return table


def reference_nsd(gt, pred, spacing, tolerance=2.0):
    union = gt | pred
    if not union.any():
        return float("nan")
    points = np.argwhere(union)
    lo, hi = points.min(0), points.max(0)
    kernel = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
    table = _area_table(spacing)
    codes, borders, dists = [], [], []
    for mask in (gt, pred):
        crop = np.zeros(tuple(hi - lo + 2), np.uint8)
        crop[:-1, :-1, :-1] = mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        code = ndimage.correlate(crop, kernel, mode="constant", cval=0).astype(np.uint8)
        border = (code != 0) & (code != 255)
        dist = ndimage.distance_transform_edt(~border, sampling=spacing) if border.any() else np.full(border.shape, np.inf)
        codes.append(code), borders.append(border), dists.append(dist)
    sums, total = 0.0, 0.0
    for own, other in ((0, 1), (1, 0)):
        d, a = dists[other][borders[own]], table[codes[own][borders[own]]]
        if len(d):  # the recipe's order: sorted (distance, area) tuples
            d, a = (np.array(column) for column in zip(*sorted(zip(d.tolist(), a.tolist()))))
        sums += np.sum(a[d <= tolerance])
        total += np.sum(a)
    with np.errstate(invalid="ignore"):
        return float(np.float64(sums) / np.float64(total))


def reference_case(gts, segs, spacing):
    """Organisers' per-case loop on full arrays: labels 1..max(gt), mean, DSC > 0.2 gate."""
    if spacing is None:
        gts, segs, spacing = gts[..., None], segs[..., None], (1.0, 1.0, 1.0)
    labels = range(1, int(gts.max()) + 1)
    dscs = []
    for i in labels:
        g, s = gts == i, segs == i
        total = g.sum() + s.sum()
        dscs.append(np.nan if total == 0 else 2 * (g & s).sum() / total)
    dsc = np.mean(dscs) if dscs else np.nan
    if not dsc > 0.2:
        return dsc, 0.0
    return dsc, np.mean([reference_nsd(gts == i, segs == i, spacing) for i in labels])


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- hand-computed values -------------------------------------------------------------------------
def box_surface_area(n, s):
    """Marching-cubes surface area of an n0 x n1 x n2 voxel box at spacing s (faces, edges, corners)."""
    (n0, n1, n2), (s0, s1, s2) = n, s
    faces = 2 * ((n1 - 1) * (n2 - 1) * s1 * s2 + (n0 - 1) * (n2 - 1) * s0 * s2 + (n0 - 1) * (n1 - 1) * s0 * s1)
    edges = 4 * ((n0 - 1) * s0 * math.hypot(s1, s2) + (n1 - 1) * s1 * math.hypot(s0, s2)
                 + (n2 - 1) * s2 * math.hypot(s0, s1)) / 2
    corners = 8 * math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2) / 8
    return faces + edges + corners


def voxel(shape, *index):
    mask = np.zeros(shape, bool)
    mask[index] = True
    return mask


def test_dice_hand_values():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    pred = np.zeros((4, 4), bool)
    pred[:2, :1] = True
    assert dice(gt, pred) == 2 * 2 / (4 + 2)
    assert dice(gt, gt) == 1.0
    assert dice(gt, np.zeros_like(gt)) == 0.0
    assert math.isnan(dice(np.zeros_like(gt), np.zeros_like(gt)))


def test_one_voxel_object_identical_and_shifted_along_each_axis():
    shape = (7, 7, 7)
    gt = voxel(shape, 2, 3, 3)
    assert surface_dice(gt, gt, (1.5, 1.0, 1.0)) == 1.0
    # shift by 2 voxels along axis 0: corner planes are 2 and 1 voxel apart -> 2*s0 = 3 > 2, s0 = 1.5 <= 2
    assert surface_dice(gt, voxel(shape, 4, 3, 3), (1.5, 1.0, 1.0)) == 0.5
    # same shift along axis 2 with spacing 1 there: distances 2 and 1, all within tolerance
    assert surface_dice(gt, voxel(shape, 2, 3, 5), (1.5, 1.0, 1.0)) == 1.0
    # spacing is applied to array axes in the stored order: 1.5 on axis 2 now
    assert surface_dice(gt, voxel(shape, 2, 3, 5), (1.0, 1.0, 1.5)) == 0.5
    assert surface_dice(gt, voxel(shape, 5, 3, 3), (1.0, 1.0, 1.0)) == 0.5  # distances 3 and 2


def test_empty_masks_follow_the_organisers_values():
    empty, gt = np.zeros((5, 5, 5), bool), voxel((5, 5, 5), 2, 2, 2)
    assert surface_dice(gt, empty, (1, 1, 1)) == 0.0
    assert surface_dice(empty, gt, (1, 1, 1)) == 0.0
    assert math.isnan(surface_dice(empty, empty, (1, 1, 1)))


def test_box_shifted_by_one_voxel_is_within_tolerance_when_spacing_at_most_two():
    gt = np.zeros((10, 12, 12), bool)
    gt[2:6, 3:9, 2:8] = True
    pred = np.roll(gt, 1, axis=0)
    assert surface_dice(gt, pred, (2.0, 0.7, 0.9)) == 1.0  # every surfel has its shifted copy at exactly 2.0


def test_box_shifted_in_anisotropic_spacing_matches_hand_area():
    # 3 x 4 x 4 box shifted by one slice with 3 mm slices: only the gt bottom layer and the prediction
    # top layer of surface points are farther than 2 mm (3 mm); every other point is within 2 mm.
    spacing, n = (3.0, 1.0, 1.0), (3, 4, 4)
    gt = np.zeros((8, 8, 8), bool)
    gt[2:5, 2:6, 2:6] = True
    pred = np.roll(gt, 1, axis=0)
    s0, s1, s2 = spacing
    layer = (3 * 3 * s1 * s2 + 2 * 3 * s1 * math.hypot(s0, s2) / 2 + 2 * 3 * s2 * math.hypot(s0, s1) / 2
             + 4 * math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2) / 8)
    expected = 1 - layer / box_surface_area(n, spacing)
    assert surface_dice(gt, pred, spacing) == pytest.approx(expected, rel=1e-12)
    # the same shift along an axis with 1 mm spacing is fully within tolerance
    assert surface_dice(gt, pred, (1.0, 1.0, 3.0)) == 1.0


def test_eroded_and_dilated_cube_hand_values():
    outer = np.zeros((10, 10, 10), bool)
    outer[2:8, 2:8, 2:8] = True
    inner = ndimage.binary_erosion(outer)
    assert inner.sum() == 4 ** 3
    assert surface_dice(outer, inner, (1.0, 1.0, 1.0)) == 1.0  # farthest pair: corner diagonal sqrt(3) <= 2
    # at 1.2 mm the 8 outer corner points are sqrt(3) * 1.2 = 2.08 mm from the inner surface, all else within
    s = 1.2
    a_outer, a_inner = box_surface_area((6, 6, 6), (s,) * 3), box_surface_area((4, 4, 4), (s,) * 3)
    expected = (a_outer + a_inner - SQ3 * s * s) / (a_outer + a_inner)
    assert surface_dice(outer, inner, (s, s, s)) == pytest.approx(expected, rel=1e-12)
    assert surface_dice(inner, outer, (s, s, s)) == pytest.approx(expected, rel=1e-12)  # dilation: symmetric
    scores = score_case(outer.astype(np.uint8), inner.astype(np.uint8), (s, s, s))
    dsc, nsd = scores.dsc, scores.nsd
    assert dsc == 2 * 64 / (216 + 64)
    assert nsd == pytest.approx(expected, rel=1e-12)


def test_cube_area_formula_matches_the_lookup_table():
    # guards the hand formula used above: an isolated box's surfels summed with the recipe's table
    gt = np.zeros((9, 9, 9), bool)
    gt[2:5, 2:6, 1:7] = True
    for spacing in ((1.0, 1.0, 1.0), (3.0, 0.5, 0.8)):
        crop = np.zeros((10, 10, 10), np.uint8)
        crop[:-1, :-1, :-1] = gt
        code = ndimage.correlate(crop, np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]]), mode="constant")
        code = code.astype(np.uint8)
        area = _area_table(spacing)[code[(code != 0) & (code != 255)]].sum()
        assert area == pytest.approx(box_surface_area((3, 4, 6), spacing), rel=1e-12)


def test_2d_case_is_scored_as_one_slice_volume_with_unit_spacing():
    gts = np.zeros((20, 20), np.uint8)
    gts[2:8, 2:8] = 1
    gts[12, 5] = 2
    segs = gts.copy()
    segs[12, 5] = 0
    segs[12, 8] = 2  # one-pixel object moved 3 columns: its corner columns are 3 and 2 px away
    scores = score_case(gts, segs)
    assert scores.dsc == 0.5
    assert list(scores.label_nsd) == [1.0, 0.5]
    assert scores.nsd == 0.75


def test_case_rules_labels_gate_and_nan():
    gts = np.zeros((6, 10, 10), np.uint8)
    gts[1:4, 1:4, 1:4] = 1
    gts[1:3, 6:8, 6:8] = 3  # label 2 absent from both masks
    segs = gts.copy()
    scores = score_case(gts, segs, (1.0, 1.0, 1.0))
    assert math.isnan(scores.dsc) and scores.nsd == 0.0  # NaN DSC fails the > 0.2 gate
    assert list(scores.labels) == [1, 3] and list(scores.label_dsc) == [1.0, 1.0]  # label 2: in neither

    segs[segs == 3] = 0
    segs[0, 0, 0] = 2  # label 2 only in the prediction scores 0
    segs[5, 9, 9] = 7  # above max(gt): ignored
    scores = score_case(gts, segs, (1.0, 1.0, 1.0))
    assert list(scores.label_dsc) == [1.0, 0.0, 0.0]
    assert scores.dsc == pytest.approx(1 / 3)
    assert list(scores.label_nsd) == [1.0, 0.0, 0.0]

    empty_gt = score_case(np.zeros((5, 5), np.uint8), np.ones((5, 5), np.uint8))
    assert math.isnan(empty_gt.dsc) and empty_gt.nsd == 0.0


def test_nsd_only_above_dsc_threshold():
    gts = np.zeros((1, 12, 12), np.uint8)
    gts[0, 2:5, 2:5] = 1  # 9 voxels
    segs = np.zeros_like(gts)
    segs[0, 3, 3] = 1  # 1 voxel inside: DSC = 2 / 10 = 0.2 exactly, not above
    assert score_case(gts, segs, (1, 1, 1)).dsc == 0.2
    assert surface_dice(gts == 1, segs == 1, (1, 1, 1)) == 1.0  # every surface point within 2 voxels ...
    assert score_case(gts, segs, (1, 1, 1)).nsd == 0.0  # ... but the gate reports 0
    gts[0, 4, 4] = 0  # 8 voxels: DSC = 2 / 9 > 0.2, NSD computed
    scores = score_case(gts, segs, (1, 1, 1))
    assert scores.dsc == 2 / 9 and scores.nsd == 1.0


def test_empty_prediction_scores_zero():
    gts = np.zeros((4, 8, 8), np.uint8)
    gts[1:3, 2:6, 2:6] = 1
    scores = score_case(gts, np.zeros_like(gts), (1, 1, 1))
    assert (scores.dsc, scores.nsd) == (0.0, 0.0)


def test_input_errors():
    gts = np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match=r"^prediction shape \(4, 6\) differs from ground-truth shape \(4, 5\)$"):
        score_case(gts, np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match=r"^segs has non-integer labels \(dtype float32\)$"):
        score_case(gts, np.full((4, 5), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"^spacing must be 3 positive finite numbers, got \(1.0, 0.0, 1.0\)$"):
        score_case(gts[None], gts[None], (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"^2D case needs \(H, W\) masks, got shape \(1, 4, 5\)$"):
        score_case(gts[None], gts[None])
    gts[1, 1] = 1
    assert score_case(gts, gts.astype(np.float64)).dsc == 1.0  # integral floats are labels


@pytest.mark.parametrize("seed", range(6))
def test_surface_distances_are_the_librarys_own(seed):
    """evaluation/surface.py against `surface_distance.compute_surface_distances` (not patched), bit for bit."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 18, 3))
    gt = random_label_map(rng, shape, 1) == 1
    pred = perturb(rng, gt.astype(np.uint16)) == 1
    if not (gt.any() and pred.any()):
        gt[0, 0, 0] = pred[-1, -1, -1] = True
    spacing = tuple(float(s) for s in rng.choice([0.5, 1.0, 1.5, 2.5], 3))
    ours = surface_distances(gt, pred, spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = surface_distance.compute_surface_distances(gt, pred, spacing)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert surface_dice(gt, pred, spacing) == surface_distance.compute_surface_dice_at_tolerance(theirs, 2.0)
    assert surface_distance.metrics._sort_distances_surfels.__module__ == "surface_distance.metrics"  # not patched


def test_cost_follows_the_labels_present_not_the_largest_value():
    gts = np.zeros((20, 20), np.int64)
    gts[2:6, 2:6], gts[10:14, 10:14] = 1, 2**31 - 1
    segs = gts.copy()
    scores = score_case(gts, segs)  # 2**31 - 1 labels in 1..max: a table of them would not fit memory
    assert math.isnan(scores.dsc) and scores.nsd == 0.0  # labels 2..2**31-2 absent from both: NaN, gate fails
    assert list(scores.labels) == [1, 2**31 - 1] and list(scores.label_dsc) == [1.0, 1.0]
    segs[segs == 1] = 0
    assert list(score_case(gts, segs).label_dsc) == [0.0, 1.0]


# --- parity with the independent implementation on random masks ------------------------------------
def random_label_map(rng, shape, n_labels):
    field = ndimage.gaussian_filter(rng.standard_normal((n_labels, *shape)), sigma=1.5, axes=range(1, len(shape) + 1))
    labels = np.argmax(field, axis=0) + 1
    labels[np.max(field, axis=0) < 0.15] = 0
    return labels.astype(np.uint16)


def perturb(rng, labels):
    out = np.roll(labels, rng.integers(-2, 3), axis=int(rng.integers(labels.ndim)))
    flips = rng.random(labels.shape) < 0.03
    out[flips] = rng.integers(0, labels.max() + 3, flips.sum())  # includes labels above max(gt)
    if rng.random() < 0.3:
        out[out == rng.integers(1, labels.max() + 1)] = 0  # a label entirely missed
    return out


@pytest.mark.parametrize("seed", range(12))
def test_parity_with_independent_implementation_3d(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(6, 22, 3))
    gts = random_label_map(rng, shape, int(rng.integers(1, 5)))
    segs = perturb(rng, gts)
    spacing = tuple(float(s) for s in rng.choice([0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0], 3))
    scores = score_case(gts, segs, spacing)
    dsc, nsd = reference_case(gts, segs, spacing)
    assert same(scores.dsc, float(dsc)) and same(scores.nsd, float(nsd)), (scores, dsc, nsd)
    for label in range(1, int(gts.max()) + 1):  # per label, independent of the DSC gate
        assert same(surface_dice(gts == label, segs == label, spacing),
                    reference_nsd(gts == label, segs == label, spacing))


@pytest.mark.parametrize("seed", range(8))
def test_parity_with_independent_implementation_2d(seed):
    rng = np.random.default_rng(100 + seed)
    gts = random_label_map(rng, tuple(int(n) for n in rng.integers(10, 60, 2)), int(rng.integers(1, 6)))
    segs = perturb(rng, gts)
    scores = score_case(gts, segs)
    dsc, nsd = reference_case(gts, segs, None)
    assert same(scores.dsc, float(dsc)) and same(scores.nsd, float(nsd)), (scores, dsc, nsd)
