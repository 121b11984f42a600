"""Property-based fuzzing: random shapes and RoIs never crash and match the reference."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_frcnn.ops import loader
from keras_frcnn.ops.roi_pool_composite import roi_pool_with_argmax
from tests.ops.naive_roi_pool import naive_roi_pool

SCALES = [1.0, 0.5, 0.25, 1 / 16, 0.3, 3.0]
coordinate = st.one_of(
    st.floats(-60, 260, width=32),
    st.integers(-40, 200).map(lambda v: v / 2),  # half-pixel ties
    st.sampled_from([np.nan, np.inf, -np.inf, 3e7, -1e38]),
)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 3))
    h, w, c = draw(st.integers(0, 9)), draw(st.integers(0, 9)), draw(st.integers(1, 3))
    pooled_height, pooled_width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    scale = draw(st.sampled_from(SCALES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    features = rng.integers(-3, 4, size=(n, h, w, c)).astype(dtype)  # many ties
    num_rois = draw(st.integers(0, 6))
    batch = st.one_of(st.integers(0, n - 1).map(float), st.floats(-2, n + 1, width=32))
    rois = np.array([[draw(batch)] + [draw(coordinate) for _ in range(4)]
                     for _ in range(num_rois)], np.float32).reshape(num_rois, 5)
    return features, rois, pooled_height, pooled_width, scale


def reference_accepts(rois, num_images, scale):
    with np.errstate(all="ignore"):
        scaled = rois[:, 1:] * np.float32(scale)
        return bool(np.all((rois[:, 0] > -1) & (rois[:, 0] < num_images))
                    and np.all(np.isfinite(rois[:, 1:]))
                    and np.all(np.abs(scaled) < 2.0**24))


@pytest.mark.parametrize("implementation", ["custom_op", "composite"])
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_never_crashes_and_matches_reference(implementation, case):
    features, rois, pooled_height, pooled_width, scale = case

    def run():
        if implementation == "custom_op":
            out, arg = loader.load().keras_frcnn_roi_pool(
                features, rois, pooled_height=pooled_height, pooled_width=pooled_width,
                spatial_scale=scale)
        else:
            out, arg, _ = roi_pool_with_argmax(tf.constant(features), tf.constant(rois),
                                               pooled_height, pooled_width, scale)
        return out.numpy(), arg.numpy()

    if not reference_accepts(rois, features.shape[0], scale):
        with pytest.raises(tf.errors.InvalidArgumentError, match="RoI"):
            run()
        return
    out, arg = run()
    ref_out, ref_arg = naive_roi_pool(features, rois, pooled_height, pooled_width, scale)
    np.testing.assert_array_equal(arg, ref_arg)
    np.testing.assert_array_equal(out, ref_out)
