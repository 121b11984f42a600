"""Truncated SVD (paper section 3.1): fc-head and detection time, and mAP, before and after.

Timing: FastRCNN with random weights (time does not depend on values) on one
image at the backbone's test scale with 2000 proposals (the paper's setting),
before and after factoring the fc layers; the conv part, the fc head (flatten
to the two outputs) and whole-image detection (Detector.detect: resize,
forward, decode, NMS) are each the median of --repeats runs after a warm-up.
The paper (VGG16, K40 GPU): fc6/fc7 take 45 % of detection time and SVD
(1024 / 256) cuts detection time by more than 30 % for -0.3 mAP.

mAP before and after compression, and detection time on a trained model, over
seeds: the study's svd experiment (``frcnn-study --experiments=svd``, docs/study.md),
which compresses each seed's model with bin/compress.py's code and evaluates it.

    python benchmarks/svd_benchmark.py --output docs/benchmarks.md
"""

import argparse
import time

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.compress import compress_model
from keras_frcnn.configs import format_ranks, parse_ranks
from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig
from keras_frcnn.model.backbones import SPECS
from keras_frcnn.model.fast_rcnn import FastRCNN

SECTION = "svd_benchmark"
# backbone: (shortest side, longest side, preprocessing, ranks)
SETTINGS = {
    "vgg16": (600, 1000, "caffe", "fc6:1024,fc7:256"),
    "mobilenet_v2": (600, 1000, "tf", "fc6:256,fc7:128"),
    "small": (200, 268, "tf", "fc6:64,fc7:64"),
}


def proposals(height, width, count, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [width * 0.8, height * 0.8], size=(count, 2))
    wh = rng.uniform(0.05, 0.5, size=(count, 2)) * [width, height]
    boxes = np.concatenate([xy, np.minimum(xy + wh, [width - 1, height - 1])], axis=1)
    return boxes.astype(np.float32)


def median_seconds(fn, repeats):
    fn()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timings(model, height, width, preprocessing, num_rois, repeats):
    """{"conv", "head", "detection"} seconds for one image with num_rois proposals."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (height, width, 3)).astype(np.uint8)
    boxes = proposals(height, width, num_rois)
    images = tf.constant(rng.normal(size=(1, height, width, 3)), tf.float32)
    backbone = model.get_layer(f"{model.get_config()['backbone']}_features")
    conv = tf.function(lambda x: backbone(x, training=False))
    head_model = keras.Model(model.get_layer("flatten").output,
                             [model.get_layer("cls_prob").output,
                              model.get_layer("bbox_pred").output])
    spec = SPECS[model.get_config()["backbone"]]
    pooled = tf.constant(rng.normal(size=(num_rois, spec.pooled_size ** 2 *
                                          backbone.output.shape[-1])), tf.float32)
    head = tf.function(lambda x: head_model(x, training=False))
    detector = Detector(model, DetectorConfig(
        scales=(height,), max_size=width, preprocessing=preprocessing,
        postprocess=PostprocessConfig(mode="default"), deduplicate=False))
    return {"conv": median_seconds(lambda: conv(images).numpy(), repeats),
            "head": median_seconds(lambda: [t.numpy() for t in head(pooled)], repeats),
            "detection": median_seconds(lambda: detector.detect(image, boxes), repeats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="vgg16,small")
    parser.add_argument("--rois", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="Markdown file whose SVD section to rewrite")
    args = parser.parse_args()
    lines = ["## Truncated SVD", "",
             f"Machine: {report.machine_description()}. One image, {args.rois} proposals, "
             f"median of {args.repeats} runs after a warm-up, random weights "
             "(`python benchmarks/svd_benchmark.py`). fc head = flatten to the two outputs; "
             "detection = Detector.detect (resize, network, decoding, NMS). Paper (VGG16, K40): "
             "fc layers 45 % of detection time, SVD 1024 / 256 saves > 30 %.", "",
             "| backbone | image | ranks | conv (s) | fc head (s) | fc share | detection (s) | "
             "fc head after (s) | detection after (s) | detection saved |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for backbone in args.backbones.split(","):
        short, long, preprocessing, ranks = SETTINGS[backbone]
        keras.utils.set_random_seed(0)
        model = FastRCNN(num_classes=21, backbone=backbone)
        compressed, _ = compress_model(model, parse_ranks(ranks))
        before = timings(model, short, long, preprocessing, args.rois, args.repeats)
        after = timings(compressed, short, long, preprocessing, args.rois, args.repeats)
        print(backbone, before, after, flush=True)
        lines.append(
            f"| {backbone} | {short}x{long} | {format_ranks(parse_ranks(ranks))} | "
            f"{before['conv']:.3f} | {before['head']:.3f} | "
            f"{before['head'] / before['detection']:.0%} | {before['detection']:.3f} | "
            f"{after['head']:.3f} | {after['detection']:.3f} | "
            f"**{1 - after['detection'] / before['detection']:.0%}** |")
    lines += ["", "mAP before and after compression on trained models, over seeds: the "
              "study's svd experiment ([study.md](study.md#truncated-svd-table-4-section-31))."]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
