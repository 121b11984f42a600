"""Image decoding (data/images.py): the pixel limit on formats only OpenCV reads, EXIF
orientations 5 and 7, the size of libjpeg's reduced decode, and Pillow's global
settings left as they were."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from keras_frcnn.data import images
from keras_frcnn.data.records import DatasetError


def write_pam(path, width, height):
    """A PAM (netpbm P7) file: OpenCV decodes it, Pillow 12 and 13 cannot parse it."""
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    ok, data = cv2.imencode(".pam", pixels)
    assert ok
    path.write_bytes(data.tobytes())
    return path, pixels


def test_a_format_only_opencv_reads_is_checked_against_the_limit(tmp_path):
    """Catches a limit checked on the header alone: Pillow gives no header for a PAM
    file, so the size can only be checked on OpenCV's decode (30 x 20 = 600 pixels)."""
    path, pixels = write_pam(tmp_path / "scan.pam", 30, 20)
    assert images.image_size(path) is None  # Pillow cannot parse it: OpenCV-only
    refused = r"scan\.pam: image is 30x20 \(0\.0006 megapixels\), above the limit"
    with pytest.raises(DatasetError, match=refused):
        images.read_image_bgr(path, max_pixels=599)
    with pytest.raises(DatasetError, match=refused):
        images.probe_image(path, max_pixels=599)
    with pytest.raises(DatasetError, match=refused):
        images.read_image_bgr_within(path, 10, max_pixels=599)
    np.testing.assert_array_equal(images.read_image_bgr(path, max_pixels=600), pixels)
    assert images.probe_image(path, max_pixels=600) == (30, 20)


# A 3 x 2 picture, pixels a..f (grey levels 20, 60, ..., 220), stored row by row:
#   a b c
#   d e f
A, B, C, D, E, F = 20, 60, 100, 140, 180, 220
STORED = np.array([[A, B, C], [D, E, F]], np.uint8)
# Orientation 5 (transpose: mirrored, then turned 270 degrees clockwise) and 7 (transverse:
# mirrored, then turned 90 degrees clockwise) both show it 2 wide and 3 high:
TURNED = {5: [[A, D],
              [B, E],
              [C, F]],
          7: [[F, C],
              [E, B],
              [D, A]]}


@pytest.mark.parametrize("orientation", [5, 7])
def test_transposing_exif_orientations_give_the_turned_size_and_pixels(tmp_path, orientation):
    """Catches orientations 5 and 7 left out of the transposing ones (the header size
    would be the stored 3 x 2) or a Pillow decode that does not turn them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"turned{orientation}.png"  # PNG: lossless, OpenCV applies EXIF
    Image.fromarray(np.repeat(STORED[..., None], 3, axis=2)).save(path, exif=exif.tobytes())
    assert images.image_size(path) == (2, 3)
    assert images.probe_image(path, expected_size=(2, 3)) == (2, 3)
    with pytest.raises(DatasetError, match=r"is 2x3 \(stored 3x2, turned by its EXIF"):
        images.probe_image(path, expected_size=(3, 2))
    expected = np.repeat(np.array(TURNED[orientation], np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(images.read_image_bgr(path), expected)
    # The Pillow decode of damaged files turns the image as OpenCV does.
    np.testing.assert_array_equal(images._decode_damaged(path), expected)
    image, full_size = images.read_image_bgr_within(path, 10)
    assert full_size == (2, 3)
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_orientation_ignored_gives_the_stored_pixels(tmp_path, suffix):
    """dataset.exif_orientation=False (the paper configs): the stored size and pixels,
    as the release's OpenCV 2.4 decoded them, in every decode path; the reduced JPEG
    decode and the Pillow fallback too."""
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise when shown
    stored = np.repeat(np.repeat(STORED, 40, axis=0), 40, axis=1)  # 120 x 80: JPEG-safe
    path = tmp_path / f"turned.{suffix}"
    Image.fromarray(np.repeat(stored[..., None], 3, axis=2)).save(path, exif=exif.tobytes())
    assert images.image_size(path) == (80, 120)  # as shown
    assert images.image_size(path, orient=False) == (120, 80)  # as stored
    assert images.probe_image(path, expected_size=(120, 80), orient=False) == (120, 80)
    plain = images.read_image_bgr(path, orient=False)
    assert plain.shape == (80, 120, 3) and images.read_image_bgr(path).shape == (120, 80, 3)
    tolerance = 0 if suffix == "png" else 8
    assert np.abs(plain[..., 0].astype(int) - stored).max() <= tolerance
    assert images._decode_damaged(path, orient=False).shape == (80, 120, 3)
    reduced, full_size = images.read_image_bgr_within(path, 50, orient=False)
    assert full_size == (120, 80) and reduced.shape[:2] == (33, 50)


@pytest.mark.parametrize("width, flag, decoded_width", [
    (1999, cv2.IMREAD_COLOR, 1999),  # under twice max_size: the full decode
    (2000, cv2.IMREAD_REDUCED_COLOR_2, 1000),  # exactly twice: 1/2
    (4000, cv2.IMREAD_REDUCED_COLOR_4, 1000),  # four times: 1/4, not 1/2
    (7999, cv2.IMREAD_REDUCED_COLOR_4, 2000),  # under eight times: still 1/4
    (8000, cv2.IMREAD_REDUCED_COLOR_8, 1000)])  # exactly eight times: 1/8
def test_jpegs_decode_at_the_largest_reduction_that_keeps_max_size(tmp_path, monkeypatch,
                                                                  width, flag, decoded_width):
    """Catches the smallest reduction taken (1/2 for a 4000-px JPEG at max_size 1000, a
    4x larger array than needed) and ``>`` for ``>=`` at the exact multiples: the
    reduction r is the largest of 8, 4, 2 with longest side >= r * max_size."""
    path = tmp_path / "wide.jpg"
    pixels = np.random.default_rng(1).integers(0, 255, (16, width, 3), np.uint8)
    assert cv2.imwrite(str(path), pixels)
    calls, real_imdecode = [], cv2.imdecode

    def spying_imdecode(data, flags):
        image = real_imdecode(data, flags)
        calls.append((flags, image.shape[1]))
        return image

    monkeypatch.setattr(images.cv2, "imdecode", spying_imdecode)
    image, full_size = images.read_image_bgr_within(path, 1000)
    assert calls == [(flag, decoded_width)]
    assert full_size == (width, 16)
    assert image.shape[:2] == (max(1, round(16 * 1000 / width)), 1000)


def test_pillow_s_pixel_limit_is_restored_after_reading_a_header(tmp_path, monkeypatch):
    """Catches _read_header leaving Image.MAX_IMAGE_PIXELS at None (Pillow's own
    decompression-bomb check off for the whole process), on success and on error."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(path)  # 600 > 2 x 100 pixels
    assert images._read_header(path) == (20, 30, "PNG", False)  # no DecompressionBombError
    assert Image.MAX_IMAGE_PIXELS == 100
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert images._read_header(tmp_path / "junk.png") is None  # Pillow raised, caught
    assert Image.MAX_IMAGE_PIXELS == 100

    def broken_open(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(Image, "open", broken_open)
    with pytest.raises(RuntimeError, match="unexpected"):
        images._read_header(path)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_pillow_s_settings_are_restored_after_decoding_a_damaged_file(tmp_path, monkeypatch):
    """Catches _decode_damaged leaving Image.MAX_IMAGE_PIXELS or
    ImageFile.LOAD_TRUNCATED_IMAGES changed, on success and on error."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    path = tmp_path / "a.png"
    Image.fromarray(np.full((30, 20, 3), 7, np.uint8)).save(path)
    assert images._decode_damaged(path).shape == (30, 20, 3)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (100, False)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert images._decode_damaged(tmp_path / "junk.png") is None
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (100, False)

    def broken_open(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(Image, "open", broken_open)
    with pytest.raises(RuntimeError, match="unexpected"):
        images._decode_damaged(path)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (100, False)
