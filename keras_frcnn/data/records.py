"""Dataset records: what every reader (VOC, COCO, demo, folder) produces.

Boxes follow keras_frcnn.boxes: (x1, y1, x2, y2), 0-based inclusive pixels.
Class 0 is background; object classes are 1..K, named by ``Dataset.classes``
(``classes[k - 1]`` is the name of class k).
"""

import dataclasses
import logging
import re

import numpy as np

logger = logging.getLogger("keras_frcnn.data")

ON_ERROR = ("raise", "skip")
# Default of config.dataset.max_image_pixels: images above it are refused before they are
# decoded (docs/data.md). 50 MP admits any camera photo up to 8660 x 5773 and is 200
# times a VOC image (500 x 500 at most); decoded as BGR it takes 150 MB.
MAX_IMAGE_PIXELS = 50_000_000


class DatasetError(ValueError):
    """Bad input data; the message names the file and the problem."""


def dataset_error(err):
    """The DatasetError raised inside a tf.data pipeline (a numpy_function), which reaches
    the caller as a TensorFlow error with the Python traceback in its text, as a one-line
    DatasetError again; None if ``err`` did not come from one."""
    match = re.search(r"DatasetError: (.+)", str(err))
    return DatasetError(match.group(1).strip()) if match else None


@dataclasses.dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image and its ground truth."""

    image_id: str
    image_path: str
    width: int
    height: int
    boxes: np.ndarray  # [n, 4] float32, 0-based inclusive
    classes: np.ndarray  # [n] int32 in 1..K
    difficult: np.ndarray  # [n] bool (VOC "difficult"; always False elsewhere)

    @classmethod
    def create(cls, image_id, image_path, width, height, boxes=(), classes=(), difficult=None):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        classes = np.asarray(classes, np.int32).reshape(-1)
        difficult = (np.zeros(len(boxes), bool) if difficult is None
                     else np.asarray(difficult, bool).reshape(-1))
        if not len(boxes) == len(classes) == len(difficult):
            raise ValueError(f"{image_path}: {len(boxes)} boxes, {len(classes)} classes and "
                             f"{len(difficult)} difficult flags")
        return cls(str(image_id), str(image_path), int(width), int(height), boxes, classes,
                   difficult)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A split of a dataset: class names and image records."""

    name: str
    classes: tuple  # object class names; class k >= 1 is classes[k - 1]
    records: tuple
    metadata: dict = dataclasses.field(default_factory=dict)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # the readers' limit; decoders use it (0: none)
    exif_orientation: bool = True  # decoders turn photos by their EXIF tag (images.py)

    @property
    def num_classes(self):
        """K + 1: the object classes and background."""
        return len(self.classes) + 1


def check_on_error(on_error):
    """ValueError unless ``on_error`` is "raise", "skip" or "" (the program's default:
    config.dataset.on_error; the readers raise)."""
    if on_error not in ON_ERROR + ("",):
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def handle_error(error, on_error):
    """Logs ``error`` as a warning with on_error="skip"; raises it otherwise."""
    if on_error != "skip":
        raise error
    logger.warning("skipping: %s", error)
