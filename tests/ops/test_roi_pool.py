"""roi_pool against hand-worked values and the naive reference, both implementations."""

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import roi_pool
from keras_frcnn.ops import loader
from keras_frcnn.ops.roi_pool_composite import roi_pool_with_argmax
from tests.ops.naive_roi_pool import naive_roi_pool, naive_roi_pool_grad

# Digits of pi on a 4x4 map (one image, one channel); cell index = h * 4 + w.
#        w=0 w=1 w=2 w=3
PI_GRID = [[3, 1, 4, 1],   # h=0  cells 0..3
           [5, 9, 2, 6],   # h=1  cells 4..7
           [5, 3, 5, 8],   # h=2  cells 8..11
           [9, 7, 9, 3]]   # h=3  cells 12..15


def pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale, implementation):
    """(output, argmax) as numpy from the chosen implementation."""
    features = tf.convert_to_tensor(features)
    rois = tf.convert_to_tensor(rois, tf.float32)
    if implementation == "custom_op":
        out, arg = loader.load().keras_frcnn_roi_pool(
            features, rois, pooled_height=pooled_height, pooled_width=pooled_width,
            spatial_scale=spatial_scale)
    else:
        out, arg, _ = roi_pool_with_argmax(features, rois, pooled_height, pooled_width,
                                           spatial_scale)
    return out.numpy(), arg.numpy()


def assert_matches_reference(features, rois, pooled_height, pooled_width, spatial_scale,
                             implementation):
    out, arg = pool_with_argmax(features, rois, pooled_height, pooled_width, spatial_scale,
                                implementation)
    ref_out, ref_arg = naive_roi_pool(features, rois, pooled_height, pooled_width, spatial_scale)
    np.testing.assert_array_equal(arg, ref_arg)
    # Bit for bit, NaN included.
    np.testing.assert_array_equal(out.view(np.uint8), ref_out.view(np.uint8))


def test_hand_worked_grid(implementation):
    features = np.array(PI_GRID, np.float32).reshape(1, 4, 4, 1)
    rois = np.array([
        # Whole map, bins of 2x2: rows [0,2),[2,4) x cols [0,2),[2,4).
        #   {3,1,5,9}->9@5  {4,1,2,6}->6@7  {5,3,9,7}->9@12  {5,8,9,3}->9@14
        [0, 0, 0, 3, 3],
        # x 1..3, y 0..2: roi 3x3, bin 1.5 -> rows [0,2),[1,3); cols [1,3),[2,4).
        #   {1,4,9,2}->9@5  {4,1,2,6}->6@7  {9,2,3,5}->9@5  {2,6,5,8}->8@11
        [0, 1, 0, 3, 2],
        # Row 3 only: roi_h 1, bin_h 0.5 -> both bin rows are [3,4) (overlapping bins).
        #   {9,7}->9@12  {9,3}->9@14, twice
        [0, 0, 3, 3, 3],
    ], np.float32)
    out, arg = pool_with_argmax(features, rois, 2, 2, 1.0, implementation)
    np.testing.assert_array_equal(out[..., 0], [[[9, 6], [9, 9]],
                                                [[9, 6], [9, 8]],
                                                [[9, 9], [9, 9]]])
    np.testing.assert_array_equal(arg[..., 0], [[[5, 7], [12, 14]],
                                                [[5, 7], [5, 11]],
                                                [[12, 14], [12, 14]]])


def test_tie_goes_to_first_cell_in_row_major_order(implementation):
    features = np.array(PI_GRID, np.float32).reshape(1, 4, 4, 1)
    # Rows 2..3, one bin: 9 at cell 12 and cell 14 -> the first, 12.
    out, arg = pool_with_argmax(features, [[0, 0, 2, 3, 3]], 1, 1, 1.0, implementation)
    assert out[0, 0, 0, 0] == 9 and arg[0, 0, 0, 0] == 12
    # A constant map: every bin's argmax is its first cell.
    flat = np.full((1, 5, 5, 2), 0.25, np.float32)
    out, arg = pool_with_argmax(flat, [[0, 0, 0, 4, 4]], 2, 2, 1.0, implementation)
    np.testing.assert_array_equal(out, 0.25)
    # bin 2.5: rows [0,3),[2,5); cols likewise -> first cells 0, 2, 10, 12.
    np.testing.assert_array_equal(arg[0, ..., 0], [[0, 2], [10, 12]])
    np.testing.assert_array_equal(arg[..., 0], arg[..., 1])


def test_c_rounding_of_half_coordinates(implementation):
    # A ramp: the maximum of any window is its bottom-right cell, h * 4 + w.
    features = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    # At scale 1/16, 8 -> 0.5 and 40 -> 2.5: C rounds to 1 and 3 (banker's: 0 and 2).
    rois = [[0, 8, 8, 40, 40],
            # -8 -> -0.5 rounds to -1, 24 -> 1.5 rounds to 2: rows/cols -1..2,
            # roi 4 cells, bins of 2 -> [-1,1) clipped to [0,1) and [1,3).
            [0, -8, -8, 24, 24]]
    out, arg = pool_with_argmax(features, rois, 2, 2, 1 / 16, implementation)
    # RoI 0: cells 1..3, roi 3, bin 1.5 -> [1,3),[2,4): maxima at (2,2),(2,3),(3,2),(3,3).
    np.testing.assert_array_equal(out[0, ..., 0], [[10, 11], [14, 15]])
    np.testing.assert_array_equal(out[1, ..., 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(arg[..., 0], out[..., 0].astype(np.int32))


def test_float32_bin_edge_reaches_one_row_further(implementation):
    # PH = 7, roi_h = 57: in float32, 7 * (57 / 7) = 57.000004, so the last bin
    # ends at ceil(57.000004) = 58 and includes row 57, outside the RoI
    # (exact arithmetic, as float64 does it, stops at row 56).
    assert np.float32(7) * (np.float32(57) / np.float32(7)) > 57
    assert np.float64(7) * (np.float64(57) / np.float64(7)) == 57
    ramp = np.arange(60).reshape(1, 60, 1, 1)
    roi = [[0, 0, 0, 0, 56]]
    out32, _ = pool_with_argmax(ramp.astype(np.float32), roi, 7, 1, 1.0, implementation)
    out64, _ = pool_with_argmax(ramp.astype(np.float64), roi, 7, 1, 1.0, implementation)
    assert out32[0, 6, 0, 0] == 57
    assert out64[0, 6, 0, 0] == 56
    assert_matches_reference(ramp.astype(np.float32), roi, 7, 1, 1.0, implementation)


def test_rois_outside_malformed_and_tiny(implementation, rng):
    features = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    rois = np.array([
        [0, -40, -40, 60, 60],      # partly outside
        [1, 300, 300, 400, 400],    # wholly outside: every bin empty
        [1, -100, -100, -50, -50],  # wholly outside on the other side
        [0, 50, 50, 20, 20],        # malformed, x2 < x1: one cell
        [1, 32, 48, 32, 48],        # 1x1 RoI
        [0, 0, 0, 175, 143],        # the whole map
    ], np.float32)
    assert_matches_reference(features, rois, 7, 7, 1 / 16, implementation)
    out, arg = pool_with_argmax(features, rois, 7, 7, 1 / 16, implementation)
    np.testing.assert_array_equal(out[1:3], 0)
    np.testing.assert_array_equal(arg[1:3], -1)
    # The malformed and the 1x1 RoI each see a single cell in every bin.
    assert len(np.unique(arg[3])) == 1 and len(np.unique(arg[4])) == 1


def test_several_images_are_kept_apart(implementation):
    features = np.stack([np.full((4, 4, 1), v, np.float32) for v in (1, 2, 3)])
    rois = [[2, 0, 0, 3, 3], [0, 0, 0, 3, 3], [1, 0, 0, 3, 3]]
    out, _ = pool_with_argmax(features, rois, 2, 2, 1.0, implementation)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [3, 1, 2])


def test_nan_in_a_window_propagates(implementation):
    features = np.array(PI_GRID, np.float32).reshape(1, 4, 4, 1)
    features[0, 2, 1, 0] = np.nan  # cell 9
    features[0, 3, 3, 0] = np.nan  # cell 15
    out, arg = pool_with_argmax(features, [[0, 0, 0, 3, 3]], 2, 2, 1.0, implementation)
    assert np.isnan(out[0, 1, 0, 0]) and arg[0, 1, 0, 0] == 9
    assert np.isnan(out[0, 1, 1, 0]) and arg[0, 1, 1, 0] == 15
    assert out[0, 0, 0, 0] == 9
    assert_matches_reference(features, [[0, 0, 0, 3, 3], [0, 1, 1, 3, 3]], 2, 2, 1.0,
                             implementation)


def random_case(rng, ties=False):
    """A random (features, rois, PH, PW, scale), rois on half-cell ties at times."""
    n, h, w, c = rng.integers(1, 4), rng.integers(1, 14), rng.integers(1, 14), rng.integers(1, 5)
    pooled_height, pooled_width = rng.integers(1, 8, size=2)
    scale = float(rng.choice([1.0, 0.5, 1 / 16, 0.3]))
    dtype = rng.choice([np.float32, np.float64])
    features = rng.normal(size=(n, h, w, c))
    if ties:
        features = np.round(features)  # many equal values
    num_rois = rng.integers(1, 30)
    extent = max(h, w) / scale
    corners = rng.uniform(-0.3 * extent, 1.3 * extent, size=(num_rois, 4))
    if rng.random() < 0.5:  # snap to half cells: .5 rounding ties
        corners = np.round(corners * scale * 2) / (scale * 2)
    rois = np.concatenate([rng.integers(0, n, (num_rois, 1)), corners], axis=1)
    return features.astype(dtype), rois.astype(np.float32), int(pooled_height), \
        int(pooled_width), scale


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_reference(implementation, seed):
    rng = np.random.default_rng(seed)
    features, rois, pooled_height, pooled_width, scale = random_case(rng, ties=seed % 2 == 0)
    assert_matches_reference(features, rois, pooled_height, pooled_width, scale, implementation)


def test_paper_shapes_match_reference(implementation, rng):
    # VGG16 geometry: 7x7 bins, stride 16, two images, RoIs of 5-60 % of the image.
    features = rng.normal(size=(2, 38, 50, 16)).astype(np.float32)
    size = rng.uniform(0.05, 0.6, size=(64, 2)) * [800, 608]
    x1 = rng.uniform(0, 800 - size[:, 0])
    y1 = rng.uniform(0, 608 - size[:, 1])
    rois = np.stack([rng.integers(0, 2, 64), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)
    assert_matches_reference(features, rois.astype(np.float32), 7, 7, 1 / 16, implementation)


def test_public_function_output(implementation, rng):
    features = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    rois = np.array([[1, 0, 0, 50, 40], [0, 10, 10, 90, 90]], np.float32)
    out = roi_pool(features, rois, (2, 3), 1 / 8, implementation=implementation)
    assert out.shape == (2, 2, 3, 3) and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), naive_roi_pool(features, rois, 2, 3, 1 / 8)[0])


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_is_pooled_in_float32(implementation, dtype, rng):
    # The bins are those of float32 features, not of the half dtype: for the RoI 57 rows
    # high (y 0..56) with 7 bins, bin_h = fl32(57 / 7) and 7 * bin_h rounds above 57, so
    # the last bin is rows [48, 58), one row past the RoI; in float16 and bfloat16 (as in
    # exact arithmetic) 7 * bin_h is 57.0 and the bin stops at row 56. Row 57 holds the
    # map's maximum, so only float32 bins see it.
    values = rng.normal(size=(1, 60, 60, 4))
    values[0, 57] = 10.0
    features = tf.cast(values, dtype)
    rois = [[0, 0, 0, 7, 7], [0, 2, 1, 5, 6], [0, 0, 0, 59, 56]]
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = roi_pool(features, rois, 7, 1.0, implementation=implementation)
    assert out.dtype == dtype
    pooled = tf.cast(out, tf.float32).numpy()
    expected = naive_roi_pool(tf.cast(features, tf.float32).numpy(), rois, 7, 7, 1.0)[0]
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(pooled[2, 6], 10.0)  # the last bin row reaches row 57
    assert (pooled[2, :6] < 10.0).all()
    grad = tape.gradient(out, features)
    assert grad.dtype == dtype and float(tf.reduce_sum(tf.cast(grad, tf.float32))) == 3 * 49 * 4


def test_zero_rois_give_empty_output_and_zero_gradient(implementation):
    features = tf.ones([2, 5, 5, 3])
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = roi_pool(features, tf.zeros([0, 5]), 7, 1.0, implementation=implementation)
        loss = tf.reduce_sum(out)
    assert out.shape == (0, 7, 7, 3)
    grad = tape.gradient(loss, features)
    np.testing.assert_array_equal(grad.numpy(), np.zeros((2, 5, 5, 3)))


def tie_free_features(rng, shape, dtype=np.float64):
    """Distinct values at least 1 apart: finite differences never switch the argmax."""
    values = rng.permutation(np.prod(shape)).astype(dtype)
    return values.reshape(shape) * 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_match_reference_and_each_other(rng, dtype):
    features = tie_free_features(rng, (2, 10, 12, 4), dtype)
    _, rois, _, _, _ = random_case(np.random.default_rng(3))
    rois[:, 0] = rng.integers(0, 2, len(rois))
    upstream = rng.normal(size=(len(rois), 3, 4, 4)).astype(dtype)
    grads = {}
    for implementation in ("custom_op", "composite"):
        x = tf.constant(features)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = roi_pool(x, rois, (3, 4), 0.5, implementation=implementation)
        grads[implementation] = tape.gradient(out, x, output_gradients=tf.constant(upstream))
    _, argmax = naive_roi_pool(features, rois, 3, 4, 0.5)
    expected = naive_roi_pool_grad(features.shape, rois, argmax, upstream)
    np.testing.assert_array_equal(grads["custom_op"].numpy(), expected)
    np.testing.assert_allclose(grads["composite"].numpy(), grads["custom_op"].numpy(),
                               rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)


def test_gradient_with_ties_follows_argmax(implementation, rng):
    # Constant map: all the gradient of a bin lands on its first cell.
    features = tf.ones([1, 4, 4, 1], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0, implementation=implementation)
    grad = tape.gradient(out, features).numpy()[0, ..., 0]
    expected = np.zeros((4, 4))
    expected[[0, 0, 2, 2], [0, 2, 0, 2]] = 1
    np.testing.assert_array_equal(grad, expected)


def test_float64_numeric_gradient_check(implementation, rng):
    features = tie_free_features(rng, (2, 6, 7, 2))
    rois = tf.constant([[0, 0, 0, 6, 5], [1, 2, 1, 5, 5], [1, -3, -2, 2, 9], [0, 4, 4, 4, 4]],
                       tf.float32)

    def pool(x):
        return roi_pool(x, rois, 3, 1.0, implementation=implementation)

    theoretical, numerical = tf.test.compute_gradient(pool, [tf.constant(features)], delta=1e-3)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)
    assert np.abs(theoretical[0]).sum() > 0
