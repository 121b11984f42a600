"""The multi-task loss of Fast R-CNN (paper eq. 1-3), with padding-aware normalisation.

Shapes: R RoIs, K object classes (class 0 is background).
  cls_score    [R, K + 1] logits
  bbox_pred    [R, 4K] normalised deltas; class k >= 1 uses columns 4(k-1) .. 4k-1
  labels       [R] int32
  bbox_targets [R, 4] normalised targets for the label's class
  bbox_weights [R] 1 on foreground rows
  sample_weights [R] 0 on padding rows (data/sampling.py)

L = L_cls + lambda * L_loc, where L_cls is the mean log loss and L_loc the
smooth-L1 of the true class's four deltas, summed, both divided by the number
of real RoIs (the sum of sample weights; the release's R when nothing is
padded).
"""

import tensorflow as tf


def smooth_l1(x):
    """0.5 x^2 if |x| < 1 else |x| - 0.5 (paper eq. 3), elementwise."""
    absolute = tf.abs(x)
    return tf.where(absolute < 1.0, 0.5 * tf.square(x), absolute - 0.5)


def true_class_deltas(bbox_pred, labels):
    """[R, 4]: the four deltas of each RoI's label (background rows: class 1's, masked later)."""
    num_classes = tf.shape(bbox_pred)[1] // 4
    per_class = tf.reshape(bbox_pred, [-1, num_classes, 4])
    index = tf.maximum(tf.cast(labels, tf.int32) - 1, 0)
    return tf.gather(per_class, index, batch_dims=1)


def fast_rcnn_losses(cls_score, bbox_pred, labels, bbox_targets, bbox_weights, sample_weights,
                     loss_lambda=1.0):
    """{"loss", "cls_loss", "bbox_loss"} scalars."""
    sample_weights = tf.cast(sample_weights, tf.float32)
    count = tf.maximum(tf.reduce_sum(sample_weights), 1.0)
    log_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(cls_score, tf.float32))
    cls_loss = tf.reduce_sum(log_loss * sample_weights) / count
    deltas = tf.cast(true_class_deltas(bbox_pred, labels), tf.float32)
    per_roi = tf.reduce_sum(smooth_l1(deltas - bbox_targets), axis=1)
    bbox_loss = tf.reduce_sum(per_roi * tf.cast(bbox_weights, tf.float32) * sample_weights) / count
    return {"loss": cls_loss + loss_lambda * bbox_loss, "cls_loss": cls_loss, "bbox_loss": bbox_loss}
