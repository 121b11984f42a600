"""COCO instances annotations through pycocotools.

Category ids are mapped to contiguous classes 1..K in ascending id order
(``metadata["category_ids"][k - 1]`` is the COCO id of class k, for writing
results). ``iscrowd`` regions are not training targets and are left out of the
records; evaluation reads them from the original JSON through COCOeval.
COCO boxes ``[x, y, w, h]`` become ``(x, y, x + w - 1, y + h - 1)`` clipped to
the image, as in the release; boxes that end up empty are dropped.
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from keras_frcnn.data.images import probe_image
from keras_frcnn.data.records import (MAX_IMAGE_PIXELS, Dataset, DatasetError, ImageRecord,
                                      check_on_error, handle_error)
from keras_frcnn.files import is_file, is_url, join, read_bytes, stem


def coco_api(annotation_file):
    """pycocotools' COCO of an instances file, local or a URL (keras_frcnn.files: read
    to bytes, then indexed as COCO() would index the file)."""
    from pycocotools.coco import COCO  # imported here: only COCO users need it

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        if not is_url(str(annotation_file)):
            return COCO(str(annotation_file))
        coco = COCO()
        coco.dataset = json.loads(read_bytes(str(annotation_file)))
        if not isinstance(coco.dataset, dict):
            raise TypeError("the file holds no JSON object")
        coco.createIndex()
        return coco


def load_coco(annotation_file, images_dir, name=None, on_error="raise",
              max_image_pixels=MAX_IMAGE_PIXELS, exif_orientation=True):
    """An instances_*.json file and its image folder -> Dataset (images without
    objects are kept: they are valid negatives and count in evaluation).

    Each image's header is read (about 0.2 ms an image): an image whose size differs
    from the JSON's, or above ``max_image_pixels`` (0: no limit), is a bad record.
    """
    check_on_error(on_error)
    annotation_file, images_dir = (str(p) if is_url(str(p)) else Path(p)
                                   for p in (annotation_file, images_dir))
    if not is_file(annotation_file):
        raise DatasetError(f"{annotation_file}: COCO annotation file not found")
    try:
        coco = coco_api(annotation_file)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{annotation_file}: not a COCO instances file: {err}") from None
    category_ids = sorted(coco.getCatIds())
    classes = tuple(coco.loadCats(cid)[0]["name"] for cid in category_ids)
    contiguous = {cid: k + 1 for k, cid in enumerate(category_ids)}
    records, skipped = [], []  # skipped: the messages of the bad records left out
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        width, height = int(info["width"]), int(info["height"])
        boxes, labels = [], []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2 = min(width - 1.0, x1 + max(0.0, w - 1))
            y2 = min(height - 1.0, y1 + max(0.0, h - 1))
            if ann.get("area", 1) > 0 and x2 >= x1 and y2 >= y1:
                boxes.append((x1, y1, x2, y2))
                labels.append(contiguous[ann["category_id"]])
        image_path = join(images_dir, info["file_name"])
        try:
            if not is_file(image_path):
                raise DatasetError(f"{annotation_file}: image {image_path} (id {image_id}) "
                                   "not found")
            probe_image(image_path, max_image_pixels, (width, height),
                        source=f"{annotation_file} (id {image_id})", orient=exif_orientation)
        except DatasetError as err:
            handle_error(err, on_error)
            skipped.append(str(err))
            continue
        records.append(ImageRecord.create(image_id, image_path, width, height,
                                          np.array(boxes).reshape(-1, 4), labels))
    return Dataset(name or stem(annotation_file), classes, tuple(records),
                   {"category_ids": category_ids, "annotation_file": str(annotation_file),
                    "skipped": skipped},
                   max_image_pixels, exif_orientation)
