"""Proposals outside the image, inverted or not finite: the Detector and the SavedModel agree.

Decision (docs/model.md, "Which proposals are scored"; docs/serving.md): proposals are
clipped to the image and dropped when a coordinate is not finite or when nothing is left
(inverted, or wholly outside), before scoring; none left gives zero detections.
"""

import logging
from concurrent import futures

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from keras_frcnn import boxes as box_ops
from keras_frcnn.data.records import Dataset, ImageRecord
from keras_frcnn.detection import Detector, DetectorConfig
from keras_frcnn.detection.graph import clip_proposals, usable_proposals
from keras_frcnn.export import DetectionModule, export_saved_model
from keras_frcnn.serving import ServingClient
# ALL_SCORES (score threshold 0: a proposal scored or dropped by mistake changes the
# detections) and the module's model fixture: tests/test_export.py's.
from tests.test_export import ALL_SCORES, model  # noqa: F401
from tests.test_serving import StandInPredictionService

HEIGHT, WIDTH = 96, 128
NAN, INF = np.nan, np.inf

# Proposals of a 128 x 96 image that nothing is left of.
UNUSABLE = np.array([
    [1000, 1000, 1100, 1100],   # far outside, below right
    [-500, -400, -300, -200],   # far outside, above left
    [200, 10, 300, 50],         # right of the image, rows inside
    [10, -60, 50, -0.5],        # above the image, columns inside
    [127.5, 0, 140, 50],        # starts past the last column (127)
    [60, 10, 20, 40],           # inverted: x2 < x1
    [10, 50, 40, 20],           # inverted: y2 < y1
    [NAN, 10, 50, 50],
    [10, 10, 50, NAN],
    [-INF, 0, 50, 50],          # infinite: dropped even though clipping would tame it
    [0, 0, INF, 50],
], np.float32)
# Proposals partly outside, and what clipping leaves of them.
PARTLY_OUTSIDE = np.array([[-20, -10, 40, 50], [100, 60, 200, 150], [0, 0, 1e30, 1e30]],
                          np.float32)
PARTLY_CLIPPED = np.array([[0, 0, 40, 50], [100, 60, 127, 95], [0, 0, 127, 95]], np.float32)
VALID = np.array([[20, 10, 69, 49], [80, 40, 119, 89], [5, 5, 40, 40], [127, 95, 127, 95]],
                 np.float32)


def hostile_set():
    """Every kind mixed, valid ones in between: [18, 4] and the clean [7, 4] equivalent."""
    hostile = np.concatenate([UNUSABLE[:4], VALID[:2], PARTLY_OUTSIDE, UNUSABLE[4:], VALID[2:]])
    clean = np.concatenate([VALID[:2], PARTLY_CLIPPED, VALID[2:]])
    return hostile, clean


def scene():
    """An RGB image with two bright rectangles (as tests/test_export.py)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    image[10:50, 20:70] = (220, 40, 40)
    image[40:90, 80:120] = (40, 200, 90)
    return image


@pytest.fixture(scope="module")
def detector(model):
    # Scale 96 on a 96-pixel-high image: factor 1, where both resizers are exact.
    return Detector(model, DetectorConfig(scales=(96,), preprocessing="tf",
                                          postprocess=ALL_SCORES))


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "1"
    export_saved_model(model, ["red", "green"], path, scales=(96,), preprocessing="tf",
                       postprocess=ALL_SCORES)
    return path


@pytest.fixture(scope="module")
def served(export_dir):
    """The serving signature of the SavedModel, loaded back from disk."""
    signature = tf.saved_model.load(str(export_dir)).signatures["serving_default"]

    def detect(image, proposals):
        out = signature(image=tf.constant(image), proposals=tf.constant(proposals, tf.float32))
        return {k: v.numpy() for k, v in out.items()}

    return detect


def test_clip_proposals_hand_worked():
    hostile, clean = hostile_set()
    kept, keep = box_ops.clip_proposals(hostile, WIDTH, HEIGHT)
    np.testing.assert_array_equal(kept, clean)
    assert kept.dtype == np.float32
    assert keep.tolist() == [False] * 4 + [True] * 5 + [False] * 7 + [True] * 2
    assert not box_ops.clip_proposals(UNUSABLE, WIDTH, HEIGHT)[1].any()
    # One pixel is enough: the last pixel, and a box clipped down to the last column.
    np.testing.assert_array_equal(
        box_ops.clip_proposals([[127, 95, 127, 95], [127, 0, 500, 3]], WIDTH, HEIGHT)[0],
        [[127, 95, 127, 95], [127, 0, 127, 3]])
    assert box_ops.clip_proposals(np.zeros((0, 4), np.float32), WIDTH, HEIGHT)[0].shape == (0, 4)


def test_graph_clipping_is_the_numpy_clipping(rng):
    hostile, _ = hostile_set()
    corners = rng.uniform(-200, 300, (500, 4)).astype(np.float32)  # all kinds, fractional
    proposals = np.concatenate([hostile, corners])
    graph, graph_keep = clip_proposals(tf.constant(proposals),
                                       tf.constant(float(WIDTH), tf.float64),
                                       tf.constant(float(HEIGHT), tf.float64))
    expected, keep = box_ops.clip_proposals(proposals, WIDTH, HEIGHT)
    assert 0 < keep[len(hostile):].sum() < len(corners)
    np.testing.assert_array_equal(graph.numpy(), expected)
    np.testing.assert_array_equal(graph_keep.numpy(), keep)


def assert_same_detections(out, detections, exact):
    assert int(out["num_detections"]) == len(detections)
    np.testing.assert_array_equal(out["detection_classes"], detections.classes)
    if exact:
        np.testing.assert_array_equal(out["detection_scores"], detections.scores)
        np.testing.assert_array_equal(out["detection_boxes"], detections.boxes)
    else:  # the graph and the Detector, as tests/test_export.py compares them
        np.testing.assert_allclose(out["detection_scores"], detections.scores, rtol=1e-5)
        np.testing.assert_allclose(out["detection_boxes"], detections.boxes, atol=1e-3)


def test_hostile_proposals_give_the_clean_set_s_detections(detector, served):
    image = scene()
    hostile, clean = hostile_set()
    from_detector = detector.detect(image[..., ::-1], hostile)
    clean_detections = detector.detect(image[..., ::-1], clean)
    assert len(from_detector) > 4
    np.testing.assert_array_equal(from_detector.classes, clean_detections.classes)
    np.testing.assert_array_equal(from_detector.scores, clean_detections.scores)
    np.testing.assert_array_equal(from_detector.boxes, clean_detections.boxes)
    # Every output box lies in the image, none inverted.
    b = from_detector.boxes
    assert (b[:, :2] >= 0).all() and (b[:, 2] <= WIDTH - 1).all() and (b[:, 3] <= HEIGHT - 1).all()
    assert (b[:, 2:] >= b[:, :2]).all()
    from_saved_model = served(image, hostile)
    assert_same_detections(from_saved_model, from_detector, exact=False)
    clean_served = served(image, clean)
    for name, value in clean_served.items():
        np.testing.assert_array_equal(from_saved_model[name], value)


def test_only_unusable_proposals_give_zero_detections(detector, served):
    image = scene()
    assert len(detector.detect(image[..., ::-1], UNUSABLE)) == 0
    out = served(image, UNUSABLE)
    assert int(out["num_detections"]) == 0
    assert out["detection_boxes"].shape == (0, 4) and out["detection_classes"].shape == (0,)


def test_the_detector_logs_what_it_drops(detector, caplog):
    hostile, clean = hostile_set()
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.detection"):
        kept = detector.usable_proposals(hostile, WIDTH, HEIGHT, "photo_7")
    # ... in canonical order: sorted by x1, then y1, x2, y2 (graph.usable_proposals)
    np.testing.assert_array_equal(kept, clean[np.lexsort(clean.T[::-1])])
    assert "photo_7: 11 of 18 proposals dropped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.detection"):
        detector.usable_proposals(clean, WIDTH, HEIGHT)
    assert caplog.text == ""


def test_the_pyramid_sees_the_clipped_proposals(model):
    # Multi-scale: each RoI's level comes from its clipped area in both, so the 1e30 box
    # counts as the whole image (12288 pixels: factor 2 gives 49152, nearest to 224^2).
    image = scene()
    hostile, clean = hostile_set()
    scales = (192, 288)
    module = DetectionModule(model, ["red", "green"], scales=scales, preprocessing="tf")
    kept = usable_proposals(tf.constant(hostile), tf.constant(float(WIDTH), tf.float64),
                            tf.constant(float(HEIGHT), tf.float64))
    _, graph_rois, graph_inverse = module._inputs(tf.constant(image), kept)
    detector = Detector(model, DetectorConfig(scales=scales, preprocessing="tf"))
    usable = detector.usable_proposals(hostile, WIDTH, HEIGHT)
    _, rois, inverse = detector.prepare(image[..., ::-1], usable)
    np.testing.assert_array_equal(graph_rois.numpy()[graph_inverse.numpy()], rois[inverse])
    whole = np.flatnonzero((usable == [0, 0, WIDTH - 1, HEIGHT - 1]).all(axis=1))
    assert len(whole)  # the 1e30 box among them, clipped to the whole image ...
    for k in whole:  # ... at factor 2
        assert rois[inverse][k].tolist() == [0, 0, 0, 254, 190]


def test_detect_dataset_drops_the_same_proposals(detector, tmp_path, caplog):
    image = scene()
    hostile, clean = hostile_set()
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), image[..., ::-1])
    records = (ImageRecord.create("hostile", str(path), WIDTH, HEIGHT),
               ImageRecord.create("clean", str(path), WIDTH, HEIGHT),
               ImageRecord.create("unusable", str(path), WIDTH, HEIGHT))
    dataset = Dataset("scene", ("red", "green"), records)
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.detection"):
        results, _ = detector.detect_dataset(
            dataset, {"hostile": hostile, "clean": clean, "unusable": UNUSABLE},
            progress=False)
    assert len(results["hostile"]) == len(results["clean"]) > 4
    assert "hostile: 11 of 18 proposals dropped" in caplog.text
    assert "clean:" not in caplog.text
    assert f"unusable: {len(UNUSABLE)} of {len(UNUSABLE)} proposals dropped" in caplog.text
    assert "unusable: no proposals inside the image, no detections" in caplog.text
    np.testing.assert_array_equal(results["hostile"].scores, results["clean"].scores)
    np.testing.assert_array_equal(results["hostile"].boxes, results["clean"].boxes)
    assert len(results["unusable"]) == 0


def test_the_serving_client_gets_the_model_s_answer(export_dir, served):
    # The client sends hostile proposals as they are (a client of its own would too); the
    # server's answer is the SavedModel's, not an error.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        StandInPredictionService("frcnn", export_dir), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        image = scene()
        hostile, _ = hostile_set()
        with ServingClient(f"127.0.0.1:{port}", "frcnn") as client:
            out = client.detect(image, hostile)
            assert int(client.detect(image, UNUSABLE)["num_detections"]) == 0
    finally:
        server.stop(None)
    expected = served(image, hostile)
    assert int(out["num_detections"]) > 4
    for name in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        np.testing.assert_array_equal(out[name], expected[name])


@pytest.mark.parametrize("image_shape, proposals_shape, message", [
    ((HEIGHT, WIDTH, 3), (2, 5), r"proposals must be \[R, 4\].*got shape\] \[2 5\]"),
    ((HEIGHT, WIDTH, 3), (8,), r"proposals must be \[R, 4\].*got shape\] \[8\]"),
    ((HEIGHT, WIDTH, 3), (), r"proposals must be \[R, 4\].*got shape\] \[\]"),
    ((HEIGHT, WIDTH, 3), (1, 2, 4), r"proposals must be \[R, 4\].*got shape\] \[1 2 4\]"),
    ((1, HEIGHT, WIDTH, 3), (2, 4), r"image must be \[H, W, 3\].*got shape\] \[1 96 128"),
    ((HEIGHT, WIDTH), (2, 4), r"image must be \[H, W, 3\].*got shape\] \[96 128\]"),
    ((), (2, 4), r"image must be \[H, W, 3\].*got shape\] \[\]"),
    ((HEIGHT, WIDTH, 4), (2, 4), r"image must be \[H, W, 3\]"),
    ((1, 4000, 3), (2, 4), "image too thin"),
])
def test_the_serving_signature_refuses_inputs_of_other_shapes(export_dir, image_shape,
                                                              proposals_shape, message):
    """A loaded signature does not check its declared shapes: the graph does (found by
    benchmarks/fuzz.py, where [R, 5] proposals were read as their first four columns),
    ranks included, with the shape received (issue 42: other ranks failed with "slice
    index -1 of dimension 0 out of bounds")."""
    signature = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    proposals = np.tile(VALID[:1], (1, 2)).reshape(-1)[:int(np.prod(proposals_shape))]
    proposals = np.resize(proposals, proposals_shape).astype(np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(image=tf.zeros(image_shape, tf.uint8), proposals=tf.constant(proposals))
