"""RoI max pooling in pure TensorFlow, bit-identical to the custom op.

Same contract as custom_ops/roi_pool_kernels.h (DESIGN.md section 3): rois are
scaled in float32 and rounded half away from zero, bin sizes are computed in
the feature dtype, ties go to the first cell in row-major order and a NaN in a
window wins (the first NaN). Shapes: features [N, H, W, C] float32/float64,
rois [R, 5] float32, output and argmax [R, PH, PW, C].

No loop over RoIs or bins: every bin's maximum is a range-maximum query on a
2-D sparse table. Level (kh, kw) of the table holds, for every cell, the
maximum (and its first cell index) of the 2^kh x 2^kw block starting there.
A bin of nh x nw cells is covered exactly by four such blocks of size
2^floor(log2 nh) x 2^floor(log2 nw) anchored at its corners; maximum is
idempotent, so the overlap changes nothing, and because the winner carries
its cell index, ties resolve to the lowest index whatever the order of
combination. Cost: floor(log2 H + 1) * floor(log2 W + 1) copies of the
feature map (values and int32 indices) and four gathers per output element.

The gradient scatters each output gradient to its argmax cell, exactly as the
custom op's gradient does (ties included), with tf.math.unsorted_segment_sum.
"""

import tensorflow as tf

# Scaled coordinates must stay below this (see kMaxScaledCoordinate).
MAX_SCALED_COORDINATE = 16777216.0


def round_half_away_from_zero(x):
    """C ``round()`` of a float tensor, as int32 (tf.round rounds half to even).

    ``|x| - floor(|x|)`` is exact in floating point, so this equals ``roundf``
    for every float, including 0.49999997 where ``floor(x + 0.5)`` is wrong.
    """
    magnitude = tf.abs(x)
    whole = tf.floor(magnitude)
    rounded = whole + tf.cast(magnitude - whole >= 0.5, x.dtype)
    return tf.cast(tf.where(x < 0, -rounded, rounded), tf.int32)


def bin_edges(start, roi_size, num_bins, limit, dtype, divisor_guard):
    """Half-open cell ranges of the bins of each RoI along one axis.

    Args:
      start: [R] int32 first cell of each RoI (rounded, unclipped).
      roi_size: [R] int32 RoI size in cells (at least 1).
      num_bins: pooled size along this axis (Python int).
      limit: number of cells of the feature map along this axis.
      dtype: feature dtype, in which bin sizes are computed.
      divisor_guard: [R] bool, true for every valid RoI (see below).

    Returns:
      (lo, hi): [R, num_bins] int32, clipped to [0, limit].
    """
    # C computes bin = roi_size / num_bins (one rounded quotient) and then
    # p * bin (one rounded product). Grappler and XLA both rewrite a division
    # by a constant into a multiplication by its reciprocal, which rounds
    # differently (3 / 7 becomes 0.42857146 instead of 0.42857143). The
    # divisor is therefore a run-time value no optimiser can fold: num_bins
    # wherever divisor_guard holds (always, for a valid RoI). MulNoNan keeps
    # Grappler from reassociating p * (x / y) (bin > 0, so it is the product).
    divisor = tf.where(divisor_guard, num_bins, num_bins + 1)
    bin_size = tf.cast(roi_size, dtype) / tf.cast(divisor, dtype)
    p = tf.range(num_bins, dtype=dtype)[None, :]
    lo = tf.math.multiply_no_nan(p, bin_size[:, None])
    hi = tf.math.multiply_no_nan(p + 1, bin_size[:, None])
    lo = tf.cast(tf.floor(lo), tf.int32) + start[:, None]
    hi = tf.cast(tf.math.ceil(hi), tf.int32) + start[:, None]
    limit = tf.cast(limit, tf.int32)
    return tf.clip_by_value(lo, 0, limit), tf.clip_by_value(hi, 0, limit)


def _better(value, index, other_value, other_index):
    """(value, index) of the winner of two candidates under the op's order."""
    nan, other_nan = tf.math.is_nan(value), tf.math.is_nan(other_value)
    lower = other_index < index
    take_other = (
        (other_value > value)
        | ((other_value == value) & lower)
        | (other_nan & (~nan | lower))
    )
    return tf.where(take_other, other_value, value), tf.where(take_other, other_index, index)


def _num_levels(size):
    """Levels 2^0 .. 2^(L-1) <= size of a sparse table (L = floor(log2 size) + 1)."""
    if isinstance(size, int):
        return max(size, 1).bit_length()
    powers = tf.bitwise.left_shift(1, tf.range(31))
    return tf.reduce_sum(tf.cast(powers <= tf.maximum(size, 1), tf.int32))


def _doubling_levels(values, index, axis, size, num_levels):
    """Stacks levels k = 0..L-1: level k is the winner over 2^k cells along ``axis``.

    Positions whose block would pass the end are filled with clamped reads;
    queries never use them.
    """
    def next_level(value, idx, step):
        shifted = tf.minimum(tf.range(size) + step, size - 1)
        return _better(value, idx, tf.gather(value, shifted, axis=axis),
                       tf.gather(idx, shifted, axis=axis))

    if isinstance(num_levels, int):
        level_values, level_index = [values], [index]
        for k in range(1, num_levels):
            v, i = next_level(level_values[-1], level_index[-1], 2 ** (k - 1))
            level_values.append(v)
            level_index.append(i)
        return tf.stack(level_values), tf.stack(level_index)

    def body(k, value, idx, ta_values, ta_index):
        value, idx = next_level(value, idx, tf.bitwise.left_shift(1, k - 1))
        return k + 1, value, idx, ta_values.write(k, value), ta_index.write(k, idx)

    ta_values = tf.TensorArray(values.dtype, size=num_levels, element_shape=values.shape)
    ta_index = tf.TensorArray(tf.int32, size=num_levels, element_shape=index.shape)
    _, _, _, ta_values, ta_index = tf.while_loop(
        lambda k, *_: k < num_levels, body,
        (tf.constant(1), values, index, ta_values.write(0, values), ta_index.write(0, index)))
    return ta_values.stack(), ta_index.stack()


def _floor_log2(n, num_levels):
    """floor(log2 n) of an int32 tensor n >= 1, exactly (no float log)."""
    powers = tf.bitwise.left_shift(1, tf.range(1, num_levels))
    return tf.reduce_sum(tf.cast(n[..., None] >= powers, tf.int32), axis=-1)


def _dim(tensor, axis):
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


def check_rois(rois, num_images, spatial_scale):
    """Asserts every RoI has a batch index in [0, N) and finite, bounded coordinates.

    Raises InvalidArgumentError naming the first bad RoI (eagerly, or when the
    graph runs). Under XLA the assertion is dropped; the pooling below still
    clamps every read into the feature map.
    """
    batch = rois[:, 0]
    coords = rois[:, 1:]
    ok = (batch > -1.0) & (batch < tf.cast(num_images, tf.float32))
    ok &= tf.reduce_all(
        tf.math.is_finite(coords) & (tf.abs(coords * spatial_scale) < MAX_SCALED_COORDINATE),
        axis=1)
    first_bad = tf.argmin(tf.concat([tf.cast(ok, tf.int32), [0]], axis=0), output_type=tf.int32)
    bad_roi = tf.gather(tf.concat([rois, tf.zeros([1, 5], rois.dtype)], axis=0), first_bad)
    problem = ("has a batch index (column 0) outside [0, N), a non-finite coordinate or a "
               "coordinate whose scaled magnitude is 2^24 or more; features hold N =")
    advice = "images. Fix the RoIs passed to roi_pool."
    all_ok = tf.reduce_all(ok)
    if tf.executing_eagerly():
        if not bool(all_ok):
            raise tf.errors.InvalidArgumentError(
                None, None, f"RoI pooling: RoI {int(first_bad)} = {bad_roi.numpy().tolist()} "
                f"{problem} {int(num_images)} {advice}")
        return tf.no_op()
    # Graph mode: plain Assert data (no StringFormat, which XLA cannot compile).
    return tf.debugging.Assert(
        all_ok, ["RoI pooling: RoI", first_bad, "=", bad_roi, problem, num_images, advice],
        summarize=5)


def roi_pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale):
    """Forward pass: ``(output, argmax, batch)`` with no gradient attached.

    argmax is h * W + w of each maximum inside its image, -1 for empty bins;
    batch is the [R] int32 image index of each RoI.
    """
    dtype = features.dtype
    features = tf.ensure_shape(features, [None, None, None, None])
    rois = tf.ensure_shape(rois, [None, 5])
    num_images, height, width, channels = (_dim(features, a) for a in range(4))
    with tf.control_dependencies([check_rois(rois, num_images, spatial_scale)]):
        rois = tf.identity(rois)

    batch = tf.clip_by_value(tf.cast(rois[:, 0], tf.int32), 0, tf.maximum(num_images - 1, 0))
    corners = round_half_away_from_zero(rois[:, 1:] * tf.constant(spatial_scale, tf.float32))
    x_start, y_start, x_end, y_end = tf.unstack(corners, axis=1)
    roi_w = tf.maximum(x_end - x_start + 1, 1)
    roi_h = tf.maximum(y_end - y_start + 1, 1)
    # False only for a NaN batch index, which check_rois rejects.
    guard = tf.equal(rois[:, 0], rois[:, 0])
    h_lo, h_hi = bin_edges(y_start, roi_h, pooled_height, height, dtype, guard)  # [R, PH]
    w_lo, w_hi = bin_edges(x_start, roi_w, pooled_width, width, dtype, guard)  # [R, PW]
    empty = (h_hi <= h_lo)[:, :, None] | (w_hi <= w_lo)[:, None, :]  # [R, PH, PW]

    levels_h, levels_w = _num_levels(height), _num_levels(width)
    cells = tf.reshape(tf.range(height * width, dtype=tf.int32), [1, height, width, 1])
    index = tf.broadcast_to(cells, tf.shape(features))
    table, table_index = _doubling_levels(features, index, 2, width, levels_w)
    table, table_index = _doubling_levels(table, table_index, 2, height, levels_h)
    # table: [Lh, Lw, N, H, W, C] -> rows of C values.
    table = tf.reshape(table, [-1, channels])
    table_index = tf.reshape(table_index, [-1, channels])

    # Corner blocks of each bin; empty bins get any valid address, masked below.
    kh = _floor_log2(tf.maximum(h_hi - h_lo, 1), levels_h)  # [R, PH]
    kw = _floor_log2(tf.maximum(w_hi - w_lo, 1), levels_w)  # [R, PW]
    rows = [h_lo, h_hi - tf.bitwise.left_shift(1, kh)]
    cols = [w_lo, w_hi - tf.bitwise.left_shift(1, kw)]
    level = kh[:, :, None] * levels_w + kw[:, None, :]
    image = (level * num_images + batch[:, None, None]) * height  # [R, PH, PW]
    max_row = tf.maximum(height * width - 1, 0)
    best = None
    for row in rows:
        for col in cols:
            cell = tf.clip_by_value(row[:, :, None] * width + col[:, None, :], 0, max_row)
            address = image * width + cell
            candidate = (tf.gather(table, address), tf.gather(table_index, address))
            best = candidate if best is None else _better(*best, *candidate)
    value, argmax = best
    output = tf.where(empty[..., None], tf.zeros([], dtype), value)
    argmax = tf.where(empty[..., None], -1, argmax)
    return output, argmax, batch


def _empty_map_result(features, rois, pooled_height, pooled_width):
    """Pooling a map with no cells: every bin is empty."""
    shape = tf.stack([tf.shape(rois)[0], pooled_height, pooled_width, tf.shape(features)[3]])
    batch = tf.zeros(tf.shape(rois)[:1], tf.int32)
    return tf.zeros(shape, features.dtype), tf.fill(shape, -1), batch


def _forward(features, rois, pooled_height, pooled_width, spatial_scale):
    height, width = features.shape[1], features.shape[2]
    if height is not None and width is not None:
        if height * width == 0:
            return _empty_map_result(features, rois, pooled_height, pooled_width)
        return roi_pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale)
    return tf.cond(
        tf.shape(features)[1] * tf.shape(features)[2] > 0,
        lambda: roi_pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale),
        lambda: _empty_map_result(features, rois, pooled_height, pooled_width))


def scatter_to_argmax(grad, argmax, batch, features_shape):
    """Gradient w.r.t. the features: each ``grad`` element added at its argmax cell.

    Args:
      grad: [R, PH, PW, C] gradient of the pooled output.
      argmax: [R, PH, PW, C] int32 cell index (-1: no gradient).
      batch: [R] int32 image of each RoI.
      features_shape: [4] int32 (N, H, W, C).
    """
    num_images, height, width, channels = tf.unstack(tf.cast(features_shape, tf.int64))
    size = num_images * height * width * channels
    cell = tf.cast(batch, tf.int64)[:, None, None, None] * height * width + tf.cast(argmax, tf.int64)
    ids = cell * channels + tf.range(channels)
    ids = tf.where(argmax >= 0, ids, size)  # empty bins go to a dropped extra segment
    flat = tf.math.unsorted_segment_sum(tf.reshape(grad, [-1]), tf.reshape(ids, [-1]), size + 1)
    return tf.reshape(flat[:-1], features_shape)


def roi_pool_composite(features, rois, pooled_height, pooled_width, spatial_scale):
    """RoI max pooling in pure TensorFlow; see the module docstring.

    Args:
      features: [N, H, W, C] float32 or float64.
      rois: [R, 5] float32 (batch_index, x1, y1, x2, y2) in input pixels.
      pooled_height, pooled_width: output bins (Python ints >= 1).
      spatial_scale: feature cells per input pixel (Python float > 0).

    Returns:
      [R, pooled_height, pooled_width, C], differentiable w.r.t. features.
    """

    @tf.custom_gradient
    def pool(x):
        output, argmax, batch = _forward(x, rois, pooled_height, pooled_width, spatial_scale)

        def grad(dy):
            return scatter_to_argmax(dy, argmax, batch, tf.shape(x))

        return output, grad

    return pool(features)
