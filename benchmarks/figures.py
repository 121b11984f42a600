"""Figures of a trained workdir, as small PNGs (matplotlib, Agg backend).

  roi_pooling.png      RoI max pooling forward and backward on one channel of the
                       backbone's feature map: a RoI's bins, each bin's argmax, the
                       output, and the op's gradient routed to the argmax cells of two
                       overlapping RoIs (eq. 4), all checked against keras_frcnn.roi_pool
                       (figure_roi_pooling.py)
  minibatch.png        the first minibatch of the training pipeline (hierarchical
                       sampling): its images with their foreground and background RoIs
  training_curves.png  classification loss, box loss and accuracy against the step,
                       from the workdir's TensorBoard log
  svd.png              truncated SVD of fc6/fc7 (--svd_ranks): mAP and network seconds
                       per image against the model's parameters, each model warmed up
                       before it is timed
  box_regression.png   proposal -> regressed box -> ground truth on the test images
                       where regression gains most, with their IoUs, and the mean IoU
                       gain over the split (figure_box_regression.py)

    python benchmarks/figures.py --workdir=workdirs/demo --config=configs/demo.py \\
        --output_dir=docs/figures [--only=roi_pooling,svd]
"""

import argparse
import glob
from pathlib import Path

import report  # noqa: F401  (first: it picks TensorFlow's CPU kernels before TensorFlow loads)

import numpy as np  # noqa: E402
from figure_box_regression import box_regression_figure  # noqa: E402
from figure_common import (BACKGROUND, FOREGROUND, WIDTH_INCHES, draw_boxes,  # noqa: E402
                           save, split_dataset)
from figure_roi_pooling import roi_pooling_figure  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

FIGURES = ("roi_pooling", "minibatch", "training_curves", "svd", "box_regression")
DEFAULT_SVD_RANKS = "fc6:64,fc7:64;fc6:32,fc7:32;fc6:16,fc7:16"  # the demo's 256-wide fc layers


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


# ---------------------------------------------------------------- minibatch

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
    # Two lines: a data set's name can be long (the demo's is 41 characters).
    fig.suptitle(f"first training minibatch of {dataset.name}:\n{len(images)} images, up to "
                 f"{config.sampling.rois_per_batch // len(images)} RoIs each (fewer when an "
                 "image has too few background candidates)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = save(fig, Path(output_dir) / "minibatch.png")
    return {"path": path, "images": len(images), "fg_bg_per_image": counts}


# ---------------------------------------------------------------- training curves

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


# ---------------------------------------------------------------- truncated SVD

def svd_rows(config, workdir, settings, split, max_images=0, passes=2):
    """[(ranks, parameters, mAP %, network seconds per image)], uncompressed first: each
    model runs the Detector that evaluate runs on the split's images (the first
    ``max_images`` if > 0) with the same proposals, scored by VOC mAP. One untimed image
    first traces and warms up each model's Detector, so the time is
    Detector.detect_dataset's, network and post-processing, with no tracing in it: the
    lowest of ``passes`` passes over the images (the others on a shared machine are
    noise)."""
    from keras_frcnn import workdirs
    from keras_frcnn.compress import compress_model, count_params
    from keras_frcnn.configs import parse_ranks
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.detection import Detector
    from keras_frcnn.evaluation import evaluate_voc
    from keras_frcnn.evaluation.run import detector_config

    dataset, proposals = split_dataset(config, split, max_images)
    first = dataset.records[0]
    warm_up = (read_image_bgr(first.image_path, dataset.max_image_pixels),
               proposals[first.image_id])
    model = workdirs.load_inference_model(workdir)
    t = config.test
    rows = []
    for ranks in [None, *settings]:
        if ranks is None:
            candidate, params = model, count_params(model)
        else:
            candidate, rep = compress_model(model, parse_ranks(ranks))
            params = rep["params_after"]
        detector = Detector(candidate, detector_config(config))
        detector.detect(*warm_up)
        seconds = []
        for _ in range(passes):
            detections, timing = detector.detect_dataset(dataset, proposals, progress=False)
            seconds.append(timing["network_seconds_per_image"])
        result = evaluate_voc(dataset, detections, t.iou_threshold, t.use_07_metric,
                              t.devkit_ge)
        rows.append((ranks or "none", int(params), 100 * result.mean_ap, min(seconds)))
        print("svd:", rows[-1], flush=True)
    return rows


def svd_figure(config, workdir, output_dir, settings, split, max_images=0):
    rows = svd_rows(config, workdir, settings, split, max_images)
    params = np.array([r[1] for r in rows]) / 1e6
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_INCHES, 3.8))
    for ax, column, ylabel, top in ((axes[0], 2, "VOC mAP (%)", 100.0),
                                    (axes[1], 3, "seconds per image (network + NMS)", None)):
        values = np.array([r[column] for r in rows], np.float64)
        ax.plot(params, values, "-", color="#bbbbbb", lw=1, zorder=1)
        # A marker per setting, named in the legend: the points lie too close for labels.
        for k, (x, y, row) in enumerate(zip(params, values, rows)):
            ax.plot(x, y, "sovD^<>"[k % 7], color="black" if k == 0 else f"C{k}", ms=7,
                    label="uncompressed" if k == 0 else row[0])
        ax.set_xlim(0, 1.1 * params.max())
        ax.set_ylim(0, top or 1.2 * np.nanmax(values))
        ax.set_xlabel("model parameters (millions)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(rows),
               fontsize=8, frameon=False)
    images = f"first {max_images} " if max_images > 0 else ""
    fig.suptitle(f"truncated SVD of fc6 / fc7: mAP and detection time ({images}{split} "
                 "images), axes from 0;\neach model warmed up on one image first, so no "
                 "tracing is timed", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = save(fig, Path(output_dir) / "svd.png")
    return {"path": path, "rows": rows}


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
            results[name] = box_regression_figure(config, workdir, output_dir, split, images,
                                                  max_images)
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
                        help="svd.png and box_regression.png's mean IoU gain: the first N "
                        "images of the split (0: all)")
    parser.add_argument("--images", type=int, default=3,
                        help="examples in box_regression.png, one per image")
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
