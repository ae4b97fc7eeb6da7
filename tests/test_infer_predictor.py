"""SlicePredictor over the numpy fake sessions: encode once, batched decode, mask selection."""
from __future__ import annotations

import numpy as np
import pytest
from _infer_fakes import fake_model

from infer.strategies import segment_image
from infer.predictor import SlicePredictor
from infer.preprocess import EFFICIENTSAM_PREPROCESS


def _rectangle_image(h: int = 96, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((h, w), bool)
    truth[20:60, 30:110] = True
    image = np.where(truth, 220, 30).astype(np.uint8)
    return np.repeat(image[:, :, None], 3, axis=2), truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_predict_before_set_image_raises():
    predictor = SlicePredictor(fake_model())
    with pytest.raises(RuntimeError, match="SlicePredictor.predict called before set_image"):
        predictor.predict(np.array([[0, 0, 5, 5]], float))
    predictor.set_image(_rectangle_image()[0])
    predictor.reset_image()
    with pytest.raises(RuntimeError, match="before set_image"):
        predictor.predict_logits(np.array([[0, 0, 5, 5]], float))


def test_one_encoder_call_and_one_decoder_call_for_all_boxes():
    model = fake_model()
    predictor = SlicePredictor(model)
    image, _ = _rectangle_image()
    predictor.set_image(image)
    masks = predictor.predict(np.array([[30, 20, 109, 59], [0, 0, 10, 10], [100, 10, 150, 90]], float))
    assert len(masks) == 3
    assert (model.encoder.calls, model.decoder.calls, model.decoder.batch_sizes) == (1, 1, [3])
    assert (predictor.stats.encoder_calls, predictor.stats.decoder_calls, predictor.stats.decoded_boxes) == (1, 1, 3)


@pytest.mark.parametrize("shape", [(96, 160), (160, 96), (700, 300)])
def test_masks_land_on_the_object_in_original_pixels(shape):
    """Non-square images catch swapped axes, wrong box scaling and a missing crop of the padding."""
    h, w = shape
    truth = np.zeros(shape, bool)
    truth[h // 5: h // 2, w // 4: 3 * w // 4] = True
    image = np.repeat(np.where(truth, 220, 30).astype(np.uint8)[:, :, None], 3, axis=2)
    predictor = SlicePredictor(fake_model())
    predictor.set_image(image)
    ys, xs = np.nonzero(truth)
    (mask,) = predictor.predict(np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], float))
    canvas = np.zeros(shape, np.uint16)
    mask.paint(canvas, 1)
    assert _iou(canvas > 0, truth) > 0.85


def test_best_iou_selection_picks_the_mask_with_the_highest_predicted_iou():
    image, truth = _rectangle_image()
    box = np.array([[30, 20, 109, 59]], float)
    chosen = SlicePredictor(fake_model(EFFICIENTSAM_PREPROCESS, mask_outputs=3, selection="best_iou", best=1))
    chosen.set_image(image)
    logits, iou = chosen.predict_logits(box)
    assert logits.shape == (1, 256, 256) and iou.tolist() == [pytest.approx(0.9)]
    (mask,) = chosen.predict(box)
    canvas = np.zeros(truth.shape, np.uint16)
    mask.paint(canvas, 1)
    assert _iou(canvas > 0, truth) > 0.85
    fixed = SlicePredictor(fake_model(EFFICIENTSAM_PREPROCESS, mask_outputs=3, selection="single", best=1))
    fixed.set_image(image)
    assert fixed.predict(box) == [None]  # channel 0 is the empty mask of the fake


def test_image_state_is_kept_and_restored_without_encoding():
    model = fake_model()
    predictor = SlicePredictor(model)
    first, _ = _rectangle_image()
    predictor.set_image(first)
    state = predictor.image_state
    box = np.array([[30, 20, 109, 59]], float)
    before = predictor.predict_logits(box)[0]
    predictor.set_image(np.zeros_like(first))
    predictor.restore(state)
    np.testing.assert_array_equal(predictor.predict_logits(box)[0], before)
    assert model.encoder.calls == 2


def test_segment_image_batches_boxes_and_paints_later_boxes_on_top():
    model = fake_model()
    predictor = SlicePredictor(model, max_batch=2)
    image = np.full((64, 64, 3), 200, np.uint8)  # bright but for one pixel outside the boxes:
    image[63, 0] = 0                              # every mask is its box
    boxes = np.array([[0, 0, 40, 40], [20, 20, 63, 63], [30, 0, 63, 10], [5, 50, 10, 60], [0, 0, 63, 63]], float)
    labels = segment_image(predictor, image, boxes[:4], np.arange(1, 5))
    assert model.encoder.calls == 1 and model.decoder.batch_sizes == [2, 2]
    expected = np.zeros((64, 64), np.uint16)
    for label, (x0, y0, x1, y1) in enumerate(boxes[:4].astype(int), start=1):
        expected[y0:y1 + 1, x0:x1 + 1] = label
    assert (labels == expected).mean() > 0.93  # up to resampling at the box edges
    assert labels[25, 25] == 2 and labels[5, 35] == 3 and labels[2, 2] == 1 and labels[55, 8] == 4
    assert labels[15, 50] == 0 and labels[55, 15] == 0
