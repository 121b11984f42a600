"""VOC2007 11-point AP at recalls that fall exactly on a recall threshold.

The existing tests reach a threshold only at recall 3/5; these pin the comparison
``recall >= t`` (not ``>``) and the 11 thresholds themselves at recall 1/10, 7/10
and 1, with values worked out by hand."""

import numpy as np
import pytest

from keras_frcnn.evaluation import ap_from_curve, voc_ap

# Ten objects side by side in one image; detection k (score 0.95 - 0.05 k) hits object
# k exactly, a detection at x >= 400 hits nothing.
OBJECTS = np.array([[20 * k, 0, 20 * k + 9, 9] for k in range(10)], np.float64)
GROUND_TRUTH = {"a": (OBJECTS, np.zeros(10, bool))}
MISS = (400, 0, 409, 9)


def ranked(hits):
    """Detections in score order: True -> the next unfound object, False -> a miss."""
    found, out = 0, []
    for k, hit in enumerate(hits):
        out.append(("a", 0.95 - 0.05 * k, OBJECTS[found] if hit else MISS))
        found += hit
    return out


# TP, FP, then 6 TPs: 7 of 10 objects found.
#   rank       1    2    3    4    5    6    7    8
#   recall    .1   .1   .2   .3   .4   .5   .6   .7
#   precision  1   1/2  2/3  3/4  4/5  5/6  6/7  7/8
# Interpolated precision p(t) = max precision at recall >= t: p(0) = p(.1) = 1 (rank 1
# has recall exactly 1/10), p(.2) ... p(.7) = 7/8 (rank 8, the best after rank 1),
# p(.8) = p(.9) = p(1) = 0.
# MATLAB devkit thresholds (0.7 exactly, as 7/10 is): 2 * 1 + 6 * 7/8 = 7.25 -> 7.25/11.
# Python's np.arange thresholds (0.7000000000000001 > 7/10): 2 + 5 * 7/8 = 6.375 -> 6.375/11.
# With ``recall > t``: p(.1) drops to 7/8 (and p(.7) to 0 for the devkit).
SEVEN_OF_TEN = [True, False] + [True] * 6


def test_recall_exactly_on_a_threshold_counts_devkit():
    """Catches ``recall > t`` in place of ``recall >= t`` at the devkit's thresholds."""
    dets = ranked(SEVEN_OF_TEN)
    assert voc_ap(dets, GROUND_TRUTH, use_07_metric=True, devkit_ge=True) == pytest.approx(
        7.25 / 11, abs=1e-12)


def test_recall_exactly_on_a_threshold_counts_python():
    """Catches ``recall > t`` (p(0.1) would be 7/8) and thresholds other than
    np.arange(0, 1.1, 0.1) (0.7 exactly would let recall 7/10 count)."""
    dets = ranked(SEVEN_OF_TEN)
    assert voc_ap(dets, GROUND_TRUTH, use_07_metric=True) == pytest.approx(6.375 / 11,
                                                                           abs=1e-12)


def test_recall_seven_tenths_from_the_curve():
    # Precision 1 up to recall 7/10 exactly: 8 devkit thresholds (0 ... 0.7), 7 Python ones.
    recall, precision = np.arange(1, 8) / 10, np.ones(7)
    assert recall[-1] == 0.7
    assert ap_from_curve(recall, precision, use_07_metric=True, devkit_ge=True) == 8 / 11
    assert ap_from_curve(recall, precision, use_07_metric=True) == 7 / 11


@pytest.mark.parametrize("devkit_ge", [False, True])
def test_the_eleventh_point_is_recall_one(devkit_ge):
    """Catches a threshold list without 1.0 (10 points) or a division by 10.

    A miss, then all ten objects: precision 0, 1/2, 2/3, ..., 10/11 at recall 0, .1, ..., 1;
    p(t) = 10/11 at all 11 thresholds (rank 11, recall 1) -> AP = 10/11.
    Nine objects, no miss: precision 1 at recall .1 ... .9 (0.9 is on both threshold lists),
    p(1) = 0 -> AP = 10/11 as well, from 10 points instead of 11.
    """
    dets = ranked([False] + [True] * 10)
    assert voc_ap(dets, GROUND_TRUTH, use_07_metric=True, devkit_ge=devkit_ge) == \
        pytest.approx(10 / 11, abs=1e-12)
    dets = ranked([True] * 9)
    assert voc_ap(dets, GROUND_TRUTH, use_07_metric=True, devkit_ge=devkit_ge) == \
        pytest.approx(10 / 11, abs=1e-12)
