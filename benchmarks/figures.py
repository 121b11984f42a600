"""Figures of a trained workdir, as small PNGs (matplotlib, Agg backend).

  roi_pooling.png      one RoI on a test image, and the backbone's feature map (one
                       channel) with the RoI's pooled_size x pooled_size bins as the op
                       computes them and each bin's argmax cell; the marked maxima are
                       checked against keras_frcnn.roi_pool's output
  minibatch.png        the first minibatch of the training pipeline (hierarchical
                       sampling): its images with their foreground and background RoIs
  training_curves.png  classification loss, box loss and accuracy against the step,
                       from the workdir's TensorBoard log
  svd.png              truncated SVD of fc6/fc7 (--svd_ranks): mAP and network seconds
                       per image against the model's parameters
  box_regression.png   detections on a few test images with the proposals as boxes
                       (test.bbox_reg off) and after box regression, side by side

    python benchmarks/figures.py --workdir=workdirs/demo --config=configs/demo.py \\
        --output_dir=docs/figures
"""

import argparse
import dataclasses
import glob
import json
import tempfile
from pathlib import Path

import report  # noqa: F401  (first: it picks TensorFlow's CPU kernels before TensorFlow loads)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

FIGURES = ("roi_pooling", "minibatch", "training_curves", "svd", "box_regression")
DEFAULT_SVD_RANKS = "fc6:64,fc7:64;fc6:32,fc7:32;fc6:16,fc7:16"  # the demo's 256-wide fc layers
WIDTH_INCHES, DPI = 9.0, 100  # 900 pixels wide
FOREGROUND, BACKGROUND, GROUND_TRUTH = "#ff7f0e", "#1f77b4", "#00ff00"


# ---------------------------------------------------------------- helpers

def outline(ax, edges, colour, width=1.5, style="solid"):
    """Draws [n, 4] rectangles given by their edges (left, top, right, bottom) in
    imshow's coordinates, where pixel or cell i spans [i - 0.5, i + 0.5]."""
    x1, y1, x2, y2 = np.asarray(edges, np.float64).reshape(-1, 4).T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1),
                        np.stack([x2, y2], 1), np.stack([x1, y2], 1)], axis=1)
    ax.add_collection(PolyCollection(corners, facecolors="none", edgecolors=colour,
                                     linewidths=width, linestyles=style))


def draw_boxes(ax, boxes, colour, width=1.5, style="solid"):
    """[n, 4] boxes (x1, y1, x2, y2), inclusive pixel coordinates, as rectangles."""
    outline(ax, np.asarray(boxes, np.float64).reshape(-1, 4) + [-0.5, -0.5, 0.5, 0.5],
            colour, width, style)


def bgr_to_rgb(image_bgr):
    return np.ascontiguousarray(np.asarray(image_bgr)[..., ::-1])


def unpreprocess(images, mode):
    """uint8 RGB images of network inputs (data/transforms.py ``preprocess`` undone)."""
    from keras_frcnn.data.transforms import PIXEL_MEANS_BGR

    images = np.asarray(images, np.float32)
    if mode == "tf":
        rgb = images * 127.5 + 127.5
    elif mode == "caffe":
        rgb = (images + PIXEL_MEANS_BGR)[..., ::-1]
    elif mode == "none":
        rgb = images
    else:
        raise ValueError(f"unknown preprocessing {mode!r}")
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def save(fig, path):
    """Writes ``fig`` as a 256-colour PNG: photos drawn in full colour would make a
    figure several times larger for the docs without a visible difference."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT).save(path,
                                                                            optimize=True)
    return path


def test_images(config, split, count):
    """[(record, [n, 4] proposals)] of the first ``count`` images of ``split``."""
    from keras_frcnn.proposals.sources import first_images

    pairs = first_images(config, split, count)
    if not pairs:
        raise ValueError(f"split {split!r} of {config.dataset.kind} data has no images")
    return pairs


# ---------------------------------------------------------------- 1. RoI pooling

def c_round(x):
    """C ``roundf`` (half away from zero) of float32 values, as int64; exact for every
    float32 (``|x| - floor(|x|)`` has no rounding error)."""
    x = np.asarray(x, np.float32)
    whole = np.floor(np.abs(x))
    return (np.sign(x) * (whole + (np.abs(x) - whole >= 0.5))).astype(np.int64)


def roi_bins(roi, pooled_size, spatial_scale, height, width):
    """The bins of one RoI (x1, y1, x2, y2 in input pixels) on a height x width map, with
    the op's arithmetic (docs/roi_pooling.md, rules 2-5): corners round(x * s) with the
    product in float32, sizes max(end - start + 1, 1), bin sizes size / P in float32,
    bin p covering [floor(p * bin) + start, ceil((p + 1) * bin) + start) clipped to the
    map. Returns (rows_lo, rows_hi [PH], cols_lo, cols_hi [PW], cells (xs, ys, xe, ye))."""
    xs, ys, xe, ye = c_round(np.asarray(roi, np.float32) * np.float32(spatial_scale))
    ph, pw = pooled_size

    def edges(start, end, bins, limit):
        size = np.float32(max(end - start + 1, 1)) / np.float32(bins)
        p = np.arange(bins, dtype=np.float32)
        lo = np.floor(p * size).astype(np.int64) + start
        hi = np.ceil((p + np.float32(1)) * size).astype(np.int64) + start
        return np.clip(lo, 0, limit), np.clip(hi, 0, limit)

    rows = edges(ys, ye, ph, height)
    cols = edges(xs, xe, pw, width)
    return (*rows, *cols, (xs, ys, xe, ye))


def bin_argmax(channel_map, rows_lo, rows_hi, cols_lo, cols_hi):
    """(values [PH, PW], argmax [PH, PW] as h * W + w, -1 for an empty bin) of one
    channel: each bin's maximum, the first in row-major order on ties (as the op)."""
    height, width = channel_map.shape
    r, c = np.arange(height), np.arange(width)
    in_rows = (r[None, :] >= rows_lo[:, None]) & (r[None, :] < rows_hi[:, None])  # [PH, H]
    in_cols = (c[None, :] >= cols_lo[:, None]) & (c[None, :] < cols_hi[:, None])  # [PW, W]
    inside = in_rows[:, None, :, None] & in_cols[None, :, None, :]  # [PH, PW, H, W]
    masked = np.where(inside, channel_map[None, None], -np.inf).reshape(*inside.shape[:2], -1)
    argmax = masked.argmax(axis=-1)  # numpy returns the first maximum
    empty = ~inside.reshape(masked.shape).any(axis=-1)
    values = np.where(empty, 0, np.take_along_axis(masked, argmax[..., None], -1)[..., 0])
    return values.astype(channel_map.dtype), np.where(empty, -1, argmax)


def pick_roi(record, proposals):
    """(proposal, ground-truth box): the largest proposal whose IoU with a ground-truth
    box is in [0.5, 0.95), a foreground RoI that is not the box itself and whose bins
    span as many feature cells as possible; without one, the best-overlapping proposal."""
    from keras_frcnn.boxes import areas, iou_matrix

    overlaps = iou_matrix(proposals, record.boxes)  # [n, g]
    best = overlaps.max(axis=1)
    foreground = np.flatnonzero((best >= 0.5) & (best < 0.95))
    if len(foreground):
        k = int(foreground[np.argmax(areas(proposals[foreground]))])
    else:
        k = int(np.argmax(best))
    return np.asarray(proposals[k], np.float32), record.boxes[int(np.argmax(overlaps[k]))]


def roi_pooling_figure(config, workdir, output_dir, split):
    from keras_frcnn import roi_pool, workdirs
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.detection import graph

    pairs = [(r, p) for r, p in test_images(config, split, 5) if len(r.boxes) and len(p)]
    if not pairs:
        raise ValueError(f"none of the first images of split {split!r} has an object and "
                         "proposals to draw a RoI from")
    record, proposals = pairs[0]
    box, gt = pick_roi(record, proposals)
    model = workdirs.load_inference_model(workdir)
    backbone = model.get_config()["backbone"]
    features_model = model.get_layer(f"{backbone}_features")
    layer = model.get_layer("roi_pool")
    pooled_size, spatial_scale = tuple(layer.pooled_size), float(layer.spatial_scale)

    # The image at the scale where the Detector pools this RoI (the test scale, or the
    # pyramid level its area picks), prepared by the Detector's own function.
    image = read_image_bgr(record.image_path, config.dataset.max_image_pixels)
    test = config.test
    _, rois, _ = graph.network_inputs(image, box[None], test.scales, test.max_size, "none")
    level = int(rois[0, 0])
    inputs, _, _ = graph.network_inputs(image, box[None], (test.scales[level],),
                                        test.max_size, config.pipeline.preprocessing)
    shown, rois, _ = graph.network_inputs(image, box[None], (test.scales[level],),
                                          test.max_size, "none")  # RGB, [0, 255]
    features = features_model(inputs, training=False)
    roi = rois.numpy()[0]
    factor = float(graph.scale_factor(float(image.shape[0]), float(image.shape[1]),
                                      float(test.scales[level]), float(test.max_size)))
    pooled = roi_pool(features, roi[None], pooled_size, spatial_scale,
                      implementation=layer.implementation, training=False).numpy()[0]
    features = features.numpy()[0]
    channel = int(np.argmax(pooled.sum(axis=(0, 1))))  # the largest pooled response
    height, width = features.shape[:2]
    rows_lo, rows_hi, cols_lo, cols_hi, cells = roi_bins(roi[1:], pooled_size, spatial_scale,
                                                         height, width)
    values, argmax = bin_argmax(features[..., channel], rows_lo, rows_hi, cols_lo, cols_hi)
    if not np.array_equal(values, pooled[..., channel]):
        raise AssertionError(
            f"the bins' maxima differ from roi_pool's output for channel {channel}: "
            f"{np.abs(values - pooled[..., channel]).max()} at most")

    fig, axes = plt.subplots(1, 3, figsize=(WIDTH_INCHES, 3.4),
                             gridspec_kw={"width_ratios": [1.2, 1.2, 0.8]})
    ax = axes[0]
    ax.imshow(np.clip(np.rint(shown.numpy()[0]), 0, 255).astype(np.uint8))
    draw_boxes(ax, gt[None] * factor, GROUND_TRUTH, width=1.5, style="dashed")
    draw_boxes(ax, roi[None, 1:], FOREGROUND, width=2)
    ax.set_title(f"{Path(record.image_path).name}: RoI and ground truth", fontsize=9)

    ax = axes[1]
    lo, hi = float(features[..., channel].min()), float(features[..., channel].max())
    ax.imshow(features[..., channel], cmap="viridis", vmin=lo, vmax=hi)
    # Each bin's window [lo, hi) of cells; a small inset keeps neighbours (and bins that
    # overlap where floor and ceil widen them) apart. Empty bins have no window.
    r0, c0 = np.meshgrid(rows_lo, cols_lo, indexing="ij")
    r1, c1 = np.meshgrid(rows_hi, cols_hi, indexing="ij")
    inset = 0.08
    windows = np.stack([c0 - 0.5 + inset, r0 - 0.5 + inset, c1 - 0.5 - inset,
                        r1 - 0.5 - inset], -1)[(r1 > r0) & (c1 > c0)]
    outline(ax, windows, "white", width=0.6)
    xs, ys, xe, ye = cells
    draw_boxes(ax, np.array([[xs, ys, xe, ye]]), FOREGROUND, width=1.2, style="dashed")
    hit = argmax.reshape(-1)[argmax.reshape(-1) >= 0]
    ax.scatter(hit % width, hit // width, marker="x", c="red", s=18, linewidths=1.2)
    margin = 3
    ax.set_xlim(max(xs - margin, 0) - 0.5, min(xe + margin, width - 1) + 0.5)
    ax.set_ylim(min(ye + margin, height - 1) + 0.5, max(ys - margin, 0) - 0.5)
    ax.set_title(f"{backbone}_features channel {channel} ({height}x{width}, "
                 f"1/{round(1 / spatial_scale)}):\n{pooled_size[0]}x{pooled_size[1]} bins, "
                 "x = argmax", fontsize=9)

    ax = axes[2]
    ax.imshow(pooled[..., channel], cmap="viridis", vmin=lo, vmax=hi)
    ax.set_title(f"roi_pool output, channel {channel}\n(= the maxima at x)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = save(fig, Path(output_dir) / "roi_pooling.png")
    return {"path": path, "image": record.image_path, "roi": roi.tolist(), "channel": channel,
            "bins_checked": int(values.size), "empty_bins": int((argmax < 0).sum()),
            "argmax_matches_roi_pool": True}


# ---------------------------------------------------------------- 2. minibatch

def minibatch_figure(config, output_dir):
    from keras_frcnn import training

    dataset, roidb, stats = training.prepare_training_data(config, progress=False)
    inputs, targets = next(iter(training.make_dataset(config, roidb, stats, start_batch=0)))
    images = unpreprocess(inputs["images"].numpy(), config.pipeline.preprocessing)
    rois = inputs["rois"].numpy()
    labels = targets["labels"].numpy()
    real = targets["sample_weights"].numpy() > 0  # padding rows carry no weight

    fig, axes = plt.subplots(1, len(images), figsize=(WIDTH_INCHES, 3.8), squeeze=False)
    counts = []
    for n, (ax, image) in enumerate(zip(axes[0], images)):
        mine = real & (rois[:, 0] == n)
        fg, bg = mine & (labels > 0), mine & (labels == 0)
        ax.imshow(image)
        draw_boxes(ax, rois[bg, 1:], BACKGROUND, width=0.7)
        draw_boxes(ax, rois[fg, 1:], FOREGROUND, width=1.5)
        ax.set_title(f"image {n}: {fg.sum()} foreground, {bg.sum()} background RoIs",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        counts.append((int(fg.sum()), int(bg.sum())))
    fig.legend([Line2D([], [], color=FOREGROUND, lw=2), Line2D([], [], color=BACKGROUND, lw=2)],
               ["foreground (IoU >= fg_threshold)", "background"], loc="lower center", ncol=2,
               fontsize=8, frameon=False)
    fig.suptitle(f"{dataset.name}: first training minibatch, {len(images)} images, up to "
                 f"{config.sampling.rois_per_batch // len(images)} RoIs each (fewer when an "
                 "image has too few background candidates)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = save(fig, Path(output_dir) / "minibatch.png")
    return {"path": path, "images": len(images), "fg_bg_per_image": counts}


# ---------------------------------------------------------------- 3. training curves

def read_scalars(workdir):
    """{tag: ([steps], [values])} of the workdir's TensorBoard log; a step logged twice
    (a resumed run) keeps its last value."""
    import tensorflow as tf

    paths = sorted(glob.glob(str(Path(workdir) / "logs" / "events.out.tfevents.*")))
    series = {}
    for path in paths:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = (value.simple_value if value.HasField("simple_value")
                          else float(tf.make_ndarray(value.tensor)))
                series.setdefault(value.tag, {})[event.step] = number
    return {tag: (sorted(steps), [steps[s] for s in sorted(steps)])
            for tag, steps in series.items()}


def training_curves_figure(workdir, output_dir):
    scalars = read_scalars(workdir)
    panels = [("classification loss", ["cls_loss"]), ("box loss", ["bbox_loss"]),
              ("accuracy", ["accuracy", "fg_accuracy"])]
    if not any(tag in scalars for _, tags in panels for tag in tags):
        raise FileNotFoundError(f"{workdir}/logs: no training log (tags {sorted(scalars)})")
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH_INCHES, 3.0))
    for ax, (title, tags) in zip(axes, panels):
        for tag, style in zip(tags, ("-", "--")):
            if tag in scalars:
                ax.plot(*scalars[tag], style, lw=1.2, label=tag)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    path = save(fig, Path(output_dir) / "training_curves.png")
    return {"path": path, "steps": len(scalars.get("cls_loss", ([], []))[0])}


# ---------------------------------------------------------------- 4. truncated SVD

def svd_rows(config, workdir, settings, split, max_images=0):
    """[(ranks, parameters, mAP %, network seconds per image)], uncompressed first, as
    svd_benchmark.map_rows evaluates them (same proposals; evaluate's timing: network
    and post-processing, each model's tracing on its first image included). An untimed
    evaluation of one image first keeps the process's warm-up out of the first row."""
    from keras_frcnn import workdirs
    from keras_frcnn.compress import compress_model, count_params
    from keras_frcnn.configs import parse_ranks
    from keras_frcnn.evaluation.run import evaluate

    config = config.copy_and_resolve_references()
    config.test.picture_images = 0
    model = workdirs.load_inference_model(workdir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(config, workdir, split=split, output_dir=Path(tmp) / "eval", progress=False,
                 max_images=1)
        for ranks in [None, *settings]:
            path = Path(tmp) / "model.keras"
            if ranks is None:
                model.save(path)
                params = count_params(model)
            else:
                compressed, rep = compress_model(model, parse_ranks(ranks))
                compressed.save(path)
                params = rep["params_after"]
            metrics = evaluate(config, workdir, split=split, model_path=path,
                               output_dir=Path(tmp) / "eval", progress=False,
                               max_images=max_images)
            map_ = metrics.get("mAP")
            rows.append((ranks or "none", int(params), np.nan if map_ is None else 100 * map_,
                         metrics["timing"]["network_seconds_per_image"]))
            print("svd:", rows[-1], flush=True)
    return rows


def svd_figure(config, workdir, output_dir, settings, split, max_images=0):
    rows = svd_rows(config, workdir, settings, split, max_images)
    labels = [r[0] for r in rows]
    params = np.array([r[1] for r in rows]) / 1e6
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_INCHES, 3.4))
    for ax, column, ylabel in ((axes[0], 2, "mAP (%)"),
                               (axes[1], 3, "detection s / image (network + NMS)")):
        values = np.array([r[column] for r in rows], np.float64)
        ax.plot(params, values, "o-", lw=1.2)
        ax.plot(params[:1], values[:1], "s", color="black", label="uncompressed")
        for x, y, label in zip(params, values, labels):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.margins(0.12)
        ax.set_xlabel("model parameters (millions)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    images = f"first {max_images} " if max_images > 0 else ""
    fig.suptitle(f"truncated SVD of fc6 / fc7: VOC mAP and detection time ({images}"
                 f"{split} images)", fontsize=10)
    fig.tight_layout()
    path = save(fig, Path(output_dir) / "svd.png")
    return {"path": path, "rows": rows}


# ---------------------------------------------------------------- 5. box regression

def box_regression_figure(config, workdir, output_dir, split, images=3):
    from keras_frcnn import workdirs
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.detection import Detector
    from keras_frcnn.detection.draw import draw_detections, tile_scale
    from keras_frcnn.evaluation.run import detector_config

    pairs = test_images(config, split, images)
    model = workdirs.load_inference_model(workdir)
    classes = json.loads((Path(workdir) / "classes.json").read_text())
    base = detector_config(config)
    detectors = [("proposals as boxes (bbox_reg off)",
                  Detector(model, dataclasses.replace(base, bbox_reg=False))),
                 ("after box regression", Detector(model, dataclasses.replace(base,
                                                                             bbox_reg=True)))]
    threshold = config.test.picture_threshold
    heights = []
    pictures = []
    for record, proposals in pairs:
        image = read_image_bgr(record.image_path, config.dataset.max_image_pixels)
        scale = tile_scale(*image.shape[:2], tile_height=300)
        row = []
        for _, detector in detectors:
            found = detector.detect(image, proposals)
            row.append((bgr_to_rgb(draw_detections(image, found, classes, threshold, scale)),
                        int((found.scores >= threshold).sum())))
        pictures.append((record, scale, row))
        heights.append(image.shape[0] / image.shape[1])

    fig, axes = plt.subplots(len(pictures), 2, squeeze=False, figsize=(
        WIDTH_INCHES, min(WIDTH_INCHES / 2 * sum(heights) + 0.6 * len(pictures), 16)))
    counts = []
    for (record, scale, row), ax_row in zip(pictures, axes):
        for (picture, count), ax, (title, _) in zip(row, ax_row, detectors):
            ax.imshow(picture)
            draw_boxes(ax, record.boxes * scale, GROUND_TRUTH, width=1.5, style="dashed")
            ax.set_title(f"{Path(record.image_path).name}: {title}, {count} >= {threshold:g}",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        counts.append([count for _, count in row])
    fig.tight_layout()
    path = save(fig, Path(output_dir) / "box_regression.png")
    return {"path": path, "images": len(pictures), "detections_before_after": counts}


# ---------------------------------------------------------------- driver

def draw_all(config, workdir, output_dir, only=None, svd_ranks=DEFAULT_SVD_RANKS,
             max_images=0, images=3, split=None):
    """Draws the figures named in ``only`` (default: all; "svd" is skipped when
    ``svd_ranks`` is empty) into ``output_dir``; returns {name: facts}, each with "path"."""
    import keras

    only = list(FIGURES if only is None else only)
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figures {unknown}: choose from {list(FIGURES)}")
    split = split or config.dataset.test_split
    settings = [s.strip() for s in (svd_ranks or "").split(";") if s.strip()]
    keras.utils.set_random_seed(0)
    results = {}
    for name in only:
        if name == "roi_pooling":
            results[name] = roi_pooling_figure(config, workdir, output_dir, split)
        elif name == "minibatch":
            results[name] = minibatch_figure(config, output_dir)
        elif name == "training_curves":
            results[name] = training_curves_figure(workdir, output_dir)
        elif name == "svd" and settings:
            results[name] = svd_figure(config, workdir, output_dir, settings, split, max_images)
        elif name == "box_regression":
            results[name] = box_regression_figure(config, workdir, output_dir, split, images)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained workdir (bin/train.py)")
    parser.add_argument("--config", required=True, help="its config file (configs/*.py)")
    parser.add_argument("--output_dir", default="docs/figures")
    parser.add_argument("--only", default="", help=f"comma list of {', '.join(FIGURES)}")
    parser.add_argument("--svd_ranks", default=DEFAULT_SVD_RANKS,
                        help="';'-separated rank settings of svd.png ('' skips it)")
    parser.add_argument("--max_images", type=int, default=0,
                        help="svd.png: evaluate the first N images of the split (0: all)")
    parser.add_argument("--images", type=int, default=3, help="images of box_regression.png")
    parser.add_argument("--split", default="", help="split of the test images (default: "
                        "the config's dataset.test_split)")
    args = parser.parse_args(argv)
    from keras_frcnn.configs import load_config_file

    only = [name.strip() for name in args.only.split(",") if name.strip()] or None
    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        parser.error(f"--only: unknown figures {unknown}; choose from {', '.join(FIGURES)}")
    results = draw_all(load_config_file(args.config), args.workdir, args.output_dir, only,
                       args.svd_ranks, args.max_images, args.images, args.split or None)
    for name, facts in results.items():
        print(facts["path"])
    return results


if __name__ == "__main__":
    main()
