"""Detection arithmetic in TensorFlow: one implementation for the Detector and the export.

The Detector (``bin/evaluate.py``, ``bin/detect.py``, the Predictor) and the exported
SavedModel (export.py, what TF Serving runs) both call these functions, so what a user
evaluates is, op for op, what they serve:

  usable_proposals    proposals clipped to the image, the unusable ones dropped
                      (clip_proposals), in a canonical order
  network_inputs      test scale(s), resize, preprocessing, padding, the pyramid
                      level of each RoI, the optional mirrored copy, and the grouping
                      of RoIs that pool the same feature cells
  make_network        the model in inference mode, RoIs beyond the feature map scored
                      as background
  detection_outputs   per-class box decoding, clipping, the flip average
  (then detection/postprocess.py's postprocess_detections: score threshold, NMS)

What each side keeps for itself, and why: the Detector reads images and proposals
in Python (OpenCV's decoder, the dataset's records, the proposal cache) and runs
these functions in a tf.data pipeline that overlaps with the network; the release's
dataset-level cap on detections (post-processing mode "frcnn") needs every image's
scores, so it exists only in ``Detector.detect_dataset``. The serving graph takes
one RGB uint8 image and reverses it to the BGR these functions expect.

Resizing is TensorFlow's ScaleAndTranslate (a triangle kernel without antialiasing,
that is bilinear with half-pixel centres) with the scale factor itself, as
``cv2.resize(fx=f)`` maps pixels with f and not with the rounded output size over
the input size. Training resizes with OpenCV (data/transforms.py): the same bilinear
sampling with weights computed differently, within 0.02 of a grey level (0.013 the
largest difference seen, 0 at exactly representable factors;
tests/detection/test_graph.py).
"""

import keras
import tensorflow as tf

from keras_frcnn import boxes as box_ops
from keras_frcnn.data.transforms import PIXEL_MEANS_BGR, PREPROCESSING
from keras_frcnn.ops.roi_pool_composite import round_half_away_from_zero

CANONICAL_AREA = 224 * 224  # paper section 5.2: the RoI's scaled area closest to 224^2


def scale_factor(height, width, target_size, max_size):
    """transforms.image_scale in float64 tensors (round half to even, as Python)."""
    short = tf.minimum(height, width)
    long = tf.maximum(height, width)
    factor = target_size / short
    return tf.where(tf.round(factor * long) > max_size, max_size / long, factor)


def clip_proposals(proposals, width, height):
    """boxes.clip_proposals: [R, 4] float32 proposals of a ``width`` x ``height``
    image -> (the clipped kept ones [m, 4], keep [R] bool)."""
    proposals = tf.convert_to_tensor(proposals, tf.float32)
    x_max = tf.cast(tf.cast(width, tf.float64) - 1.0, tf.float32)
    y_max = tf.cast(tf.cast(height, tf.float64) - 1.0, tf.float32)
    finite = tf.reduce_all(tf.math.is_finite(proposals), axis=1)
    # NaN rows are masked out by ``finite``, whatever maximum/minimum make of them.
    x1 = tf.maximum(proposals[:, 0], 0.0)
    y1 = tf.maximum(proposals[:, 1], 0.0)
    x2 = tf.minimum(proposals[:, 2], x_max)
    y2 = tf.minimum(proposals[:, 3], y_max)
    keep = finite & (x2 >= x1) & (y2 >= y1)
    return tf.boolean_mask(tf.stack([x1, y1, x2, y2], axis=1), keep), keep


def canonical_order(boxes):
    """[n] int32 order of [n, 4] boxes sorted by (x1, y1, x2, y2), lexicographically,
    equal boxes in their given order."""
    boxes = tf.convert_to_tensor(boxes)
    order = tf.range(tf.shape(boxes)[0])
    for column in (3, 2, 1, 0):  # stable sorts, last key first
        order = tf.gather(order, tf.argsort(tf.gather(boxes[:, column], order), stable=True))
    return order


def usable_proposals(proposals, width, height):
    """The proposals the detector scores: [R, 4] float32 proposals of a ``width`` x
    ``height`` image clipped, the unusable ones dropped (clip_proposals), and sorted
    into canonical_order. The order makes detections a function of the set of
    proposals: NMS, top-k and the output order break ties of equal scores by position,
    and two proposals that pool the same feature cells tie exactly (the Detector and the
    serving graph call this; docs/robustness.md)."""
    kept, _ = clip_proposals(proposals, width, height)
    return tf.gather(kept, canonical_order(kept))


def pyramid_levels(proposals, factors):
    """[R] int32 index of the factor whose scaled RoI area (+1 widths, float64) is
    closest to 224^2 (paper section 5.2); the first of equals."""
    boxes = tf.cast(tf.reshape(proposals, [-1, 4]), tf.float64)
    factors = tf.cast(tf.reshape(factors, [-1]), tf.float64)
    area = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    return tf.argmin(tf.abs(area[:, None] * factors[None, :] ** 2 - CANONICAL_AREA), axis=1,
                     output_type=tf.int32)


def preprocess(image_bgr, mode):
    """transforms.preprocess: float32 BGR in [0, 255] -> the network input."""
    if mode == "caffe":
        return image_bgr - tf.constant(PIXEL_MEANS_BGR)
    rgb = image_bgr[..., ::-1]
    if mode == "tf":
        return rgb / 127.5 - 1.0
    if mode == "none":
        return rgb
    raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {mode!r}")


def flip_horizontally(boxes, width):
    """boxes.flip_horizontally: [n, 4K] boxes of the mirrored ``width``-wide image."""
    x1, y1, x2, y2 = (boxes[:, k::4] for k in range(4))
    flipped = tf.stack([width - x2 - 1, y1, width - x1 - 1, y2], axis=-1)
    return tf.reshape(flipped, tf.shape(boxes))


def feature_cells(rois, spatial_scale):
    """[n, 5] int64 keys (image, rounded feature cells) of [n, 5] RoIs, rounded as the
    op rounds them (float32 product, half away from zero)."""
    cells = round_half_away_from_zero(rois[:, 1:] * tf.constant(spatial_scale, tf.float32))
    return tf.concat([tf.cast(rois[:, :1], tf.int64), tf.cast(cells, tf.int64)], axis=1)


def deduplicate(rois, spatial_scale):
    """(unique rois [u, 5], inverse [n] int32) with rois == unique[inverse] as far as
    RoI pooling can tell: RoIs on the same rounded feature cells of the same image
    pool the same numbers, so each group is computed once (the release does this).
    The first RoI of each group represents it, groups in order of first appearance."""
    _, inverse = tf.raw_ops.UniqueV2(x=feature_cells(rois, spatial_scale),
                                     axis=tf.constant([0], tf.int64), out_idx=tf.int32)
    count = tf.cond(tf.shape(rois)[0] > 0, lambda: tf.reduce_max(inverse) + 1,
                    lambda: tf.constant(0, tf.int32))
    first = tf.math.unsorted_segment_min(tf.range(tf.shape(rois)[0]), inverse, count)
    return tf.gather(rois, first), inverse


def network_inputs(image_bgr, proposals, scales, max_size, preprocessing, flip=False,
                   dedup_scale=None):
    """Network inputs of one image: (images [V*S, H, W, 3], rois [u, 5], inverse [V*n]).

    ``image_bgr`` [h, w, 3] (any real dtype) and ``proposals`` [n, 4] float32, already
    clipped (clip_proposals). One image per test scale (shortest side ``scales[k]``,
    longest capped at ``max_size``), each RoI sent to its pyramid level; with ``flip``
    the S mirrored images follow the S plain ones and the mirrored proposals follow
    the n proposals (V = 2). ``dedup_scale`` (the RoI pooling's spatial scale) groups
    the RoIs that pool the same cells (deduplicate); None keeps one RoI per proposal.
    The network's output for proposal i is its output for ``rois[inverse[i]]``.
    """
    image = tf.cast(image_bgr, tf.float32)
    height = tf.cast(tf.shape(image)[0], tf.float64)
    width = tf.cast(tf.shape(image)[1], tf.float64)
    factors = tf.stack([scale_factor(height, width, float(s), float(max_size)) for s in scales])
    sizes = tf.cast(tf.round(tf.stack([height * factors, width * factors], axis=1)), tf.int32)
    # The resize must wait for the check: in a graph nothing else orders the two, and
    # the resize would otherwise fail first with an error that names no cause.
    with tf.control_dependencies([tf.debugging.assert_positive(
            sizes, "image too thin: a side scales to 0 pixels at a test scale; pad it or "
            "send a larger crop")]):
        sizes = tf.identity(sizes)
    versions = [image] + ([image[:, ::-1]] if flip else [])
    proposals = tf.reshape(tf.convert_to_tensor(proposals, tf.float32), [-1, 4])
    per_version = [proposals] + ([flip_horizontally(proposals, tf.cast(width, tf.float32))]
                                 if flip else [])
    batch = []
    for version in versions:
        for k in range(len(scales)):
            factor = tf.cast(tf.fill([2], factors[k]), tf.float32)
            resized = tf.raw_ops.ScaleAndTranslate(
                images=version[None], size=sizes[k], scale=factor, translation=tf.zeros([2]),
                kernel_type="triangle", antialias=False)[0]
            batch.append(preprocess(resized, preprocessing))
    max_h, max_w = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])
    images = tf.stack([tf.image.pad_to_bounding_box(x, 0, 0, max_h, max_w) for x in batch])
    level = pyramid_levels(proposals, factors)  # a mirror keeps each box's area
    scaled = tf.cast(tf.gather(factors, level), tf.float32)[:, None]
    rois = tf.concat([tf.concat([tf.cast(level + v * len(scales), tf.float32)[:, None],
                                 boxes * scaled], axis=1)
                      for v, boxes in enumerate(per_version)], axis=0)
    if dedup_scale is None:
        return images, rois, tf.range(tf.shape(rois)[0])
    rois, inverse = deduplicate(rois, dedup_scale)
    return images, rois, inverse


def empty_rois(rois, feature_height, feature_width, spatial_scale):
    """[R] bool: the RoI's rounded start corner lies at or beyond the last feature
    column or row, so RoI pooling finds every bin empty. The start cell is computed as
    the composite op computes it; proposals are clipped to the image, so it is never
    below zero."""
    start = round_half_away_from_zero(rois[:, 1:3] * tf.constant(spatial_scale, tf.float32))
    return (start[:, 0] >= feature_width) | (start[:, 1] >= feature_height)


# RoIs per pass of RoI pooling and the per-RoI layers (make_network): a detection's
# peak memory grows with this, not with the number of proposals. 2048 covers the
# release's 2000 selective-search boxes in one pass; at VGG16's 7 x 7 x 512 pooled
# features it is 0.2 GB of pooled output (docs/serving.md, "Bounded requests").
ROI_BATCH = 2048


def make_network(model, score_empty_rois=False, roi_batch=ROI_BATCH):
    """(images, rois) -> (cls_prob, bbox_pred) float32 of ``model`` in inference mode,
    with RoIs that pool no feature cell scored as background (probability 1, zero
    deltas) unless ``score_empty_rois`` (detector.py's docstring says why).

    The backbone runs once; RoI pooling and the layers after it run on ``roi_batch``
    RoIs at a time, one batch after the other, so that memory is bounded whatever the
    number of RoIs (a serving request, a dense-box test with tens of thousands).
    """
    if int(roi_batch) < 1:
        raise ValueError(f"roi_batch must be a positive number of RoIs, got {roi_batch}")
    roi_batch = int(roi_batch)
    pool = model.get_layer("roi_pool")
    spatial_scale = float(pool.spatial_scale)
    num_classes = int(model.get_layer("cls_score").units)
    # One-vs-rest SVM scores (FastRCNN svm_scores) are raw margins, where 0 is no
    # background score: an empty RoI gets the lowest score for every class instead.
    softmax = isinstance(model.get_layer("cls_prob"), keras.layers.Softmax)
    features = pool.input[0]
    backbone = keras.Model(model.input["images"], features)
    # From the feature map on: a functional model whose inputs are the backbone's output
    # and the RoIs (Keras copies the graph from those tensors).
    head = keras.Model([features, model.input["rois"]],
                       [model.get_layer("cls_prob").output, model.get_layer("bbox_pred").output])

    def run(images, rois):
        feature_map = backbone(images, training=False)
        count = tf.shape(rois)[0]
        batches = tf.maximum((count + roi_batch - 1) // roi_batch, 1)  # one even for none

        def step(k, all_scores, all_deltas):
            batch = rois[k * roi_batch:(k + 1) * roi_batch]
            scores, deltas = head([feature_map, batch], training=False)
            return (k + 1, all_scores.write(k, tf.cast(scores, tf.float32)),
                    all_deltas.write(k, tf.cast(deltas, tf.float32)))

        _, scores, deltas = tf.while_loop(
            lambda k, *_: k < batches, step,
            (tf.constant(0), _batch_outputs(batches, num_classes),
             _batch_outputs(batches, 4 * (num_classes - 1))),
            parallel_iterations=1)  # one batch in memory at a time
        scores, deltas = scores.concat(), deltas.concat()
        if not score_empty_rois:
            size = tf.shape(feature_map)
            empty = empty_rois(rois, size[1], size[2], spatial_scale)[:, None]
            background = tf.one_hot(tf.zeros_like(rois[:, 0], tf.int32), num_classes,
                                    dtype=scores.dtype)
            if not softmax:
                background = tf.fill(tf.shape(scores), scores.dtype.min)
            scores = tf.where(empty, background, scores)
            deltas = tf.where(empty, tf.zeros_like(deltas), deltas)
        return scores, deltas

    return run


def _batch_outputs(batches, width):
    """A TensorArray of ``batches`` float32 [rows, width] outputs whose row counts differ
    (the last batch is short): element shapes are not inferred from the first write."""
    return tf.TensorArray(tf.float32, batches, element_shape=[None, width], infer_shape=False)


def decode_boxes(proposals, deltas):
    """boxes.decode in float64: [n, 4] proposals, [n, 4K] deltas -> [n, 4K] boxes."""
    proposals = tf.cast(proposals, tf.float64)
    deltas = tf.cast(deltas, tf.float64)
    w = proposals[:, 2] - proposals[:, 0] + box_ops.EPS
    h = proposals[:, 3] - proposals[:, 1] + box_ops.EPS
    cx = proposals[:, 0] + 0.5 * w
    cy = proposals[:, 1] + 0.5 * h
    d = tf.reshape(deltas, [tf.shape(deltas)[0], -1, 4])
    pred_cx = d[..., 0] * w[:, None] + cx[:, None]
    pred_cy = d[..., 1] * h[:, None] + cy[:, None]
    pred_w = tf.exp(d[..., 2]) * w[:, None]
    pred_h = tf.exp(d[..., 3]) * h[:, None]
    boxes = tf.stack([pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,
                      pred_cx + 0.5 * pred_w, pred_cy + 0.5 * pred_h], axis=-1)
    return tf.reshape(boxes, tf.shape(deltas))


def clip_boxes(boxes, width, height):
    """boxes.clip: [n, 4K] float64 boxes clipped to a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = (boxes[:, k::4] for k in range(4))
    width = tf.cast(width, tf.float64)
    height = tf.cast(height, tf.float64)
    clipped = tf.stack([tf.clip_by_value(x1, 0.0, width - 1.0),
                        tf.clip_by_value(y1, 0.0, height - 1.0),
                        tf.clip_by_value(x2, 0.0, width - 1.0),
                        tf.clip_by_value(y2, 0.0, height - 1.0)], axis=-1)
    return tf.reshape(clipped, tf.shape(boxes))


def detection_outputs(proposals, scores, deltas, width, height, flip=False, bbox_reg=True):
    """(boxes [n, 4K] float64, scores [n, K + 1]) of the n proposals from the network's
    per-proposal outputs (``V*n`` rows, V = 2 with ``flip``): each class's deltas decoded
    onto the proposal in image pixels (or the proposal itself without ``bbox_reg``, the
    release's TEST.BBOX_REG off), clipped to the image; with ``flip`` the mirrored
    pass's boxes are mirrored back and both passes' boxes and scores averaged."""
    proposals = tf.reshape(tf.convert_to_tensor(proposals, tf.float32), [-1, 4])
    n = tf.shape(proposals)[0]
    if flip:  # the mirrored pass's deltas apply to the mirrored (float32) proposals
        proposals = tf.concat([proposals, flip_horizontally(proposals, tf.cast(width, tf.float32))],
                              axis=0)
    proposals = tf.cast(proposals, tf.float64)
    width = tf.cast(width, tf.float64)
    if bbox_reg:
        boxes = decode_boxes(proposals, deltas)
    else:
        boxes = tf.tile(proposals, [1, tf.shape(deltas)[1] // 4])
    boxes = clip_boxes(boxes, width, height)
    if flip:
        boxes = 0.5 * (boxes[:n] + flip_horizontally(boxes[n:], width))
        scores = 0.5 * (scores[:n] + scores[n:])
    return boxes, scores


__all__ = ["CANONICAL_AREA", "ROI_BATCH", "canonical_order", "clip_boxes", "clip_proposals",
           "decode_boxes", "deduplicate", "detection_outputs", "empty_rois", "feature_cells",
           "flip_horizontally", "make_network", "network_inputs", "preprocess",
           "pyramid_levels", "scale_factor", "usable_proposals"]
