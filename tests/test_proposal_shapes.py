"""Proposals are checked, never reshaped (issue 42): [R, 5] RoI rows (a batch index
first) and a transposed (4, R) array used to be read as other boxes and return
detections, in the Predictor, the Detector and the serving client alike."""

import numpy as np
import pytest

from keras_frcnn.boxes import as_proposals
from keras_frcnn.data.records import Dataset, DatasetError, ImageRecord
from keras_frcnn.detection import Detector
from keras_frcnn.serving import make_request
from tests.detection.test_order_independence import CONFIG
from tests.detection.test_overlapped_proposals import model  # noqa: F401
from tests.test_predictor import workdir  # noqa: F401

GOOD = np.array([[0, 0, 40, 40], [10, 12, 70, 60], [30, 5, 79, 63], [5, 5, 20, 30]],
                np.float32)
BAD = {
    "RoI rows": (np.concatenate([np.zeros((4, 1), np.float32), GOOD], 1),
                 r"must be \[n, 4\] boxes .*got shape \(4, 5\); rows of 5 are RoIs"),
    "transposed": (np.tile(GOOD, (12, 1)).T,
                   r"must be \[n, 4\] boxes .*got shape \(4, 48\); a \(4, n\) array"),
    "flat": (GOOD.reshape(-1), r"got shape \(16,\)"),
    "one more axis": (GOOD[None], r"got shape \(1, 4, 4\)"),
    "text": (np.array([["a", "b", "c", "d"]]), "must be numbers, got an array of dtype <U1"),
}


def test_as_proposals_keeps_good_ones_and_names_bad_shapes():
    np.testing.assert_array_equal(as_proposals(GOOD.astype(np.float64)), GOOD)
    assert as_proposals([]).shape == (0, 4) and as_proposals(np.zeros((0, 4))).shape == (0, 4)
    assert as_proposals([[1, 2, 3, 4]]).dtype == np.float32
    for proposals, message in BAD.values():
        with pytest.raises(ValueError, match=message):
            as_proposals(proposals)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_detector_refuses_them(model, kind):  # noqa: F811
    image = np.zeros((96, 128, 3), np.uint8)
    proposals, message = BAD[kind]
    with pytest.raises(ValueError, match=message):
        Detector(model, CONFIG).detect(image, proposals)


def test_detect_dataset_names_the_image(model, tmp_path):  # noqa: F811
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((96, 128, 3), np.uint8))
    dataset = Dataset("d", ("thing",), (ImageRecord.create("a", tmp_path / "a.png", 128, 96),))
    with pytest.raises(DatasetError, match=r"proposals of a must be \[n, 4\] .*\(4, 5\)"):
        Detector(model, CONFIG).detect_dataset(dataset, {"a": BAD["RoI rows"][0]},
                                               progress=False)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_predictor_refuses_them(workdir, kind):  # noqa: F811
    from keras_frcnn import Predictor

    proposals, message = BAD[kind]
    with pytest.raises(ValueError, match=message):
        Predictor.from_workdir(workdir)(np.zeros((96, 128, 3), np.uint8), proposals=proposals)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_the_serving_client_refuses_them(kind):
    proposals, message = BAD[kind]
    with pytest.raises(ValueError, match=message):
        make_request(np.zeros((64, 80, 3), np.uint8), proposals, "frcnn")
