"""Pictures of detections: boxes drawn to scale, photos tiled at one height."""

import types

import cv2
import numpy as np
import pytest

from keras_frcnn.detection.detector import Detections
from keras_frcnn.detection.draw import (TILE_HEIGHT, contact_sheet, draw_detections,
                                        tile_scale)
from keras_frcnn.evaluation.run import draw_examples


def test_contact_sheet_places_images_side_by_side_without_empty_cells():
    a, b, c = (np.full((100, w, 3), v, np.uint8) for w, v in ((50, 10), (150, 20), (100, 30)))
    d = np.full((60, 80, 3), 40, np.uint8)
    sheet = contact_sheet([a, b, c, d], columns=3, pad=4)
    # Row 1: 4 + 50 + 4 + 150 + 4 + 100 + 4 = 316 wide, 100 high; row 2: d alone.
    assert sheet.shape == (4 + 100 + 4 + 60 + 4, 316, 3)
    assert (sheet[4:104, 4:54] == 10).all() and (sheet[4:104, 58:208] == 20).all()
    assert (sheet[4:104, 212:312] == 30).all() and (sheet[108:168, 4:84] == 40).all()
    assert (sheet[108:168, 84:] == 255).all()  # the short row ends; nothing else is blank
    with pytest.raises(ValueError, match="no images"):
        contact_sheet([])


def test_tile_scale_brings_photos_to_one_height_and_caps_panoramas():
    assert tile_scale(720, 960) == pytest.approx(0.5)
    assert tile_scale(120, 160) == pytest.approx(3.0)  # small photos grow to the same height
    assert tile_scale(100, 2000) == pytest.approx(3 * TILE_HEIGHT / 2000)


def test_boxes_are_drawn_at_the_picture_s_scale():
    image = np.zeros((100, 200, 3), np.uint8)
    dets = Detections(np.array([[20.0, 30.0, 80.0, 70.0]]), np.array([0.9]), np.array([1]))
    drawn = draw_detections(image, dets, ["cat"], score_threshold=0.5, scale=2.0)
    assert drawn.shape == (200, 400, 3)
    assert drawn[100, 40].any() and drawn[100, 160].any()  # the box's sides at x 40 and 160
    assert not drawn[100, 100].any()  # inside the box


def test_detections_png_tiles_photos_of_different_sizes_at_one_height(tmp_path):
    records = []
    for name, (h, w) in {"big": (900, 1200), "small": (120, 90)}.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((h, w, 3), 128, np.uint8))
        records.append(types.SimpleNamespace(image_id=name, image_path=tmp_path / f"{name}.png"))
    dataset = types.SimpleNamespace(records=records, max_image_pixels=0, exif_orientation=True,
                                    classes=("cat",))
    box = Detections(np.array([[10.0, 10.0, 50.0, 50.0]]), np.array([0.9]), np.array([1]))
    draw_examples(dataset, {"big": box, "small": box}, tmp_path / "detections.png", 6, 0.5)
    sheet = cv2.imread(str(tmp_path / "detections.png"))
    # Both at 360 rows: 1200 x 0.4 = 480 and 90 x 3 = 270 columns, side by side.
    assert sheet.shape == (4 + TILE_HEIGHT + 4, 4 + 480 + 4 + 270 + 4, 3)
