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

Bad input fails as in the custom op, with the same InvalidArgumentError in the
same order (check_inputs): a batch index outside [0, N) (so features of N = 0
images take no RoI), then a non-finite or too large coordinate, then RoIs on a
map without cells (H = 0 or W = 0), whose bins would all be empty and whose
zeros would pass for features. Zero RoIs give an empty [0, PH, PW, C] result
(and a zero gradient) whatever the features.
"""

import numpy as np
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


_BAD_BATCH = "batch index (column 0) outside [0, N)"
_FIX = "images. Fix the RoIs passed to roi_pool."
_EMPTY_MAP = ("have an empty feature map (H = 0 or W = 0), so the {} RoIs have no cell to pool. "
              "An input smaller than the backbone's stride gives an empty map: pass larger "
              "inputs, or no RoIs for such an input.")


def _format_float(value):
    """A float32 as TensorFlow's StrCat writes it (6 significant digits, 9 when 6 do
    not round-trip), so that eager messages read exactly as the custom op's."""
    short = f"{value:.6g}"
    return short if float(np.float32(short)) == value else f"{value:.9g}"


def _coordinate_problem(roi, spatial_scale):
    """What is wrong with the first bad coordinate of one RoI (numpy [5]), in CheckRoi's words."""
    coords = np.asarray(roi[1:], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(coords) & (np.abs(coords * np.float32(spatial_scale))
                                    < MAX_SCALED_COORDINATE)
    if np.isfinite(coords[np.argmin(ok)]):
        return "coordinate whose scaled magnitude is 2^24 or more"
    return "non-finite coordinate (NaN or inf)"


def _first_false(ok):
    """Index of the first False of [R] bool ``ok``; R when all hold."""
    return tf.argmin(tf.concat([tf.cast(ok, tf.int32), [0]], axis=0), output_type=tf.int32)


def _row_or_zeros(rois, index):
    """rois[index], or a row of zeros for index R (no RoI failed)."""
    return tf.gather(tf.concat([rois, tf.zeros([1, 5], rois.dtype)], axis=0), index)


def _raise_for_first_bad_roi(ok, rois, problem, num_images):
    """Eager mode: InvalidArgumentError for the first RoI where ``ok`` is False."""
    if bool(tf.reduce_all(ok)):
        return
    r = int(_first_false(ok))
    roi = rois[r].numpy()
    text = ", ".join(_format_float(float(v)) for v in roi)
    raise tf.errors.InvalidArgumentError(
        None, None, f"RoI pooling: RoI {r} = ({text}) has a {problem(roi)}; features hold "
        f"N = {int(num_images)} {_FIX}")


def check_inputs(features, rois, spatial_scale):
    """Checks features [N, H, W, C] and rois [R, 5] as the custom op does
    (ValidatePoolInputs, custom_ops/roi_pool_op_common.h), in its order:

    1. every batch index in [0, N) (features of N = 0 images take no RoI);
    2. every coordinate finite, with scaled magnitude below 2^24;
    3. at least one feature cell (H > 0 and W > 0) when there are RoIs.

    Raises InvalidArgumentError naming the first failure, eagerly (with the
    custom op's message) or when the graph runs. Returns the op to depend on
    (a no-op when eager). Under XLA the assertions are dropped; the pooling
    still clamps every read into the feature map.
    """
    num_images, height, width = (_dim(features, a) for a in range(3))
    num_rois = tf.shape(rois)[0]
    batch, coords = rois[:, 0], rois[:, 1:]
    batch_ok = (batch > -1.0) & (batch < tf.cast(num_images, tf.float32))
    coords_ok = tf.reduce_all(
        tf.math.is_finite(coords) & (tf.abs(coords * spatial_scale) < MAX_SCALED_COORDINATE),
        axis=1)
    map_ok = tf.logical_or(tf.equal(num_rois, 0), tf.greater(height * width, 0))
    if tf.executing_eagerly():
        _raise_for_first_bad_roi(batch_ok, rois, lambda roi: _BAD_BATCH, num_images)
        _raise_for_first_bad_roi(coords_ok, rois,
                                 lambda roi: _coordinate_problem(roi, spatial_scale), num_images)
        if not bool(map_ok):
            shape = ",".join(str(int(d)) for d in tf.shape(features))
            raise tf.errors.InvalidArgumentError(
                None, None,
                f"RoI pooling: features of shape [{shape}] {_EMPTY_MAP.format(int(num_rois))}")
        return tf.no_op()
    # Graph mode: plain Assert data (no StringFormat, which XLA cannot compile); each
    # assertion waits for the previous one, so the first failure is the one reported.
    bad_batch, bad_coords = _first_false(batch_ok), _first_false(coords_ok)
    check = tf.debugging.Assert(
        tf.reduce_all(batch_ok),
        ["RoI pooling: RoI", bad_batch, "=", _row_or_zeros(rois, bad_batch),
         f"has a {_BAD_BATCH}; features hold N =", num_images, _FIX], summarize=5)
    with tf.control_dependencies([check]):
        check = tf.debugging.Assert(
            tf.reduce_all(coords_ok),
            ["RoI pooling: RoI", bad_coords, "=", _row_or_zeros(rois, bad_coords),
             "has a non-finite coordinate or one whose scaled magnitude is 2^24 or more; "
             "features hold N =", num_images, _FIX], summarize=5)
    with tf.control_dependencies([check]):
        before, after = _EMPTY_MAP.split("{}")
        return tf.debugging.Assert(
            map_ok, ["RoI pooling: features of shape", tf.shape(features), before, num_rois,
                     after], summarize=4)


def _pool_cells(features, rois, pooled_height, pooled_width, spatial_scale):
    """The pooling of checked inputs on a map of at least one cell."""
    dtype = features.dtype
    num_images, height, width, channels = (_dim(features, a) for a in range(4))

    batch = tf.clip_by_value(tf.cast(rois[:, 0], tf.int32), 0, tf.maximum(num_images - 1, 0))
    corners = round_half_away_from_zero(rois[:, 1:] * tf.constant(spatial_scale, tf.float32))
    x_start, y_start, x_end, y_end = tf.unstack(corners, axis=1)
    roi_w = tf.maximum(x_end - x_start + 1, 1)
    roi_h = tf.maximum(y_end - y_start + 1, 1)
    # False only for a NaN batch index, which check_inputs rejects.
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


def _empty_result(features, rois, pooled_height, pooled_width):
    """The result for zero RoIs on a map without cells: [0, PH, PW, C]."""
    shape = tf.stack([tf.shape(rois)[0], pooled_height, pooled_width, tf.shape(features)[3]])
    batch = tf.zeros(tf.shape(rois)[:1], tf.int32)
    return tf.zeros(shape, features.dtype), tf.fill(shape, -1), batch


def roi_pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale):
    """Forward pass: ``(output, argmax, batch)`` with no gradient attached.

    argmax is h * W + w of each maximum inside its image, -1 for empty bins;
    batch is the [R] int32 image index of each RoI. Inputs are checked first
    (check_inputs); zero RoIs give an empty result whatever the features.
    """
    features = tf.ensure_shape(features, [None, None, None, None])
    rois = tf.ensure_shape(rois, [None, 5])
    with tf.control_dependencies([check_inputs(features, rois, spatial_scale)]):
        rois = tf.identity(rois)
    # Only zero RoIs reach a map without cells (check_inputs), where the sparse
    # table cannot be built.
    height, width = features.shape[1], features.shape[2]
    if height is not None and width is not None:
        if height * width == 0:
            return _empty_result(features, rois, pooled_height, pooled_width)
        return _pool_cells(features, rois, pooled_height, pooled_width, spatial_scale)
    return tf.cond(
        tf.shape(features)[1] * tf.shape(features)[2] > 0,
        lambda: _pool_cells(features, rois, pooled_height, pooled_width, spatial_scale),
        lambda: _empty_result(features, rois, pooled_height, pooled_width))


def scatter_to_argmax(grad, argmax, batch, features_shape):
    """Gradient w.r.t. the features: each ``grad`` element added at its argmax cell.

    Args:
      grad: [R, PH, PW, C] gradient of the pooled output.
      argmax: [R, PH, PW, C] int32 cell index (-1: no gradient).
      batch: [R] int32 image of each RoI.
      features_shape: [4] int32 (N, H, W, C).
    """
    # num=4: the features' rank may be unknown when the gradient is traced.
    num_images, height, width, channels = tf.unstack(tf.cast(features_shape, tf.int64), num=4)
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
        output, argmax, batch = roi_pool_with_argmax(x, rois, pooled_height, pooled_width,
                                                     spatial_scale)

        def grad(dy):
            return scatter_to_argmax(dy, argmax, batch, tf.shape(x))

        return output, grad

    return pool(features)
