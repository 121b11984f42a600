"""Detection files written outside bin/evaluate.py (the Beam batch detection,
keras_frcnn/beam/detection.py) that ``bin/evaluate.py --detections=FILE`` scores
against a split's ground truth without running the network again.

JSON lines (``*.jsonl``), one object per image, boxes 0-based inclusive pixels at full
float32 precision (a file scores exactly as the detections it was written from)::

    {"image_id": "000005", "image": "path/000005.jpg",
     "detections": [{"class": "dog", "class_id": 12, "score": 0.93,
                     "box": [x1, y1, x2, y2]}, ...]}

COCO results (``*.json``): the official list of ``{"image_id", "category_id", "bbox",
"score"}`` (evaluation/coco.py: ``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]``, rounded as
the release rounds them). Its ids are ``coco_ids``: a COCO split's own; elsewhere the
image id itself where every id of the split is a whole number (VOC's "000005" is 5),
else the image's position in the split from 1, and the class index k as category.
"""

import json

import numpy as np

from keras_frcnn.files import read_bytes


def detection_line(image_id, image, boxes, scores, classes, class_names):
    """One JSON line (no newline) of an image's detections (class k is
    ``class_names[k - 1]``)."""
    rows = [{"class": class_names[int(k) - 1], "class_id": int(k), "score": float(s),
             "box": [float(v) for v in b]}
            for b, s, k in zip(np.asarray(boxes, np.float32).reshape(-1, 4),
                               np.asarray(scores, np.float32).reshape(-1),
                               np.asarray(classes).reshape(-1))]
    return json.dumps({"image_id": str(image_id), "image": str(image), "detections": rows})


def coco_ids(image_ids, category_ids=None, num_classes=None):
    """({image_id: COCO image id}, [COCO category id of class k at k - 1]) of a split's
    image ids (module docstring); ``category_ids``: a COCO dataset's, else 1..K for
    ``num_classes`` K + 1."""
    ids = [str(i) for i in image_ids]
    if category_ids:
        images = {i: int(i) for i in ids}
    elif all(i.isdigit() for i in ids) and len({int(i) for i in ids}) == len(ids):
        images = {i: int(i) for i in ids}
    else:
        images = {i: position for position, i in enumerate(ids, start=1)}
    categories = list(category_ids) if category_ids else list(range(1, num_classes))
    return images, categories


def _check_class(detection, dataset, where):
    """ValueError unless the detection's class_id is one of ``dataset``'s classes 1..K
    and its class name, where given, is that class's: a file detected with another class
    list would otherwise be scored against the wrong ground truth."""
    k = detection["class_id"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < dataset.num_classes:
        raise ValueError(f"{where}: class_id {k!r} is outside 1..{dataset.num_classes - 1} "
                         f"of {dataset.name}")
    name = detection.get("class")
    if name is not None and name != dataset.classes[k - 1]:
        raise ValueError(f"{where}: class {name!r} has class_id {k}, but class {k} of "
                         f"{dataset.name} is {dataset.classes[k - 1]!r}; the file was detected "
                         "with another class list")


def coco_rows(coco_image_id, boxes, scores, classes, categories):
    """The COCO results rows of one image's detections."""
    rows = []
    for box, score, k in zip(np.asarray(boxes).reshape(-1, 4), scores, classes):
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append({"image_id": int(coco_image_id), "category_id": int(categories[int(k) - 1]),
                     "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1 + 1, 2),
                              round(y2 - y1 + 1, 2)],
                     "score": round(float(score), 5)})
    return rows


def load_detection_file(path, dataset):
    """({image_id: Detections} of every image of ``dataset``, [ids of its images the file
    has no entry for]) of a JSON-lines or COCO results file; those images have no
    detections (the caller warns). ValueError naming the file and the line or row that
    does not fit, or an image not in the split."""
    from keras_frcnn.detection.postprocess import Detections

    text = read_bytes(path).decode()
    known = {r.image_id for r in dataset.records}
    collected = {}
    if str(path).endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                image_id = str(entry["image_id"])
                rows = [(d["box"], d["score"], d["class_id"]) for d in entry["detections"]]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}, line {number}: not a detection line ({err!r}); "
                                 "expected {\"image_id\", \"image\", \"detections\"}") from None
            if image_id not in known:
                raise ValueError(f"{path}, line {number}: image {image_id!r} is not in "
                                 f"{dataset.name}; score the file against the split it was "
                                 "detected on (--split)")
            for d in entry["detections"]:
                _check_class(d, dataset, f"{path}, line {number}")
            collected.setdefault(image_id, []).extend(rows)
    else:
        try:
            results = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}: not JSON ({err}); give a .jsonl of detection lines "
                             "or a COCO results .json") from None
        if not isinstance(results, list):
            raise ValueError(f"{path}: a COCO results file is a JSON list of detections")
        images, categories = coco_ids([r.image_id for r in dataset.records],
                                      dataset.metadata.get("category_ids"),
                                      dataset.num_classes)
        by_coco = {v: k for k, v in images.items()}
        classes = {c: k for k, c in enumerate(categories, start=1)}
        for number, row in enumerate(results):
            try:
                image_id = by_coco[int(row["image_id"])]
                k = classes[int(row["category_id"])]
                x, y, w, h = (float(v) for v in row["bbox"])
                score = float(row["score"])
            except KeyError as err:
                raise ValueError(f"{path}, detection {number}: {err} is not an image or "
                                 f"category of {dataset.name} (or the row lacks it)") from None
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}, detection {number}: not a COCO result ({err})") \
                    from None
            collected.setdefault(image_id, []).append(([x, y, x + w - 1, y + h - 1], score, k))
    detections = {}
    for record in dataset.records:
        rows = collected.get(record.image_id, [])
        detections[record.image_id] = Detections(
            np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
            np.asarray([r[1] for r in rows], np.float32), np.asarray([r[2] for r in rows],
                                                                     np.int32))
    return detections, sorted(known - set(collected))
