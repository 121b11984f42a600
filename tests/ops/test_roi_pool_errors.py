"""Bad input to roi_pool: a clear error naming the input, never a crash."""

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import roi_pool
from keras_frcnn.ops import loader
from keras_frcnn.ops.roi_pool import normalize_pooled_size

FEATURES = np.zeros((2, 5, 5, 3), np.float32)
GOOD = [0, 0, 0, 10, 10]


@pytest.mark.parametrize("bad_roi", [
    [-1, 0, 0, 10, 10],          # batch index below 0
    [2, 0, 0, 10, 10],           # batch index N
    [np.nan, 0, 0, 10, 10],      # NaN batch index
    [0, np.nan, 0, 10, 10],      # NaN coordinate
    [0, 0, -np.inf, 10, 10],     # infinite coordinate
    [0, 0, 0, 1e30, 10],         # finite but too large to index
])
def test_bad_roi_is_invalid_argument_naming_it(implementation, bad_roi):
    rois = np.array([GOOD, bad_roi, GOOD], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"RoI 1\b"):
        roi_pool(FEATURES, rois, 2, 1.0, implementation=implementation)


def test_bad_roi_inside_tf_function(implementation):
    @tf.function
    def pool(rois):
        return roi_pool(FEATURES, rois, 2, 1.0, implementation=implementation)

    pool(tf.constant([GOOD], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"RoI\W+1\b.*batch index"):
        pool(tf.constant([GOOD, [3, 0, 0, 1, 1]], tf.float32))


def test_batch_index_truncates_like_c(implementation):
    # int(1.7) == 1 and int(-0.5) == 0, as the C cast in the reference does.
    features = np.stack([np.zeros((3, 3, 1)), np.ones((3, 3, 1))]).astype(np.float32)
    out = roi_pool(features, [[1.7, 0, 0, 2, 2], [-0.5, 0, 0, 2, 2]], 1, 1.0,
                   implementation=implementation)
    np.testing.assert_array_equal(out.numpy().ravel(), [1, 0])


@pytest.mark.parametrize("features, rois, error", [
    (np.zeros((5, 5, 3), np.float32), [GOOD], "features must have rank 4"),
    (FEATURES, [[0, 0, 0, 1]], r"rois must have shape \[R, 5\]"),
    (FEATURES, [0, 0, 0, 1, 1], r"rois must have shape \[R, 5\]"),
])
def test_static_shape_errors(implementation, features, rois, error):
    with pytest.raises(ValueError, match=error):
        roi_pool(features, rois, 2, 1.0, implementation=implementation)


def test_dynamic_shape_errors_at_run_time(implementation):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.float32)])
    def pool(features, rois):
        return roi_pool(features, rois, 2, 1.0, implementation=implementation)

    with pytest.raises(tf.errors.InvalidArgumentError):
        pool(tf.zeros([5, 5, 3]), tf.constant([GOOD], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError):
        pool(tf.constant(FEATURES), tf.zeros([3, 4]))


def test_kernel_validates_ranks_and_rois():
    op = loader.load().keras_frcnn_roi_pool
    attrs = dict(pooled_height=2, pooled_width=2, spatial_scale=1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 4"):
        op(tf.zeros([5, 5, 3]), tf.constant([GOOD], tf.float32), **attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[R, 5\]"):
        op(tf.constant(FEATURES), tf.zeros([2, 4]), **attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="spatial_scale"):
        op(tf.constant(FEATURES), tf.constant([GOOD], tf.float32), pooled_height=2,
           pooled_width=2, spatial_scale=-1.0)


def test_grad_kernel_ignores_out_of_range_argmax():
    # The grad op can be fed by hand: argmax outside the image must not write.
    grad_op = loader.load().keras_frcnn_roi_pool_grad
    argmax = tf.constant([10_000, -7, 3, 24], tf.int32)[:, None, None, None]
    argmax = tf.reshape(argmax, [1, 2, 2, 1])
    out = grad_op(tf.zeros([1, 5, 5, 1]), tf.constant([GOOD], tf.float32), argmax,
                  tf.ones([1, 2, 2, 1]), pooled_height=2, pooled_width=2, spatial_scale=1.0)
    expected = np.zeros(25)
    expected[[3, 24]] = 1
    np.testing.assert_array_equal(out.numpy().ravel(), expected)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must both have shape"):
        grad_op(tf.zeros([1, 5, 5, 1]), tf.constant([GOOD], tf.float32), argmax,
                tf.ones([1, 3, 2, 1]), pooled_height=2, pooled_width=2, spatial_scale=1.0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(pooled_size=0, spatial_scale=1.0), "pooled_size"),
    (dict(pooled_size=(7, 2.5), spatial_scale=1.0), "pooled_size"),
    (dict(pooled_size="7", spatial_scale=1.0), "pooled_size"),
    (dict(pooled_size=7, spatial_scale=0.0), "spatial_scale"),
    (dict(pooled_size=7, spatial_scale=float("nan")), "spatial_scale"),
    # 0 and infinite as the op's float32 attribute (benchmarks/fuzz.py found the composite
    # accepting them while the op refused them).
    (dict(pooled_size=7, spatial_scale=1e-50), "spatial_scale"),
    (dict(pooled_size=7, spatial_scale=1e-40), "spatial_scale"),  # a float32 denormal
    (dict(pooled_size=7, spatial_scale=1e39), "spatial_scale"),
    (dict(pooled_size=7, spatial_scale=1.0, implementation="crop_and_resize"), "implementation"),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(ValueError, match=error):
        roi_pool(FEATURES, [GOOD], **kwargs)


def test_bad_dtypes():
    with pytest.raises(TypeError, match="features must be"):
        roi_pool(np.zeros((1, 3, 3, 1), np.int32), [GOOD], 2, 1.0)
    with pytest.raises(TypeError, match="rois must be"):
        roi_pool(FEATURES, tf.constant([["a"] * 5]), 2, 1.0)


def test_a_numpy_integer_pooled_size_is_accepted():
    assert normalize_pooled_size(np.int64(3)) == (3, 3)


@pytest.mark.parametrize("implementation", ["custom_op", "composite"])
def test_gradient_of_features_of_unknown_rank(implementation):
    """The composite's gradient unpacked the features' shape without a known length
    (found by benchmarks/fuzz.py)."""
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def grad(features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0, implementation=implementation)
        return tape.gradient(out, features)

    # Four 2x2 bins of equal values: each bin's first cell (row-major) takes its gradient.
    expected = np.zeros(16)
    expected[[0, 2, 8, 10]] = 1
    np.testing.assert_array_equal(grad(tf.ones([1, 4, 4, 1])).numpy().ravel(), expected)
