"""Image decoding shared by the input pipeline, proposals and detection."""

import threading
from pathlib import Path

import cv2
import numpy as np

from keras_frcnn.data.records import DatasetError, logger

_TRUNCATED_LOCK = threading.Lock()
_warned_damaged = set()


def _decode_damaged(path):
    """Pillow's decoding of a truncated file (what OpenCV refuses), or None."""
    from PIL import Image, ImageFile

    with _TRUNCATED_LOCK:  # LOAD_TRUNCATED_IMAGES is global to Pillow
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        try:
            with Image.open(path) as image:
                return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        except (OSError, ValueError):
            return None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_image_bgr(path):
    """Decodes an image file (BGR uint8); DatasetError naming the file if it cannot.

    A truncated or damaged file that OpenCV rejects is decoded by Pillow as far
    as it goes (the missing part is grey), with a warning once per file.
    """
    data = np.fromfile(str(path), np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None and data is not None and data.size:
        image = _decode_damaged(path)
        if image is not None and str(path) not in _warned_damaged:
            _warned_damaged.add(str(path))
            logger.warning("%s: truncated or damaged image, decoded what is there", path)
    if image is None:
        raise DatasetError(f"{path}: missing or not a decodable image")
    return image
