"""A plain folder (or list) of images with no annotations, for detection."""

import logging
from pathlib import Path

from keras_frcnn.data.images import probe_image
from keras_frcnn.data.records import (MAX_IMAGE_PIXELS, Dataset, DatasetError, ImageRecord,
                                      check_on_error, handle_error)
from keras_frcnn.data.voc import IMAGE_SUFFIXES
from keras_frcnn.files import is_dir, is_url, join, stem

logger = logging.getLogger("keras_frcnn.data")


def _is_image(path):
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _hidden(path, folder):
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def image_files(folder, recursive=False):
    """The image files of ``folder`` (by suffix), sorted; with ``recursive``, those of
    its subfolders too (sorted by path). Hidden files and folders (``._IMG.jpg``,
    ``.thumbnails``) are left out. Without it, subfolders holding images are named in one warning, so that
    nobody takes them for processed."""
    folder = Path(folder)
    if recursive:
        return sorted(p for p in folder.rglob("*") if _is_image(p) and not _hidden(p, folder))
    nested = sorted(sub.name for sub in folder.iterdir()
                    if sub.is_dir() and not sub.name.startswith(".")
                    and any(_is_image(p) for p in sub.rglob("*")))
    if nested:
        shown = ", ".join(nested[:5]) + (f" and {len(nested) - 5} more" if len(nested) > 5 else "")
        logger.warning("%s: left out %d subfolder%s holding images (%s); pass --recursive "
                       "to include them", folder, len(nested), "s" * (len(nested) > 1), shown)
    return sorted(p for p in folder.iterdir() if _is_image(p) and not _hidden(p, folder))


def url_image_files(folder, recursive=False):
    """image_files for a folder given as a URL (keras_frcnn.files): its image files by
    suffix, hidden names left out, sorted; with ``recursive``, its subfolders' too."""
    import tensorflow as tf

    found = []
    for directory, subfolders, names in tf.io.gfile.walk(folder):
        relative = directory[len(folder):].strip("/")
        if any(part.startswith(".") for part in relative.split("/") if part):
            continue
        found += [join(directory, n) for n in names
                  if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
        if not recursive:
            break
    return sorted(found)


def load_images(paths, classes=(), name="images", on_error="raise",
                max_image_pixels=MAX_IMAGE_PIXELS, recursive=False, exif_orientation=True):
    """Image files, or folders of them (sorted), -> Dataset of records without boxes.

    Only the image header is read here (its size; data/images.py ``probe_image``);
    decoding happens later. An unreadable image, or one above ``max_image_pixels``
    (0: no limit), is a bad record: raised, or with ``on_error="skip"`` left out with
    a warning and listed in ``metadata["skipped"]`` (its message). ``recursive``
    takes the images in subfolders of the folders given too (image_files). Image ids
    are the file names without suffix, made unique with ``_2``, ``_3``, ... (two
    folders may both hold ``photo.jpg``: their proposals and pictures must not be
    mixed up).
    """
    check_on_error(on_error)
    files = []
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        if is_url(str(path)):  # gs://, ram://: listed through tf.io.gfile
            files += url_image_files(str(path), recursive) if is_dir(str(path)) else [str(path)]
            continue
        path = Path(path)
        files += image_files(path, recursive) if path.is_dir() else [path]
    records, ids, skipped = [], set(), []
    for path in files:
        try:
            width, height = probe_image(path, max_image_pixels, orient=exif_orientation)
        except DatasetError as err:
            handle_error(err, on_error)
            skipped.append(str(err))
            continue
        image_id, copy = stem(path), 1
        while image_id in ids:
            copy += 1
            image_id = f"{stem(path)}_{copy}"
        ids.add(image_id)
        records.append(ImageRecord.create(image_id, path, width, height))
    if not records:
        reason = f" ({len(skipped)} unreadable)" if skipped else ""
        raise DatasetError(f"no readable images in {paths}{reason}")
    return Dataset(name, tuple(classes), tuple(records), metadata={"skipped": skipped},
                   max_image_pixels=max_image_pixels, exif_orientation=exif_orientation)
