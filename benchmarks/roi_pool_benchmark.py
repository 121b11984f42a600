"""RoI pooling speed: custom op vs pure-TF composite vs crop-and-resize.

All three run in one process on the same inputs, so their ratios are
comparable on a shared, noisy machine:

  custom_op        keras_frcnn's C++ op (exact RoI max pooling)
  composite        keras_frcnn's pure-TensorFlow twin (same numbers)
  crop_and_resize  what other TF detectors use instead: bilinear
                   tf.image.crop_and_resize to 14x14, then 2x2 max pooling

Shapes (VGG16 at stride 16, RoI sides uniform in 5-60 % of the image):
  train: 2 images, 38x50x512 features, 128 RoIs
  test:  1 image,  38x63x512 features, 2000 RoIs

Each is timed in graph mode (inside tf.function, how Keras trains) and in
eager mode (op by op, how the issue's reference crop-and-resize times of
0.14 s / 2.4 s were taken). A forward pass without a GradientTape runs the custom
op's inference kernel (no argmax); forward+backward runs the training kernel and
the gradient. The floor of each pass (roi_pool_floor.py: the time TensorFlow's
tuned kernels take to move the bytes the pass must read and write) is measured in
the same process. A second process repeats the custom op with one intra-op
thread, to show the speed-up from TensorFlow's thread pool. Results go to stdout
and, with --output, into the RoI pooling section of a Markdown file; with --details,
the floor's parts and the threading table into a section of another.

    python benchmarks/roi_pool_benchmark.py --output docs/benchmarks.md \
        --details docs/roi_pooling.md
"""

import argparse
import json
import os
import subprocess
import sys
import time

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import numpy as np
import tensorflow as tf
from roi_pool_floor import floor_parts, floors

from keras_frcnn import roi_pool

SHAPES = {"train": (2, 38, 50, 512, 128), "test": (1, 38, 63, 512, 2000)}
STRIDE = 16
METHODS = ("custom_op", "composite", "crop_and_resize")
MODES = ("graph", "eager")
SECTION = "roi_pool_benchmark"
SECTION_START, SECTION_END = report.markers(SECTION)
DETAILS = "roi_pool_details"  # --details: the floor's parts and the threading table
DETAILS_START, DETAILS_END = report.markers(DETAILS)


def make_inputs(shape_name, seed=0):
    """Features and RoIs whose sides are uniform in 5-60 % of the image."""
    n, h, w, c, num_rois = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, h, w, c)).astype(np.float32)
    image_w, image_h = w * STRIDE, h * STRIDE
    sides = rng.uniform(0.05, 0.6, size=(num_rois, 2)) * [image_w, image_h]
    x1 = rng.uniform(0, image_w - sides[:, 0])
    y1 = rng.uniform(0, image_h - sides[:, 1])
    rois = np.stack([rng.integers(0, n, num_rois), x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], 1)
    return tf.constant(features), tf.constant(rois, tf.float32)


def crop_and_resize_pool(features, rois):
    """The common approximation: bilinear 14x14 crops, then 2x2 max pooling."""
    image_h = tf.cast(tf.shape(features)[1] * STRIDE - 1, tf.float32)
    image_w = tf.cast(tf.shape(features)[2] * STRIDE - 1, tf.float32)
    boxes = tf.stack([rois[:, 2] / image_h, rois[:, 1] / image_w,
                      rois[:, 4] / image_h, rois[:, 3] / image_w], axis=1)
    crops = tf.image.crop_and_resize(features, boxes, tf.cast(rois[:, 0], tf.int32), [14, 14])
    return tf.nn.max_pool2d(crops, 2, 2, "VALID")


def pooling_fn(method):
    if method == "crop_and_resize":
        return crop_and_resize_pool
    return lambda features, rois: roi_pool(features, rois, 7, 1 / STRIDE, implementation=method)


def timed_functions(method, mode):
    """{"forward": fn, "forward+backward": fn}, in graph (tf.function) or eager mode."""
    pool = pooling_fn(method)

    def forward(features, rois):
        return tf.reduce_sum(pool(features, rois))

    def forward_backward(features, rois):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(pool(features, rois))
        return tape.gradient(loss, features)

    fns = {"forward": forward, "forward+backward": forward_backward}
    if mode == "graph":
        fns = {name: tf.function(fn) for name, fn in fns.items()}
    return fns


def median_seconds(fn, args, repeats):
    fn(*args).numpy()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(methods, repeats, modes=MODES):
    """{mode: {shape: {method: {pass: seconds}}}}."""
    results = {}
    for mode in modes:
        results[mode] = {}
        for shape_name in SHAPES:
            inputs = make_inputs(shape_name)
            results[mode][shape_name] = {}
            for method in methods:
                fns = timed_functions(method, mode)
                timings = {name: median_seconds(fn, inputs, repeats[shape_name])
                           for name, fn in fns.items()}
                results[mode][shape_name][method] = timings
                print(f"{mode:5s} {shape_name:5s} {method:16s} " + "  ".join(
                    f"{k} {v * 1e3:9.2f} ms" for k, v in timings.items()), flush=True)
    return results


def measure_floors(repeats):
    """{shape: {pass: floor ms}} and the parts they are made of."""
    result = {}
    for shape_name in SHAPES:
        parts = floor_parts(*make_inputs(shape_name), repeats[shape_name])
        result[shape_name] = {"passes": floors(parts), "parts": parts}
        print(f"floor {shape_name:5s} " + "  ".join(
            f"{k} {v:.2f}" for k, v in parts.items()), flush=True)
    return result


# (shape, pass of the main table, floor pass): the figures issue 34 asks for.
FLOOR_ROWS = (("train", "forward+backward", "forward+backward"),
              ("test", "forward", "inference forward"),
              ("test", "forward+backward", "forward+backward"))


def floor_table(results, floor):
    lines = ["", "Against the memory floor and crop-and-resize (graph mode; floor: the time "
             "TensorFlow's own tuned kernels take to read every window's cells from the "
             "cache-resident map and move the pass's other bytes, `benchmarks/roi_pool_floor.py`, "
             "measured in the same process):", "",
             "| shape | pass | custom op | floor | custom op / floor | crop-and-resize "
             "| crop-and-resize / custom op |", "|---|---|---:|---:|---:|---:|---:|"]
    for shape_name, pass_name, floor_pass in FLOOR_ROWS:
        t = results["graph"][shape_name]
        op, cr = t["custom_op"][pass_name], t["crop_and_resize"][pass_name]
        f = floor[shape_name]["passes"][floor_pass] / 1e3
        kernel = "inference" if floor_pass == "inference forward" else "training"
        lines.append(f"| {shape_name} | {pass_name} ({kernel} kernel) "
                     f"| {op * 1e3:.1f} | {f * 1e3:.1f} | **{op / f:.2f}x** | {cr * 1e3:.1f} "
                     f"| **{cr / op:.1f}x** |")
    return lines


def single_thread_custom_op(repeats):
    """The custom op timed in a child process limited to one intra-op thread."""
    result = subprocess.run(
        [sys.executable, __file__, "--threads", "1", "--methods", "custom_op", "--modes", "graph",
         "--json",
         "--repeats-train", str(repeats["train"]), "--repeats-test", str(repeats["test"])],
        capture_output=True, text=True, check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(results, one_thread, repeats, floor):
    lines = [
        SECTION_START,
        "## RoI pooling op",
        "",
        f"Machine: {report.machine_description()}. Median of {repeats['train']} (train) and "
        f"{repeats['test']} (test) runs after a warm-up, each method in the same process "
        "on the same inputs (`python benchmarks/roi_pool_benchmark.py --output "
        "docs/benchmarks.md`). RoI sides uniform in 5-60 % of the image, spatial scale 1/16, "
        "7x7 output. Times in milliseconds. Graph mode runs each pass inside `tf.function` "
        "(how Keras trains); eager mode runs op by op (the issue's reference crop-and-resize "
        "times, about 0.14 s and 2.4 s, were eager).",
        "",
        "| mode | shape | pass | custom op | composite | crop-and-resize "
        "| crop-and-resize / custom op | composite / custom op |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for mode in results:
        for shape_name, (n, h, w, c, num_rois) in SHAPES.items():
            for pass_name in ("forward", "forward+backward"):
                t = {m: results[mode][shape_name][m][pass_name] for m in METHODS}
                lines.append(
                    f"| {mode} | {shape_name} ({n}x{h}x{w}x{c}, {num_rois} RoIs) | {pass_name} | "
                    f"{t['custom_op'] * 1e3:.1f} | {t['composite'] * 1e3:.1f} | "
                    f"{t['crop_and_resize'] * 1e3:.1f} | "
                    f"**{t['crop_and_resize'] / t['custom_op']:.1f}x** | "
                    f"{t['composite'] / t['custom_op']:.1f}x |")
    lines += floor_table(results, floor)
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def details_markdown(results, one_thread, floor):
    """The --details section: the floor's parts and the custom op's threading."""
    lines = [
        DETAILS_START,
        "### Floor parts and threading (last benchmark run)",
        "",
        f"Machine: {report.machine_description()}; graph mode, the run of "
        "`benchmarks/roi_pool_benchmark.py` whose other figures are in benchmarks.md's "
        "\"RoI pooling op\".",
        "",
        "Floor parts (ms): " + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v:.1f}" for k, v in floor[s]["parts"].items()
                                 if k != "cells")
            + f" ({floor[s]['parts']['cells']:,} window cells)" for s in SHAPES),
        "",
        "Threading of the custom op (forward+backward, TensorFlow's intra-op pool; ms):",
        "",
        "| shape | 1 thread | all threads | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for shape_name in SHAPES:
        single = one_thread["graph"][shape_name]["custom_op"]["forward+backward"]
        multi = results["graph"][shape_name]["custom_op"]["forward+backward"]
        lines.append(f"| {shape_name} | {single * 1e3:.2f} | {multi * 1e3:.2f} | "
                     f"{single / multi:.2f}x |")
    lines.append(DETAILS_END)
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-train", type=int, default=20)
    parser.add_argument("--repeats-test", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="with --json only; the report needs all three")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    parser.add_argument("--json", action="store_true", help="print results as JSON only")
    parser.add_argument("--output", help="Markdown file whose RoI pooling section to rewrite")
    parser.add_argument("--details", help="Markdown file whose section of floor parts and "
                        "threading to rewrite")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    repeats = {"train": args.repeats_train, "test": args.repeats_test}
    methods, modes = args.methods.split(","), args.modes.split(",")
    if args.json:
        sys.stdout = open(os.devnull, "w")
        results = measure(methods, repeats, modes)
        sys.stdout = sys.__stdout__
        print(json.dumps(results))
        return
    print(f"Machine: {report.machine_description()}")
    results = measure(methods, repeats, modes)
    floor = measure_floors(repeats)
    one_thread = single_thread_custom_op(repeats)
    section = markdown(results, one_thread, repeats, floor)
    details = details_markdown(results, one_thread, floor)
    print(section)
    print(details)
    for path, text, name in ((args.output, section, SECTION), (args.details, details, DETAILS)):
        if path:
            report.write_section(path, text, name)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
