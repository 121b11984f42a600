"""A plain folder (or list) of images with no annotations, for detection."""

from pathlib import Path

from keras_frcnn.data.images import probe_image
from keras_frcnn.data.records import (MAX_IMAGE_PIXELS, Dataset, DatasetError, ImageRecord,
                                      check_on_error, handle_error)
from keras_frcnn.data.voc import IMAGE_SUFFIXES


def load_images(paths, classes=(), name="images", on_error="raise",
                max_image_pixels=MAX_IMAGE_PIXELS):
    """Image files, or folders of them (sorted), -> Dataset of records without boxes.

    Only the image header is read here (its size; data/images.py ``probe_image``);
    decoding happens later. An unreadable image, or one above ``max_image_pixels``
    (0: no limit), is a bad record. Image ids are the file names without suffix,
    made unique with ``_2``, ``_3``, ... (two folders may both hold ``photo.jpg``:
    their proposals and pictures must not be mixed up).
    """
    check_on_error(on_error)
    files = []
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    records, ids = [], set()
    for path in files:
        try:
            width, height = probe_image(path, max_image_pixels)
        except DatasetError as err:
            handle_error(err, on_error)
            continue
        image_id, copy = path.stem, 1
        while image_id in ids:
            copy += 1
            image_id = f"{path.stem}_{copy}"
        ids.add(image_id)
        records.append(ImageRecord.create(image_id, path, width, height))
    if not records:
        raise DatasetError(f"no readable images in {paths}")
    return Dataset(name, tuple(classes), tuple(records), max_image_pixels=max_image_pixels)
