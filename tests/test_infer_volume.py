"""3D sweep schedule, propagation rules and the PET vote, with instrumented fake sessions."""
from __future__ import annotations

import numpy as np
import pytest
from _infer_fakes import fake_model

from infer.boxes import prepare_boxes
from infer.predictor import SlicePredictor
from infer.volume import VIEWS, add_box, init_state, propagate, segment_view, segment_volume, view_boxes
from infer.vote import majority_vote
from test_demo.generate import CaseSpec, generate_case


def _distinct_slices(boxes: np.ndarray, axis_columns: tuple[int, int]) -> int:
    lo, hi = axis_columns
    return len({z for b in boxes for z in range(int(b[lo]), int(b[hi]) + 1)})


def _case(modality: str, shape: tuple[int, int, int], n: int, seed: int):
    case = generate_case(CaseSpec(modality, "3D", shape, n, f"3DBox_{modality}_t"), seed)
    return case, prepare_boxes(case.boxes.astype(float), case.imgs.shape)


def test_axial_encoder_calls_are_the_distinct_slices_and_decoder_calls_one_per_slice():
    case, prepared = _case("CT", (24, 96, 96), 5, seed=11)
    model = fake_model()
    predictor = SlicePredictor(model)
    segment_volume(predictor, case.imgs, prepared.boxes, prepared.labels)
    distinct = _distinct_slices(prepared.boxes, (2, 5))
    assert model.encoder.calls == predictor.stats.encoder_calls == distinct
    # every slice the upward or downward sweep visits is one decoder call covering its active boxes
    up = {z for b in prepared.boxes for z in range(int(b[2] + b[5]) // 2, int(b[5]) + 1)}
    down = {z for b in prepared.boxes for z in range(int(b[2]), int(b[2] + b[5]) // 2)}
    assert model.decoder.calls == len(up) + len(down)
    assert sum(model.decoder.batch_sizes) == sum(int(b[5] - b[2]) + 1 for b in prepared.boxes)
    assert distinct < sum(int(b[5] - b[2]) + 1 for b in prepared.boxes)  # overlapping ranges: a real saving


def test_three_views_encode_each_view_slice_once():
    case, prepared = _case("PET", (16, 48, 48), 2, seed=5)
    model = fake_model()
    predictor = SlicePredictor(model)
    segment_volume(predictor, case.imgs, prepared.boxes, prepared.labels, views=tuple(VIEWS))
    expected = (_distinct_slices(prepared.boxes, (2, 5)) + _distinct_slices(prepared.boxes, (1, 4))
                + _distinct_slices(prepared.boxes, (0, 3)))
    assert model.encoder.calls == expected


def test_a_small_cache_budget_re_encodes_but_gives_the_same_labels():
    case, prepared = _case("CT", (24, 96, 96), 5, seed=11)
    full_model, tight_model = fake_model(), fake_model()
    full = segment_volume(SlicePredictor(full_model), case.imgs, prepared.boxes, prepared.labels)
    embedding_bytes = 256 * 64 * 64 * 4
    tight = segment_volume(SlicePredictor(tight_model), case.imgs, prepared.boxes, prepared.labels,
                           cache_bytes=2 * embedding_bytes)
    np.testing.assert_array_equal(tight, full)
    up = {z for b in prepared.boxes for z in range(int(b[2] + b[5]) // 2, int(b[5]) + 1)}
    down = {z for b in prepared.boxes for z in range(int(b[2]), int(b[2] + b[5]) // 2)}
    shared = len(up & down)
    assert shared > 2
    assert tight_model.encoder.calls == full_model.encoder.calls + shared - 2


def test_the_cache_never_holds_more_than_its_budget():
    case, prepared = _case("CT", (24, 96, 96), 5, seed=11)
    predictor = SlicePredictor(fake_model())
    state = init_state(case.imgs, margin=3, cache_bytes=3 * 256 * 64 * 64 * 4 + 10)
    for label, box in zip(prepared.labels, prepared.boxes):
        add_box(state, label, box)
    for _ in propagate(state, predictor):
        assert len(state.cache) <= 3
    assert len(state.cache) == 3
    with pytest.raises(RuntimeError, match="add_box after the upward sweep"):
        add_box(state, 9, prepared.boxes[0])
    list(propagate(state, predictor, reverse=True))
    assert state.cache == {}


def test_downward_sweep_needs_the_upward_one_first():
    state = init_state(np.zeros((4, 8, 8), np.uint8), margin=3)
    add_box(state, 1, np.array([1, 1, 0, 5, 5, 3], float))
    with pytest.raises(RuntimeError, match="before the upward sweep"):
        next(propagate(state, SlicePredictor(fake_model()), reverse=True))


def _moving_disk(depth: int = 11, size: int = 256, gap: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk of radius 16 sliding right by 2 px per slice (the margin is 3 px at this
    size, so propagation can follow it); optional empty slices."""
    yy, xx = np.mgrid[:size, :size]
    volume = np.full((depth, size, size), 20, np.uint8)
    truth = np.zeros(volume.shape, bool)
    for z in range(depth):
        if z in gap:
            continue
        truth[z] = (yy - 128) ** 2 + (xx - (100 + 2 * z)) ** 2 <= 16 ** 2
    volume[truth] = 230
    return volume, truth


def test_prompts_follow_the_previous_mask_not_the_3d_box():
    volume, truth = _moving_disk()
    ys, xs = np.nonzero(truth.any(0))
    box = np.array([[xs.min(), ys.min(), 0, xs.max(), ys.max(), 10]], float)
    # distractors inside the 3D box's xy, on the first and last slices, away from the disk there
    volume[10, 114:142, 84:92] = 230
    volume[0, 114:142, 128:136] = 230
    labels = segment_volume(SlicePredictor(fake_model()), volume, box)
    assert labels[10, 114:142, 84:92].sum() == 0 and labels[0, 114:142, 128:136].sum() == 0
    dice = 2 * ((labels > 0) & truth).sum() / ((labels > 0).sum() + truth.sum())
    assert dice > 0.9
    static = SlicePredictor(fake_model())  # the same predictor with the 3D box on every slice sees it
    static.set_image(volume[10])
    (mask,) = static.predict(box[:, [0, 1, 3, 4]])
    canvas = np.zeros(volume.shape[1:], np.uint16)
    mask.paint(canvas, 1)
    assert canvas[114:142, 84:92].sum() > 0


def test_an_empty_slice_falls_back_to_the_3d_box():
    volume, truth = _moving_disk(gap=(5, 6))  # the middle slice (5) is empty
    ys, xs = np.nonzero(truth.any(0))
    box = np.array([[xs.min(), ys.min(), 0, xs.max(), ys.max(), 10]], float)
    labels = segment_volume(SlicePredictor(fake_model()), volume, box)
    per_slice = (labels > 0).sum(axis=(1, 2))
    assert per_slice[5] == per_slice[6] == 0
    assert all(per_slice[z] > 600 for z in (0, 1, 2, 3, 4, 7, 8, 9, 10))


def test_a_leak_along_a_touching_structure_stops_at_the_3d_box():
    volume, truth = _moving_disk()
    ys, xs = np.nonzero(truth.any(0))
    box = np.array([[xs.min(), ys.min(), 0, xs.max(), ys.max(), 10]], float)
    volume[:, 126:131, :] = 230  # a bright bar through the disk, across the whole slice
    labels = segment_volume(SlicePredictor(fake_model()), volume, box)
    margin = 3  # model-input pixels; the slice is 256 px, so 3 original pixels
    cols = np.nonzero(labels.any(axis=(0, 1)))[0]
    # following its own mask, the bar would grow the prompt by the margin on every slice (15 px
    # beyond the box after the five slices of a sweep); kept inside the 3D box it cannot
    assert cols.min() >= xs.min() - margin and cols.max() <= xs.max() + margin
    assert (labels[truth] > 0).mean() > 0.9


def test_single_slice_boxes_are_segmented_on_their_slice_only():
    volume = np.full((6, 64, 64), 20, np.uint8)
    volume[:, 20:40, 20:40] = 230
    model = fake_model()
    labels = segment_volume(SlicePredictor(model), volume, np.array([[18, 18, 3, 42, 42, 3]], float))
    assert model.encoder.calls == 1
    assert (labels > 0).sum(axis=(1, 2)).nonzero()[0].tolist() == [3]
    assert labels[3, 30, 30] == 1


def test_later_box_wins_across_sweeps():
    """Box 2's upward sweep covers slices 1-3, which box 1 reaches later in its downward sweep."""
    volume = np.full((10, 64, 64), 20, np.uint8)
    volume[:, 16:48, 16:48] = 230
    boxes = np.array([[14, 14, 0, 50, 50, 9], [14, 14, 0, 50, 50, 3]], float)
    labels = segment_volume(SlicePredictor(fake_model()), volume, boxes)
    assert set(np.unique(labels[:4])) == {0, 2}
    assert set(np.unique(labels[4:])) == {0, 1}


def test_view_boxes_map_axes():
    box = np.array([[10, 20, 3, 40, 50, 7]], float)  # x 10-40, y 20-50, z 3-7
    np.testing.assert_array_equal(view_boxes(box, "axial"), box)
    np.testing.assert_array_equal(view_boxes(box, "coronal"), [[10, 3, 20, 40, 7, 50]])  # cols x, rows z, slice y
    np.testing.assert_array_equal(view_boxes(box, "sagittal"), [[20, 3, 10, 50, 7, 40]])  # cols y, rows z, slice x


def test_coronal_view_segments_the_same_object():
    volume = np.full((20, 40, 50), 20, np.uint8)
    volume[5:15, 10:30, 12:40] = 230
    box = np.array([[12, 10, 5, 39, 29, 14]], float)
    labels = np.zeros(volume.shape, np.uint16)
    segment_view(SlicePredictor(fake_model()), volume, box, labels, view="coronal")
    truth = np.zeros(volume.shape, bool)
    truth[5:15, 10:30, 12:40] = True
    assert 2 * (truth & (labels == 1)).sum() / (truth.sum() + (labels == 1).sum()) > 0.9


def test_vote_on_a_hand_made_example():
    axial = np.array([1, 1, 2, 0, 3, 5, 4], np.uint16)
    coronal = np.array([1, 2, 1, 2, 0, 6, 7], np.uint16)
    sagittal = np.array([2, 1, 2, 2, 3, 7, 7], np.uint16)
    #        a==b a==c a==c b==c a==c tie  b==c
    expected = np.array([1, 1, 2, 2, 3, 5, 7], np.uint16)
    np.testing.assert_array_equal(majority_vote(axial, coronal, sagittal), expected)
    assert majority_vote(axial, coronal, sagittal).dtype == np.uint16


def test_vote_three_way_tie_keeps_axial_even_when_it_is_background():
    a, b, c = (np.full((2, 2, 2), v, np.uint16) for v in (0, 1, 2))
    np.testing.assert_array_equal(majority_vote(a, b, c), a)
    np.testing.assert_array_equal(majority_vote(b, a, c), b)
    with pytest.raises(ValueError, match="vote needs equal shapes"):
        majority_vote(a, b, c[:1])
