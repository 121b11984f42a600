"""The detector: pyramid assignment, exact de-duplication, decoding and clipping."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import boxes as box_ops
from keras_frcnn.data import transforms
from keras_frcnn.data.records import Dataset, DatasetError, ImageRecord
from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig, pyramid_levels
from keras_frcnn.detection.graph import empty_rois, feature_cells
from keras_frcnn.model.fast_rcnn import FastRCNN


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)  # the other layers' initialisers: same model every run
    keras_model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    rng = np.random.default_rng(0)
    layer = keras_model.get_layer("bbox_pred")
    kernel, bias = layer.get_weights()
    layer.set_weights([rng.normal(0, 0.01, kernel.shape).astype(np.float32),
                       rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    return keras_model


@pytest.fixture(scope="module")
def confident_model(model):
    """``model`` with its class scores spread (cls_score x 200): no near-ties in score order."""
    keras_model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    keras_model.set_weights(model.get_weights())
    kernel, bias = keras_model.get_layer("cls_score").get_weights()
    keras_model.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    return keras_model


def image_and_proposals(seed=0, n=40, width=96, height=72):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), np.uint8)
    x1 = rng.uniform(0, width - 20, n)
    y1 = rng.uniform(0, height - 20, n)
    proposals = np.stack([x1, y1, x1 + rng.uniform(8, 40, n), y1 + rng.uniform(8, 40, n)], 1)
    proposals = box_ops.clip(np.round(proposals), width, height).astype(np.float32)
    return image, np.concatenate([proposals, proposals[:5]])  # exact duplicates too


def test_pyramid_levels_pick_the_scale_closest_to_224_squared():
    factors = [0.5, 1.0, 2.0]
    proposals = np.array([[0, 0, 223, 223],  # 224^2 at 1.0
                          [0, 0, 447, 447],  # 224^2 at 0.5
                          [0, 0, 111, 111],  # 224^2 at 2.0
                          [0, 0, 9, 9]])  # tiny: the largest scale
    assert pyramid_levels(proposals, factors).numpy().tolist() == [1, 0, 2, 2]
    assert pyramid_levels(proposals, [1.0]).numpy().tolist() == [0, 0, 0, 0]


def test_feature_cells_round_half_away_from_zero_like_the_op():
    rois = np.array([[0, 8, 24, 39.9, 40]], np.float32)  # x 8/16 = .5 -> 1, 24/16 = 1.5 -> 2
    assert feature_cells(tf.constant(rois), 1 / 16).numpy().tolist() == [[0, 1, 2, 2, 3]]


def test_deduplication_changes_only_rounding(model):
    image, proposals = image_and_proposals()
    config = DetectorConfig(scales=(72,), max_size=128, preprocessing="tf")
    with_dedup = Detector(model, config)
    without = Detector(model, DetectorConfig(scales=(72,), max_size=128, preprocessing="tf",
                                             deduplicate=False))
    _, rois, inverse = with_dedup.prepare(image, proposals)
    assert len(rois) < len(proposals)
    a = with_dedup.detect(image, proposals)
    b = without.detect(image, proposals)
    # The pooled features of duplicates are identical; only the fc layers' row count
    # changes, and Eigen's CPU matrix products round by row count (up to 3e-8 on these
    # scores on an AVX2 CPU; oneDNN's gave identical bits).
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=0)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-3)


def test_detect_decodes_raw_deltas_per_class_and_clips(confident_model):
    model = confident_model  # scores spread far enough apart to fix one score order
    image, proposals = image_and_proposals(1)
    proposals = proposals[:40]  # distinct boxes: NMS at 1.0 keeps all (at > or >= 1.0)
    n = len(proposals)
    assert len(np.unique(proposals, axis=0)) == n
    config = DetectorConfig(scales=(144,), max_size=300, preprocessing="tf", deduplicate=False,
                            postprocess=PostprocessConfig(mode="frcnn", nms_threshold=1.0))
    detector = Detector(model, config)
    dets = detector.detect(image, proposals)
    # By hand: scale 2, RoIs at scale, network outputs, deltas onto the proposals.
    batch = transforms.preprocess(transforms.resize(image, 2.0), "tf")[None]
    rois = np.concatenate([np.zeros((len(proposals), 1)), proposals * 2], 1).astype(np.float32)
    out = model({"images": tf.constant(batch), "rois": tf.constant(rois)}, training=False)
    scores = out["cls_prob"].numpy()
    expected = box_ops.clip(box_ops.decode(proposals, out["bbox_pred"].numpy()), 96, 72)
    # NMS at 1.0 keeps everything: class 1's detections, then class 2's, each class with
    # every proposal in descending score order, and each box with its own proposal's score.
    np.testing.assert_array_equal(dets.classes, [1] * n + [2] * n)
    for k in (1, 2):
        order = np.argsort(-scores[:, k], kind="stable")
        assert np.all(-np.diff(scores[order, k]) > 1e-5)  # no near-tie: one order
        np.testing.assert_allclose(dets.boxes[dets.classes == k],
                                   expected[order, 4 * (k - 1):4 * k], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(dets.scores[dets.classes == k], scores[order, k], rtol=1e-5)
    assert dets.boxes[:, 0].min() >= 0 and dets.boxes[:, 2].max() <= 95
    assert dets.boxes[:, 1].min() >= 0 and dets.boxes[:, 3].max() <= 71


def test_without_box_regression_the_proposals_are_the_boxes(confident_model):
    # The release's TEST.BBOX_REG off (Table 6): same scores, and each class's box is the
    # proposal itself, whatever bbox_pred says.
    image, proposals = image_and_proposals(1)
    proposals = proposals[:40]
    post = PostprocessConfig(mode="frcnn", nms_threshold=1.5)  # > 1: no suppression

    def detect(bbox_reg):
        config = DetectorConfig(scales=(144,), max_size=300, preprocessing="tf",
                                postprocess=post, bbox_reg=bbox_reg)
        return Detector(confident_model, config).detect(image, proposals)

    plain, regressed = detect(False), detect(True)
    np.testing.assert_array_equal(plain.scores, regressed.scores)
    np.testing.assert_array_equal(plain.classes, regressed.classes)
    for k in (1, 2):
        boxes = plain.boxes[plain.classes == k]
        np.testing.assert_array_equal(np.unique(boxes, axis=0), np.unique(proposals, axis=0))
    assert not np.allclose(plain.boxes, regressed.boxes)


def test_multiscale_uses_one_image_per_scale(model):
    # Scales 216, 252 and 288 on a 72-pixel-high image: factors 3, 3.5 and 4, images
    # 216 x 288, 252 x 336 and 288 x 384. Each RoI goes to the factor whose scaled (+1)
    # area is closest to 224^2 = 50176; worked out per proposal below.
    image, _ = image_and_proposals(2)
    proposals = np.array([
        [0, 0, 95, 71],    # 96 x 72 = 6912: x9 62208, x12.25 84672 -> factor 3
        [8, 1, 87, 70],    # 80 x 70 = 5600: x9 50400, x12.25 68600 -> factor 3
        [16, 4, 79, 67],   # 64 x 64 = 4096: x12.25 = 224^2 exactly  -> factor 3.5
        [30, 8, 93, 71],   # 64 x 64 again, elsewhere                -> factor 3.5
        [20, 10, 75, 65],  # 56 x 56 = 3136: x16 = 224^2 exactly     -> factor 4
        [0, 0, 55, 55],    # 56 x 56 again                           -> factor 4
        [40, 30, 59, 39],  # 20 x 10 = 200: x16 = 3200, the nearest -> factor 4
        [70, 60, 77, 67],  # 8 x 8 = 64                              -> factor 4
        [16, 4, 79, 67],   # a duplicate: de-duplicated, same RoI
    ], np.float32)
    levels = [0, 0, 1, 1, 2, 2, 2, 2, 1]
    factors = np.array([3.0, 3.5, 4.0], np.float32)
    assert pyramid_levels(proposals, factors).numpy().tolist() == levels
    detector = Detector(model, DetectorConfig(scales=(216, 252, 288), max_size=500,
                                              preprocessing="tf"))
    images, rois, inverse = detector.prepare(image, proposals)
    assert images.shape == (3, 288, 384, 3)
    for k, factor in enumerate(factors):  # image k is the image at factor k, zero-padded
        # (TensorFlow's bilinear resize; training's OpenCV one agrees to 0.02 grey levels)
        resized = transforms.preprocess(transforms.resize(image, float(factor)), "tf")
        height, width = resized.shape[:2]
        assert (height, width) == (72 * factor, 96 * factor)
        np.testing.assert_allclose(images[k, :height, :width], resized, rtol=0, atol=1e-4)
        assert not images[k, height:].any() and not images[k, :, width:].any()
    assert len(rois) == len(proposals) - 1
    per_proposal = rois[inverse]
    np.testing.assert_array_equal(per_proposal[:, 0], levels)
    np.testing.assert_array_equal(per_proposal[:, 1:], proposals * factors[levels][:, None])
    dets = detector.detect(image, proposals)
    assert np.all(np.isfinite(dets.boxes)) and np.all(dets.scores > 0.05)


def test_no_proposals_no_detections(model):
    image, _ = image_and_proposals()
    dets = Detector(model, DetectorConfig(scales=(72,), preprocessing="tf")).detect(
        image, np.zeros((0, 4)))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


def test_bad_config_is_an_error(model):
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        Detector(model, DetectorConfig(preprocessing="bgr"))
    with pytest.raises(ValueError, match="scales is empty"):
        Detector(model, DetectorConfig(scales=()))


def test_empty_rois_start_at_or_beyond_the_last_feature_cell():
    # Stride 8, an 8 x 8 map: x1 60 -> 7.5 -> 8 (beyond), 59 -> 7.375 -> 7 (last column).
    rois = tf.constant([[0, 60, 0, 63, 9], [0, 59, 0, 63, 9], [0, 0, 60, 9, 63],
                        [0, 0, 0, 63, 63]], tf.float32)
    assert empty_rois(rois, 8, 8, 1 / 8).numpy().tolist() == [True, False, True, False]
    assert empty_rois(rois, 8, 9, 1 / 8).numpy().tolist() == [False, False, True, False]


def test_rois_beyond_the_feature_map_score_as_background(model):
    image = np.random.default_rng(3).integers(0, 255, (64, 64, 3), np.uint8)
    proposals = np.array([[60, 10, 63, 30], [62, 61, 63, 63], [10, 10, 40, 40],
                          [10, 56, 30, 63]], np.float32)
    config = DetectorConfig(scales=(64,), max_size=64, preprocessing="tf", deduplicate=False)
    ours = Detector(model, config)
    release = Detector(model, DetectorConfig(scales=(64,), max_size=64, preprocessing="tf",
                                             deduplicate=False, score_empty_rois=True))
    images, rois, inverse = ours.prepare(image, proposals)
    features = model.get_layer("small_features")(images)
    assert features.shape[1:3] == (8, 8)
    scores, deltas = ours._raw(images, rois, inverse)
    kept, kept_deltas = release._raw(images, rois, inverse)
    np.testing.assert_array_equal(scores[:2], [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(deltas[:2], 0)
    # The release's scores for them: all bins empty, so both see the same zero vector.
    np.testing.assert_array_equal(kept[0], kept[1])
    assert kept[0, 0] < 1
    np.testing.assert_array_equal(scores[2:], kept[2:])  # reachable RoIs are untouched
    np.testing.assert_array_equal(deltas[2:], kept_deltas[2:])
    # The exported serving graph agrees.
    from keras_frcnn.export import DetectionModule

    module = DetectionModule(model, ["a", "b"], scales=(64,), max_size=64, preprocessing="tf",
                             postprocess=PostprocessConfig(mode="default", score_threshold=0.0))
    out = module(image[..., ::-1], proposals[:2])
    assert out["num_detections"] == 0
    assert DetectionModule(model, ["a", "b"], scales=(64,), max_size=64, preprocessing="tf",
                           postprocess=PostprocessConfig(mode="default", score_threshold=0.0),
                           score_empty_rois=True)(image[..., ::-1], proposals[:2])[
        "num_detections"] > 0


def test_flip_test_averages_the_plain_and_the_mirrored_pass(model):
    image, proposals = image_and_proposals(4)
    width = image.shape[1]
    common = dict(scales=(72, 144), max_size=300, preprocessing="tf")
    flipped = Detector(model, DetectorConfig(flip=True, **common))
    plain = Detector(model, DetectorConfig(**common))
    images, rois, inverse = flipped.prepare(image, proposals)
    assert images.shape[0] == 4 and len(inverse) == 2 * len(proposals)
    scores, deltas = flipped._raw(images, rois, inverse)
    boxes, merged = flipped._outputs(proposals, scores, deltas, width, image.shape[0])
    # By hand: the plain detector on the image and on its mirror, mirrored back.
    mirror = np.ascontiguousarray(image[:, ::-1])
    mirrored_proposals = box_ops.flip_horizontally(proposals, width)
    s1, d1 = plain._raw(*plain.prepare(image, proposals))
    s2, d2 = plain._raw(*plain.prepare(mirror, mirrored_proposals))
    b1, _ = plain._outputs(proposals, s1, d1, width, image.shape[0])
    b2, _ = plain._outputs(mirrored_proposals, s2, d2, width, image.shape[0])
    back = b2.copy()
    back[:, 0::4], back[:, 2::4] = width - 1 - b2[:, 2::4], width - 1 - b2[:, 0::4]
    np.testing.assert_allclose(merged, (s1 + s2) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes, (b1 + back) / 2, rtol=1e-5, atol=1e-3)


def test_flip_test_is_mirror_symmetric(model):
    image, proposals = image_and_proposals(5)
    width = image.shape[1]
    detector = Detector(model, DetectorConfig(scales=(72,), preprocessing="tf", flip=True,
                                              postprocess=PostprocessConfig(nms_threshold=1.0)))
    a = detector.detect(image, proposals)
    b = detector.detect(np.ascontiguousarray(image[:, ::-1]),
                        box_ops.flip_horizontally(proposals, width))
    assert len(a) == len(b) > 0
    mirrored = box_ops.flip_horizontally(b.boxes, width)
    key = lambda d, boxes: np.lexsort((boxes[:, 1], boxes[:, 0], d.classes))  # noqa: E731
    ia, ib = key(a, a.boxes), key(b, mirrored)
    np.testing.assert_allclose(a.boxes[ia], mirrored[ib], atol=1e-3)
    np.testing.assert_allclose(a.scores[ia], b.scores[ib], rtol=1e-5, atol=1e-6)


def _tiny_dataset(tmp_path, count=3):
    records, proposals = [], {}
    for i in range(count):
        image, boxes = image_and_proposals(seed=10 + i)
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), image)
        records.append(ImageRecord.create(f"im{i}", str(path), image.shape[1], image.shape[0]))
        proposals[f"im{i}"] = boxes
    return Dataset("tiny", ("a", "b"), tuple(records)), proposals


@pytest.mark.parametrize("options", [
    dict(scales=(72,), preprocessing="tf"),
    dict(scales=(72, 144), preprocessing="caffe", flip=True),  # the kangaroo config's path
    dict(scales=(100,), preprocessing="none", deduplicate=False)])
def test_detect_dataset_with_soft_nms_and_no_set_cap_equals_detect(model, tmp_path, options):
    # detect_dataset prepares images inside a tf.data pipeline, detect in a tf.function:
    # the same graph.py functions, so the same detections.
    dataset, proposals = _tiny_dataset(tmp_path)
    post = PostprocessConfig(mode="frcnn", soft_nms_sigma=0.5, max_per_class=20)
    detector = Detector(model, DetectorConfig(postprocess=post, **options))
    results, _ = detector.detect_dataset(dataset, proposals, progress=False)
    assert list(results) == ["im0", "im1", "im2"]
    for record in dataset.records:  # 3 x 20 candidates per class, under 40 x 3: no cap
        alone = detector.detect(cv2.imread(record.image_path), proposals[record.image_id])
        np.testing.assert_array_equal(results[record.image_id].classes, alone.classes)
        np.testing.assert_allclose(results[record.image_id].scores, alone.scores, rtol=1e-6)
        np.testing.assert_allclose(results[record.image_id].boxes, alone.boxes, rtol=1e-6)


def test_set_cap_with_soft_nms_thresholds_the_candidates_first(model, tmp_path):
    # 3 images x 20 candidates per class; factor 2 -> per class the threshold is the 6th
    # best of the 60 candidate scores and the release keeps scores above it: 5 per class
    # (fewer where candidates tie with the 6th), however much Soft-NMS then lowers their
    # scores (floor 0 in mode frcnn). They are what the hard-NMS path keeps when NMS
    # suppresses nothing (threshold above 1: the release's NMS suppresses at IoU >= its
    # threshold, so 1.0 would still drop exact duplicates), with scores no higher.
    dataset, proposals = _tiny_dataset(tmp_path)

    def detector(**kwargs):
        post = PostprocessConfig(mode="frcnn", max_per_class=20, max_per_set_factor=2,
                                 **kwargs)
        return Detector(model, DetectorConfig(scales=(72,), preprocessing="tf",
                                              postprocess=post))

    def run(**kwargs):
        return detector(**kwargs).detect_dataset(dataset, proposals, progress=False)[0]

    # The candidates: detect() on one image has no set cap; NMS 1.5 keeps all 20.
    single = detector(nms_threshold=1.5)
    uncapped = [single.detect(cv2.imread(r.image_path), proposals[r.image_id])
                for r in dataset.records]
    soft, kept = run(soft_nms_sigma=0.5), run(nms_threshold=1.5)
    classes = np.concatenate([d.classes for d in soft.values()])
    for k in (1, 2):
        candidates = np.concatenate([d.scores[d.classes == k] for d in uncapped])
        assert len(candidates) == 60
        expected = np.count_nonzero(candidates > np.sort(candidates)[-6])
        assert 3 <= expected <= 5 and np.count_nonzero(classes == k) == expected
    for image_id, dets in soft.items():
        for k in (1, 2):
            ours, theirs = dets.select(dets.classes == k), kept[image_id].select(
                kept[image_id].classes == k)
            order = np.lexsort(ours.boxes.T)
            expected = np.lexsort(theirs.boxes.T)
            np.testing.assert_array_equal(ours.boxes[order], theirs.boxes[expected])
            assert np.all(ours.scores[order] <= theirs.scores[expected] * (1 + 1e-6))


def test_an_image_that_scales_to_nothing_is_named(model, tmp_path):
    # 1 x 4000 at scale 72 / max 1000: factor 0.25, a height of 0.25 pixels -> 0.
    detector = Detector(model, DetectorConfig(scales=(72,), max_size=1000, preprocessing="tf"))
    thin = np.zeros((1, 4000, 3), np.uint8)
    with pytest.raises(DatasetError, match="a 4000x1 image scales to 0 pixels at test scale 72"):
        detector.detect(thin, [[0, 0, 10, 0]])
    path = tmp_path / "thin.png"
    cv2.imwrite(str(path), thin)
    dataset = Dataset("thin", ("a", "b"), (ImageRecord.create("thin", str(path), 4000, 1),))
    with pytest.raises(DatasetError, match="thin.png: a 4000x1 image scales to 0 pixels"):
        detector.detect_dataset(dataset, {"thin": np.array([[0, 0, 10, 0]], np.float32)},
                                progress=False)


def test_detector_sets_tf32_as_its_config_says(model):
    # The paper configs detect in full float32, as Caffe (evaluation.run.detector_config
    # passes model.tf32 through).
    from keras_frcnn.configs import load_config_file
    from keras_frcnn.evaluation.run import detector_config

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    paper = detector_config(load_config_file(str(root / "configs" / "voc07_vgg16.py")))
    assert paper.tf32 is False and paper.score_empty_rois
    try:
        Detector(model, DetectorConfig(preprocessing="tf", tf32=False))
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
        Detector(model, DetectorConfig(preprocessing="tf"))
        assert tf.config.experimental.tensor_float_32_execution_enabled()
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)
