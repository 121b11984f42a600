"""Image decoding shared by the dataset readers, the input pipeline, proposals and detection.

Sizes are (width, height) as OpenCV decodes the image, i.e. after its EXIF
orientation, unless ``orient=False`` (``dataset.exif_orientation``: the stored pixels).
Every decode reads the file's header first (Pillow reads nothing else) and refuses an
image above ``max_pixels`` before a pixel is decoded: a 12000 x 12000 photo is 432 MB
as BGR bytes, and selective search at that size needs about 20 GB (docs/data.md, "Image
sizes and the pixel limit"). ``max_pixels`` 0 means no limit.

Where the file is: a local path is read by Pillow and OpenCV directly, as always. A
path beyond the local disk (``gs://``, ``ram://``: keras_frcnn.files) is read whole to
bytes once per call and decoded from them; a caller that has the bytes already (the
Beam pipelines, which also hash them) passes them as ``data``, and the path then only
names the image in messages.
"""

import collections
import contextlib
import io
import threading
from pathlib import Path

import cv2
import numpy as np

from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError, logger
from keras_frcnn.files import is_url, read_bytes

# Formats whose EXIF orientation OpenCV applies while Pillow reports the stored size
# (checked with OpenCV 5.0 and Pillow 12.3 and 13; Pillow already turns TIFF sizes, and
# OpenCV turns TIFFs even with IMREAD_IGNORE_ORIENTATION: orient=False keeps them turned).
_ORIENTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# libjpeg decodes at 1/2, 1/4 or 1/8 of the size directly, never building the full array.
_REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                 (2, cv2.IMREAD_REDUCED_COLOR_2))
_PILLOW_LOCK = threading.Lock()  # guards Pillow's process-wide settings changed below
_warned_damaged = set()

_Header = collections.namedtuple("_Header", "width height format turned")


class _Source:
    """An image file as the decoders read it: ``path``, read directly where it is local,
    or its bytes: ``data`` as given, or read whole from a URL when first needed (None if
    it is missing). A URL's header alone is read as a stream (``header_stream``), so
    listing a split in a bucket does not download every image."""

    def __init__(self, path, data=None):
        self.path = path
        self.local = data is None and not is_url(str(path))
        self._data, self._fetched = data, data is not None

    @property
    def data(self):
        if not self._fetched:
            try:
                self._data = read_bytes(str(self.path))
            except OSError:  # missing or unreachable: "missing or not decodable" below
                self._data = None
            self._fetched = True
        return self._data

    def nonempty(self):
        """True if the file exists and holds at least one byte."""
        if not self.local:
            return bool(self.data)
        return Path(self.path).is_file() and Path(self.path).stat().st_size > 0

    def pillow(self):
        """What Image.open takes: the path, or a stream of the bytes."""
        if self.local:
            return self.path
        return io.BytesIO(self.data if self.data is not None else b"")

    def header_stream(self):
        """A context giving what Image.open takes to read the header: pillow()'s, or for
        a URL not read yet, a tf.io.gfile stream (Pillow reads the first few KB)."""
        if self.local or self._fetched:
            return contextlib.nullcontext(self.pillow())
        import tensorflow as tf

        try:
            return tf.io.gfile.GFile(str(self.path), "rb")
        except tf.errors.OpError:
            return contextlib.nullcontext(io.BytesIO(b""))

    def buffer(self):
        """The bytes as a uint8 array for cv2.imdecode; None if the file is missing."""
        if not self.local:
            return None if self.data is None else np.frombuffer(self.data, np.uint8)
        return np.fromfile(str(self.path), np.uint8) if Path(self.path).is_file() else None


def _source(path, data=None):
    return path if isinstance(path, _Source) else _Source(path, data)


def _read_header(path, orient=True):
    """_Header(width, height, Pillow format, turned by EXIF) or None if Pillow cannot parse
    it; ``orient=False``: the stored size, whatever the EXIF orientation says."""
    from PIL import Image

    source = _source(path)
    with _PILLOW_LOCK:
        # Pillow's own decompression-bomb check would warn (89 MP) or refuse (179 MP)
        # at open; the caller applies max_pixels instead, with a message naming the fix.
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with source.header_stream() as stream, Image.open(stream) as image:
                width, height = image.size
                orientation = (image.getexif().get(_EXIF_ORIENTATION)
                               if image.format in _ORIENTED_FORMATS else None)
                image_format = image.format
        except (OSError, ValueError, SyntaxError):  # Pillow's parsers raise all three
            return None
        except Exception as err:  # noqa: BLE001 - a URL stream's tf.errors
            if source.local or type(err).__module__.split(".")[0] != "tensorflow":
                raise
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if orient and orientation in _TRANSPOSING_ORIENTATIONS:
        return _Header(height, width, image_format, True)
    return _Header(width, height, image_format, False)


def image_size(path, orient=True, data=None):
    """(width, height) of the decoded image, read from the file header alone; None
    when Pillow cannot parse the header (OpenCV may still decode the file)."""
    header = _read_header(_source(path, data), orient)
    return None if header is None else (header.width, header.height)


def check_image_pixels(path, width, height, max_pixels=MAX_IMAGE_PIXELS):
    """DatasetError naming the file, its size, the limit and the fix if the image has
    more than ``max_pixels`` pixels (0: no limit)."""
    if max_pixels < 0:
        raise ValueError(f"max_image_pixels must be 0 (no limit) or positive, got {max_pixels}")
    if max_pixels and width * height > max_pixels:
        raise DatasetError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.3g} megapixels), above "
            f"the limit of {max_pixels / 1e6:g} megapixels; downscale it, or raise the limit: "
            f"dataset.max_image_pixels={width * height} in the config (0: no limit; "
            f"--config.dataset.max_image_pixels on the command line)")


def probe_image(path, max_pixels=MAX_IMAGE_PIXELS, expected_size=None, source=None,
                orient=True, data=None):
    """(width, height) of an image file as read_image_bgr decodes it, checked against
    the pixel limit and, if given, the (width, height) its annotation states.

    Reads the header only; a format Pillow cannot parse is decoded by OpenCV to learn
    its size (OpenCV's own limit, 2^30 pixels, bounds that decode). ``source`` names the
    annotation in the mismatch message. Raises DatasetError naming the file.
    """
    file = _source(path, data)
    header = _read_header(file, orient)
    if header is None:
        image = read_image_bgr(file, max_pixels, orient)
        header = _Header(image.shape[1], image.shape[0], None, False)
    else:
        check_image_pixels(path, header.width, header.height, max_pixels)
    size = (header.width, header.height)
    if expected_size is not None and size != tuple(expected_size):
        where = f"{source}: image {path}" if source else f"{path}: image"
        turned = (f" (stored {header.height}x{header.width}, turned by its EXIF orientation, "
                  "as OpenCV decodes it)" if header.turned else "")
        stored = ("; if the annotation is of the stored pixels, set "
                  "dataset.exif_orientation=False" if header.turned else "")
        raise DatasetError(
            f"{where} is {size[0]}x{size[1]}{turned} but the annotation says "
            f"{expected_size[0]}x{expected_size[1]}; fix the annotation's size (or the image), "
            f"or set dataset.on_error=skip to leave the image out{stored}")
    return size


def _decode_damaged(file, orient=True):
    """Pillow's decoding of a truncated file (what OpenCV refuses), or None."""
    from PIL import Image, ImageFile, ImageOps

    with _PILLOW_LOCK:  # LOAD_TRUNCATED_IMAGES and MAX_IMAGE_PIXELS are global to Pillow
        previous = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = True, None  # checked before
        try:
            with Image.open(_source(file).pillow()) as image:
                if orient and image.format in _ORIENTED_FORMATS:  # as OpenCV would turn it
                    image = ImageOps.exif_transpose(image)
                return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        except (OSError, ValueError):
            return None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = previous


def _flags(flags, orient):
    return flags if orient else flags | cv2.IMREAD_IGNORE_ORIENTATION


def _decode(file, flags):
    """OpenCV's decoding of the file, or None if it is missing, empty or refused."""
    data = _source(file).buffer()
    return cv2.imdecode(data, flags) if data is not None and data.size else None


def read_image_bgr(path, max_pixels=MAX_IMAGE_PIXELS, orient=True, data=None):
    """Decodes an image file (BGR uint8); DatasetError naming the file if it cannot,
    or if it has more than ``max_pixels`` pixels (0: no limit; checked on the header).
    ``orient``: turn the image as its EXIF orientation says (OpenCV's default since
    3.1); False: the stored pixels, as the release's OpenCV 2.4 decoded them
    (``dataset.exif_orientation``, docs/data.md).

    A truncated or damaged file that OpenCV rejects is decoded by Pillow as far
    as it goes (the missing part is grey), with a warning once per file. ``data``: the
    file's bytes, if the caller has them (module docstring).
    """
    file = _source(path, data)
    path = file.path
    if not file.local:
        file.data  # noqa: B018 - fetched once, now: the header is read from these bytes
    size = image_size(file, orient)
    if size is not None:
        check_image_pixels(path, *size, max_pixels)
    image = _decode(file, _flags(cv2.IMREAD_COLOR, orient))
    if image is None and file.nonempty():
        image = _decode_damaged(file, orient)
        if image is not None and str(path) not in _warned_damaged:
            _warned_damaged.add(str(path))
            logger.warning("%s: truncated or damaged image, decoded what is there", path)
    if image is None:
        raise DatasetError(f"{path}: missing or not a decodable image")
    if size is None:  # a format only OpenCV reads: its own 2^30-pixel limit bounded the decode
        check_image_pixels(path, image.shape[1], image.shape[0], max_pixels)
    return image


def fitted_size(width, height, max_size):
    """(width, height) scaled so that the longest side is at most ``max_size``
    (rounded, at least 1); unchanged when the image already fits."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def downscale(image, max_size):
    """``image`` resized (area interpolation) so its longest side is at most ``max_size``;
    returned as it is when it already fits."""
    size = fitted_size(image.shape[1], image.shape[0], max_size)
    if size == (image.shape[1], image.shape[0]):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def read_image_bgr_within(path, max_size, max_pixels=MAX_IMAGE_PIXELS, orient=True, data=None):
    """(image, (width, height)): the image downscaled so its longest side is at most
    ``max_size`` (as ``downscale``), and the full size it was decoded from.

    A JPEG at least twice ``max_size`` is decoded at 1/2, 1/4 or 1/8 of its size by
    libjpeg (the largest reduction that keeps ``max_size``), so the full-resolution
    array is never built: 12000 x 12000 takes 6.8 MB instead of 432 MB. ``data``: the
    file's bytes, if the caller has them.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be a positive number of pixels, got {max_size}")
    file = _source(path, data)
    path = file.path
    if not file.local:
        file.data  # noqa: B018 - fetched once, now: the header is read from these bytes
    header = _read_header(file, orient)
    image = None
    if header is not None:
        check_image_pixels(path, header.width, header.height, max_pixels)
        longest = max(header.width, header.height)
        if header.format in ("JPEG", "MPO") and longest > max_size:
            flags = [f for k, f in _REDUCED_JPEG if longest >= k * max_size]
            # None (under twice max_size, or a damaged file): the full decode below.
            image = _decode(file, _flags(flags[0], orient)) if flags else None
    if image is None:
        image = read_image_bgr(file, max_pixels, orient)
        full_size = (image.shape[1], image.shape[0])
    else:
        full_size = (header.width, header.height)
    target = fitted_size(*full_size, max_size)
    if (image.shape[1], image.shape[0]) != target:
        image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    return image, full_size
