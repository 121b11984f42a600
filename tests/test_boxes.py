"""Box arithmetic: +1 areas and IoU, the release's coder widths (x2 - x1 + EPS), flips."""

import numpy as np
import pytest

from keras_frcnn import boxes


def test_areas_and_iou_use_inclusive_pixels():
    a = np.array([[0, 0, 9, 9]])  # 10 x 10 = 100 pixels
    b = np.array([[5, 5, 14, 14], [10, 0, 19, 9], [0, 0, 0, 0]])
    assert boxes.areas(a)[0] == 100 and boxes.areas(b)[2] == 1
    # overlap 5 x 5 = 25, union 100 + 100 - 25 = 175; touching boxes share nothing.
    np.testing.assert_allclose(boxes.iou_matrix(a, b), [[25 / 175, 0.0, 1 / 100]])
    assert boxes.iou_matrix(a, a)[0, 0] == 1.0
    assert boxes.iou_matrix(np.zeros((0, 4)), a).shape == (0, 1)


def test_encode_hand_worked():
    # The release's coder widths are x2 - x1 (+ EPS), not the +1 of areas and IoU.
    roi = [[0, 0, 10, 20]]  # w 10, h 20, centre (5, 10)
    gt = [[5, 0, 25, 20]]  # w 20, h 20, centre (15, 10)
    np.testing.assert_allclose(boxes.encode(roi, gt), [[1.0, 0.0, np.log(2), 0.0]])
    # With +1 widths the same pair would give tx = 10/11, tw = log(21/11).
    assert boxes.encode([[0, 0, 9, 19]], [[5, 0, 24, 19]])[0, 0] == pytest.approx(10 / 9)


def test_decode_hand_worked():
    # Zero deltas give the proposal back (x2 = centre + w/2, no -1: test.py _bbox_pred).
    np.testing.assert_allclose(boxes.decode([[10, 20, 29, 59]], np.zeros((1, 4))),
                               [[10, 20, 29, 59]], atol=1e-9)
    # w 20 -> 40 about the centre 20; h 40, centre 40 + 0.5 * 40 = 60.
    np.testing.assert_allclose(
        boxes.decode([[10, 20, 30, 60]], [[0.0, 0.5, np.log(2), 0.0]]), [[0, 40, 40, 80]],
        atol=1e-9)


def test_decode_inverts_encode(rng):
    xy = rng.uniform(0, 500, size=(200, 2))
    rois = np.concatenate([xy, xy + rng.uniform(0, 300, size=(200, 2))], 1)
    gt_xy = xy + rng.normal(0, 20, (200, 2))
    gt = np.concatenate([gt_xy, gt_xy + rng.uniform(0, 300, size=(200, 2))], 1)
    np.testing.assert_allclose(boxes.decode(rois, boxes.encode(rois, gt)), gt, atol=1e-9)
    # Per-class layout [n, 4K]: class k uses columns 4k..4k+3.
    deltas = np.concatenate([np.zeros((200, 4)), boxes.encode(rois, gt)], 1)
    np.testing.assert_allclose(boxes.decode(rois, deltas)[:, 4:], gt, atol=1e-9)
    np.testing.assert_allclose(boxes.decode(rois, deltas)[:, :4], rois, atol=1e-9)


def test_encode_refuses_degenerate_boxes():
    with pytest.raises(ValueError, match="x2 >= x1"):
        boxes.encode([[5, 5, 3, 9]], [[0, 0, 9, 9]])


def test_flip_and_clip():
    flipped = boxes.flip_horizontally(np.array([[0, 1, 9, 5], [90, 0, 99, 9]]), width=100)
    np.testing.assert_array_equal(flipped, [[90, 1, 99, 5], [0, 0, 9, 9]])
    np.testing.assert_array_equal(boxes.flip_horizontally(flipped, 100), [[0, 1, 9, 5], [90, 0, 99, 9]])
    # Per-class boxes [n, 4K] (the detector's flip test): every class's x's mirrored.
    np.testing.assert_array_equal(boxes.flip_horizontally(np.array([[0, 1, 9, 5, 90, 0, 99, 9]]), 100),
                                  [[90, 1, 99, 5, 0, 0, 9, 9]])
    np.testing.assert_array_equal(boxes.clip(np.array([[-5, -1, 120, 50]]), 100, 40), [[0, 0, 99, 39]])


def test_in_window_hand_worked():
    window = (10, 10, 19, 19)  # inclusive pixels
    b = [[0, 0, 9, 9],      # ends one pixel before the window: no contact
         [0, 0, 10, 10],    # shares pixel (10, 10), centre (5, 5) outside
         [12, 12, 14, 30],  # centre (13, 21) below the window
         [5, 5, 25, 25],    # covers the window, centre (15, 15) inside
         [19, 19, 19, 19]]  # the window's last pixel
    touches, inside = boxes.in_window(b, window)
    np.testing.assert_array_equal(touches, [False, True, True, True, True])
    np.testing.assert_array_equal(inside, [False, False, False, True, True])
    touches, inside = boxes.in_window(np.zeros((0, 4)), window)
    assert touches.shape == inside.shape == (0,)


def test_invalid_box_reasons():
    assert boxes.invalid_box_reason([0, 0, 99, 39], 100, 40) is None
    assert "x2 < x1" in boxes.invalid_box_reason([5, 0, 4, 9], 100, 40)
    assert "outside" in boxes.invalid_box_reason([0, 0, 100, 9], 100, 40)
    assert "non-finite" in boxes.invalid_box_reason([0, np.nan, 5, 9], 100, 40)
