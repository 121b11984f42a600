"""Image size limits (issue 33): images above dataset.max_image_pixels are refused from
their header before anything is decoded; selective search runs on a downscaled copy and
returns boxes in the image's own coordinates; an image whose size disagrees with its
annotation is a DatasetError when the dataset is read (or skipped with a warning)."""

import hashlib
import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_frcnn.boxes import iou_matrix
from keras_frcnn.configs import base_config
from keras_frcnn.data import images
from keras_frcnn.data.coco import load_coco
from keras_frcnn.data.folder import load_images
from keras_frcnn.data.pipeline import PipelineConfig, load_example
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError, ImageRecord
from keras_frcnn.data.roidb import build_entry, build_roidb, target_stats
from keras_frcnn.data.sampling import SamplingConfig
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.data.voc import load_voc_folder
from keras_frcnn.proposals import dense, selective_search
from tests.data.fixtures import VOC_OBJECT, VOC_XML, write_coco

# A 2400 x 1800 picture; selective search runs on it at 1000 x 750 (a factor of 2.4).
LARGE = (2400, 1800)
# Rectangles in the large picture whose edges fall on whole pixels of the small one.
OBJECT_A = (600, 480, 1799, 1319)  # 250..749 x 200..549 at 1000 x 750
OBJECT_B = (120, 120, 479, 359)  # 50..199 x 50..149


def write_noise(path, width, height, seed=0, exif=None):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(path, quality=90, **({"exif": exif} if exif else {}))
    return path


def write_large_picture(path):
    pixels = np.full((LARGE[1], LARGE[0], 3), 120, np.uint8)
    for (x1, y1, x2, y2), colour in ((OBJECT_A, (40, 40, 220)), (OBJECT_B, (220, 90, 20))):
        pixels[y1:y2 + 1, x1:x2 + 1] = colour
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_the_default_limit_is_the_config_key_and_the_message_names_the_fix():
    assert base_config().dataset.max_image_pixels == MAX_IMAGE_PIXELS == 50_000_000
    images.check_image_pixels("photo.jpg", 8256, 5504)  # a 45-megapixel camera: accepted
    with pytest.raises(DatasetError) as error:
        images.check_image_pixels("big.jpg", 12000, 12000)
    assert str(error.value) == (
        "big.jpg: image is 12000x12000 (144 megapixels), above the limit of 50 megapixels; "
        "downscale it, or raise the limit: dataset.max_image_pixels=144000000 in the config "
        "(0: no limit; --config.dataset.max_image_pixels on the command line)")
    images.check_image_pixels("big.jpg", 12000, 12000, max_pixels=0)  # 0: no limit
    with pytest.raises(ValueError, match="max_image_pixels must be 0 .* got -1"):
        images.check_image_pixels("big.jpg", 10, 10, max_pixels=-1)


def test_an_image_above_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    path = write_noise(tmp_path / "a.jpg", 40, 30)  # 1200 pixels

    def no_decoding(*args):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    monkeypatch.setattr(images, "_decode_damaged", no_decoding)
    refused = r"a\.jpg: image is 40x30 .* limit of 0\.001 megapixels.*max_image_pixels=1200 "
    with pytest.raises(DatasetError, match=refused):
        images.read_image_bgr(path, max_pixels=1000)
    with pytest.raises(DatasetError, match=refused):
        images.read_image_bgr_within(path, 20, max_pixels=1000)
    with pytest.raises(DatasetError, match=refused):
        selective_search.compute_selective_search([path], tmp_path / "cache", workers=0,
                                                  progress=False, max_pixels=1000)
    assert not (tmp_path / "cache").exists()


def test_a_raised_or_disabled_limit_accepts_the_image(tmp_path):
    path = write_noise(tmp_path / "a.jpg", 40, 30)
    decoded = cv2.imread(str(path))
    for limit in (1200, 0):
        np.testing.assert_array_equal(images.read_image_bgr(path, max_pixels=limit), decoded)


def test_readers_refuse_large_images_or_skip_them(tmp_path, caplog):
    large = write_noise(tmp_path / "large.jpg", 40, 30)
    small = write_noise(tmp_path / "small.jpg", 20, 20)
    with pytest.raises(DatasetError, match=r"large\.jpg: image is 40x30"):
        load_images([large, small], max_image_pixels=1000)
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.data"):
        dataset = load_images([large, small], max_image_pixels=1000, on_error="skip")
    assert [r.image_id for r in dataset.records] == ["small"]
    assert "skipping: " in caplog.text and "large.jpg: image is 40x30" in caplog.text
    assert dataset.max_image_pixels == 1000  # what proposals and detection decode with
    assert len(load_images([large, small], max_image_pixels=1200).records) == 2
    # A VOC folder too; the limit travels with the dataset.
    root = write_voc_folder(tmp_path / "voc", {"large": (40, 30, 40, 30),
                                               "small": (20, 20, 20, 20)})
    with pytest.raises(DatasetError, match=r"large\.jpg: image is 40x30"):
        load_voc_folder(root / "annots", root / "images", ("cat",), max_image_pixels=1000)
    voc = load_voc_folder(root / "annots", root / "images", ("cat",), max_image_pixels=0)
    assert voc.max_image_pixels == 0 and len(voc.records) == 2


def test_the_config_key_reaches_the_readers(tmp_path):
    config = folder_config(tmp_path, {"large": (40, 30, 40, 30)})
    config.dataset.max_image_pixels = 1000
    with pytest.raises(DatasetError, match=r"large\.jpg: image is 40x30"):
        load_dataset(config.dataset, "all")
    config.dataset.max_image_pixels = 0
    assert load_dataset(config.dataset, "all").max_image_pixels == 0


def test_the_header_size_is_the_decoded_size_of_a_turned_photo(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 30 wide and 20 high, shown turned a quarter: 20 x 30
    path = write_noise(tmp_path / "turned.jpg", 30, 20, exif=exif.tobytes())
    assert images.read_image_bgr(path).shape == (30, 20, 3)
    assert images.image_size(path) == (20, 30)
    with pytest.raises(DatasetError, match=r"is 20x30 \(stored 30x20, turned by its EXIF "
                                           r"orientation.*the annotation says 30x20"):
        images.probe_image(path, expected_size=(30, 20))


def test_large_jpegs_are_decoded_at_reduced_size(tmp_path, monkeypatch):
    path = write_large_picture(tmp_path / "large.jpg")
    decoded_shapes = []
    imdecode = cv2.imdecode

    def recording_imdecode(data, flags):
        image = imdecode(data, flags)
        decoded_shapes.append(image.shape)
        return image

    monkeypatch.setattr(images.cv2, "imdecode", recording_imdecode)
    image, full_size = images.read_image_bgr_within(path, 1000)
    assert image.shape == (750, 1000, 3) and full_size == LARGE
    assert decoded_shapes == [(900, 1200, 3)]  # half size; never 1800 x 2400
    # The same picture as a downscaled full decode, up to the JPEG rounding.
    reference = images.downscale(imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR),
                                 1000)
    assert np.abs(image.astype(int) - reference).mean() < 2
    # An image within the cap comes back exactly as read_image_bgr decodes it.
    small = write_noise(tmp_path / "small.jpg", 64, 48)
    image, full_size = images.read_image_bgr_within(small, 1000)
    np.testing.assert_array_equal(image, images.read_image_bgr(small))
    assert full_size == (64, 48)


def test_scale_boxes_covers_the_same_pixels_in_the_other_size():
    boxes = np.array([[0, 0, 999, 749],  # the whole image
                      [250, 200, 749, 549],  # OBJECT_A
                      [1, 1, 1, 1],  # one pixel: x 1..2 -> 2.4..4.8, so pixels 2..4
                      [990, 740, 1005, 760]], np.float32)  # beyond the edge: clipped
    np.testing.assert_array_equal(
        selective_search.scale_boxes(boxes, (1000, 750), LARGE),
        [[0, 0, 2399, 1799], OBJECT_A, [2, 2, 4, 4], [2376, 1776, 2399, 1799]])
    np.testing.assert_array_equal(selective_search.scale_boxes(boxes, LARGE, LARGE), boxes)


def best_iou(boxes, box):
    return iou_matrix(np.asarray(boxes, np.float32), np.array([box], np.float32)).max()


def test_selective_search_on_a_large_image_returns_boxes_in_its_coordinates(tmp_path):
    path = write_large_picture(tmp_path / "large.jpg")
    (boxes,) = selective_search.compute_selective_search([path], tmp_path / "cache", workers=0,
                                                         progress=False)
    width, height = LARGE
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes[:, 2] <= width - 1).all() and (boxes[:, 3] <= height - 1).all()
    assert best_iou(boxes, (0, 0, width - 1, height - 1)) == 1.0  # the last merge: all of it
    assert best_iou(boxes, OBJECT_A) > 0.97 and best_iou(boxes, OBJECT_B) > 0.95
    # Cached under a key that names the cap: boxes computed at full size are not mixed in.
    key = selective_search.method_key("fast", selective_search.MAX_SIZE)
    assert [p.parent.name for p in (tmp_path / "cache").rglob("*.npz")] == [key]
    # An image in memory is searched the same way.
    in_memory = selective_search.selective_search(cv2.imread(str(path)))
    assert (in_memory[:, 2] <= width - 1).all() and (in_memory[:, 3] <= height - 1).all()
    assert best_iou(in_memory, OBJECT_A) > 0.97


def test_images_within_the_cap_have_no_size_in_their_cache_key(tmp_path):
    path = write_noise(tmp_path / "small.png", 64, 48)
    selective_search.compute_selective_search([path], tmp_path / "cache", workers=0,
                                              progress=False)
    settings = {"method": "opencv_selective_search", "mode": "fast", "opencv": cv2.__version__,
                "rand_seed": 1}
    key_before_the_cap = hashlib.sha256(
        json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    assert [p.parent.name for p in (tmp_path / "cache").rglob("*.npz")] == [key_before_the_cap]


def write_voc_folder(root, images_and_annotations):
    """{id: (image width, height, annotated width, height)} -> annots/, images/ with
    one 'cat' box in the top-left corner of each image."""
    (root / "annots").mkdir(parents=True)
    (root / "images").mkdir()
    for k, (image_id, (width, height, annotated_w, annotated_h)) in enumerate(
            images_and_annotations.items()):
        write_noise(root / "images" / f"{image_id}.jpg", width, height, seed=k)
        objects = VOC_OBJECT.format(name="cat", difficult=0, x1=2, y1=2, x2=15, y2=15)
        (root / "annots" / f"{image_id}.xml").write_text(VOC_XML.format(
            image_id=image_id, width=annotated_w, height=annotated_h, objects=objects))
    return root


def folder_config(tmp_path, images_and_annotations):
    config = base_config()
    config.dataset.kind = "voc_folder"
    config.dataset.root = str(write_voc_folder(tmp_path / "photos", images_and_annotations))
    config.dataset.classes = ("cat",)
    return config


MISMATCH = {"good": (100, 100, 100, 100), "wrong": (100, 100, 300, 300)}


def test_an_image_smaller_than_its_annotation_stops_the_reader(tmp_path):
    config = folder_config(tmp_path, MISMATCH)
    with pytest.raises(DatasetError) as error:
        load_dataset(config.dataset, "all")
    root = tmp_path / "photos"
    assert str(error.value) == (
        f"{root / 'annots' / 'wrong.xml'}: image {root / 'images' / 'wrong.jpg'} is 100x100 "
        "but the annotation says 300x300; fix the annotation's size (or the image), or set "
        "dataset.on_error=skip to leave the image out")


def test_with_on_error_skip_the_image_is_left_out_and_training_data_loads(tmp_path, caplog):
    config = folder_config(tmp_path, MISMATCH)
    config.dataset.on_error = "skip"
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.data"):
        dataset = load_dataset(config.dataset, "all")
    assert [r.image_id for r in dataset.records] == ["good"]
    assert "skipping: " in caplog.text and "is 100x100 but the annotation says 300x300" in (
        caplog.text)
    # What killed the first training step before: every remaining image loads.
    roidb = build_roidb(dataset, {r.image_id: dense.dense_boxes(r.width, r.height)
                                  for r in dataset.records})
    stats = target_stats(roidb, dataset.num_classes)
    sampling = SamplingConfig(images_per_batch=1, rois_per_batch=16)
    image, rois, *_ = load_example(roidb[0], np.random.default_rng(0), sampling,
                                   PipelineConfig(scales=(100,), max_size=200), stats)
    assert image.shape == (100, 100, 3) and rois.shape == (16, 4)


def test_the_pipeline_still_refuses_a_record_that_disagrees_with_its_image(tmp_path):
    path = write_noise(tmp_path / "a.jpg", 100, 100)
    record = ImageRecord.create("a", path, 300, 300, [[10, 10, 60, 60]], [1])
    entry = build_entry(record, [[10, 10, 60, 60], [100, 100, 250, 250]])
    stats = target_stats([entry], 2)
    sampling = SamplingConfig(images_per_batch=1, rois_per_batch=16)
    with pytest.raises(DatasetError, match=r"a\.jpg: image is 100x100 but its record says "
                                           r"300x300; fix the annotation's size"):
        load_example(entry, np.random.default_rng(0), sampling, PipelineConfig(), stats)
    with pytest.raises(DatasetError, match=r"a\.jpg: image is 100x100 \(0\.01 megapixels\)"):
        record = ImageRecord.create("a", path, 100, 100, [[10, 10, 60, 60]], [1])
        load_example(build_entry(record, [[10, 10, 60, 60]]), np.random.default_rng(0),
                     sampling, PipelineConfig(max_image_pixels=5000), stats)


def test_coco_images_are_checked_against_the_json(tmp_path, caplog):
    annotation_file = write_coco(tmp_path)
    data = json.loads(annotation_file.read_text())
    data["images"][0]["width"] = 65  # a.jpg is 64 x 48
    annotation_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances\.json \(id 7\): image .*a\.jpg is 64x48 "
                                           r"but the annotation says 65x48"):
        load_coco(annotation_file, tmp_path / "images")
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.data"):
        dataset = load_coco(annotation_file, tmp_path / "images", on_error="skip")
    assert [r.image_id for r in dataset.records] == ["3"]
    assert "a.jpg is 64x48" in caplog.text
