"""The custom op's inference kernel (KerasFrcnn>RoiPoolInference): pooled values only.

It must give the training kernel's values bit for bit, be chosen when no gradient is
being recorded, and still give the exact gradient when one is asked for after all.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import roi_pool
from keras_frcnn.layers import RoIPooling
from keras_frcnn.ops import loader
from tests.ops.naive_roi_pool import naive_roi_pool

INFERENCE_OP, TRAINING_OP = "KerasFrcnn>RoiPoolInference", "KerasFrcnn>RoiPool"


def random_case(rng, n=2, h=23, w=31, c=19, r=60):
    features = rng.normal(size=(n, h, w, c)).astype(np.float32)
    features[0, 3:6, 4:9] = 1.5  # ties: the first maximum in row-major order
    features[1, 7, 8, 2] = np.nan  # NaN propagates
    features[1, 9, 9, 3] = -np.inf
    corners = rng.uniform(-40, 560, size=(r, 4))
    rois = np.concatenate([rng.integers(0, n, (r, 1)), corners], axis=1)  # some inverted
    return features, rois.astype(np.float32)


def op_types(fn, *args):
    return {op.type for op in fn.get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_inference_values_are_the_training_values_bit_for_bit(seed, dtype):
    features, rois = random_case(np.random.default_rng(seed))
    features = features.astype(dtype)
    inference = roi_pool(features, rois, (7, 5), 1 / 16, "custom_op", training=False).numpy()
    training = roi_pool(features, rois, (7, 5), 1 / 16, "custom_op", training=True).numpy()
    reference = naive_roi_pool(features, rois, 7, 5, 1 / 16)[0]
    np.testing.assert_array_equal(inference.view(np.uint8), training.view(np.uint8))
    np.testing.assert_array_equal(inference.view(np.uint8), reference.view(np.uint8))


def test_the_kernel_follows_whether_a_gradient_is_recorded():
    features, rois = (tf.constant(x) for x in random_case(np.random.default_rng(0)))

    @tf.function
    def forward(f, r):
        return roi_pool(f, r, 7, 1 / 16, "custom_op")

    @tf.function
    def forward_backward(f, r):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = roi_pool(f, r, 7, 1 / 16, "custom_op")
        return tape.gradient(out, f)

    assert INFERENCE_OP in op_types(forward, features, rois)
    assert TRAINING_OP not in op_types(forward, features, rois)
    assert TRAINING_OP in op_types(forward_backward, features, rois)
    assert INFERENCE_OP not in op_types(forward_backward, features, rois)


def test_a_gradient_of_an_inference_result_is_the_exact_gradient():
    """A tape around a tf.function traced without one differentiates the inference op:
    its gradient runs the training kernel again for the argmax."""
    features, rois = (tf.constant(x) for x in random_case(np.random.default_rng(1)))
    features = tf.where(tf.math.is_finite(features), features, 0.0)
    upstream = tf.constant(np.random.default_rng(2).integers(-3, 4, (60, 7, 7, 19)),
                           tf.float32)
    forward = tf.function(lambda f, r: roi_pool(f, r, 7, 1 / 16, "custom_op"))
    forward(features, rois)  # traced with no tape: the inference kernel
    grads = []
    for call in (forward, lambda f, r: roi_pool(f, r, 7, 1 / 16, "custom_op", training=True)):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(call(features, rois) * upstream)
        grads.append(tape.gradient(loss, features).numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.abs(grads[0]).sum() > 0


def test_the_layer_uses_the_inference_kernel_when_not_training():
    loader.load()
    features_in = keras.Input((12, 12, 4))
    rois_in = keras.Input((5,), batch_size=3)
    layer = RoIPooling(2, 1 / 4, implementation="custom_op")
    model = keras.Model([features_in, rois_in], layer([features_in, rois_in]))
    features = tf.random.normal((3, 12, 12, 4), seed=0)
    rois = tf.constant([[0, 0, 0, 40, 40], [1, 4, 8, 20, 30], [2, 10, 10, 47, 47]], tf.float32)
    predict = tf.function(lambda f, r: model([f, r], training=False))
    train = tf.function(lambda f, r: model([f, r], training=True))
    assert INFERENCE_OP in op_types(predict, features, rois)
    assert TRAINING_OP in op_types(train, features, rois)
    np.testing.assert_array_equal(predict(features, rois).numpy(), train(features, rois).numpy())


def test_an_eager_inference_call_under_a_tape_has_the_exact_gradient():
    """training=False under a recording tape: the inference op's registered gradient."""
    rng = np.random.default_rng(3)
    features = tf.constant(rng.normal(size=(2, 9, 11, 3)))  # float64
    rois = tf.constant([[0, 0, 0, 100, 80], [1, 16, 8, 60, 120], [0, 40, 40, 41, 41]],
                       tf.float32)
    weights = tf.constant(rng.integers(-3, 4, (3, 3, 3, 3)), tf.float64)
    grads = []
    for training in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = roi_pool(features, rois, 3, 1 / 8, "custom_op", training=training)
            loss = tf.reduce_sum(out * weights)
        grads.append(tape.gradient(loss, features).numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    # And both are the numeric gradient (max pooling is piecewise linear).
    theoretical, numeric = tf.test.compute_gradient(
        lambda f: roi_pool(f, rois, 3, 1 / 8, "custom_op", training=False), [features])
    np.testing.assert_allclose(theoretical[0], numeric[0], atol=1e-6)
