"""Training-step timings: hierarchical sampling and the RoI pooling implementation.

1. Hierarchical sampling (paper section 2.3): one SGD step on R = 128 RoIs
   drawn from N = 2 images (64 each, Fast R-CNN) versus from N = 128 images (one
   each, the R-CNN / SPPnet strategy), same model, same image size. The paper
   reports about 64x for VGG16.
2. Steps with the custom RoI pooling op versus the pure-TF composite.
3. The same at the paper's training shapes: 2 images of 600 x 1000, 128 RoIs,
   21 classes (VOC), VGG16 and MobileNetV2 (--paper_backbones).

Synthetic inputs (random pixels and RoIs; the timing does not depend on
content), image 224 x 288 for 1 and 2 so that 128 images fit in memory on a
CPU machine.

    python benchmarks/training_benchmark.py --output docs/benchmarks.md
"""

import argparse
import time

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.model.fast_rcnn import FastRCNN, sgd

SECTION = "training_benchmark"
HEIGHT, WIDTH = 224, 288
PAPER_HEIGHT, PAPER_WIDTH = 600, 1000


def minibatch(num_images, rois_per_image, num_classes, seed=0, height=HEIGHT, width=WIDTH):
    rng = np.random.default_rng(seed)
    r = num_images * rois_per_image
    xy = rng.uniform(0, [width * 0.6, height * 0.6], size=(r, 2))
    wh = rng.uniform(0.1, 0.4, size=(r, 2)) * [width, height]
    rois = np.concatenate([np.repeat(np.arange(num_images), rois_per_image)[:, None], xy, xy + wh], 1)
    labels = rng.integers(0, num_classes, r)
    x = {"images": tf.constant(rng.normal(size=(num_images, height, width, 3)), tf.float32),
         "rois": tf.constant(rois, tf.float32)}
    y = {"labels": tf.constant(labels, tf.int32),
         "bbox_targets": tf.constant(rng.normal(size=(r, 4)), tf.float32),
         "bbox_weights": tf.constant(labels > 0, tf.float32),
         "sample_weights": tf.ones([r])}
    return x, y


def seconds_per_step(backbone, num_images, rois_per_image, repeats, implementation=None,
                     num_classes=6, height=HEIGHT, width=WIDTH):
    keras.utils.set_random_seed(0)
    model = FastRCNN(num_classes=num_classes, backbone=backbone,
                     roi_pool_implementation=implementation)
    model.compile(optimizer=sgd(0.001))
    step = tf.function(model.train_step, reduce_retracing=True)
    batch = minibatch(num_images, rois_per_image, num_classes, height=height, width=width)
    step(batch)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step(batch)["loss"])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="small,mobilenet_v2")
    parser.add_argument("--paper_backbones", default="vgg16,mobilenet_v2",
                        help="backbones timed at 2 x 600x1000, 128 RoIs ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="Markdown file whose training section to rewrite")
    args = parser.parse_args()
    lines = ["## Training steps", "",
             f"Machine: {report.machine_description()}. One SGD step (forward, backward, "
             f"update) of FastRCNN on {HEIGHT}x{WIDTH} images, median of {args.repeats} after a "
             "warm-up (`python benchmarks/training_benchmark.py --output docs/benchmarks.md`).",
             "", "Hierarchical sampling, R = 128 RoIs per step (paper: about 64x for VGG16):", "",
             "| backbone | 2 images x 64 RoIs (s) | 128 images x 1 RoI (s) | ratio |",
             "|---|---:|---:|---:|"]
    backbones = args.backbones.split(",")
    for backbone in backbones:
        fast = seconds_per_step(backbone, 2, 64, args.repeats)
        slow = seconds_per_step(backbone, 128, 1, max(1, args.repeats - 1))
        print(f"{backbone}: 2x64 {fast:.3f} s, 128x1 {slow:.3f} s", flush=True)
        lines.append(f"| {backbone} | {fast:.3f} | {slow:.2f} | **{slow / fast:.0f}x** |")
    lines += ["", "RoI pooling implementation (2 images x 64 RoIs):", "",
              "| backbone | custom op (steps/s) | composite (steps/s) | custom / composite |",
              "|---|---:|---:|---:|"]
    for backbone in backbones:
        custom = seconds_per_step(backbone, 2, 64, args.repeats, "custom_op")
        composite = seconds_per_step(backbone, 2, 64, args.repeats, "composite")
        print(f"{backbone}: custom {custom:.3f} s, composite {composite:.3f} s", flush=True)
        lines.append(f"| {backbone} | {1 / custom:.2f} | {1 / composite:.2f} | "
                     f"{composite / custom:.2f}x |")
    paper = [b for b in args.paper_backbones.split(",") if b]
    if paper:
        lines += ["", f"The paper's training shape: 2 images of {PAPER_HEIGHT}x{PAPER_WIDTH}, "
                  "2 x 64 RoIs, 21 classes (VOC); frozen layers as the backbone's default "
                  f"(VGG16: conv1, conv2), median of {max(1, args.repeats - 1)}:", "",
                  "| backbone | custom op (s/step) | composite (s/step) | custom / composite |",
                  "|---|---:|---:|---:|"]
    for backbone in paper:
        repeats = max(1, args.repeats - 1)
        shape = dict(num_classes=21, height=PAPER_HEIGHT, width=PAPER_WIDTH)
        custom = seconds_per_step(backbone, 2, 64, repeats, "custom_op", **shape)
        composite = seconds_per_step(backbone, 2, 64, repeats, "composite", **shape)
        print(f"{backbone} at {PAPER_HEIGHT}x{PAPER_WIDTH}: custom {custom:.2f} s, "
              f"composite {composite:.2f} s", flush=True)
        lines.append(f"| {backbone} | {custom:.2f} | {composite:.2f} | "
                     f"**{composite / custom:.2f}x** |")
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
