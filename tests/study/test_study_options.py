"""The options the study's variants set: a training subset, dense boxes added to
proposals, layers trained alone, SVM scores, and the SVM trainer's bookkeeping."""

import numpy as np
import pytest

from keras_frcnn.configs import base_config
from keras_frcnn.data.records import Dataset, ImageRecord
from keras_frcnn.proposals.dense import dense_boxes
from keras_frcnn.proposals.sources import postprocess_proposals, proposals_for_dataset
from keras_frcnn.training import training_subset


def dataset(count):
    return Dataset("d", ("a",), tuple(ImageRecord.create(f"{k}", f"{k}.jpg", 64, 48)
                                      for k in range(count)))


def ids(data):
    return [r.image_id for r in data.records]


def test_training_subsets_are_fixed_nested_and_in_order():
    full = dataset(40)
    quarter, half = training_subset(full, 0.25), training_subset(full, 0.5)
    assert len(ids(quarter)) == 10 and len(ids(half)) == 20
    assert set(ids(quarter)) < set(ids(half))
    assert ids(half) == sorted(ids(half), key=int)  # the dataset's order kept
    assert ids(training_subset(full, 0.5)) == ids(half)  # the same draw every time
    assert training_subset(full, 1.0) is full
    assert len(training_subset(dataset(3), 0.1).records) == 1  # at least one image


@pytest.mark.parametrize("share", [0, -0.5, 1.5, True, "half"])
def test_bad_training_share_is_refused(share):
    with pytest.raises(ValueError, match="dataset.train_subset"):
        training_subset(dataset(4), share)


def test_dense_boxes_are_added_after_the_proposals_seeded_by_image():
    cfg = base_config().proposals
    pool = {tuple(b) for b in dense_boxes(120, 90)}
    half = len(pool) // 2
    cfg.method, cfg.add_dense = "selective_search", half
    record = ImageRecord.create("img7", "img7.jpg", 120, 90)
    proposals = np.array([[0, 0, 59, 59], [10, 10, 99, 79]], np.float32)
    boxes = postprocess_proposals(cfg, record, proposals)
    assert boxes.shape == (2 + half, 4)
    np.testing.assert_array_equal(boxes[:2], proposals)
    assert all(tuple(b) in pool for b in boxes[2:])
    assert len({tuple(b) for b in boxes[2:]}) == half  # drawn without replacement
    np.testing.assert_array_equal(postprocess_proposals(cfg, record, proposals), boxes)
    other = ImageRecord.create("img8", "img8.jpg", 120, 90)
    assert not np.array_equal(postprocess_proposals(cfg, other, proposals)[2:], boxes[2:])
    cfg.add_dense = -1
    assert len(postprocess_proposals(cfg, record, proposals)) == 2 + len(pool)


@pytest.mark.parametrize("method, add", [("dense", 10), ("selective_search", -2),
                                         ("selective_search", 1.5)])
def test_bad_add_dense_is_refused(method, add):
    cfg = base_config().proposals
    cfg.method = method
    cfg.add_dense = add if isinstance(add, int) else 0
    if not isinstance(add, int):
        with cfg.ignore_type():
            cfg.add_dense = add
    with pytest.raises(ValueError, match="proposals.add_dense"):
        proposals_for_dataset(dataset(1), cfg, progress=False)


def test_train_only_freezes_every_other_layer():
    from keras_frcnn.model.fast_rcnn import FastRCNN

    model = FastRCNN(3, "small", train_only=("bbox_pred",))
    assert [v.path for v in model.trainable_variables] == ["bbox_pred/kernel", "bbox_pred/bias"]
    restored = FastRCNN.from_config(model.get_config())
    assert [v.path for v in restored.trainable_variables] == ["bbox_pred/kernel",
                                                             "bbox_pred/bias"]
    with pytest.raises(ValueError, match=r"train_only names no layer \['fc8'\]"):
        FastRCNN(3, "small", train_only=("fc8",))


def test_svm_scores_pass_cls_score_through_and_empty_rois_score_lowest():
    import tensorflow as tf

    from keras_frcnn.detection.graph import make_network
    from keras_frcnn.model.fast_rcnn import FastRCNN

    model = FastRCNN(3, "small", svm_scores=True)
    rois = tf.constant([[0, 0, 0, 31, 31], [0, 60, 60, 63, 63]], tf.float32)  # 2nd: off the map
    images = tf.random.stateless_uniform([1, 32, 32, 3], (1, 2), -1, 1)
    outputs = model({"images": images, "rois": rois[:1]}, training=False)
    np.testing.assert_array_equal(outputs["cls_prob"], outputs["cls_score"])
    assert FastRCNN.from_config(model.get_config()).get_layer("cls_prob").activation is not None
    assert FastRCNN.from_config(model.get_config()).get_config()["svm_scores"]
    scores, _ = make_network(model)(images, rois)
    np.testing.assert_allclose(scores[0], outputs["cls_score"][0], rtol=1e-5, atol=1e-7)
    assert np.all(scores[1].numpy() == np.finfo(np.float32).min)


def test_class_svm_retrains_after_2000_negatives_and_evicts_easy_ones(rng):
    from keras_frcnn.model import svms

    # Features at R-CNN's scale (mean norm 20), where C = 0.001 fits.
    positives = rng.normal(10.0, 1.0, (20, 4)).astype(np.float32)
    svm = svms.ClassSVM("a", positives, seed=0)
    easy = rng.normal(-10.0, 1.0, (1500, 4)).astype(np.float32)
    svm.add_negatives(easy)
    assert svm.retrainings == 0 and np.all(svm.weights == 0)  # not yet above the limit
    hard = rng.normal(2.0, 1.0, (501, 4)).astype(np.float32)
    svm.add_negatives(hard)  # 2001 new negatives: retrain
    assert svm.retrainings == 1 and svm.added == 0
    assert np.all(svm.scores(positives) > 0)
    kept = svm.scores(np.concatenate([easy, hard])) >= svms.EVICT_THRESHOLD
    assert len(svm.negatives) == kept.sum() < 2001  # the easy ones are gone


@pytest.mark.parametrize("scales, flip", [((48,), False), ((40, 56), True)])
def test_warm_up_traces_the_graphs_detection_then_uses(scales, flip):
    from keras_frcnn.detection import Detector, DetectorConfig
    from keras_frcnn.model.fast_rcnn import FastRCNN

    detector = Detector(FastRCNN(3, "small"), DetectorConfig(scales=scales, max_size=96,
                                                             preprocessing="tf", flip=flip))
    detector.warm_up()
    traced = (detector._forward.experimental_get_tracing_count(),
              detector._postprocess.experimental_get_tracing_count())
    assert traced == (1, 1)
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    detector.detect(image, np.array([[5, 5, 40, 30], [20, 10, 70, 50]], np.float32))
    assert (detector._forward.experimental_get_tracing_count(),
            detector._postprocess.experimental_get_tracing_count()) == traced


def test_time_is_kept_while_a_model_is_made(tmp_path):
    # A sitting killed mid-training (no finally runs) keeps the seconds written so far.
    import json
    import threading
    import time

    from keras_frcnn.study.runner import _time_kept

    spent = tmp_path / "study_seconds.json"
    spent.write_text(json.dumps({"seconds": 100.0}))
    seen = []
    start = time.perf_counter()
    with _time_kept(spent, every=0.05):
        for _ in range(40):
            threading.Event().wait(0.01)
            seen.append(json.loads(spent.read_text())["seconds"])
    elapsed = time.perf_counter() - start
    assert max(seen) > 100.0  # written while the block ran, added to the earlier total
    final = json.loads(spent.read_text())["seconds"]
    assert max(seen) <= final <= 100.0 + elapsed


def test_train_svms_scales_features_to_norm_20_and_takes_the_releases_negatives(monkeypatch):
    """One image, two classes: the feature scale is 20 over the mean norm, positives are
    each class's ground truth, and a row is a class's negative when its recorded overlap
    with that class is below 0.3, where a row overlaps only its max_classes (the
    release's roidb: a box at 0.6 with one class and 0.4 with another is the other's
    negative here, not in R-CNN)."""
    from types import SimpleNamespace

    from keras_frcnn.model import svms
    from keras_frcnn.model.fast_rcnn import FastRCNN

    # Rows: gt class 1, gt class 2, then proposals at 0.6 / 0.2 / 0.3 with their best class.
    boxes = np.array([[k, 0, k + 8, 8] for k in range(5)], np.float32)
    entry = SimpleNamespace(boxes=boxes, gt_classes=np.array([1, 2, 0, 0, 0]),
                            max_classes=np.array([1, 2, 1, 2, 1]),
                            max_overlaps=np.array([1.0, 1.0, 0.6, 0.2, 0.3]))
    network = FastRCNN(3, "small")
    width = network.get_layer("cls_score").get_weights()[0].shape[0]  # fc7's
    features = np.zeros((5, width))
    features[np.arange(5), np.arange(5)] = np.arange(1, 6)  # row k: k + 1 on axis k

    class Extractor:
        dim = width

        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, image, rows):
            return features[rows[:, 0].astype(int)].astype(np.float32)

    added, trained = {}, {}
    add_negatives = svms.ClassSVM.add_negatives

    def record(svm, rows):
        added.setdefault(svm.name, []).append(rows.copy())
        trained[svm.name] = svm
        add_negatives(svm, rows)

    monkeypatch.setattr(svms, "build_roidb", lambda *args: [entry])
    monkeypatch.setattr(svms, "_training_views", lambda entry, flip, orient: iter([(None, boxes)]))
    monkeypatch.setattr(svms, "FeatureExtractor", Extractor)
    monkeypatch.setattr(svms.ClassSVM, "add_negatives", record)
    dataset = SimpleNamespace(num_classes=3, classes=["a", "b"], exif_orientation=True)
    model, report = svms.train_svms(network, dataset, None, 32, 64, "caffe")

    scale = 20.0 / np.mean(np.linalg.norm(features, axis=1))
    assert report["feature_scale"] == pytest.approx(scale)
    assert report["classes"]["a"]["positives"] == report["classes"]["b"]["positives"] == 1
    # SVMs start at zero, so every negative of the one image is hard (scored 0 > -1.0001).
    np.testing.assert_allclose(np.concatenate(added["a"]), features[[1, 3]] * scale, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(added["b"]), features[[0, 2, 3, 4]] * scale,
                               rtol=1e-6)
    kernel, bias = model.get_layer("cls_score").get_weights()
    assert np.all(kernel[:, 0] == 0) and bias[0] == 0  # background has no SVM
    for k, name in ((1, "a"), (2, "b")):  # w . (scale x) + b on the raw features x
        np.testing.assert_allclose(kernel[:, k], trained[name].weights * scale, rtol=1e-5)
        assert bias[k] == pytest.approx(trained[name].bias)
    scores = features @ kernel + bias  # each class's ground truth above its negatives
    assert scores[0, 1] > scores[[1, 3], 1].max() and scores[1, 2] > scores[[0, 2, 3, 4], 2].max()
