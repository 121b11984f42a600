"""The multi-task loss against hand-computed values."""

import math

import numpy as np
import tensorflow as tf

from keras_frcnn.model.losses import fast_rcnn_losses, smooth_l1, true_class_deltas


def test_smooth_l1_hand_values():
    np.testing.assert_allclose(smooth_l1(tf.constant([0.0, 0.5, -0.5, 1.0, -2.0, 3.0])).numpy(),
                               [0.0, 0.125, 0.125, 0.5, 1.5, 2.5])


def test_true_class_deltas_pick_the_labels_columns():
    bbox_pred = tf.reshape(tf.range(2 * 8, dtype=tf.float32), [2, 8])  # K = 2
    np.testing.assert_array_equal(true_class_deltas(bbox_pred, tf.constant([2, 1])).numpy(),
                                  [[4, 5, 6, 7], [8, 9, 10, 11]])


def test_loss_on_a_tiny_batch():
    # Two classes (K = 1). Row 0: foreground, logits (0, 0) -> p = 1/2, log loss ln 2;
    # deltas (0.5, -2, 0, 0) vs targets 0 -> smooth L1 0.125 + 1.5 = 1.625.
    # Row 1: background, logits (ln 3, 0) -> p(bg) = 3/4, log loss -ln 0.75; no box loss.
    # Row 2: padding (sample weight 0), contributes nothing.
    # Normalised by the 2 real RoIs: L_cls = (ln 2 - ln 0.75) / 2, L_loc = 1.625 / 2.
    cls_score = tf.constant([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]])
    bbox_pred = tf.constant([[0.5, -2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0], [7.0, 7.0, 7.0, 7.0]])
    labels = tf.constant([1, 0, 0])
    targets = tf.zeros([3, 4])
    bbox_weights = tf.constant([1.0, 0.0, 0.0])
    sample_weights = tf.constant([1.0, 1.0, 0.0])
    losses = fast_rcnn_losses(cls_score, bbox_pred, labels, targets, bbox_weights, sample_weights)
    cls = (math.log(2.0) - math.log(0.75)) / 2
    np.testing.assert_allclose(losses["cls_loss"].numpy(), cls, rtol=1e-6)
    np.testing.assert_allclose(losses["bbox_loss"].numpy(), 0.8125, rtol=1e-6)
    np.testing.assert_allclose(losses["loss"].numpy(), cls + 0.8125, rtol=1e-6)
    classification_only = fast_rcnn_losses(cls_score, bbox_pred, labels, targets, bbox_weights,
                                           sample_weights, loss_lambda=0.0)
    np.testing.assert_allclose(classification_only["loss"].numpy(), cls, rtol=1e-6)
