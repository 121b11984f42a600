"""Proposal recall and Average Recall (AR), the proposal-quality measure of the
paper's reference [12] (Hosang, Benenson, Dollár and Schiele, "What makes for
effective detection proposals?", 2015), which section 5.5 and Figure 3 compare
with mAP.

Each ground-truth box is covered by its best proposal: the highest IoU of any
proposal of its image (+1 areas, keras_frcnn.boxes). Recall at a threshold t is
the share of ground-truth boxes covered at IoU >= t; AR is recall averaged over
t from 0.5 to 1, i.e. twice the area under the recall curve on [0.5, 1]. For one
box that area is max(0, best IoU - 0.5), so

    AR = (2 / n) * sum over the n boxes of max(0, best IoU - 0.5)

exactly, with no grid of thresholds. Boxes marked "difficult" are left out, as
the VOC evaluation leaves them out.
"""

import numpy as np

from keras_frcnn.boxes import iou_matrix


def best_overlaps(records, proposals):
    """[n] float64: the best IoU of each non-difficult ground-truth box of ``records``
    with the proposals of its image ({image_id: [m, 4]}; an image without proposals
    covers nothing). Boxes in record order."""
    best = []
    for record in records:
        boxes = np.asarray(record.boxes, np.float64).reshape(-1, 4)[~np.asarray(record.difficult)]
        if len(boxes) == 0:
            continue
        candidates = np.asarray(proposals.get(record.image_id, np.zeros((0, 4))),
                                np.float64).reshape(-1, 4)
        if len(candidates) == 0:
            best.append(np.zeros(len(boxes)))
        else:
            best.append(iou_matrix(boxes, candidates).max(axis=1))
    return np.concatenate(best) if best else np.zeros(0)


def recall_at(overlaps, threshold):
    """Share of boxes whose best overlap is >= ``threshold`` (nan without boxes)."""
    overlaps = np.asarray(overlaps, np.float64)
    return float(np.mean(overlaps >= threshold)) if len(overlaps) else float("nan")


def average_recall(overlaps):
    """AR of best overlaps: recall averaged over IoU thresholds in [0.5, 1] (exact)."""
    overlaps = np.asarray(overlaps, np.float64)
    if not len(overlaps):
        return float("nan")
    return float(2.0 * np.mean(np.clip(overlaps - 0.5, 0.0, None)))


def proposal_quality(records, proposals):
    """{"average_recall", "recall_at_0.5", "recall_at_0.7", "boxes", "proposals_per_image"}
    of a split's proposals."""
    overlaps = best_overlaps(records, proposals)
    counts = [len(np.asarray(proposals.get(r.image_id, np.zeros((0, 4)))).reshape(-1, 4))
              for r in records]
    return {"average_recall": average_recall(overlaps),
            "recall_at_0.5": recall_at(overlaps, 0.5),
            "recall_at_0.7": recall_at(overlaps, 0.7),
            "boxes": int(len(overlaps)),
            "proposals_per_image": float(np.mean(counts)) if counts else 0.0}
