"""Dataset-level evaluation: table, files, re-scoring, COCO through pycocotools."""

import json

import numpy as np
import pytest

from keras_frcnn.data.coco import load_coco
from keras_frcnn.data.records import Dataset, ImageRecord
from keras_frcnn.detection.postprocess import Detections
from keras_frcnn.evaluation import (evaluate_voc, load_detections, reapply_nms, save_detections,
                                    write_voc_results)
from keras_frcnn.evaluation.coco import evaluate_coco
from keras_frcnn.evaluation.plots import plot_pr_curves
from tests.data.fixtures import write_coco, write_image


def dets(boxes, scores, classes):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(classes, np.int32))


@pytest.fixture
def dataset():
    records = (ImageRecord.create("a", "a.jpg", 100, 80, [[10, 10, 39, 39], [50, 20, 79, 59]],
                                  [1, 2]),
               ImageRecord.create("b", "b.jpg", 100, 80, [[0, 0, 19, 19]], [1], [True]),
               ImageRecord.create("c", "c.jpg", 100, 80))
    return Dataset("toy", ("cat", "dog", "bird"), records)


def test_evaluate_voc_per_class_and_mean(dataset, caplog):
    detections = {"a": dets([[10, 10, 39, 39], [50, 20, 79, 59], [0, 0, 5, 5]], [0.9, 0.8, 0.95],
                            [1, 2, 2]),
                  "b": dets([[0, 0, 19, 19]], [0.99], [1]),  # on a difficult box: ignored
                  "c": dets([], [], [])}
    result = evaluate_voc(dataset, detections)
    assert result.aps["cat"] == 1.0
    assert result.aps["dog"] == pytest.approx(0.5)  # an FP ranked first, then the TP
    assert np.isnan(result.aps["bird"])  # no ground truth: left out, with a warning
    assert "'bird' has no ground truth" in caplog.text
    assert result.mean_ap == pytest.approx(0.75)
    table = result.table().splitlines()
    assert table[0].split() == ["cat", "dog", "bird", "mAP"]
    assert table[1].split() == ["100.0", "50.0", "n/a", "75.0"]
    assert result.to_dict()["AP"]["bird"] is None


def test_images_outside_the_split_and_bad_classes_are_errors(dataset):
    with pytest.raises(ValueError, match="images not in toy.*'zzz'"):
        evaluate_voc(dataset, {"zzz": dets([], [], [])})
    with pytest.raises(ValueError, match="have class 4, outside 1..3"):
        evaluate_voc(dataset, {"a": dets([[0, 0, 1, 1]], [0.5], [4])})


def test_voc_result_files_are_one_based(dataset, tmp_path):
    paths = write_voc_results({"a": dets([[10, 10, 39, 39]], [0.9], [1])}, dataset.classes,
                              tmp_path, "test")
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt",
                                       "comp4_det_test_bird.txt"]
    assert paths[0].read_text() == "a 0.900 11.0 11.0 40.0 40.0\n"
    assert paths[1].read_text() == ""


def test_save_load_and_reapply_nms(tmp_path):
    detections = {"a": dets([[0, 0, 9, 9], [1, 0, 10, 9], [0, 0, 9, 9]], [0.9, 0.8, 0.7],
                            [1, 1, 2]),
                  "b": dets([], [], [])}
    save_detections(detections, tmp_path / "d.npz")
    loaded = load_detections(tmp_path / "d.npz")
    assert list(loaded) == ["a", "b"] and len(loaded["b"]) == 0
    np.testing.assert_array_equal(loaded["a"].boxes, detections["a"].boxes)
    # IoU of the two class-1 boxes: 90/110 = .82; NMS per class keeps both classes.
    assert reapply_nms(loaded, 0.5)["a"].scores.tolist() == pytest.approx([0.9, 0.7])
    assert len(reapply_nms(loaded, 0.9)["a"]) == 3
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a detections file"):
        load_detections(tmp_path / "bad.npz")


def test_pr_curve_plot_is_written(dataset, tmp_path):
    result = evaluate_voc(dataset, {"a": dets([[10, 10, 39, 39]], [0.9], [1])})
    plot_pr_curves(result, tmp_path / "pr.png")
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"


def write_small_coco(root):
    """Two images, non-contiguous category ids, boxes inside the images."""
    write_image(root / "images" / "a.jpg", 64, 48)
    write_image(root / "images" / "b.jpg", 32, 32)
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
                       {"id": 3, "file_name": "b.jpg", "width": 32, "height": 32}],
            "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10],
                 "area": 200, "iscrowd": 0},
                {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30, 20, 30, 25],
                 "area": 750, "iscrowd": 0},
                {"id": 3, "image_id": 3, "category_id": 1, "bbox": [2, 2, 20, 28],
                 "area": 560, "iscrowd": 0}]}
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


def test_coco_detections_equal_to_the_ground_truth_give_ap_one(tmp_path):
    dataset = load_coco(write_small_coco(tmp_path), tmp_path / "images")
    detections = {r.image_id: Detections(r.boxes, np.full(len(r.boxes), 0.9, np.float32),
                                         r.classes) for r in dataset.records}
    metrics, summary = evaluate_coco(dataset, detections, tmp_path / "results.json")
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert "Average Precision" in summary
    results = json.loads((tmp_path / "results.json").read_text())
    # COCO ids come back: image 7, the dog (category 18) at its original [x, y, w, h].
    assert {"image_id": 7, "category_id": 18, "bbox": [10.0, 5.0, 20.0, 10.0],
            "score": 0.9} in results


def test_coco_without_detections_is_zero_not_a_crash(tmp_path):
    dataset = load_coco(write_coco(tmp_path), tmp_path / "images")
    metrics, _ = evaluate_coco(dataset, {})
    assert metrics["AP"] == 0.0
