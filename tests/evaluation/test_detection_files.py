"""Detection files written outside bin/evaluate.py and scored by it (--detections):
JSON lines and COCO results, their ids, and the errors that name the file and line."""

import json

import numpy as np
import pytest

from keras_frcnn.data.records import Dataset, ImageRecord
from keras_frcnn.evaluation.detection_files import (coco_ids, coco_rows, detection_line,
                                                    load_detection_file)


def dataset(ids=("000005", "000007", "000009"), category_ids=None):
    records = tuple(ImageRecord.create(i, f"{i}.jpg", 100, 80) for i in ids)
    metadata = {"category_ids": category_ids} if category_ids else {}
    return Dataset("split", ("cat", "dog"), records, metadata)


def test_coco_ids_are_the_whole_number_ids_else_positions_and_the_class_index():
    assert coco_ids(["000005", "12"], num_classes=3) == ({"000005": 5, "12": 12}, [1, 2])
    # Not all whole numbers, or two ids of one number: positions from 1.
    assert coco_ids(["a", "7"], num_classes=2)[0] == {"a": 1, "7": 2}
    assert coco_ids(["5", "005"], num_classes=2)[0] == {"5": 1, "005": 2}
    # A COCO split: its own image and category ids.
    assert coco_ids(["139", "285"], [18, 1]) == ({"139": 139, "285": 285}, [18, 1])


def test_json_lines_score_exactly_what_was_written(tmp_path):
    boxes = np.array([[10.25, 5.5, 40.75, 60.125], [0, 0, 99, 79]], np.float32)
    scores = np.array([0.9130001, 0.25], np.float32)
    lines = [detection_line("000005", "000005.jpg", boxes, scores, [2, 1], ["cat", "dog"]),
             detection_line("000009", "000009.jpg", np.zeros((0, 4)), [], [], ["cat", "dog"])]
    assert json.loads(lines[0])["detections"][0] == {
        "class": "dog", "class_id": 2, "score": float(np.float32(0.9130001)),
        "box": [10.25, 5.5, 40.75, 60.125]}
    path = tmp_path / "detections.jsonl"
    path.write_text("\n".join(lines) + "\n")
    detections, missing = load_detection_file(path, dataset())
    assert missing == ["000007"] and len(detections["000007"]) == 0
    np.testing.assert_array_equal(detections["000005"].boxes, boxes)
    np.testing.assert_array_equal(detections["000005"].scores, scores)
    np.testing.assert_array_equal(detections["000005"].classes, [2, 1])


def test_coco_results_map_back_to_images_and_classes(tmp_path):
    # bbox [x, y, w, h] with w = x2 - x1 + 1: [10, 5, 31, 56] is (10, 5, 40, 60).
    rows = coco_rows(9, [[10, 5, 40, 60]], [0.5], [1], [18, 3])
    assert rows == [{"image_id": 9, "category_id": 18, "bbox": [10.0, 5.0, 31.0, 56.0],
                     "score": 0.5}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    detections, missing = load_detection_file(path, dataset(category_ids=[18, 3]))
    np.testing.assert_array_equal(detections["000009"].boxes, [[10, 5, 40, 60]])
    assert list(detections["000009"].classes) == [1] and missing == ["000005", "000007"]


def test_files_that_do_not_fit_the_split_are_refused_naming_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(detection_line("000005", "a.jpg", [[0, 0, 1, 1]], [1.0], [1], ["cat"])
                    + "\n" + '{"image_id": "000008", "image": "b.jpg", "detections": []}\n')
    with pytest.raises(ValueError, match=r"d.jsonl, line 2: image '000008' is not in split"):
        load_detection_file(path, dataset())
    path.write_text(detection_line("000005", "a.jpg", [[0, 0, 1, 1]], [1.0], [1], ["dog"]))
    with pytest.raises(ValueError, match=r"line 1: class 'dog' has class_id 1, but class 1 of "
                                         r"split is 'cat'; the file was detected with another"):
        load_detection_file(path, dataset())
    path.write_text(detection_line("000005", "a.jpg", [[0, 0, 1, 1]], [1.0], [3], ["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"line 1: class_id 3 is outside 1..2 of split"):
        load_detection_file(path, dataset())
    path.write_text('{"image": "a.jpg"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl, line 1: not a detection line"):
        load_detection_file(path, dataset())
    coco = tmp_path / "r.json"
    coco.write_text(json.dumps([{"image_id": 5, "category_id": 7, "bbox": [0, 0, 1, 1],
                                 "score": 0.5}]))
    with pytest.raises(ValueError, match=r"r.json, detection 0: 7 is not an image or category"):
        load_detection_file(coco, dataset())
    coco.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="a COCO results file is a JSON list"):
        load_detection_file(coco, dataset())
