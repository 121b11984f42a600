"""Average Recall (paper section 5.5, reference [12]) on hand-made boxes."""

import numpy as np
import pytest

from keras_frcnn.data.records import ImageRecord
from keras_frcnn.evaluation.recall import (average_recall, best_overlaps, proposal_quality,
                                           recall_at)


def records():
    return [
        # A (10x10) and B; C is difficult and left out.
        ImageRecord.create("a", "a.jpg", 40, 40, [[0, 0, 9, 9], [20, 20, 29, 29], [0, 30, 9, 39]],
                           [1, 2, 1], [False, False, True]),
        ImageRecord.create("b", "b.jpg", 40, 40, [[5, 5, 14, 14]], [1]),  # D: no proposals
        ImageRecord.create("c", "c.jpg", 40, 40),  # no objects
    ]


PROPOSALS = {
    # For A: IoU 50/100 = 0.5 and 80/100 = 0.8 (+1 areas); B is matched exactly.
    "a": np.array([[0, 0, 9, 4], [0, 0, 9, 7], [20, 20, 29, 29]], np.float32),
    "b": np.zeros((0, 4), np.float32),
    "c": np.array([[0, 0, 5, 5]], np.float32),
}


def test_best_overlaps_by_hand():
    np.testing.assert_allclose(best_overlaps(records(), PROPOSALS), [0.8, 1.0, 0.0])


def test_average_recall_by_hand():
    # 2 / 3 * ((0.8 - 0.5) + (1.0 - 0.5) + 0) = 0.5333...
    quality = proposal_quality(records(), PROPOSALS)
    assert quality["average_recall"] == pytest.approx(1.6 / 3)
    assert quality["recall_at_0.5"] == pytest.approx(2 / 3)
    assert quality["recall_at_0.7"] == pytest.approx(2 / 3)
    assert quality["boxes"] == 3
    assert quality["proposals_per_image"] == pytest.approx(4 / 3)


def test_average_recall_is_recall_averaged_over_thresholds_from_half_to_one(rng):
    overlaps = rng.uniform(0, 1, 50)
    thresholds = np.linspace(0.5, 1.0, 200001)
    averaged = np.mean([recall_at(overlaps, t) for t in thresholds[::100]])
    assert average_recall(overlaps) == pytest.approx(averaged, abs=2e-3)
    assert recall_at([0.5], 0.5) == 1.0  # IoU at the threshold counts


def test_no_boxes_gives_nan():
    assert np.isnan(average_recall([]))
    assert np.isnan(proposal_quality(records()[2:], PROPOSALS)["average_recall"])
