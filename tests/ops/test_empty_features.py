"""Features with no image (N = 0) or no cell (H = 0 or W = 0): both implementations agree.

Decision (docs/roi_pooling.md): RoIs on such features are an InvalidArgumentError in both
implementations, eager and in graphs, forward and gradient; zero RoIs are an empty
[0, PH, PW, C] result with a zero gradient of the features' shape.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import roi_pool
from keras_frcnn.ops import loader

MODES = ("eager", "function", "dynamic")
NO_IMAGE = r"batch index \(column 0\) outside \[0, N\); features hold N =\W*0\W+images"


def pool_and_grad(implementation, mode):
    """(features, rois) -> (pooled [R, 2, 3, C], d sum(pooled * upstream) / d features).

    ``mode``: eager; tf.function with the inputs' static shapes; tf.function with
    every dimension unknown (the op's and the composite's run-time branches).
    """

    def run(features, rois):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = roi_pool(features, rois, (2, 3), 1.0, implementation=implementation)
            # A different weight per output element: a gradient routed to the wrong cell shows.
            upstream = tf.reshape(tf.range(tf.size(out), dtype=out.dtype) + 1, tf.shape(out))
            loss = tf.reduce_sum(out * upstream)
        return out, tape.gradient(loss, features)

    if mode == "eager":
        return lambda f, r: run(tf.constant(f), tf.constant(r))
    signature = None
    if mode == "dynamic":
        signature = [tf.TensorSpec([None, None, None, None], tf.float32),
                     tf.TensorSpec([None, None], tf.float32)]
    graph = tf.function(run, input_signature=signature)
    return lambda f, r: graph(tf.constant(f), tf.constant(r))


def rois(*rows):
    return np.array(rows, np.float32).reshape(-1, 5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(0, 5, 5, 2), (0, 0, 0, 2), (0, 5, 5, 0)])
def test_rois_on_features_of_no_image_are_refused(implementation, mode, shape):
    # Batch index 0 is out of range when N = 0, whatever H, W and C are: the batch index
    # is checked first, so an empty map does not hide it.
    with pytest.raises(tf.errors.InvalidArgumentError, match=NO_IMAGE):
        pool_and_grad(implementation, mode)(np.zeros(shape, np.float32), rois([0, 0, 0, 3, 3]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 0, 4, 2), (2, 4, 0, 2), (1, 0, 0, 1)])
def test_rois_on_a_map_without_cells_are_refused(implementation, mode, shape):
    # A valid batch index but no cell to pool: the all-empty bins would give zeros that
    # the head would score like features.
    dims = r"\W".join(str(d) for d in shape)
    match = (rf"features of shape\W+{dims}\W+have an empty feature map \(H = 0 or W = 0\), "
             r"so the\W+2\W+RoIs have no cell to pool")
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        pool_and_grad(implementation, mode)(np.zeros(shape, np.float32),
                                            rois([0, 0, 0, 3, 3], [shape[0] - 1, 1, 1, 2, 2]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(0, 5, 5, 2), (0, 0, 0, 2), (1, 0, 4, 2), (2, 4, 0, 3),
                                   (2, 5, 5, 0), (2, 5, 5, 2)])
def test_zero_rois_give_an_empty_result_and_a_zero_gradient(implementation, mode, shape):
    out, grad = pool_and_grad(implementation, mode)(np.ones(shape, np.float32), rois())
    assert out.shape == (0, 2, 3, shape[3])
    assert grad.shape == shape
    np.testing.assert_array_equal(grad.numpy(), np.zeros(shape, np.float32))


@pytest.mark.parametrize("mode", MODES)
def test_batch_indices_are_checked_before_coordinates(implementation, mode):
    # RoI 0 has a NaN coordinate, RoI 1 an image that does not exist: both implementations
    # name RoI 1 and its batch index (the RoIs were meant for other features).
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"RoI\W+1\W.*batch index"):
        pool_and_grad(implementation, mode)(np.zeros((2, 5, 5, 1), np.float32),
                                            rois([0, np.nan, 0, 3, 3], [2, 0, 0, 3, 3]))


@pytest.mark.parametrize("mode", MODES)
def test_valid_rois_around_the_refused_cases_still_pool(implementation, mode):
    # One image, 2 x 3 map, values 1..6; RoI 0 covers the map, RoI 1 its right column.
    features = np.arange(1, 7, dtype=np.float32).reshape(1, 2, 3, 1)
    out, grad = pool_and_grad(implementation, mode)(features,
                                                    rois([0, 0, 0, 2, 1], [0, 2, 0, 2, 1]))
    np.testing.assert_array_equal(out.numpy()[..., 0], [[[1, 2, 3], [4, 5, 6]],
                                                        [[3, 3, 3], [6, 6, 6]]])
    # upstream = 1..12 in output order; RoI 1's bins all land on cells (0, 2) and (1, 2).
    np.testing.assert_array_equal(grad.numpy()[0, ..., 0], [[1, 2, 3 + 7 + 8 + 9],
                                                            [4, 5, 6 + 10 + 11 + 12]])


@pytest.mark.parametrize("features, bad_rois", [
    (np.zeros((0, 5, 5, 2), np.float32), rois([0, 0.1, 1.5, 123.456, 1e-7])),
    (np.zeros((2, 5, 5, 2), np.float32), rois([0, 0, 0, 3, 3], [-1.25, 0, 0, 3, 3])),
    (np.zeros((2, 5, 5, 2), np.float32), rois([0, 0, 0, 3, 3], [1, 1e30, np.nan, 3, 3])),
    (np.zeros((2, 5, 5, 2), np.float32), rois([1, -np.inf, 0, 3, 3])),
    (np.zeros((1, 0, 4, 2), np.float32), rois([0, 0, 0, 3, 3])),
])
def test_eager_messages_are_the_custom_op_s(features, bad_rois):
    messages = []
    for implementation in ("custom_op", "composite"):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            roi_pool(features, bad_rois, 2, 1.0, implementation=implementation)
        messages.append(error.value.message)
    assert messages[1] in messages[0]  # the op's message also names its node
    assert messages[1].startswith("RoI pooling: ")


def test_gradient_kernel_refuses_rois_on_empty_features():
    # The gradient op can be fed by hand; it checks its inputs as the forward op does.
    grad_op = loader.load().keras_frcnn_roi_pool_grad
    attrs = dict(pooled_height=2, pooled_width=2, spatial_scale=1.0)
    pooled = tf.zeros([1, 2, 2, 3])
    argmax = -tf.ones([1, 2, 2, 3], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=NO_IMAGE):
        grad_op(tf.zeros([0, 4, 4, 3]), rois([0, 0, 0, 3, 3]), argmax, pooled, **attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty feature map"):
        grad_op(tf.zeros([1, 4, 0, 3]), rois([0, 0, 0, 3, 3]), argmax, pooled, **attrs)
    empty = grad_op(tf.zeros([0, 4, 4, 3]), rois(), tf.zeros([0, 2, 2, 3], tf.int32),
                    tf.zeros([0, 2, 2, 3]), **attrs)
    assert empty.shape == (0, 4, 4, 3)
