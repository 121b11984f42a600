"""roi_pool inside graphs: shape inference, dynamic shapes, XLA and SavedModel."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import roi_pool
from tests.ops.naive_roi_pool import naive_roi_pool


def sample(rng, n=2, h=9, w=13, c=4, r=20):
    features = rng.normal(size=(n, h, w, c)).astype(np.float32)
    corners = rng.uniform(-20, 16 * max(h, w) + 20, size=(r, 4))
    rois = np.concatenate([rng.integers(0, n, (r, 1)), corners], 1).astype(np.float32)
    return features, rois


def test_static_shape_inference(implementation):
    @tf.function(input_signature=[tf.TensorSpec([2, None, None, 8]), tf.TensorSpec([None, 5])])
    def pool(features, rois):
        out = roi_pool(features, rois, (7, 5), 1 / 16, implementation=implementation)
        assert out.shape.as_list() == [None, 7, 5, 8], out.shape
        return out

    pool.get_concrete_function()

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3]), tf.TensorSpec([6, 5])])
    def pool_static(features, rois):
        out = roi_pool(features, rois, 2, 1.0, implementation=implementation)
        assert out.shape.as_list() == [6, 2, 2, 3], out.shape
        return out

    pool_static.get_concrete_function()


def test_dynamic_spatial_shapes_match_reference(implementation, rng):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None]),
                                  tf.TensorSpec([None, 5])])
    def pool(features, rois):
        return roi_pool(features, rois, 7, 1 / 16, implementation=implementation)

    for h, w in [(9, 13), (1, 1), (38, 5), (60, 60)]:
        features, rois = sample(rng, h=h, w=w)
        # Float32 bin edges a constant-folding rewrite would move: roi_w 3 with
        # PW 7 (7 * fl(3/7) rounds to 3.0) and roi_h 57 (7 * fl(57/7) > 57).
        rois[:2] = [[0, 80, 0, 112, 60], [0, 0, 0, 16, 16 * 56]]
        if h > 57:  # the 57-row RoI's last bin is rows [48, 58) in float32 only
            features[0, 57] = 10.0  # (exact or float64 arithmetic: [48, 57))
        out = pool(features, rois).numpy()
        np.testing.assert_array_equal(out, naive_roi_pool(features, rois, 7, 7, 1 / 16)[0])
        if h > 57:
            np.testing.assert_array_equal(out[1, 6], 10.0)


@pytest.mark.parametrize("static", [True, False])
def test_composite_under_xla_is_bit_identical(rng, static):
    features, rois = sample(rng, h=60)
    # The float32 bin edges must survive XLA's rewrites too: roi_h 57 and
    # roi_w 3 with 7 bins (see test_dynamic_spatial_shapes_match_reference).
    # The 57-row RoI's last bin reaches row 57 in float32 only; the maximum is there.
    rois[:2] = [[0, 0, 0, 100, 56], [1, 5, 0, 7, 8]]
    features[0, 57] = 10.0
    if static:
        signature = [tf.TensorSpec(features.shape), tf.TensorSpec(rois.shape)]
    else:
        signature = [tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, 5])]

    @tf.function(jit_compile=True, input_signature=signature)
    def pool_and_grad(features, rois):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = roi_pool(features, rois, 7, 1.0, implementation="composite")
        return out, tape.gradient(out, features)

    out, grad = pool_and_grad(features, rois)
    np.testing.assert_array_equal(out.numpy(), naive_roi_pool(features, rois, 7, 7, 1.0)[0])
    np.testing.assert_array_equal(out.numpy()[0, 6, 0], 10.0)  # bins 1.. lie beyond column 12
    x = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(x)
        eager_out = roi_pool(x, rois, 7, 1.0, implementation="composite")
    np.testing.assert_array_equal(grad.numpy(), tape.gradient(eager_out, x).numpy())


def test_composite_saved_model_loads_without_keras_frcnn(tmp_path, rng):
    features, rois = sample(rng)

    class Pooler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 4]),
                                      tf.TensorSpec([None, 5])])
        def __call__(self, features, rois):
            return roi_pool(features, rois, 7, 1 / 16, implementation="composite")

    tf.saved_model.save(Pooler(), str(tmp_path / "pooler"))
    np.save(tmp_path / "features.npy", features)
    np.save(tmp_path / "rois.npy", rois)
    # A fresh interpreter that never imports keras_frcnn.
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"d = {str(tmp_path)!r}\n"
        "m = tf.saved_model.load(d + '/pooler')\n"
        "out = m(np.load(d + '/features.npy'), np.load(d + '/rois.npy'))\n"
        "np.save(d + '/out.npy', out.numpy())\n"
        "assert 'keras_frcnn' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  naive_roi_pool(features, rois, 7, 7, 1 / 16)[0])
