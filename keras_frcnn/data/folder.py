"""A plain folder (or list) of images with no annotations, for detection."""

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from keras_frcnn.data.records import Dataset, DatasetError, ImageRecord, check_on_error, handle_error
from keras_frcnn.data.voc import IMAGE_SUFFIXES


def load_images(paths, classes=(), name="images", on_error="raise"):
    """Image files, or folders of them (sorted), -> Dataset of records without boxes.

    Only the image header is read here (its size); decoding happens later.
    """
    check_on_error(on_error)
    files = []
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    records = []
    for path in files:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError) as err:
            handle_error(DatasetError(f"{path}: cannot read the image: {err}"), on_error)
            continue
        records.append(ImageRecord.create(path.stem, path, width, height))
    if not records:
        raise DatasetError(f"no readable images in {paths}")
    return Dataset(name, tuple(classes), tuple(records))
