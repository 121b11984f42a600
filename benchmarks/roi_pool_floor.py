"""The memory floor of RoI pooling: the time to move the bytes the op must move.

Whatever its arithmetic, RoI max pooling must read every cell of every bin's window
(all channels) from the feature map and write its outputs; its gradient must read
the output gradient and the argmax and write the feature gradient. The floor of a
pass is the time TensorFlow's own tuned, multithreaded kernels take to move those
byte counts on this machine, measured in the same process as the op:

  window reads    reduce_sum over the feature map (resident in the cache, as the
                  op's map is), repeated until it has read as many bytes as all
                  the windows hold: sum over RoIs and bins of window cells x C
  reads of a tensor   reduce_sum over a tensor of that size (output gradient, argmax)
  writes          tf.fill of a fresh tensor of that size (the pooled output, the
                  argmax, the feature gradient), page faults included, as the op
                  allocates fresh outputs too

The windows follow the op's arithmetic (custom_ops/roi_pool_kernels.h): corners
scaled and rounded half away from zero in float32, bin sizes in float32, bin b of a
side covering [floor(b * size), ceil((b + 1) * size)) plus the start, clipped.
"""

import time

import numpy as np
import tensorflow as tf


def window_cells(rois, height, width, pooled=7, spatial_scale=1 / 16):
    """Total cells over the windows of all R x pooled x pooled bins (numpy, [R, 5] rois)."""
    rois = np.asarray(rois, np.float32)
    scale = np.float32(spatial_scale)
    corners = (rois[:, 1:] * scale).astype(np.float64)  # the float32 product, exactly
    # roundf: half away from zero (+ 0.5 in float64 is exact, in float32 it is not).
    corners = (np.sign(corners) * np.floor(np.abs(corners) + 0.5)).astype(np.int64)
    x1, y1, x2, y2 = corners.T
    sizes = [np.maximum(x2 - x1 + 1, 1), np.maximum(y2 - y1 + 1, 1)]
    starts, limits = [x1, y1], [width, height]
    extents = []
    for size, start, limit in zip(sizes, starts, limits):
        bin_size = size.astype(np.float32) / np.float32(pooled)  # [R]
        b = np.arange(pooled, dtype=np.float32)
        lo = np.floor(b[None] * bin_size[:, None]).astype(np.int64) + start[:, None]
        hi = np.ceil((b[None] + 1) * bin_size[:, None]).astype(np.int64) + start[:, None]
        extents.append(np.clip(hi, 0, limit) - np.clip(lo, 0, limit))  # [R, pooled]
    w_cells, h_cells = extents
    return int((h_cells[:, :, None] * w_cells[:, None, :]).sum())


def _median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def floor_parts(features, rois, repeats, pooled=7):
    """{part: milliseconds} of the byte movements above for these inputs."""
    n, h, w, c = features.shape
    r = rois.shape[0]
    cells = window_cells(rois.numpy(), h, w, pooled)
    map_reads = max(1, round(cells / (n * h * w)))  # passes over the map
    pooled_elements = r * pooled * pooled * c
    big = tf.random.uniform([pooled_elements], dtype=tf.float32)  # out of the cache

    @tf.function
    def read_windows(x):
        total = tf.constant(0.0)
        for _ in tf.range(map_reads):
            total += tf.reduce_sum(x)
        return total

    @tf.function
    def write(count, value):
        return tf.fill([count], value)[-1]

    @tf.function
    def read(x):
        return tf.reduce_sum(x)

    one = tf.constant(1.0)
    return {
        "window reads": _median_ms(lambda: read_windows(features).numpy(), repeats),
        "output write": _median_ms(lambda: write(pooled_elements, one).numpy(), repeats),
        "pooled-size read": _median_ms(lambda: read(big).numpy(), repeats),
        "map write": _median_ms(lambda: write(n * h * w * c, one).numpy(), repeats),
        "cells": cells,
    }


def floors(parts):
    """Floor (ms) of each pass from floor_parts: what it must read and write."""
    return {
        # pooled values only
        "inference forward": parts["window reads"] + parts["output write"],
        # pooled values and argmax
        "training forward": parts["window reads"] + 2 * parts["output write"],
        # training forward, then read grad and argmax, write the feature gradient
        "forward+backward": (parts["window reads"] + 2 * parts["output write"]
                             + 2 * parts["pooled-size read"] + parts["map write"]),
    }
