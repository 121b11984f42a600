"""Predictor inputs: the score cut of Prediction.above, the proposal cache key of an
array, the pixel limit on image files, the class-name count and empty arrays."""

import keras
import numpy as np
import pytest
from PIL import Image

from keras_frcnn import Predictor
from keras_frcnn.configs import base_config
from keras_frcnn.data.records import DatasetError
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.predictor import Prediction
from keras_frcnn.proposals import selective_search


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return FastRCNN(num_classes=3, backbone="small", dropout=0.0)


def config(tmp_path, **dataset):
    cfg = base_config()
    cfg.pipeline.preprocessing = "tf"
    cfg.model.backbone = "small"
    cfg.test.scales, cfg.test.max_size = (32,), 64
    cfg.proposals.cache_dir = str(tmp_path / "cache")
    cfg.proposals.min_size, cfg.proposals.selective_search_min_size = 1, 0
    for key, value in dataset.items():
        cfg.dataset[key] = value
    return cfg


def test_above_keeps_a_score_equal_to_the_threshold():
    """Catches ``>`` for ``>=`` in Prediction.above (and so in to_list and draw)."""
    prediction = Prediction(np.arange(12, dtype=np.float32).reshape(3, 4),
                            np.array([0.5, 0.25, 0.75], np.float32), np.array([1, 2, 1]),
                            ("a", "b", "a"), np.zeros((4, 4, 3), np.uint8))
    kept = prediction.above(0.5)
    assert kept.scores.tolist() == [0.5, 0.75] and kept.names == ("a", "a")
    np.testing.assert_array_equal(kept.boxes, [[0, 1, 2, 3], [8, 9, 10, 11]])
    assert [row["score"] for row in prediction.to_list(0.25)] == [0.5, 0.25, 0.75]
    assert len(prediction.above(0.75)) == 1 and len(prediction.above(0.7500001)) == 0


def test_arrays_with_the_same_bytes_and_other_shapes_have_their_own_proposals(
        model, tmp_path, monkeypatch):
    """Catches a cache key of the bytes alone: a 2 x 6 and a 3 x 4 image hold the same 36
    bytes; the second must not get the first one's cached boxes."""
    searched = []

    def whole_image(image_bgr, mode, max_size):  # one box: the whole image
        searched.append(image_bgr.shape)
        height, width = image_bgr.shape[:2]
        return np.array([[0, 0, width - 1, height - 1]], np.float32)

    monkeypatch.setattr(selective_search, "selective_search", whole_image)
    predictor = Predictor(model, ["a", "b"], config(tmp_path))
    data = np.arange(36, dtype=np.uint8)
    wide, tall = data.reshape(2, 6, 3), data.reshape(3, 4, 3)
    np.testing.assert_array_equal(predictor.proposals(wide), [[0, 0, 5, 1]])
    np.testing.assert_array_equal(predictor.proposals(tall), [[0, 0, 3, 2]])
    assert searched == [(2, 6, 3), (3, 4, 3)]
    assert len(list((tmp_path / "cache").rglob("array-*.npz"))) == 2
    # Each is then served from its own cache entry.
    np.testing.assert_array_equal(predictor.proposals(tall.copy()), [[0, 0, 3, 2]])
    np.testing.assert_array_equal(predictor.proposals(wide.copy()), [[0, 0, 5, 1]])
    assert len(searched) == 2


def test_the_pixel_limit_applies_to_image_files(model, tmp_path):
    """Catches a Predictor that reads a file path without config.dataset.max_image_pixels
    (proposals are given, so the proposal step's own check does not run)."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)  # 600 pixels
    limited = Predictor(model, ["a", "b"], config(tmp_path, max_image_pixels=599))
    with pytest.raises(DatasetError, match=r"photo\.png: image is 30x20 .*limit of 0\.000599 "
                                           r"megapixels"):
        limited(path, proposals=[[0, 0, 9, 9]])
    allowed = Predictor(model, ["a", "b"], config(tmp_path, max_image_pixels=600))
    assert allowed(path, proposals=[[0, 0, 9, 9]]).image_bgr.shape == (20, 30, 3)


@pytest.mark.parametrize("names", [["a"], ["a", "b", "c"], []])
@pytest.mark.parametrize("kind", ["FastRCNN", "functional"])
def test_a_class_name_count_other_than_the_model_s_is_refused(model, tmp_path, names, kind):
    """Catches a check that refuses only too many (or only too few) names: the model has
    2 object classes. A FastRCNN is checked against what it records of itself
    (workdirs.check_model_config); a functional model of the same layers that records
    nothing of itself (an empty get_config) leaves the Predictor's own count check alone."""
    if kind == "functional":
        model = keras.Model(model.input, model.output)
        model.get_config = dict
    with pytest.raises(ValueError, match=rf"\b{len(names)} class names given"):
        Predictor(model, names, config(tmp_path))
    assert Predictor(model, ("a", "b"), config(tmp_path)).class_names == ("a", "b")


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0, 3), (0, 5)])
def test_an_empty_array_is_refused(model, tmp_path, shape):
    """Catches a Predictor that passes a 0 x W or H x 0 array on to the detector."""
    predictor = Predictor(model, ["a", "b"], config(tmp_path))
    height, width = shape[:2]
    with pytest.raises(ValueError, match=rf"image is empty \({height}x{width}\)"):
        predictor(np.zeros(shape, np.uint8), proposals=[[0, 0, 1, 1]])
