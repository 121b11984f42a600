"""The RoI database: per-image candidates with overlaps and regression targets.

For every training image (as the release's roidb): the ground-truth boxes
first (minus ``difficult`` ones if ``use_difficult`` is False; the release keeps
them), then the proposals;
for each row its maximum IoU with any ground truth (+1 convention), the class
of that ground truth, and, where that IoU reaches ``bbox_threshold`` (0.5),
the regression targets towards it. Targets are normalised per class to zero
mean and unit variance over the whole training set (the release), or by fixed
standard deviations; the statistics travel with the model config so that they
can be folded into ``bbox_pred`` when a model is saved.
"""

import dataclasses
import logging

import numpy as np

from keras_frcnn import boxes as box_ops
from keras_frcnn.data.records import DatasetError, check_on_error, handle_error

logger = logging.getLogger("keras_frcnn.data")

BBOX_THRESHOLD = 0.5
FIXED_STDS = (0.1, 0.1, 0.2, 0.2)


@dataclasses.dataclass(frozen=True, eq=False)
class RoidbEntry:
    """Candidates of one image (GT rows first)."""

    record: object  # ImageRecord
    boxes: np.ndarray  # [m, 4] float32: GT boxes, then proposals
    gt_classes: np.ndarray  # [m] int32: class for GT rows, 0 for proposals
    max_overlaps: np.ndarray  # [m] float32: max IoU with any GT (0 when there is none)
    max_classes: np.ndarray  # [m] int32: class of that GT (0 when max_overlaps is 0)
    targets: np.ndarray  # [m, 4] float32: unnormalised targets, zero below bbox_threshold

    @property
    def num_gt(self):
        return int(np.count_nonzero(self.gt_classes))


def build_entry(record, proposals, use_difficult=True, bbox_threshold=BBOX_THRESHOLD):
    """One RoidbEntry from an ImageRecord and its proposals ([n, 4], 0-based)."""
    keep = np.ones(len(record.boxes), bool) if use_difficult else ~record.difficult
    gt_boxes, gt_classes = record.boxes[keep], record.classes[keep]
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    all_boxes = np.concatenate([gt_boxes, proposals]).astype(np.float32)
    classes = np.concatenate([gt_classes, np.zeros(len(proposals), np.int32)]).astype(np.int32)
    max_overlaps = np.zeros(len(all_boxes), np.float32)
    max_classes = np.zeros(len(all_boxes), np.int32)
    targets = np.zeros((len(all_boxes), 4), np.float32)
    if len(gt_boxes):
        overlaps = box_ops.iou_matrix(all_boxes, gt_boxes)
        argmax = overlaps.argmax(axis=1)
        max_overlaps = overlaps.max(axis=1).astype(np.float32)
        max_classes = np.where(max_overlaps > 0, gt_classes[argmax], 0).astype(np.int32)
        positive = max_overlaps >= bbox_threshold
        if positive.any():
            targets[positive] = box_ops.encode(all_boxes[positive], gt_boxes[argmax[positive]])
    return RoidbEntry(record, all_boxes, classes, max_overlaps, max_classes, targets)


def crop_entry(entry, window, min_size=2, bbox_threshold=BBOX_THRESHOLD):
    """The RoidbEntry of the image cropped to ``window`` (x1, y1, x2, y2, inclusive pixels):
    ground truth whose centre lies in the window and every proposal are shifted and
    clipped to it; proposals left narrower or lower than ``min_size`` pixels are dropped
    (as keras_frcnn.proposals drops them); overlaps and targets are recomputed.
    """
    x1, y1, x2, y2 = (int(v) for v in window)
    width, height = x2 - x1 + 1, y2 - y1 + 1
    gt = entry.gt_classes > 0

    def shift_and_clip(boxes):
        return box_ops.clip(boxes - np.array([x1, y1, x1, y1], np.float32), width, height)

    touches, inside = box_ops.in_window(entry.boxes, (x1, y1, x2, y2))
    kept_gt = gt & inside
    proposals = shift_and_clip(entry.boxes[~gt & touches])
    w, h = box_ops.widths_heights(proposals)
    proposals = proposals[(w >= min_size) & (h >= min_size)]
    record = dataclasses.replace(
        entry.record, width=width, height=height,
        boxes=shift_and_clip(entry.boxes[kept_gt]), classes=entry.gt_classes[kept_gt],
        difficult=np.zeros(int(kept_gt.sum()), bool))  # the entry's GT rows are all trained on
    return build_entry(record, proposals, bbox_threshold=bbox_threshold)


def build_roidb(dataset, proposals, use_difficult=True, bbox_threshold=BBOX_THRESHOLD,
                on_error="raise"):
    """RoidbEntry per record. ``proposals`` maps image_id -> [n, 4] boxes (0-based).

    A record without proposals, or with neither proposals nor ground truth,
    is an error naming the image (or, with on_error="skip", a warning).
    """
    check_on_error(on_error)
    entries = []
    for record in dataset.records:
        boxes = proposals.get(record.image_id)
        if boxes is None or len(boxes) == 0:
            handle_error(DatasetError(f"{record.image_path}: no proposals for image "
                                      f"{record.image_id!r}"), on_error)
            continue
        entries.append(build_entry(record, boxes, use_difficult, bbox_threshold))
    if not entries:
        raise DatasetError(f"{dataset.name}: no usable image (every record lacked proposals)")
    return entries


@dataclasses.dataclass(frozen=True)
class TargetStats:
    """Per-class mean and std of the regression targets, [K + 1, 4] (row 0: background)."""

    means: np.ndarray
    stds: np.ndarray

    def normalize(self, targets, classes):
        """(targets - mean[class]) / std[class] for [n, 4] targets and [n] classes."""
        return ((targets - self.means[classes]) / self.stds[classes]).astype(np.float32)

    def to_dict(self):
        return {"means": self.means.tolist(), "stds": self.stds.tolist()}

    @classmethod
    def from_dict(cls, data):
        return cls(np.asarray(data["means"], np.float64), np.asarray(data["stds"], np.float64))


def target_stats(roidb, num_classes, mode="per_class", with_flipped=True,
                 bbox_threshold=BBOX_THRESHOLD):
    """Normalisation statistics over a training roidb.

    mode "per_class" (the release): mean and std of every class's targets over
    all rows whose IoU reaches bbox_threshold; a class with no such row (or a
    zero std) falls back to mean 0 / std 1 with a warning, never NaN.
    with_flipped: the statistics of the roidb plus its horizontal mirror, as
    the release computes them after appending flipped images (a flip negates
    tx, so the mean of tx is 0); use it whenever training flips.
    mode "fixed": means 0, stds (0.1, 0.1, 0.2, 0.2) for every class.
    """
    means = np.zeros((num_classes, 4))
    stds = np.ones((num_classes, 4))
    if mode == "fixed":
        stds[:] = FIXED_STDS
        return TargetStats(means, stds)
    if mode != "per_class":
        raise ValueError(f"target normalisation mode must be 'per_class' or 'fixed', got {mode!r}")
    counts = np.zeros(num_classes)
    sums = np.zeros((num_classes, 4))
    squares = np.zeros((num_classes, 4))
    for entry in roidb:
        positive = entry.max_overlaps >= bbox_threshold
        classes, targets = entry.max_classes[positive], entry.targets[positive].astype(np.float64)
        np.add.at(counts, classes, 1)
        np.add.at(sums, classes, targets)
        np.add.at(squares, classes, targets ** 2)
    if with_flipped:  # the mirrored copy adds -tx and the same ty, tw, th
        counts, squares = 2 * counts, 2 * squares
        sums = 2 * sums * [0, 1, 1, 1]
    for k in range(1, num_classes):
        if counts[k] == 0:
            logger.warning("class %d has no regression targets in the training set: "
                           "mean 0, std 1", k)
            continue
        means[k] = sums[k] / counts[k]
        variance = np.maximum(squares[k] / counts[k] - means[k] ** 2, 0)
        std = np.sqrt(variance)
        stds[k] = np.where(std > 1e-8, std, 1.0)
    return TargetStats(means, stds)
