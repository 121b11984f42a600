"""Box arithmetic of Fast R-CNN (numpy).

Conventions (DESIGN.md section 3), stated once for the package: boxes are
``(x1, y1, x2, y2)``, 0-based, *inclusive* pixel coordinates, so areas and IoU
count ``x2 - x1 + 1`` pixels across (the release's cython_bbox and nms). Box
arrays have shape ``[n, 4]``; per-class arrays ``[n, 4 * K]``.

Regression targets use the R-CNN parameterisation with the release's own
widths, which are *not* the +1 ones: ``Pw = x2 - x1 + EPS`` and centre
``Px = x1 + 0.5 * Pw`` (roidb.py ``_compute_targets``, test.py ``_bbox_pred``;
EPS = 1e-14 keeps a zero width off the log). For a proposal P and its ground
truth G: ``tx = (Gx - Px) / Pw``, ``ty = (Gy - Py) / Ph``, ``tw = log(Gw / Pw)``,
``th = log(Gh / Ph)``. Decoding inverts it (``x1 = cx - 0.5 * w``,
``x2 = cx + 0.5 * w``), so ``decode(P, encode(P, G)) == G`` up to the EPS
(docs/fidelity.md, "Box parameterisation").

At test time proposals are clipped to the image and those left without a pixel
(inverted, wholly outside, non-finite) are dropped before scoring
(detection/graph.py ``clip_proposals``; ``clip_proposals`` here is the numpy
reference it is tested against; docs/model.md, "Which proposals are scored").
"""

import numpy as np

EPS = 1e-14  # the release's cfg.EPS, added to the coder's widths and heights


def as_proposals(proposals, name="proposals"):
    """``proposals`` as an [n, 4] float32 array of (x1, y1, x2, y2) boxes, checked and
    never reshaped: anything but [n, 4] (or an empty list, meaning none) is a ValueError
    naming the shape. Reshaping would read [n, 5] RoIs (a batch-index column first) as
    5n / 4 other boxes, and a transposed (4, n) array as n boxes of mixed coordinates."""
    array = np.asarray(proposals)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numbers, got an array of dtype {array.dtype}")
    if array.ndim == 1 and array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        hint = ""
        if array.ndim == 2 and array.shape[1] == 5:
            hint = ("; rows of 5 are RoIs with a batch index first: pass rows[:, 1:] of one "
                    "image's")
        elif array.ndim == 2 and array.shape[0] == 4:
            hint = "; a (4, n) array holds the boxes as columns: pass its transpose"
        raise ValueError(f"{name} must be [n, 4] boxes (x1, y1, x2, y2), got shape "
                         f"{array.shape}{hint}")
    return array.astype(np.float32, copy=False)


def widths_heights(boxes):
    """(widths, heights) of [n, 4] boxes, inclusive convention."""
    boxes = np.asarray(boxes)
    return boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1


def areas(boxes):
    """[n] areas, inclusive convention (a 1x1-pixel box has area 1)."""
    w, h = widths_heights(boxes)
    return w * h


def iou_matrix(boxes, query_boxes):
    """[n, k] intersection over union of every box with every query box (+1 areas).

    Degenerate boxes (x2 < x1) have no intersection with anything.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    query_boxes = np.asarray(query_boxes, np.float64).reshape(-1, 4)
    iw = (np.minimum(boxes[:, None, 2], query_boxes[None, :, 2])
          - np.maximum(boxes[:, None, 0], query_boxes[None, :, 0]) + 1)
    ih = (np.minimum(boxes[:, None, 3], query_boxes[None, :, 3])
          - np.maximum(boxes[:, None, 1], query_boxes[None, :, 1]) + 1)
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = areas(boxes)[:, None] + areas(query_boxes)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(union > 0, union, 1), 0.0)


def coder_widths_heights(boxes):
    """(widths, heights) of [n, 4] boxes as the box coder counts them: ``x2 - x1 + EPS``."""
    boxes = np.asarray(boxes)
    return boxes[:, 2] - boxes[:, 0] + EPS, boxes[:, 3] - boxes[:, 1] + EPS


def encode(rois, gt_boxes):
    """[n, 4] regression targets (tx, ty, tw, th) taking ``rois`` to ``gt_boxes``.

    Raises ValueError for a box with x2 < x1 or y2 < y1 (its log would be NaN):
    callers pass validated boxes.
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    pw, ph = coder_widths_heights(rois)
    gw, gh = coder_widths_heights(gt_boxes)
    if np.any(pw <= 0) or np.any(ph <= 0) or np.any(gw <= 0) or np.any(gh <= 0):
        raise ValueError("encode: boxes must have x2 >= x1 and y2 >= y1")
    px, py = rois[:, 0] + 0.5 * pw, rois[:, 1] + 0.5 * ph
    gx, gy = gt_boxes[:, 0] + 0.5 * gw, gt_boxes[:, 1] + 0.5 * gh
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], axis=1)


def decode(boxes, deltas):
    """Applies [n, 4 * K] deltas to [n, 4] boxes; returns [n, 4 * K] boxes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    deltas = np.asarray(deltas, np.float64)
    w, h = coder_widths_heights(boxes)
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    dx, dy, dw, dh = (deltas[:, k::4] for k in range(4))
    pred_cx = dx * w[:, None] + cx[:, None]
    pred_cy = dy * h[:, None] + cy[:, None]
    pred_w = np.exp(dw) * w[:, None]
    pred_h = np.exp(dh) * h[:, None]
    out = np.empty_like(deltas)
    out[:, 0::4] = pred_cx - 0.5 * pred_w
    out[:, 1::4] = pred_cy - 0.5 * pred_h
    out[:, 2::4] = pred_cx + 0.5 * pred_w
    out[:, 3::4] = pred_cy + 0.5 * pred_h
    return out


def clip(boxes, width, height):
    """Clips [n, 4 * K] boxes to an image of ``width`` x ``height`` pixels."""
    boxes = np.array(boxes, copy=True)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    return boxes


def clip_proposals(proposals, width, height):
    """The proposals a detector scores: clipped to the image, those left empty dropped.

    Each proposal becomes its intersection with the ``width`` x ``height`` image,
    clipped as the release clips its output boxes (test.py ``_clip_boxes``: x1, y1
    raised to 0, x2, y2 lowered to width - 1, height - 1); a proposal is dropped when
    a coordinate is not finite or when the clipped box has x2 < x1 or y2 < y1, which
    is the case exactly for inverted proposals and those wholly outside the image.
    The arithmetic is in the proposals' dtype; in float32 it is, bit for bit, what
    detection/graph.py's ``clip_proposals`` (the Detector's and the serving graph's)
    computes, which tests/test_hostile_proposals.py checks against this reference.

    Returns (boxes [m, 4], keep [n] bool): the clipped boxes of the kept proposals,
    in their order, and which of the n proposals were kept.
    """
    proposals = np.asarray(proposals).reshape(-1, 4)
    finite = np.all(np.isfinite(proposals), axis=1)
    with np.errstate(invalid="ignore"):  # NaN rows are compared, then dropped
        x1 = np.maximum(proposals[:, 0], 0)
        y1 = np.maximum(proposals[:, 1], 0)
        x2 = np.minimum(proposals[:, 2], width - 1)
        y2 = np.minimum(proposals[:, 3], height - 1)
        keep = finite & (x2 >= x1) & (y2 >= y1)
    clipped = np.stack([x1, y1, x2, y2], axis=1).astype(proposals.dtype, copy=False)
    return clipped[keep], keep


def in_window(boxes, window):
    """([n] touches, [n] centre inside): which [n, 4] boxes overlap the inclusive ``window``
    (x1, y1, x2, y2) and which have their centre in it."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = window
    touches = (boxes[:, 2] >= x1) & (boxes[:, 0] <= x2) & (boxes[:, 3] >= y1) & (boxes[:, 1] <= y2)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = np.all((centres >= [x1, y1]) & (centres <= [x2, y2]), axis=1)
    return touches, inside


def flip_horizontally(boxes, width):
    """[n, 4 * K] boxes of the mirrored image: ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``."""
    boxes = np.array(boxes, copy=True)
    x1 = boxes[:, 0::4].copy()
    boxes[:, 0::4] = width - boxes[:, 2::4] - 1
    boxes[:, 2::4] = width - x1 - 1
    return boxes


def invalid_box_reason(box, width, height):
    """Why a 0-based box is not a valid box of a ``width`` x ``height`` image, or None."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])):
        return "has a non-finite coordinate"
    if x2 < x1 or y2 < y1:
        return "has x2 < x1 or y2 < y1"
    if x1 < 0 or y1 < 0 or x2 > width - 1 or y2 > height - 1:
        return f"lies outside the {width}x{height} image"
    return None
