"""From per-RoI scores and per-class boxes to detections: NMS and the two modes.

NMS is the release's (lib/utils/nms.pyx, used by test.py): boxes in score
order, a box is suppressed when its IoU with a kept box is *at least* the
threshold, the IoU computed in float32 with +1 areas in the release's order of
operations, and compared with the threshold in float64 as Cython does. The
ranked boxes are settled 256 at a time, each block against the boxes kept before
it and then by a vectorised fixed-point iteration of the greedy rule (no Python
loop over boxes; memory [256, n], not [n, n]); the loop over classes is unrolled
at trace time.

Modes (docs/fidelity.md, "Per-class caps"):
  "frcnn"    the release's test_net as first published, which produced the
             paper's tables: per class the top ``max_per_class`` (100) RoIs by
             score, then NMS at 0.3. ``detect_dataset`` adds its dataset-level
             cap (``max_per_set``: 40 detections per image and class over the
             set, a score threshold on the candidates).
  "default"  the release's last test_net: scores > 0.05, NMS at 0.3 per class,
             then at most 100 detections per image: those scoring at least the
             100th best score (ties at the cut are kept, as the release's ``>=``).

Either mode can replace NMS by Gaussian Soft-NMS (Bodla et al., ICCV 2017; not
in the paper): ``soft_nms_sigma`` > 0 keeps overlapping boxes with their
scores decayed instead of deleting them, which helps where objects of one
class stand close together.
"""

import dataclasses

import numpy as np
import tensorflow as tf

MODES = ("frcnn", "default")


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
    mode: str = "default"
    nms_threshold: float = 0.3  # suppress at IoU >= this; 1 drops exact duplicates, > 1 none
    score_threshold: float = 0.05  # "default": keep scores above
    max_per_image: int = 100  # "default": after NMS, over all classes (ties at the cut kept)
    max_per_class: int = 100  # "frcnn": before NMS, per class
    max_per_set_factor: int = 40  # "frcnn": dataset-level cap, per image and class
    soft_nms_sigma: float = 0.0  # > 0: Soft-NMS with this sigma instead of NMS

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"post-processing mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.nms_threshold < float("inf"):
            raise ValueError("nms_threshold must be >= 0 (IoU >= it suppresses; above 1: no "
                             f"NMS), got {self.nms_threshold}")
        if not self.soft_nms_sigma >= 0.0:
            raise ValueError("soft_nms_sigma must be >= 0 (0: NMS at nms_threshold), got "
                             f"{self.soft_nms_sigma}")

    @classmethod
    def from_test_config(cls, test, mode=None):
        """The post-processing of a config's ``test`` section (``mode`` overrides
        ``test.mode``, as bin/export.py does)."""
        return cls(mode=test.mode if mode is None else mode, nms_threshold=test.nms_threshold,
                   score_threshold=test.score_threshold, soft_nms_sigma=test.soft_nms_sigma)


@dataclasses.dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image: 0-based inclusive boxes in original-image pixels."""

    boxes: np.ndarray  # [n, 4] float32
    scores: np.ndarray  # [n] float32
    classes: np.ndarray  # [n] int32 in 1..K

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self):
        return len(self.scores)

    def select(self, keep):
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


# Boxes NMS compares at a time (nms): its memory is a few [NMS_BLOCK, n] matrices, 20 MB
# of float32 for n = 20,000, where the whole [n, n] would be gigabytes per class.
NMS_BLOCK = 256


def nms(boxes, scores, iou_threshold=0.3, max_output_size=None, block=NMS_BLOCK):
    """Indices kept by the release's NMS, in score order (ties: the lower index first).

    boxes [n, 4] (x1, y1, x2, y2) inclusive, scores [n]; tensors or arrays. A box
    is suppressed by a higher-ranked kept box when their IoU (+1 areas, float32)
    is >= ``iou_threshold``. ``max_output_size`` caps the number returned.

    The ranked boxes are decided ``block`` at a time, in rank order: a box of the
    block is dropped if a box kept before the block suppresses it, and the rest of
    the block is settled by a vectorised fixed-point iteration of the greedy rule
    (no Python loop over boxes). Memory: [block, n] (the block against every box
    ranked before it), whatever n; time: the n^2 / 2 IoUs of the release's loop, and
    per block at most one step per link of the longest chain of boxes that suppress
    each other in turn (a few for real detections).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    ranked = tf.gather(boxes, order)
    count = tf.shape(ranked)[0]
    threshold = _float32_at_least(iou_threshold)
    rank = tf.range(block)

    def settle_block(k, keep):
        start = k * block
        candidates = ranked[start:start + block]
        size = tf.shape(candidates)[0]
        # Dropped by a box kept in an earlier block.
        earlier = (_release_iou(candidates, ranked[:start]) >= threshold) & keep[None, :start]
        alive = tf.logical_not(tf.reduce_any(earlier, axis=1))
        # suppresses[i, j]: box i ranks before box j in the block and deletes it.
        suppresses = ((_release_iou(candidates, candidates) >= threshold)
                      & (rank[:size, None] < rank[None, :size]))

        def greedy_step(kept, _):
            # kept[j] = j is alive and no kept box before j suppresses j. Its only fixed
            # point is the greedy result, reached from ``alive`` in at most ``block``
            # steps (entry j is final once entries 0..j-1 are).
            return alive & tf.logical_not(tf.reduce_any(suppresses & kept[:, None], axis=0)), kept

        kept, _ = tf.while_loop(lambda kept, previous: tf.reduce_any(kept != previous),
                                greedy_step, (alive, tf.logical_not(alive)))
        return k + 1, tf.concat([keep[:start], kept, keep[start + size:]], axis=0)

    blocks = (count + block - 1) // block
    _, keep = tf.while_loop(lambda k, keep: k < blocks, settle_block,
                            (tf.constant(0), tf.zeros([count], tf.bool)),
                            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None])),
                            parallel_iterations=1)
    kept = tf.boolean_mask(order, keep)
    if max_output_size is not None:
        kept = kept[:max_output_size]
    return kept


def _float32_at_least(threshold):
    """The smallest float32 >= ``threshold``: a float32 IoU is >= it exactly when, widened
    to float64, it is >= the Python float (nms.pyx's comparison), at half the memory."""
    value = np.float32(threshold)
    if float(value) < threshold:
        value = np.nextafter(value, np.float32(np.inf))
    return value


def _release_iou(boxes, others):
    """[n, m] IoU of [n, 4] and [m, 4] float32 boxes, operation for operation as nms.pyx
    (+1 areas; max, min and the sum of the areas are exact in either order, so
    IoU(a, b) == IoU(b, a) bit for bit)."""
    x1, y1, x2, y2 = tf.unstack(boxes, num=4, axis=1)
    u1, v1, u2, v2 = tf.unstack(others, num=4, axis=1)
    areas = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    other_areas = (u2 - u1 + 1.0) * (v2 - v1 + 1.0)
    w = tf.maximum(0.0, tf.minimum(x2[:, None], u2[None, :])
                   - tf.maximum(x1[:, None], u1[None, :]) + 1.0)
    h = tf.maximum(0.0, tf.minimum(y2[:, None], v2[None, :])
                   - tf.maximum(y1[:, None], v1[None, :]) + 1.0)
    inter = w * h
    return inter / (areas[:, None] + other_areas[None, :] - inter)


def soft_nms(boxes, scores, sigma, score_threshold=0.0, max_output_size=None):
    """Gaussian Soft-NMS: (indices, decayed scores) in selection order.

    Repeatedly selects the highest-scoring box and multiplies every remaining
    score by ``exp(-IoU^2 / sigma)`` with it (+1 areas); a box whose score
    falls to ``score_threshold`` or below is dropped. TensorFlow's kernel
    weights by ``exp(-IoU^2 / (2 s))``, so it is given ``s = sigma / 2``.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    if max_output_size is None:
        max_output_size = tf.shape(boxes)[0]
    return tf.image.non_max_suppression_with_scores(
        _shifted(boxes), scores, max_output_size, iou_threshold=1.0,
        score_threshold=score_threshold, soft_nms_sigma=sigma / 2.0)


def _shifted(boxes):
    """[x1, y1, x2, y2] inclusive -> [y1, x1, y2 + 1, x2 + 1]: plain areas are the +1 ones."""
    return tf.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] + 1.0, boxes[:, 2] + 1.0], axis=1)


def _per_class(boxes, scores, k, config):
    """(boxes, scores) of class k after the mode's pre-selection and NMS."""
    class_boxes = boxes[:, 4 * (k - 1):4 * k]
    class_scores = scores[:, k]
    if config.mode == "default":
        candidates = tf.where(class_scores > config.score_threshold)[:, 0]
    else:
        count = tf.minimum(tf.shape(class_scores)[0], config.max_per_class)
        candidates = tf.math.top_k(class_scores, count, sorted=True).indices
    class_boxes = tf.gather(class_boxes, candidates)
    class_scores = tf.gather(class_scores, candidates)
    if config.soft_nms_sigma > 0:
        floor = config.score_threshold if config.mode == "default" else 0.0
        keep, decayed = soft_nms(class_boxes, class_scores, config.soft_nms_sigma, floor)
        return tf.gather(class_boxes, keep), decayed
    keep = nms(class_boxes, class_scores, config.nms_threshold)
    return tf.gather(class_boxes, keep), tf.gather(class_scores, keep)


def postprocess_detections(boxes, scores, num_classes, config=PostprocessConfig()):
    """(boxes [R, 4K], scores [R, K + 1]) tensors -> (boxes, scores, classes) tensors.

    Classes are 1..K; detections are ordered by class, then score. Pure
    TensorFlow, for use inside any graph (make_postprocess, the SavedModel).
    """
    out_boxes, out_scores, out_classes = [], [], []
    for k in range(1, num_classes):
        b, s = _per_class(boxes, scores, k, config)
        out_boxes.append(b)
        out_scores.append(s)
        out_classes.append(tf.fill(tf.shape(s), k))
    boxes_all = tf.concat(out_boxes, axis=0)
    scores_all = tf.concat(out_scores, axis=0)
    classes_all = tf.concat(out_classes, axis=0)
    if config.mode == "default":
        # test.py: keep scores >= the max_per_image-th best, so ties at the cut stay.
        count = tf.minimum(tf.shape(scores_all)[0], config.max_per_image)
        cut = tf.reduce_min(tf.math.top_k(scores_all, count, sorted=False).values)
        keep = tf.where(scores_all >= cut)[:, 0]
        boxes_all = tf.gather(boxes_all, keep)
        scores_all = tf.gather(scores_all, keep)
        classes_all = tf.gather(classes_all, keep)
    return boxes_all, scores_all, classes_all


def make_postprocess(num_classes, config=PostprocessConfig()):
    """postprocess_detections as a tf.function of (boxes [R, 4K], scores [R, K + 1])."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4 * (num_classes - 1)], tf.float32),
                                  tf.TensorSpec([None, num_classes], tf.float32)])
    def postprocess(boxes, scores):
        return postprocess_detections(boxes, scores, num_classes, config)

    return postprocess


def set_cap_thresholds(candidate_scores, num_images, factor=40):
    """Per column (class) the score a detection must exceed under the release's
    dataset-level cap of mode "frcnn": the (factor * num_images)-th highest of the
    pre-NMS candidate scores of all images (``candidate_scores``: one [n_i, K + 1]
    array per image, column k the candidates of class k), -inf where there are
    no more candidates than that; -inf for background. The release keeps scores
    > threshold.
    """
    cap = factor * num_images
    scores = np.concatenate(candidate_scores, axis=0)
    thresholds = np.full(scores.shape[1], -np.inf)
    if len(scores) > cap:
        thresholds = np.partition(scores, len(scores) - cap, axis=0)[len(scores) - cap]
        thresholds[0] = -np.inf  # background: never a detection class
    return thresholds


def apply_set_cap(detections, candidate_scores, factor=40):
    """The release's dataset-level cap of mode "frcnn" after NMS.

    Detections at or below their class's threshold (set_cap_thresholds) are
    dropped. The release filters the candidates before NMS; filtering after NMS
    equals that, since a box is only ever suppressed by higher-scoring ones and
    keeps its score. Not so after Soft-NMS, which lowers scores: there the
    Detector filters the candidates first (frcnn_candidates, soft_nms_candidates).
    """
    if not candidate_scores:
        return detections
    thresholds = set_cap_thresholds(candidate_scores, len(detections), factor)
    return {image_id: dets.select(dets.scores > thresholds[dets.classes])
            for image_id, dets in detections.items()}


def frcnn_candidates(boxes, scores, max_per_class=100):
    """Mode "frcnn"'s candidates of one image, kept for a later Soft-NMS.

    boxes [n, 4K], scores [n, K + 1] arrays -> per class k = 1..K a pair (boxes
    [c, 4], scores [c]) of its ``max_per_class`` highest-scoring rows in score
    order (ties: the lower row first, as ``tf.math.top_k``), c <= max_per_class.
    """
    out = []
    for k in range(1, scores.shape[1]):
        order = np.argsort(-scores[:, k], kind="stable")[:max_per_class]
        out.append((boxes[order, 4 * (k - 1):4 * k], scores[order, k]))
    return out


def soft_nms_candidates(candidates, thresholds, sigma):
    """Detections of one image from its frcnn_candidates: per class the candidates
    scoring above ``thresholds[k]`` (the set cap, as the release filters before
    NMS), then Soft-NMS with floor 0, as mode "frcnn" does; ordered by class,
    then selection order, like postprocess_detections."""
    out_boxes, out_scores, out_classes = [], [], []
    for k, (class_boxes, class_scores) in enumerate(candidates, start=1):
        above = class_scores > thresholds[k]
        class_boxes, class_scores = class_boxes[above], class_scores[above]
        if len(class_scores):
            keep, decayed = soft_nms(class_boxes, class_scores, sigma, 0.0)
            class_boxes, class_scores = class_boxes[keep.numpy()], decayed.numpy()
        out_boxes.append(np.asarray(class_boxes, np.float32).reshape(-1, 4))
        out_scores.append(np.asarray(class_scores, np.float32))
        out_classes.append(np.full(len(class_scores), k, np.int32))
    if not out_boxes:
        return Detections.empty()
    return Detections(np.concatenate(out_boxes), np.concatenate(out_scores),
                      np.concatenate(out_classes))
