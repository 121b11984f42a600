"""Detections are a function of the image and the set of its proposals (issue 42): not
of the proposals' order, and not of other threads running the same Predictor."""

import threading

import numpy as np
import pytest

from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig
from tests.detection.test_overlapped_proposals import model  # noqa: F401
from tests.test_predictor import workdir  # noqa: F401

CONFIG = DetectorConfig(scales=(96,), max_size=128, preprocessing="tf",
                        postprocess=PostprocessConfig(mode="default", score_threshold=0.0))


def tied_proposals(rng):
    """Pairs of proposals one pixel apart that round onto the same feature cells (the
    small backbone's stride is 8: 20 / 8 and 21 / 8 both round to 3, 60 / 8 and 61 / 8
    to 8), so each pair scores exactly alike and NMS must pick one of equals; plus
    random others."""
    pairs = []
    for x, y in ((20, 20), (52, 12), (4, 36)):
        pairs += [[x, y, x + 40, y + 40], [x + 1, y + 1, x + 41, y + 41]]
    x1, y1 = rng.uniform(0, 90, 30), rng.uniform(0, 60, 30)
    others = np.stack([x1, y1, x1 + rng.uniform(8, 37, 30), y1 + rng.uniform(8, 35, 30)], 1)
    return np.concatenate([pairs, others]).astype(np.float32)


@pytest.mark.parametrize("mode", ["default", "frcnn"])
def test_the_order_of_the_proposals_does_not_change_the_detections(model, rng, mode):  # noqa: F811
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    proposals = tied_proposals(rng)
    config = DetectorConfig(scales=(96,), max_size=128, preprocessing="tf",
                            postprocess=PostprocessConfig(mode=mode, score_threshold=0.0))
    detector = Detector(model, config)
    expected = detector.detect(image, proposals)
    assert len(expected) > 3
    for order in (proposals[::-1], proposals[rng.permutation(len(proposals))],
                  np.concatenate([proposals[1::2], proposals[::2]])):
        got = detector.detect(image, order)
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.scores, expected.scores)
        np.testing.assert_array_equal(got.classes, expected.classes)


def test_the_tie_break_is_by_box_coordinates(model, rng):  # noqa: F811
    # Of the tied pair, the box decoded from the proposal with the smaller (x1, y1, x2, y2)
    # is kept whatever the order: the pair's two boxes differ by the one-pixel shift.
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    pair = np.array([[21, 21, 61, 61], [20, 20, 60, 60]], np.float32)
    detector = Detector(model, CONFIG)
    alone = detector.detect(image, pair[1:])
    for order in (pair, pair[::-1]):
        dets = detector.detect(image, order)
        np.testing.assert_array_equal(dets.boxes, alone.boxes)


def test_threads_sharing_a_predictor_get_the_sequential_results(workdir, tmp_path):  # noqa: F811
    from keras_frcnn import Predictor

    rng = np.random.default_rng(7)
    images = []
    for _ in range(12):  # uncached: selective search runs in the calling thread
        image = np.full((96, 128, 3), 40, np.uint8)
        for _ in range(6):
            x, y = rng.integers(0, 100), rng.integers(0, 70)
            image[y:y + rng.integers(10, 30), x:x + rng.integers(10, 30)] = rng.integers(0, 255, 3)
        images.append(image)

    def predictor(cache):
        config = (workdir / "config.json").read_text().replace(
            str(workdir.parent / "cache"), str(tmp_path / cache))
        (tmp_path / f"{cache}.json").write_text(config)
        return Predictor.from_workdir(workdir, config=tmp_path / f"{cache}.json")

    sequential = predictor("cache_sequential")
    expected = [(sequential.proposals(im[..., ::-1].copy()), sequential(im).to_list(0.0))
                for im in images]
    shared = predictor("cache_threads")
    results = [None] * len(images)

    def work(k):
        for i in range(k, len(images), 4):
            results[i] = (shared.proposals(images[i][..., ::-1].copy()),
                          shared(images[i]).to_list(0.0))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (boxes, dets), (want_boxes, want_dets) in zip(results, expected):
        np.testing.assert_array_equal(boxes, want_boxes)  # selective search's own order
        assert dets == want_dets
