"""VOC, COCO and image-folder readers on fixtures written by the tests."""

import numpy as np
import pytest

from keras_frcnn.data import coco, folder, voc
from keras_frcnn.data.records import DatasetError
from tests.data.fixtures import write_coco, write_image, write_voc

CLASSES = ("cat", "dog")


def test_voc_boxes_become_zero_based_and_difficult_is_kept(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {
        "000001": (100, 80, [("dog", 0, 1, 1, 100, 80), ("cat", 1, 10, 20, 30, 40)]),
        "000002": (50, 50, [("cat", 0, 5, 5, 6, 6)]),
    })
    dataset = voc.load_voc(root, "trainval", CLASSES)
    assert dataset.name == "VOC2007_trainval" and dataset.num_classes == 3
    first = dataset.records[0]
    assert (first.image_id, first.width, first.height) == ("000001", 100, 80)
    np.testing.assert_array_equal(first.boxes, [[0, 0, 99, 79], [9, 19, 29, 39]])
    np.testing.assert_array_equal(first.classes, [2, 1])
    np.testing.assert_array_equal(first.difficult, [False, True])
    assert first.image_path.endswith("JPEGImages/000001.jpg")


@pytest.mark.parametrize("objects, size, error", [
    ([("horse", 0, 1, 1, 5, 5)], True, "unknown class 'horse'"),
    ([("cat", 0, 10, 1, 5, 5)], True, "x2 < x1"),
    ([("cat", 0, 1, 1, 101, 5)], True, "outside the 100x80 image"),
    ([("cat", 0, 1, 1, 5, 5)], False, "missing <size/width>"),
])
def test_voc_bad_annotations_name_the_file(tmp_path, objects, size, error):
    root = write_voc(tmp_path / "VOC", {"bad": (100, 80, objects), "good": (100, 80, [("cat", 0, 1, 1, 5, 5)])})
    if not size:
        xml = root / "Annotations" / "bad.xml"
        xml.write_text(xml.read_text().replace("<width>100</width>", ""))
    with pytest.raises(DatasetError, match=error) as err:
        voc.load_voc(root, "trainval", CLASSES)
    assert "bad.xml" in str(err.value)
    # Where the caller says so, the record is skipped with a warning.
    dataset = voc.load_voc(root, "trainval", CLASSES, on_error="skip")
    assert [r.image_id for r in dataset.records] == ["good"]


def test_voc_missing_image_and_split(tmp_path):
    root = write_voc(tmp_path / "VOC", {"a": (10, 10, [("cat", 0, 1, 1, 5, 5)])})
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match="image not found"):
        voc.load_voc(root, "trainval", CLASSES)
    with pytest.raises(DatasetError, match="split file not found"):
        voc.load_voc(root, "test", CLASSES)


def test_voc_folder_layout_with_filename(tmp_path):
    # The kangaroo layout: annots/ and images/, image named by <filename>.
    write_voc(tmp_path / "x", {"00001": (40, 30, [("dog", 0, 1, 1, 40, 30)])})
    (tmp_path / "x" / "JPEGImages").rename(tmp_path / "images")
    dataset = voc.load_voc_folder(tmp_path / "x" / "Annotations", tmp_path / "images", CLASSES)
    assert dataset.records[0].image_path.endswith("images/00001.jpg")
    np.testing.assert_array_equal(dataset.records[0].boxes, [[0, 0, 39, 29]])


def test_coco_contiguous_classes_crowd_and_clipping(tmp_path):
    path = write_coco(tmp_path)
    dataset = coco.load_coco(path, tmp_path / "images")
    assert dataset.classes == ("person", "dog")  # ascending category id: 1, 18
    assert dataset.metadata["category_ids"] == [1, 18]
    assert [r.image_id for r in dataset.records] == ["3", "7"]
    empty, image = dataset.records
    assert len(empty.boxes) == 0
    # [10, 5, 20, 10] -> (10, 5, 29, 14); [50, 40, 30, 30] clipped to (50, 40, 63, 47); crowd left out.
    np.testing.assert_array_equal(image.boxes, [[10, 5, 29, 14], [50, 40, 63, 47]])
    np.testing.assert_array_equal(image.classes, [2, 1])


def test_coco_bad_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        coco.load_coco(tmp_path / "missing.json", tmp_path)
    (tmp_path / "bad.json").write_text('{"images": 3}')
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        coco.load_coco(tmp_path / "bad.json", tmp_path)


def test_image_folder(tmp_path):
    write_image(tmp_path / "b.png", 20, 10)
    write_image(tmp_path / "a.jpg", 30, 15)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DatasetError, match="broken.jpg"):
        folder.load_images(tmp_path)
    dataset = folder.load_images(tmp_path, on_error="skip")
    assert [(r.image_id, r.width, r.height) for r in dataset.records] == [("a", 30, 15), ("b", 20, 10)]


def test_images_with_the_same_name_get_distinct_ids(tmp_path):
    """Two folders of photos may share file names: the ids name the proposals and the
    pictures bin/detect.py writes, so they must differ."""
    for folder_name, size in (("one", 20), ("two", 30)):
        (tmp_path / folder_name).mkdir()
        write_image(tmp_path / folder_name / "photo.jpg", size, size)
    write_image(tmp_path / "photo_2.png", 40, 40)
    dataset = folder.load_images([tmp_path / "one", tmp_path / "two", tmp_path / "photo_2.png"])
    assert [(r.image_id, r.width) for r in dataset.records] == [
        ("photo", 20), ("photo_2", 30), ("photo_2_2", 40)]


def test_exif_orientation_setting_reaches_readers_decoders_and_the_proposal_cache(tmp_path):
    """A VOC photo whose JPEG carries an EXIF turn: its XML size is the stored one (VOC's
    and COCO's boxes are drawn on the stored pixels). With dataset.exif_orientation
    False (the paper configs, as the release's OpenCV 2.4) it loads and decodes as
    stored; with True the size check names the turn. Selective search caches the two
    apart."""
    from PIL import Image

    from keras_frcnn.configs import base_config
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.proposals import selective_search

    root = write_voc(tmp_path / "VOC", {"turned": (96, 64, [("cat", 0, 10, 10, 50, 40)])})
    jpeg = root / "JPEGImages" / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(jpeg).convert("RGB").save(jpeg, exif=exif.tobytes())
    config = base_config().dataset
    config.kind, config.root, config.classes = "voc", str(root), ("cat",)
    config.exif_orientation = False
    dataset = load_dataset(config, "trainval")
    assert not dataset.exif_orientation
    record = dataset.records[0]
    assert (record.width, record.height) == (96, 64)
    assert read_image_bgr(record.image_path, orient=dataset.exif_orientation).shape == (64, 96, 3)
    config.exif_orientation = True
    with pytest.raises(DatasetError, match="is 64x96 \\(stored 96x64, turned by its EXIF"):
        load_dataset(config, "trainval")
    assert selective_search.method_key("fast") != selective_search.method_key("fast", orient=False)
    assert selective_search.method_key("fast") == selective_search.method_key("fast", orient=True)
