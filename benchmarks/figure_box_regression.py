"""box_regression.png: what class-specific box regression (paper section 2.3, eq. 2)
does to the proposals of a trained model, measured by IoU with the ground truth.

The proposals measured ("matched proposals"): every proposal of the split, clipped to
its image as the Detector clips it, whose IoU with a ground-truth box is at least
FG_THRESHOLD (the paper's foreground rule, section 2.3), paired with the box it
overlaps most. Its regressed box is the one of that box's class u (the t^u of eq. 1),
i.e. the detection of class u the Detector makes from this proposal before NMS,
decoded and clipped by detection/graph.py. IoUs use the +1 areas of keras_frcnn/boxes.py.
"""

import json
from pathlib import Path

import numpy as np
from figure_common import (FOREGROUND, GROUND_TRUTH, WIDTH_INCHES, bgr_to_rgb, draw_boxes,
                           save, split_dataset)
from matplotlib import patheffects
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

FG_THRESHOLD = 0.5
REGRESSED = "#ff33cc"


def paired_iou(boxes, other):
    """[n] IoU of row i of ``boxes`` [n, 4] with row i of ``other`` [n, 4] (+1 areas)."""
    a = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = np.asarray(other, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_other = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / (area + area_other - inter), 0.0)


def match_proposals(proposals, gt_boxes, threshold=FG_THRESHOLD):
    """(proposal indices [m], ground-truth indices [m]): the proposals [n, 4] whose
    highest IoU with ``gt_boxes`` [g, 4] is >= ``threshold``, each with that box (the
    first of equal ones)."""
    from keras_frcnn.boxes import iou_matrix

    if len(proposals) == 0 or len(gt_boxes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    overlaps = iou_matrix(proposals, gt_boxes)
    best = overlaps.argmax(axis=1)
    kept = np.flatnonzero(overlaps[np.arange(len(proposals)), best] >= threshold)
    return kept, best[kept]


def regression_ious(proposals, boxes, gt_boxes, gt_classes, threshold=FG_THRESHOLD):
    """Matched proposals of one image: (proposal indices [m], ground-truth indices [m],
    IoU before [m], IoU after [m]); ``boxes`` [n, 4K] are the per-class regressed boxes
    (class k >= 1 in columns 4(k - 1) to 4k), and each proposal's after-box is the one
    of its ground truth's class."""
    index, gt = match_proposals(proposals, gt_boxes, threshold)
    columns = 4 * (np.asarray(gt_classes)[gt, None] - 1) + np.arange(4)
    regressed = np.take_along_axis(np.asarray(boxes)[index], columns, axis=1)
    return (index, gt, paired_iou(np.asarray(proposals)[index], gt_boxes[gt]),
            paired_iou(regressed, gt_boxes[gt]))


def iou_gain(before, after):
    """{"proposals", "mean_before", "mean_after", "mean_gain", "improved"} over matched
    proposals: the mean IoU with their ground truth before and after regression, the
    mean of the differences, and the fraction whose IoU went up."""
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.size == 0:
        raise ValueError("no proposal overlaps a ground-truth box by IoU >= "
                         f"{FG_THRESHOLD}: nothing to measure box regression on")
    return {"proposals": int(before.size), "mean_before": float(before.mean()),
            "mean_after": float(after.mean()), "mean_gain": float((after - before).mean()),
            "improved": float((after > before).mean())}


def regressed_boxes(model, detector_config):
    """A function (image_bgr, proposals [n, 4]) -> (proposals [m, 4] as the Detector
    scores them: clipped, unusable ones dropped, reordered; boxes [m, 4K] after
    regression, clipped) for ``model``, with detection/graph.py's functions."""
    import tensorflow as tf

    from keras_frcnn.detection import Detector, graph

    detector = Detector(model, detector_config)  # for its proposal clipping and inputs
    network = tf.function(graph.make_network(model, detector_config.score_empty_rois),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                           tf.TensorSpec([None, 5], tf.float32)])

    def run(image_bgr, proposals):
        height, width = image_bgr.shape[:2]
        kept = detector.usable_proposals(proposals, width, height)
        if len(kept) == 0:
            return kept, np.zeros((0, 4 * (detector.num_classes - 1)))
        images, rois, inverse = detector.prepare(image_bgr, kept)
        scores, deltas = network(tf.constant(images), tf.constant(rois))
        boxes, _ = graph.detection_outputs(kept, tf.gather(scores, inverse),
                                           tf.gather(deltas, inverse), width, height,
                                           detector_config.flip)
        return kept, boxes.numpy()

    return run


def split_regressions(config, workdir, split, max_images=0):
    """[per image (record, proposals, boxes, index, gt, before, after)] over ``split``
    (its first ``max_images`` images if > 0), from regression_ious."""
    from keras_frcnn import workdirs
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.evaluation.run import detector_config

    dataset, proposals = split_dataset(config, split, max_images)
    run = regressed_boxes(workdirs.load_inference_model(workdir), detector_config(config))
    rows = []
    for record in dataset.records:
        image = read_image_bgr(record.image_path, dataset.max_image_pixels)
        kept, boxes = run(image, proposals[record.image_id])
        rows.append((record, kept, boxes,
                     *regression_ious(kept, boxes, record.boxes, record.classes)))
    return rows


def pick_examples(rows, count):
    """[(row, k)]: the ``count`` matched proposals whose IoU regression raises the most,
    at most one per image, in the order of their gain."""
    best = []
    for row in rows:
        before, after = row[5], row[6]
        if len(before):
            k = int(np.argmax(after - before))
            best.append((float(after[k] - before[k]), row, k))
    best.sort(key=lambda item: -item[0])
    return [(row, k) for _, row, k in best[:count]]


def crop_around(boxes, width, height, margin=0.3):
    """(x0, y0, x1, y1) pixels around [n, 4] boxes with ``margin`` of their extent on
    each side, inside the image."""
    x0, y0 = boxes[:, :2].min(0)
    x1, y1 = boxes[:, 2:].max(0)
    pad = margin * max(x1 - x0, y1 - y0)
    return (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, width - 1),
            min(y1 + pad, height - 1))


def box_regression_figure(config, workdir, output_dir, split, images=3, max_images=0):
    """box_regression.png: the ``images`` matched proposals of ``split`` that regression
    improves the most, each proposal -> regressed box -> ground truth with both IoUs,
    and the mean IoU gain over all matched proposals of the split."""
    from keras_frcnn.data.images import read_image_bgr

    rows = split_regressions(config, workdir, split, max_images)
    gain = iou_gain(np.concatenate([r[5] for r in rows]), np.concatenate([r[6] for r in rows]))
    examples = pick_examples(rows, images)
    classes = json.loads((Path(workdir) / "classes.json").read_text())
    fig, axes = plt.subplots(1, len(examples), squeeze=False, figsize=(WIDTH_INCHES, 4.4))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.87, bottom=0.25, wspace=0.05)
    facts = []
    for ax, ((record, kept, boxes, index, gt, before, after), k) in zip(axes[0], examples):
        image = bgr_to_rgb(read_image_bgr(record.image_path, config.dataset.max_image_pixels))
        label = int(record.classes[gt[k]])
        proposal = kept[index[k]]
        regressed = boxes[index[k], 4 * (label - 1):4 * label]
        truth = record.boxes[gt[k]]
        x0, y0, x1, y1 = crop_around(np.stack([proposal, regressed, truth]),
                                     image.shape[1], image.shape[0])
        ax.imshow(image)
        # Black under every line keeps it visible on the demo's random backgrounds.
        for box, colour, style in ((proposal, FOREGROUND, "solid"), (regressed, REGRESSED, "solid"),
                                   (truth, GROUND_TRUTH, "dashed")):
            draw_boxes(ax, box[None], "black", width=3.5)
            draw_boxes(ax, box[None], colour, width=2, style=style)
        for corner in ((0, 1), (2, 3)):  # how the top-left and bottom-right corners move
            arrow = ax.annotate("", xy=regressed[list(corner)], xytext=proposal[list(corner)],
                                arrowprops={"arrowstyle": "->", "color": "white", "lw": 1.3})
            arrow.arrow_patch.set_path_effects([patheffects.withStroke(linewidth=3,
                                                                       foreground="black")])
        ax.set_xlim(x0 - 0.5, x1 + 0.5)
        ax.set_ylim(y1 + 0.5, y0 - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{Path(record.image_path).name}: a {classes[label - 1]}", fontsize=9)
        ax.legend([Line2D([], [], color=FOREGROUND, lw=2), Line2D([], [], color=REGRESSED, lw=2),
                   Line2D([], [], color=GROUND_TRUTH, lw=2, ls="--")],
                  [f"proposal: IoU {before[k]:.2f}", f"regressed: IoU {after[k]:.2f}",
                   "ground truth"], loc="upper center", bbox_to_anchor=(0.5, -0.01),
                  fontsize=8, frameon=False)
        facts.append({"image": record.image_path, "class": label, "iou_before": float(before[k]),
                      "iou_after": float(after[k])})
    fig.suptitle("box regression: proposal (orange) -> regressed box (pink) -> ground truth "
                 "(green, dashed);\narrows: how the corners move", fontsize=10)
    fig.text(0.5, 0.02, (
        f"All {gain['proposals']} proposals of the {len(rows)} {split} images with IoU >= "
        f"{FG_THRESHOLD} to a ground-truth box, regressed with that box's class: mean IoU "
        f"{gain['mean_before']:.3f} -> {gain['mean_after']:.3f}\n(mean gain "
        f"{gain['mean_gain']:+.3f}; {100 * gain['improved']:.0f} % of them closer). Shown: "
        "the largest gain in an image, for the images where it is largest."),
        ha="center", va="bottom", fontsize=8.5, linespacing=1.4)
    path = save(fig, Path(output_dir) / "box_regression.png")
    return {"path": path, "images": len(rows), "examples": facts, **gain}
