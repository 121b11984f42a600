"""roi_pooling.png: RoI max pooling (paper section 2.1) forward and backward (eq. 4) on
one channel of a trained backbone's feature map, every number taken from
keras_frcnn.roi_pool and checked against the bins worked out here in numpy.

Feature cells of an H x W map are numbered h * W + w, as the op's argmax numbers them;
a RoI's cell window (xs, ys, xe, ye) is inclusive. Bins follow docs/roi_pooling.md
(rules 2-5): bin p covers [floor(p * size / P), ceil((p + 1) * size / P)) of the window,
so where size / P is not whole, neighbouring bins share a row or column of cells.
"""

from pathlib import Path

import numpy as np
from figure_common import (FOREGROUND, GROUND_TRUTH, WIDTH_INCHES, draw_boxes, outline, save,
                           split_images)
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

SECOND_ROI = "#9467bd"
# dL/dy of every bin of the first and the second RoI in the backward panel: a cell's
# gradient then reads in decimal as (bins of the second RoI, bins of the first).
UPSTREAM = (1.0, 10.0)
# Bin (p, q) is drawn in BIN_COLOURS[2 * (p % 2) + q % 2]: no two bins that touch,
# diagonally included, share a colour.
BIN_COLOURS = ("#e41a1c", "#377eb8", "#ffd92f", "#4daf4a")


# ---------------------------------------------------------------- the op's arithmetic

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


def object_channel(features, cells):
    """(channel, contrast [C]) of an [H, W, C] map: the channel whose mean over the RoI's
    cell window ``cells`` (xs, ys, xe, ye) minus its mean over the other cells is the
    largest, one that answers to what the RoI holds rather than to the whole image (a
    window covering the whole map is compared with 0)."""
    height, width = features.shape[:2]
    xs, ys, xe, ye = cells
    rows, cols = np.arange(height), np.arange(width)
    inside = ((rows >= ys) & (rows <= ye))[:, None] & ((cols >= xs) & (cols <= xe))[None, :]
    if not inside.any():
        raise ValueError(f"RoI cells {tuple(int(v) for v in cells)} lie outside the "
                         f"{height}x{width} feature map")
    outside = features[~inside].mean(axis=0) if (~inside).any() else 0.0
    contrast = features[inside].mean(axis=0) - outside
    return int(np.argmax(contrast)), contrast


def route_gradient(shape, argmax, upstream):
    """Paper eq. 4 on one channel: dL/dx_i = sum over RoIs r and bins j of
    [i = i*(r, j)] dL/dy_rj. ``argmax`` [R, PH, PW] cells (h * W + w; -1, an empty
    bin, routes nothing), ``upstream`` [R, PH, PW] the dL/dy; returns [H, W] = shape."""
    gradient = np.zeros(int(np.prod(shape)), np.float64)
    argmax = np.asarray(argmax)
    upstream = np.broadcast_to(np.asarray(upstream, np.float64), argmax.shape).reshape(-1)
    argmax = argmax.reshape(-1)
    hit = argmax >= 0
    np.add.at(gradient, argmax[hit], upstream[hit])
    return gradient.reshape(shape)


def op_gradient(features, rois, upstream, pooled_size, spatial_scale, implementation=None):
    """dL/dfeatures [N, H, W, C] of L = sum(upstream * roi_pool(features, rois)) for
    ``upstream`` [R, PH, PW, C]: tf.GradientTape through the op's registered gradient."""
    import tensorflow as tf

    from keras_frcnn import roi_pool

    features = tf.convert_to_tensor(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = roi_pool(features, rois, pooled_size, spatial_scale, implementation,
                          training=True)
    return tape.gradient(pooled, features,
                         output_gradients=tf.convert_to_tensor(upstream, tf.float32)).numpy()


def cell_sharing(argmax):
    """{bins: cells}: how many argmax cells are the maximum of 1, 2, ... bins of one RoI
    (``argmax`` [PH, PW], -1 for an empty bin)."""
    _, counts = np.unique(argmax[argmax >= 0], return_counts=True)
    kinds, cells = np.unique(counts, return_counts=True)
    return {int(k): int(n) for k, n in zip(kinds, cells)}


def checked_argmax(features, rois, pooled, gradient, upstream, pooled_size, spatial_scale):
    """[R, PH, PW, C] argmax cells of ``rois`` [R, 5] on ``features`` [H, W, C] (one
    image), from the bins worked out here, after checking in every channel that their
    maxima are roi_pool's ``pooled`` [R, PH, PW, C] and that eq. 4 over them with
    ``upstream`` [R, PH, PW, C] is the op's ``gradient`` [H, W, C]."""
    height, width, channels = features.shape
    bins = [roi_bins(roi[1:], pooled_size, spatial_scale, height, width) for roi in rois]
    argmax = np.zeros(pooled.shape, np.int64)
    for c in range(channels):
        for r, edges in enumerate(bins):
            values, argmax[r, ..., c] = bin_argmax(features[..., c], *edges[:4])
            if not np.array_equal(values, pooled[r, ..., c]):
                raise AssertionError(f"RoI {rois[r].tolist()}: the bins' maxima differ from "
                                     f"roi_pool's output in channel {c}")
        routed = route_gradient((height, width), argmax[..., c], upstream[..., c])
        if not np.array_equal(routed, gradient[..., c]):
            raise AssertionError(f"channel {c}: roi_pool's gradient is not eq. 4 over the "
                                 f"argmax cells ({np.abs(routed - gradient[..., c]).max()} "
                                 "apart at most)")
    return argmax


# ---------------------------------------------------------------- choosing what to show

def pick_roi(record, proposals):
    """(index, ground-truth box): the largest proposal whose IoU with a ground-truth
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
    return k, record.boxes[int(np.argmax(overlaps[k]))]


def pick_partner(rois, first, channel_map, pooled_size, spatial_scale):
    """The index into ``rois`` [n, 5] of a second RoI for the backward panel: one with
    IoU >= 0.3 with RoI ``first`` but another cell window, sharing at least one argmax
    cell with it on ``channel_map``, the fewest such cells (ties: the largest IoU), so
    that eq. 4's sum over RoIs shows in a cell; None when no RoI does."""
    from keras_frcnn.boxes import iou_matrix

    height, width = channel_map.shape
    bins = roi_bins(rois[first, 1:], pooled_size, spatial_scale, height, width)
    first_cells = set(bin_argmax(channel_map, *bins[:4])[1].reshape(-1)) - {-1}
    overlaps = iou_matrix(rois[:, 1:], rois[first, 1:])[:, 0]
    best = None
    for k in np.flatnonzero(overlaps >= 0.3):
        other = roi_bins(rois[k, 1:], pooled_size, spatial_scale, height, width)
        if other[4] == bins[4]:
            continue
        shared = len(first_cells & set(bin_argmax(channel_map, *other[:4])[1].reshape(-1)))
        key = (shared, -overlaps[k])
        if shared and (best is None or key < best[0]):
            best = (key, int(k))
    return None if best is None else best[1]


# ---------------------------------------------------------------- the figure

def roi_pooling_case(config, workdir, split):
    """Everything roi_pooling.png shows, computed and checked: a test image, a foreground
    RoI and a second RoI at the Detector's scale, the channel object_channel picks, both
    RoIs' bins and argmax cells, roi_pool's output and the op's gradient."""
    from keras_frcnn import roi_pool, workdirs
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.detection import graph

    pairs = [(r, p) for r, p in split_images(config, split, 5) if len(r.boxes) and len(p)]
    if not pairs:
        raise ValueError(f"none of the first images of split {split!r} has an object and "
                         "proposals to draw a RoI from")
    record, proposals = pairs[0]
    first, gt = pick_roi(record, proposals)
    model = workdirs.load_inference_model(workdir)
    backbone = model.get_config()["backbone"]
    layer = model.get_layer("roi_pool")
    pooled_size, spatial_scale = tuple(layer.pooled_size), float(layer.spatial_scale)

    # The image at the scale where the Detector pools this RoI (the test scale, or the
    # pyramid level its area picks), prepared by the Detector's own function.
    image = read_image_bgr(record.image_path, config.dataset.max_image_pixels)
    test = config.test
    _, rois, _ = graph.network_inputs(image, proposals[first][None], test.scales,
                                      test.max_size, "none")
    scale = (test.scales[int(rois[0, 0])],)
    inputs, rois, _ = graph.network_inputs(image, proposals, scale, test.max_size,
                                           config.pipeline.preprocessing)
    shown, _, _ = graph.network_inputs(image, proposals[:0], scale, test.max_size, "none")
    features = model.get_layer(f"{backbone}_features")(inputs, training=False).numpy()
    rois = rois.numpy()
    height, width = features.shape[1:3]
    cells = roi_bins(rois[first, 1:], pooled_size, spatial_scale, height, width)[4]
    channel, _ = object_channel(features[0], cells)
    partner = pick_partner(rois, first, features[0, ..., channel], pooled_size, spatial_scale)
    if partner is None:
        raise ValueError(f"{record.image_path}: no proposal overlaps the RoI and shares an "
                         f"argmax cell with it in channel {channel}")
    pair = rois[[first, partner]]

    pooled = roi_pool(features, pair, pooled_size, spatial_scale,
                      implementation=layer.implementation, training=False).numpy()
    upstream = np.broadcast_to(np.reshape(UPSTREAM, (2, 1, 1, 1)), pooled.shape)
    gradient = op_gradient(features, pair, upstream, pooled_size, spatial_scale,
                           layer.implementation)[0]
    argmax = checked_argmax(features[0], pair, pooled, gradient, upstream, pooled_size,
                            spatial_scale)[..., channel]
    bins = [roi_bins(roi[1:], pooled_size, spatial_scale, height, width) for roi in pair]
    from_each = [route_gradient((height, width), a, 1.0) for a in argmax]  # bins per cell
    factor = float(graph.scale_factor(float(image.shape[0]), float(image.shape[1]),
                                      float(scale[0]), float(test.max_size)))
    return {"record": record, "gt": gt * factor,
            "shown": np.clip(np.rint(shown.numpy()[0]), 0, 255).astype(np.uint8),
            "backbone": backbone, "pooled_size": pooled_size, "spatial_scale": spatial_scale,
            "rois": pair, "channel": channel, "channels": features.shape[-1],
            "channel_map": features[0, ..., channel], "bins": bins, "argmax": argmax,
            "pooled": pooled[..., channel], "gradient": gradient[..., channel],
            "from_each": from_each}


def bin_colours(ph, pw):
    """[PH * PW] colours of the bins, row by row (BIN_COLOURS)."""
    p, q = np.divmod(np.arange(ph * pw), pw)
    return [BIN_COLOURS[2 * (i % 2) + j % 2] for i, j in zip(p, q)]


def tile_origins(lo, hi, gap):
    """Where each bin's tile starts along one axis when the bins are drawn apart: tiles
    as many cells long as their bins, ``gap`` cells between them, the first at 0."""
    return np.concatenate([[0.0], np.cumsum(hi - lo + gap)[:-1]])


def sharing_text(sharing):
    """'4 cells are the max of 2 bins, 1 of 4' for cell_sharing's {1: 37, 2: 4, 4: 1}."""
    shared = [(bins, cells) for bins, cells in sorted(sharing.items()) if bins > 1]
    if not shared:
        return "no cell is the max of two bins"
    (bins, cells), rest = shared[0], shared[1:]
    return ", ".join([f"{cells} cell{'s are' if cells > 1 else ' is'} the max of {bins} bins",
                      *(f"{c} of {b}" for b, c in rest)])


def show_cells(ax, bounds):
    """Shows cells [x0, x1] x [y0, y1] (inclusive) of an imshow panel."""
    x0, y0, x1, y1 = bounds
    ax.set_xlim(x0 - 0.5, x1 + 0.5)
    ax.set_ylim(y1 + 0.5, y0 - 0.5)


def draw_bins(ax, case, bounds, colours):
    """The channel with RoI 1's bins, each in its colour, slightly inside its cells (an
    empty bin has none)."""
    rows_lo, rows_hi, cols_lo, cols_hi, _ = case["bins"][0]
    r0, c0 = np.meshgrid(rows_lo, cols_lo, indexing="ij")
    r1, c1 = np.meshgrid(rows_hi, cols_hi, indexing="ij")
    inset = 0.15
    edges = np.stack([c0 - 0.5 + inset, r0 - 0.5 + inset, c1 - 0.5 - inset,
                      r1 - 0.5 - inset], -1).reshape(-1, 4)
    kept = ((r1 > r0) & (c1 > c0)).reshape(-1)
    ax.imshow(case["channel_map"], cmap="gray", vmin=case["lo"], vmax=case["hi"])
    outline(ax, edges[kept], np.array(colours)[kept].tolist(), width=1.8)
    show_cells(ax, bounds)


def draw_exploded_bins(ax, case, colours, gap=0.5):
    """RoI 1's bins pulled apart, each tile its bin's cells framed in its colour, with a
    dot on the bin's argmax; a cell in two bins appears in both tiles, and a line joins
    the copies of an argmax cell that several bins share."""
    channel_map, argmax = case["channel_map"], case["argmax"][0]
    rows_lo, rows_hi, cols_lo, cols_hi, _ = case["bins"][0]
    x0, y0 = tile_origins(cols_lo, cols_hi, gap), tile_origins(rows_lo, rows_hi, gap)
    ph, pw = argmax.shape
    dots = {}  # argmax cell -> the points where its copies are marked
    for p in range(ph):
        for q in range(pw):
            if rows_hi[p] <= rows_lo[p] or cols_hi[q] <= cols_lo[q]:
                continue  # an empty bin has no cells to draw
            extent = (x0[q] - 0.5, x0[q] + cols_hi[q] - cols_lo[q] - 0.5,
                      y0[p] + rows_hi[p] - rows_lo[p] - 0.5, y0[p] - 0.5)
            ax.imshow(channel_map[rows_lo[p]:rows_hi[p], cols_lo[q]:cols_hi[q]], cmap="gray",
                      vmin=case["lo"], vmax=case["hi"], extent=extent)
            outline(ax, [extent[0], extent[3], extent[1], extent[2]], colours[p * pw + q],
                    width=2)
            h, w = divmod(int(argmax[p, q]), channel_map.shape[1])
            dots.setdefault((h, w), []).append((x0[q] + w - cols_lo[q], y0[p] + h - rows_lo[p]))
    for points in dots.values():
        x, y = np.array(points).T
        if len(points) > 1:
            ax.plot(x, y, color="#ff00ff", lw=1.5, zorder=3)
        ax.scatter(x, y, s=16, c="#ff00ff" if len(points) > 1 else "red",
                   edgecolors="white", linewidths=0.6, zorder=4)
    ax.set_xlim(-1, x0[-1] + cols_hi[-1] - cols_lo[-1])
    ax.set_ylim(y0[-1] + rows_hi[-1] - rows_lo[-1], -1)


def draw_gradient(ax, case, bounds):
    """The op's gradient on the cells: tinted by the RoIs that route to them, the value
    written in each cell that receives one, the cell of ``case["framed"]`` framed."""
    gradient, (first, second) = case["gradient"], case["from_each"]
    tint = np.ones((*gradient.shape, 3))
    tint[first > 0] = (1.0, 0.85, 0.6)
    tint[second > 0] = (0.85, 0.78, 0.95)
    tint[(first > 0) & (second > 0)] = (1.0, 0.5, 0.5)
    ax.imshow(tint)
    for r, c in zip(*np.nonzero(gradient)):
        ax.text(c, r, f"{gradient[r, c]:g}", ha="center", va="center", fontsize=7)
    x0, y0, x1, y1 = bounds
    ax.vlines(np.arange(x0, x1 + 2) - 0.5, y0 - 0.5, y1 + 0.5, colors="#dddddd", linewidths=0.5)
    ax.hlines(np.arange(y0, y1 + 2) - 0.5, x0 - 0.5, x1 + 0.5, colors="#dddddd", linewidths=0.5)
    draw_boxes(ax, case["windows"][:1], FOREGROUND, width=2)
    draw_boxes(ax, case["windows"][1:], SECOND_ROI, width=2, style="dashed")
    h, w = case["framed"]
    draw_boxes(ax, np.array([[w, h, w, h]]), "black", width=2.5)
    show_cells(ax, bounds)


def draw_roi_pooling(case, path):
    """Writes roi_pooling.png from ``roi_pooling_case``'s result; returns its facts."""
    rois, argmax, (first, second) = case["rois"], case["argmax"], case["from_each"]
    height, width = case["channel_map"].shape
    ph, pw = case["pooled_size"]
    limit = [width - 1, height - 1] * 2
    windows = np.array([np.clip(b[4], 0, limit) for b in case["bins"]])

    def around(boxes):  # the cells of ``boxes`` and one more on each side
        return np.clip(np.concatenate([boxes[:, :2].min(0) - 1, boxes[:, 2:].max(0) + 1]),
                       0, limit)

    sharing = cell_sharing(argmax[0])
    both = (first > 0) & (second > 0)
    # The cell eq. 4 sums the most terms into, among those both RoIs route to.
    framed = np.unravel_index(np.argmax(np.where(both, first + second, 0)), both.shape)
    case = {**case, "windows": windows, "framed": framed, "lo": float(case["channel_map"].min()),
            "hi": float(case["channel_map"].max())}
    colours = bin_colours(ph, pw)
    channel = case["channel"]

    fig = plt.figure(figsize=(WIDTH_INCHES, 8.6))
    top = fig.add_gridspec(1, 2, left=0.02, right=0.98, top=0.94, bottom=0.6, wspace=0.06)
    bottom = fig.add_gridspec(1, 2, width_ratios=[0.8, 1.2], left=0.02, right=0.98,
                              top=0.52, bottom=0.11, wspace=0.06)
    ax = fig.add_subplot(top[0])
    draw_bins(ax, case, around(windows[:1]), colours)
    ax.set_title(f"forward: RoI 1's {ph}x{pw} bins on channel {channel} of "
                 f"{case['backbone']}_features\n(1/{round(1 / case['spatial_scale'])} scale); "
                 "neighbouring bins overlap by a row or column", fontsize=9)
    ax = fig.add_subplot(top[1])
    draw_exploded_bins(ax, case, colours)
    ax.set_title(f"the bins pulled apart, a dot on each bin's max: {sum(sharing.values())} "
                 f"cells\nfor {ph * pw} bins; joined: {sharing_text(sharing)}", fontsize=9)

    left = bottom[0].subgridspec(2, 1, height_ratios=[1, 1.1], hspace=0.3)
    ax = fig.add_subplot(left[0])
    ax.imshow(case["shown"])
    draw_boxes(ax, case["gt"][None], GROUND_TRUTH, width=1.5, style="dashed")
    draw_boxes(ax, rois[1:, 1:], SECOND_ROI, width=1.5)
    draw_boxes(ax, rois[:1, 1:], FOREGROUND, width=2)
    ax.set_title(f"{Path(case['record'].image_path).name}: RoI 1, RoI 2, ground truth",
                 fontsize=9)
    ax.legend([Line2D([], [], color=FOREGROUND, lw=2), Line2D([], [], color=SECOND_ROI, lw=2),
               Line2D([], [], color=GROUND_TRUTH, lw=2, ls="--")],
              ["RoI 1", "RoI 2", "ground truth"], loc="upper center", ncol=3, fontsize=7,
              bbox_to_anchor=(0.5, 0.0), frameon=False)
    ax = fig.add_subplot(left[1])
    ax.imshow(case["pooled"][0], cmap="gray", vmin=case["lo"], vmax=case["hi"])
    cells = np.stack(np.meshgrid(np.arange(pw), np.arange(ph)), -1).reshape(-1, 2)
    outline(ax, np.concatenate([cells - 0.44, cells + 0.44], 1), colours, width=2)
    ax.set_title(f"roi_pool output of RoI 1, channel {channel}: each bin's max", fontsize=9)

    ax = fig.add_subplot(bottom[1])
    draw_gradient(ax, case, around(windows))
    a, b = int(first[framed]), int(second[framed])
    ax.set_title(f"backward, eq. 4: the op's dL/dx (tf.GradientTape), dL/dy = {UPSTREAM[0]:g} "
                 f"on RoI 1's\nbins, {UPSTREAM[1]:g} on RoI 2's; framed: {a} bin{'s' * (a > 1)} "
                 f"of RoI 1 + {b} of RoI 2 = {a} x {UPSTREAM[0]:g} + {b} x {UPSTREAM[1]:g} = "
                 f"{case['gradient'][framed]:g}", fontsize=9)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.02, 0.012, (
        f"Channel {channel} of {case['channels']}: the largest mean inside RoI 1's cells minus "
        "the mean outside. Bin p of a window h cells high covers\ncells [floor(p h / "
        f"{ph}), ceil((p + 1) h / {ph})) (and so across): where h / {ph} is not whole, "
        "neighbours share a row or column, so a cell can be the\nmax of several bins "
        f"(here up to {max(sharing)}). Ties (all-zero bins) go to the first cell. Backward: "
        "dL/dx_i = sum over RoIs r, bins j of [i = argmax(r, j)] dL/dy_rj;\npale orange: "
        "cells RoI 1 routes to, violet: RoI 2, red: both; checked equal to that sum over the "
        "argmax cells, in every channel."), fontsize=8.5, va="bottom")
    return {"path": save(fig, path), "image": case["record"].image_path,
            "rois": rois.tolist(), "channel": channel,
            "bins_checked": int(argmax.size * case["channels"]),  # every channel's
            "empty_bins": int((argmax < 0).sum()), "shared_cells": sharing,
            "cells_from_both_rois": int(both.sum()),
            "framed_cell": (int(framed[0]), int(framed[1])), "framed_bins": (a, b),
            "framed_gradient": float(case["gradient"][framed]),
            "argmax_matches_roi_pool": True, "gradient_matches_eq4": True}


def roi_pooling_figure(config, workdir, output_dir, split):
    """roi_pooling.png in ``output_dir`` from a test image of ``split``; returns its facts."""
    case = roi_pooling_case(config, workdir, split)
    return draw_roi_pooling(case, Path(output_dir) / "roi_pooling.png")
