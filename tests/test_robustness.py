"""Real-data faults (DESIGN.md section 6) through training and evaluation: a truncated
JPEG, boxes touching the image border, and an image with no objects."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_frcnn import training
from keras_frcnn.configs import base_config
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import DatasetError
from keras_frcnn.data.roidb import build_roidb
from keras_frcnn.data.sampling import SamplingConfig, trainable_entries
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.detection.postprocess import Detections
from keras_frcnn.evaluation.run import evaluate
from keras_frcnn.evaluation.evaluator import evaluate_voc
from tests.data.fixtures import VOC_OBJECT, VOC_XML

KANGAROO = Path(__file__).resolve().parents[2] / "shared" / "data" / "kangaroo"
WIDTH, HEIGHT = 96, 72
# 1-based VOC boxes: "border" touches all four sides (x 1..96, y 1..72 are the image edges).
OBJECTS = {
    "a_plain": [(20, 15, 60, 55)],
    "b_border": [(1, 30, 40, HEIGHT), (50, 1, WIDTH, 40)],
    "c_empty": [],
    "d_truncated": [(25, 10, 70, 60)],
    "e_plain": [(5, 5, 45, 50)],
}


def write_folder(root):
    """A kangaroo-style folder (annots/, images/); d_truncated.jpg is cut to half its bytes."""
    rng = np.random.default_rng(0)
    (root / "annots").mkdir(parents=True)
    (root / "images").mkdir()
    for image_id, boxes in OBJECTS.items():
        pixels = rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
        for x1, y1, x2, y2 in boxes:  # a bright object on the noise
            pixels[y1 - 1:y2, x1 - 1:x2] = (230, 200, 40)
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.jpg", quality=95)
        objects = "".join(VOC_OBJECT.format(name="cat", difficult=0, x1=x1, y1=y1, x2=x2, y2=y2)
                          for x1, y1, x2, y2 in boxes)
        (root / "annots" / f"{image_id}.xml").write_text(
            VOC_XML.format(image_id=image_id, width=WIDTH, height=HEIGHT, objects=objects))
    path = root / "images" / "d_truncated.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return root


def folder_config(tmp_path):
    config = base_config()
    config.dataset.kind = "voc_folder"
    config.dataset.root = str(write_folder(tmp_path / "photos"))
    config.dataset.classes = ("cat",)
    config.dataset.train_split = config.dataset.test_split = "all"
    config.proposals.method = "selective_search"  # also decodes the truncated file
    config.proposals.cache_dir = str(tmp_path / "proposals")
    config.proposals.workers = 1
    config.pipeline.scales, config.pipeline.max_size = (72,), 128
    config.pipeline.preprocessing = "tf"
    config.sampling.rois_per_batch = 32
    config.model.backbone, config.model.dropout = "small", 0.0
    config.train.steps, config.train.checkpoint_every, config.train.log_every = 3, 3, 1
    config.test.picture_images = 0
    return config


def test_truncated_jpeg_decodes_with_a_warning_naming_it(tmp_path, caplog):
    root = write_folder(tmp_path)
    path = root / "images" / "d_truncated.jpg"
    with caplog.at_level(logging.WARNING, logger="keras_frcnn.data"):
        image = read_image_bgr(path)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert f"{path}: truncated or damaged image, decoded what is there" in caplog.text
    # The lower rows are missing from the file: Pillow fills them with grey.
    assert np.all(image[-1] == image[-1, 0]) and not np.all(image[0] == image[0, 0])


@pytest.mark.skipif(not KANGAROO.is_dir(), reason="needs ../shared/data/kangaroo")
def test_kangaroo_00090_is_truncated_yet_decodes():
    path = KANGAROO / "images" / "00090.jpg"
    import cv2

    assert cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR) is None
    record = load_dataset(_kangaroo_config().dataset, "all").records
    (entry,) = [r for r in record if r.image_id == "00090"]
    assert read_image_bgr(path).shape == (entry.height, entry.width, 3)


def _kangaroo_config():
    config = base_config()
    config.dataset.kind, config.dataset.root = "voc_folder", str(KANGAROO)
    config.dataset.classes = ("kangaroo",)
    return config


def test_border_boxes_and_images_without_objects_are_records(tmp_path):
    config = folder_config(tmp_path)
    dataset = load_dataset(config.dataset, "all")
    records = {r.image_id: r for r in dataset.records}
    assert len(records["c_empty"].boxes) == 0
    np.testing.assert_array_equal(records["b_border"].boxes,
                                  [[0, 29, 39, HEIGHT - 1], [49, 0, WIDTH - 1, 39]])
    # One pixel past the right edge is an error that names the file and the fix.
    xml = Path(config.dataset.root) / "annots" / "b_border.xml"
    xml.write_text(xml.read_text().replace(f"<xmax>{WIDTH}</xmax>", f"<xmax>{WIDTH + 1}</xmax>"))
    with pytest.raises(DatasetError, match=r"b_border.xml.*outside the 96x72 image.*on_error=skip"):
        load_dataset(config.dataset, "all")


def test_images_without_objects_are_left_out_of_training_unless_background_reaches_zero(
        tmp_path, caplog):
    config = folder_config(tmp_path)
    dataset = load_dataset(config.dataset, "all")
    proposals = {r.image_id: np.array([[0, 0, 30, 30], [40, 20, 90, 70]], np.float32)
                 for r in dataset.records}
    roidb = build_roidb(dataset, proposals)
    with caplog.at_level(logging.INFO, logger="keras_frcnn.data"):
        kept = trainable_entries(roidb, SamplingConfig())
    assert [e.record.image_id for e in kept] == ["a_plain", "b_border", "d_truncated", "e_plain"]
    assert "1 of 5 training images have no foreground or background RoI" in caplog.text
    # bg_threshold_lo = 0: the empty image's proposals are all background, so it trains.
    assert len(trainable_entries(roidb, SamplingConfig(bg_threshold_lo=0.0))) == 5
    with pytest.raises(DatasetError, match="bg_threshold_lo"):
        trainable_entries([e for e in roidb if e.record.image_id == "c_empty"], SamplingConfig())


def test_training_and_evaluation_survive_the_faults(tmp_path, caplog):
    config = folder_config(tmp_path)
    with caplog.at_level(logging.INFO):
        result = training.train(config, tmp_path / "work", progress=False)
    assert result["step"] == 3
    assert all(np.isfinite(v) for _, v in result["history"]["loss"])
    assert "d_truncated.jpg: truncated or damaged image" in caplog.text
    assert "1 of 5 training images have no foreground" in caplog.text

    metrics = evaluate(config, tmp_path / "work", progress=False)
    assert metrics["images"] == 5  # the empty and the truncated image are evaluated too
    assert 0.0 <= metrics["mAP"] <= 1.0 and np.isfinite(metrics["mAP"])
    assert (tmp_path / "work" / "eval" / "all" / "metrics.json").is_file()


def test_detections_on_an_image_without_objects_are_false_positives(tmp_path):
    config = folder_config(tmp_path)
    dataset = load_dataset(config.dataset, "all")
    gt = {r.image_id: r for r in dataset.records}
    # Every GT box found (score 0.9) plus one box on the empty image scored above them
    # all: precision 0 at recall 0, then 5/6 at recall 1 (5 GT boxes), so the area AP
    # is 5/6; without the false positive it is 1.
    detections = {image_id: Detections(record.boxes, np.full(len(record.boxes), 0.9, np.float32),
                                       record.classes) for image_id, record in gt.items()}
    assert evaluate_voc(dataset, detections).mean_ap == pytest.approx(1.0)
    detections["c_empty"] = Detections(np.array([[10, 10, 50, 50]], np.float32),
                                       np.array([0.95], np.float32), np.array([1], np.int32))
    assert evaluate_voc(dataset, detections).mean_ap == pytest.approx(5 / 6)
