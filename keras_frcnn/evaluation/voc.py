"""PASCAL VOC average precision, as the devkit defines it.

``voc_ap`` scores one class: detections sorted by score (a stable sort, so ties
keep their input order and results are reproducible), each compared with the
ground-truth box of its image with the highest IoU (+1 areas), matched or not. A match
needs IoU > threshold (the Python evaluator the field uses) or >= threshold
(``devkit_ge=True``, the MATLAB devkit, which also brings its 11-point recall
thresholds, below). A detection whose best ground truth is
``difficult`` counts neither way, and difficult boxes do not count in recall; a
second detection of an already matched box is a false positive, even when
another box overlaps it. AP is the VOC2007 11-point metric
(``use_07_metric=True``) or the area under the monotone precision envelope
(VOC2010 and later).

Edge cases: no detections -> AP 0; no (non-difficult) ground truth for the
class -> NaN, which ``evaluate_voc`` reports as "n/a" and leaves out of the
mean with a warning; a detection for an image the ground truth does not cover,
or with a non-finite coordinate or score -> ValueError naming it.
"""

import dataclasses
import logging

import numpy as np

from keras_frcnn import boxes as box_ops

logger = logging.getLogger("keras_frcnn.evaluation")


@dataclasses.dataclass(frozen=True)
class PRCurve:
    """The matching of one class: per detection in score order, TP/FP flags."""

    scores: np.ndarray  # [d] descending
    tp: np.ndarray  # [d] bool
    fp: np.ndarray  # [d] bool (neither for detections matched to difficult boxes)
    num_positives: int  # non-difficult ground-truth boxes

    @property
    def recall(self):
        if self.num_positives == 0:
            return np.full(len(self.tp), np.nan)
        return np.cumsum(self.tp) / self.num_positives

    @property
    def precision(self):
        tp, fp = np.cumsum(self.tp), np.cumsum(self.fp)
        return tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


def _checked_detections(detections, ground_truth):
    rows = list(detections)
    image_ids, scores, boxes = [], np.zeros(len(rows)), np.zeros((len(rows), 4))
    for k, row in enumerate(rows):
        try:
            image_id, score, box = row
            scores[k] = score
            boxes[k] = np.asarray(box, np.float64).reshape(4)
        except (TypeError, ValueError) as err:
            raise ValueError(f"detection {k}: expected (image_id, score, (x1, y1, x2, y2)), "
                             f"got {row!r}") from err
        if not (np.isfinite(scores[k]) and np.all(np.isfinite(boxes[k]))):
            raise ValueError(f"detection {k} on image {image_id!r} has a non-finite score or "
                             f"box: {row!r}")
        image_ids.append(image_id)
    unknown = sorted({str(i) for i in image_ids if i not in ground_truth})
    if unknown:
        raise ValueError(f"detections for {len(unknown)} images not in the ground truth "
                         f"(first: {unknown[:3]}); evaluate against the split they came from")
    return image_ids, scores, boxes


def match_detections(detections, ground_truth, iou_threshold=0.5, devkit_ge=False):
    """The PRCurve of one class (see the module docstring for the rules)."""
    image_ids, scores, boxes = _checked_detections(detections, ground_truth)
    gt = {}
    num_positives = 0
    for image_id, (gt_boxes, difficult) in ground_truth.items():
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        difficult = np.asarray(difficult, bool).reshape(-1)
        if len(difficult) != len(gt_boxes):
            raise ValueError(f"ground truth of image {image_id!r}: {len(gt_boxes)} boxes but "
                             f"{len(difficult)} difficult flags")
        gt[image_id] = (gt_boxes, difficult, np.zeros(len(gt_boxes), bool))
        num_positives += int(np.count_nonzero(~difficult))
    order = np.argsort(-scores, kind="stable")
    tp = np.zeros(len(order), bool)
    fp = np.zeros(len(order), bool)
    for rank, k in enumerate(order):
        gt_boxes, difficult, taken = gt[image_ids[k]]
        if len(gt_boxes) == 0:
            fp[rank] = True
            continue
        overlaps = box_ops.iou_matrix(boxes[k:k + 1], gt_boxes)[0]
        best = int(np.argmax(overlaps))
        matched = overlaps[best] >= iou_threshold if devkit_ge else overlaps[best] > iou_threshold
        if not matched:
            fp[rank] = True
        elif difficult[best]:
            continue
        elif taken[best]:
            fp[rank] = True
        else:
            tp[rank] = taken[best] = True
    return PRCurve(scores[order], tp, fp, num_positives)


# The 11 recall thresholds of the VOC2007 metric. Python evaluators take
# np.arange(0, 1.1, 0.1), whose 0.6 and 0.7 are 0.6000000000000001 and
# 0.7000000000000001; the MATLAB devkit's 0:0.1:1 computes its upper half from the
# end point (1 - 4 * 0.1, 1 - 3 * 0.1, ...), which gives 0.6 and 0.7 to the last bit.
# A recall of exactly 3/5 or 7/10 reaches the devkit's threshold and not the other.
PYTHON_07_THRESHOLDS = np.arange(0.0, 1.1, 0.1)
MATLAB_07_THRESHOLDS = np.array([k * 0.1 for k in range(6)]
                                + [1 - k * 0.1 for k in range(4, -1, -1)])


def ap_from_curve(recall, precision, use_07_metric=False, devkit_ge=False):
    """AP from recall/precision arrays (detections in score order); ``devkit_ge``
    takes the MATLAB devkit's 11-point thresholds (above)."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        thresholds = MATLAB_07_THRESHOLDS if devkit_ge else PYTHON_07_THRESHOLDS
        return float(sum(precision[recall >= t].max(initial=0.0) for t in thresholds) / 11.0)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone envelope
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def curve_ap(curve, use_07_metric=False, devkit_ge=False):
    """AP of a PRCurve: NaN without positives, 0 without detections."""
    if curve.num_positives == 0:
        return float("nan")
    if len(curve.tp) == 0:
        return 0.0
    return ap_from_curve(curve.recall, curve.precision, use_07_metric, devkit_ge)


def voc_ap(detections, ground_truth, iou_threshold=0.5, use_07_metric=False, devkit_ge=False):
    """AP of one class.

    detections: iterable of ``(image_id, score, (x1, y1, x2, y2))``.
    ground_truth: ``{image_id: (boxes [n, 4], difficult [n] bool)}`` covering
      every image of the split (empty arrays where the class is absent).
    Boxes are 0-based inclusive. Returns NaN when the class has no
    non-difficult ground truth, 0.0 when it has no detections.
    """
    return curve_ap(match_detections(detections, ground_truth, iou_threshold, devkit_ge),
                    use_07_metric, devkit_ge)
