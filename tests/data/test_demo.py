"""The embedded demo dataset: deterministic, tight boxes, VOC layout, atomic cache."""

import numpy as np

from keras_frcnn.data import demo

SMALL = (("train", 6), ("test", 3))


def test_render_is_deterministic_and_boxes_are_tight(monkeypatch):
    # Each placed object's whole mask: the last mask drawn when its fill colour is drawn
    # (render_image draws a colour only for a placement it accepts).
    drawn, placed = [], []
    shape_mask, fill_colour = demo._shape_mask, demo._fill_colour

    def recording_shape_mask(*args):
        drawn.append(shape_mask(*args))
        return drawn[-1]

    def recording_fill_colour(*args):
        placed.append(drawn[-1])
        return fill_colour(*args)

    monkeypatch.setattr(demo, "_shape_mask", recording_shape_mask)
    monkeypatch.setattr(demo, "_fill_colour", recording_fill_colour)
    occluded = []
    for index in range(20):
        del placed[:]
        image, boxes, labels, masks = demo.render_image(demo.image_rng(0, 0, index), 200, 160)
        whole = np.array(placed)
        again = demo.render_image(demo.image_rng(0, 0, index), 200, 160)
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(boxes, again[1])
        assert image.shape == (160, 200, 3) and image.dtype == np.uint8
        assert 1 <= len(labels) <= 6 and set(labels) <= set(range(1, 6))
        for box, mask in zip(boxes.astype(int), masks):
            x1, y1, x2, y2 = box
            # Tight: the visible pixels touch all four sides of the box, none outside.
            assert mask[y1:y2 + 1, x1:x2 + 1].sum() == mask.sum()
            assert mask[y1, x1:x2 + 1].any() and mask[y2, x1:x2 + 1].any()
            assert mask[y1:y2 + 1, x1].any() and mask[y1:y2 + 1, x2].any()
        # Occlusion is bounded: every object keeps at least MIN_VISIBLE (3/4) of its pixels
        # visible, and a pixel shows one object only.
        assert whole.shape == masks.shape and not (masks & ~whole).any()
        visible = masks.sum(axis=(1, 2)) / whole.sum(axis=(1, 2))
        assert (visible >= 0.75).all(), visible
        occluded.extend(visible[visible < 1])
        assert not (masks.sum(axis=0) > 1).any()
    assert len(occluded) >= 3  # the bound is exercised: objects partly hidden


def test_colour_does_not_identify_the_class():
    means = {k: [] for k in range(1, 6)}
    for index in range(60):
        image, boxes, labels, masks = demo.render_image(demo.image_rng(1, 0, index), 200, 160)
        for label, mask in zip(labels, masks):
            means[int(label)].append(image[mask].mean(axis=0))
    spread = np.array([np.std(v, axis=0).mean() for v in means.values() if len(v) > 3])
    assert (spread > 30).all()  # every class spans a wide range of colours


def test_generated_dataset_loads_as_voc_and_is_cached(tmp_path):
    root = demo.demo_root(tmp_path, seed=3, splits=SMALL)
    assert (root / "DONE").is_file() and not list(root.parent.glob("*.tmp-*"))
    train = demo.load_demo("train", tmp_path, seed=3, splits=SMALL)
    assert len(train.records) == 6 and train.classes == demo.DEMO_CLASSES
    stamp = (root / "JPEGImages" / "train_00000.jpg").stat().st_mtime_ns
    assert demo.demo_root(tmp_path, seed=3, splits=SMALL) == root
    assert (root / "JPEGImages" / "train_00000.jpg").stat().st_mtime_ns == stamp  # not redrawn
    # Same seed elsewhere: the same annotations.
    other = demo.load_demo("train", tmp_path / "elsewhere", seed=3, splits=SMALL)
    for a, b in zip(train.records, other.records):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.classes, b.classes)
