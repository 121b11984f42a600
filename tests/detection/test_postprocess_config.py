"""PostprocessConfig refuses NMS thresholds that are negative, infinite or NaN."""

import math

import pytest

from keras_frcnn.detection import PostprocessConfig


@pytest.mark.parametrize("threshold", [-0.1, math.inf, math.nan])
def test_bad_nms_threshold_is_refused_naming_it(threshold):
    # Catches a check that lets one of them through: ``< 0`` alone passes inf and NaN,
    # ``not 0 <= t`` passes inf, ``t > inf`` passes nothing through but NaN.
    with pytest.raises(ValueError, match=rf"nms_threshold must be >= 0 .*got {threshold}"):
        PostprocessConfig(nms_threshold=threshold)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0, 1.5])
def test_nms_thresholds_from_zero_up_are_accepted(threshold):
    # 0 suppresses every overlapping box, 1 exact duplicates only, above 1 none.
    assert PostprocessConfig(nms_threshold=threshold).nms_threshold == threshold
