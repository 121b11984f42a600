"""Transforms and the tf.data pipeline on a tiny dataset written by the test."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_frcnn.boxes import flip_horizontally, iou_matrix
from keras_frcnn.data import transforms
from keras_frcnn.data.pipeline import PipelineConfig, load_example, training_dataset
from keras_frcnn.data.records import ImageRecord
from keras_frcnn.data.roidb import build_entry, target_stats
from keras_frcnn.data.sampling import SamplingConfig


def test_image_scale_hand_worked():
    assert transforms.image_scale(375, 500, 600, 1000) == 1.6  # short side 600, long 800
    assert transforms.image_scale(300, 1000, 600, 1000) == 1.0  # long side capped at 1000
    assert transforms.image_scale(1200, 400, 600, 1000) == pytest.approx(1000 / 1200)


def test_preprocessing_modes():
    bgr = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(transforms.preprocess(bgr, "caffe"),
                               [[[10 - 102.9801, 20 - 115.9465, 30 - 122.7717]]], rtol=1e-6)
    np.testing.assert_allclose(transforms.preprocess(bgr, "tf"), [[[30 / 127.5 - 1, 20 / 127.5 - 1, 10 / 127.5 - 1]]], rtol=1e-6)
    np.testing.assert_array_equal(transforms.preprocess(bgr, "none"), [[[30, 20, 10]]])
    with pytest.raises(ValueError, match="preprocessing"):
        transforms.preprocess(bgr, "imagenet")


class FixedDraws:
    """Stands in for the numpy Generator: random() and uniform() return given values."""

    def __init__(self, apply, brightness=0.0, contrast=1.0, saturation=1.0, hue=0.0,
                 contrast_first=True):
        self.apply = np.array(apply, bool)
        self.values = [brightness, contrast, saturation, hue]
        self.contrast_first = contrast_first

    def random(self, size=None):
        if size == 4:
            return np.where(self.apply, 0.25, 0.75)
        return 0.25 if self.contrast_first else 0.75

    def uniform(self, low, high):
        return self.values.pop(0)


@pytest.mark.parametrize("draws, expected", [
    (FixedDraws([1, 0, 0, 0], brightness=32.0), [[42, 52, 62], [255, 255, 255]]),
    (FixedDraws([0, 1, 0, 0], contrast=1.5), [[15, 30, 45], [255, 255, 255]]),
    # BGR (10, 20, 30): V 30, S 2/3, H 30 degrees; S x 0.5 -> min 20, G = 20 + 10 * 30 / 60
    (FixedDraws([0, 0, 1, 0], saturation=0.5), [[20, 25, 30], [250, 250, 250]]),
    # H 30 + 18 = 48 degrees: G = 10 + 20 * 48 / 60
    (FixedDraws([0, 0, 0, 1], hue=18.0), [[10, 26, 30], [250, 250, 250]]),
    (FixedDraws([0, 0, 0, 0], 32.0, 1.5, 0.5, 18.0), [[10, 20, 30], [250, 250, 250]]),
])
def test_distort_colors_hand_worked(draws, expected):
    image = np.array([[[10, 20, 30], [250, 250, 250]]], np.uint8)
    out = transforms.distort_colors(image, draws)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], expected)


def test_distort_colors_contrast_before_or_after_the_hsv_steps():
    # contrast first: (100, 150, 200) x 1.5 clips to (150, 225, 255), H 60 * 75 / 105;
    # saturation x 0.6 from V 255: min 255 - 105 * 0.6 = 192, G 192 + 63 * 75 / 105 = 237.
    image = np.array([[[100, 150, 200]]], np.uint8)
    first = transforms.distort_colors(image, FixedDraws([0, 1, 1, 0], contrast=1.5,
                                                        saturation=0.6, contrast_first=True))
    np.testing.assert_array_equal(first[0, 0], [192, 237, 255])
    # saturation first: V 200, min 100 -> 140, G 140 + 60 * 0.5 = 170; then x 1.5, clipped
    after = transforms.distort_colors(image, FixedDraws([0, 1, 1, 0], contrast=1.5,
                                                        saturation=0.6, contrast_first=False))
    np.testing.assert_array_equal(after[0, 0], [210, 255, 255])


def test_distort_colors_draws_the_same_count_whatever_it_applies():
    image = np.full((4, 4, 3), 128, np.uint8)
    states = set()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        transforms.distort_colors(image, rng)
        reference = np.random.default_rng(seed)
        reference.random(4), reference.uniform(size=4), reference.random()
        states.add(rng.random() == reference.random())
    assert states == {True}


class CropDraws:
    """Stands in for the numpy Generator: uniform() and integers() return given values and
    integers() records its bounds."""

    def __init__(self, fractions, corners):
        self.fractions, self.corners, self.bounds = list(fractions), list(corners), []

    def uniform(self, low, high):
        return self.fractions.pop(0)

    def integers(self, high):
        self.bounds.append(high)
        return self.corners.pop(0)


def test_random_crop_window_rejects_a_crop_that_cuts_an_object_through_its_centre():
    gt = [[10, 10, 39, 49]]  # centre (24.5, 29.5)
    # try 1: 50 x 40 at (30, 0) overlaps the box but not its centre; try 2: 60 x 80 at (0, 0)
    draws = CropDraws([0.5, 0.5, 0.6, 1.0], [30, 0, 0, 0])
    assert transforms.random_crop_window(100, 80, gt, draws, 0.5) == (0, 0, 59, 79)
    assert draws.bounds == [51, 41, 41, 1]  # every corner at which the crop fits
    # a crop that misses the only object is rejected too, one without objects is not
    draws = CropDraws([0.5, 0.5, 0.5, 0.5], [50, 40, 0, 0])
    assert transforms.random_crop_window(100, 80, gt, draws, 0.5) == (0, 0, 49, 39)
    draws = CropDraws([0.5, 0.5], [50, 40])
    assert transforms.random_crop_window(100, 80, [], draws, 0.5) == (50, 40, 99, 79)
    draws = CropDraws([0.5, 0.5] * 3, [30, 0] * 3)
    assert transforms.random_crop_window(100, 80, gt, draws, 0.5, max_tries=3) is None


def test_random_crop_windows_fit_and_keep_every_object_they_touch_by_its_centre():
    gt = np.array([[10, 10, 39, 49], [60, 30, 110, 70]], np.float64)
    centres = (gt[:, :2] + gt[:, 2:]) / 2
    for seed in range(200):
        window = transforms.random_crop_window(120, 90, gt, np.random.default_rng(seed), 0.4)
        assert window is not None
        x1, y1, x2, y2 = window
        assert 0 <= x1 <= x2 <= 119 and 0 <= y1 <= y2 <= 89
        assert x2 - x1 + 1 >= 48 and y2 - y1 + 1 >= 36
        touches = (gt[:, 2] >= x1) & (gt[:, 0] <= x2) & (gt[:, 3] >= y1) & (gt[:, 1] <= y2)
        inside = np.all((centres >= [x1, y1]) & (centres <= [x2, y2]), axis=1)
        assert inside.any() and np.all(inside | ~touches)


def make_roidb(tmp_path, count=4):
    roidb = []
    for k in range(count):
        width, height = 80 + 10 * k, 60
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[:, : width // 2] = 200  # left half bright: shows flips
        path = tmp_path / f"im{k}.png"
        Image.fromarray(pixels).save(path)
        rec = ImageRecord.create(f"im{k}", path, width, height, [[5, 5, 30, 40]], [1])
        xy = np.random.default_rng(k).uniform(0, 40, size=(60, 2))
        proposals = np.concatenate([xy, xy + np.random.default_rng(k).uniform(8, 30, (60, 2))], 1)
        roidb.append(build_entry(rec, np.clip(proposals, 0, [width - 1, height - 1] * 2)))
    return roidb


def test_load_example_scales_and_flips(tmp_path):
    entry = make_roidb(tmp_path, 1)[0]
    sampling = SamplingConfig(images_per_batch=1, rois_per_batch=16)
    config = PipelineConfig(scales=(120,), max_size=1000, preprocessing="none")
    stats = target_stats([entry], 2)
    # The GT (5, 5, 30, 40) lies in the bright left half; mirrored (x' = 80 - x - 1) it is
    # (49, 5, 74, 40), in the bright half that moved to the right. The proposals have
    # random coordinates: none coincides with the mirror of another.
    gt = np.array([[5, 5, 30, 40]], np.float64)
    mirrored_gt = np.array([[49, 5, 74, 40]], np.float64)
    plain_boxes, mirrored_boxes = entry.boxes, flip_horizontally(entry.boxes, 80)
    assert np.count_nonzero(entry.max_overlaps >= 0.5) == 1  # the GT: every sample has it
    seen = set()
    for seed in range(12):
        image, rois, labels, *_ , sample_w = load_example(
            entry, np.random.default_rng(seed), sampling, config, stats)
        assert image.shape == (120, 160, 3)  # 60 x 80 scaled by 2
        real = rois[sample_w > 0]
        assert (real >= 0).all() and (real[:, 2] <= 159).all() and (real[:, 3] <= 119).all()
        flipped = image[0, 0, 0] == 0  # the bright half moved to the right
        # (Columns 79 and 80 blend the two halves in the bilinear resize.)
        assert (image[:, 81:, 0] == 200).all() if flipped else (image[:, :79, 0] == 200).all()
        seen.add(bool(flipped))
        # Every RoI is a proposal (or the GT) scaled by 2, mirrored with the image or not.
        boxes = mirrored_boxes if flipped else plain_boxes
        assert all(np.any(np.all(np.abs(boxes * 2 - r) < 1e-4, axis=1)) for r in real)
        # The one foreground candidate is the GT (the proposals' best IoU is 0.30): its RoI
        # is where the image shows the object.
        np.testing.assert_array_equal(real[labels[sample_w > 0] == 1],
                                      2 * (mirrored_gt if flipped else gt))
    assert seen == {True, False}


def test_load_example_distorts_colours_only(tmp_path):
    entry = make_roidb(tmp_path, 1)[0]
    sampling = SamplingConfig(images_per_batch=1, rois_per_batch=16)
    stats = target_stats([entry], 2)
    plain = PipelineConfig(scales=(120,), preprocessing="none")
    distorted = PipelineConfig(scales=(120,), preprocessing="none", distort_colors=True)
    changed = 0
    for seed in range(8):
        a = load_example(entry, np.random.default_rng(seed), sampling, plain, stats)
        b = load_example(entry, np.random.default_rng(seed), sampling, distorted, stats)
        c = load_example(entry, np.random.default_rng(seed), sampling, distorted, stats)
        for x, y in zip(a[1:], b[1:]):  # same flip, scale and RoIs
            np.testing.assert_array_equal(x, y)
        assert a[0].shape == b[0].shape
        np.testing.assert_array_equal(b[0], c[0])  # reproducible from the seed
        changed += not np.array_equal(a[0], b[0])
    assert changed >= 4  # a grey image shows brightness and contrast only (p = 3 / 4)


def test_load_example_crops_image_and_rois_together(tmp_path):
    width, height = 100, 60
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8)  # R = x, G = y
    path = tmp_path / "ramp.png"
    Image.fromarray(pixels).save(path)
    rec = ImageRecord.create("ramp", path, width, height, [[40, 20, 59, 39]], [1])
    xy = np.random.default_rng(0).uniform(0, 60, size=(80, 2))
    proposals = np.concatenate([xy, xy + np.random.default_rng(1).uniform(8, 40, (80, 2))], 1)
    entry = build_entry(rec, np.clip(proposals, 0, [width - 1, height - 1] * 2))
    sampling = SamplingConfig(images_per_batch=1, rois_per_batch=16)
    stats = target_stats([entry], 2)
    config = PipelineConfig(scales=(90,), preprocessing="none", crop_probability=1.0,
                            crop_min_scale=0.5)
    cropped = 0
    for seed in range(10):
        image, rois, labels, _, _, sample_w = load_example(
            entry, np.random.default_rng(seed), sampling, config, stats)
        draws = np.random.default_rng(seed)  # the draws of load_example, in order
        flipped = draws.random() < 0.5
        draws.integers(1), draws.random()
        x1, y1, x2, y2 = transforms.random_crop_window(width, height, rec.boxes, draws, 0.5)
        cropped += (x2 - x1 + 1, y2 - y1 + 1) != (width, height)
        scale = 90 / min(x2 - x1 + 1, y2 - y1 + 1)
        expected = pixels[y1:y2 + 1, x1:x2 + 1, ::-1]  # BGR, as read
        expected = transforms.resize(np.ascontiguousarray(
            expected[:, ::-1] if flipped else expected), scale)
        np.testing.assert_array_equal(image, transforms.preprocess(expected, "none"))
        gt = np.clip([40 - x1, 20 - y1, 59 - x1, 39 - y1], 0, [x2 - x1, y2 - y1] * 2)
        if flipped:
            gt[[0, 2]] = (x2 - x1) - gt[[2, 0]]
        real = rois[sample_w > 0]
        foreground = real[labels[sample_w > 0] == 1] / scale
        assert len(foreground) and (iou_matrix(foreground, gt[None]) >= 0.5 - 1e-4).all()
        assert (real >= 0).all()
        assert (real[:, 2] <= image.shape[1] - 1 + 1e-3).all()
        assert (real[:, 3] <= image.shape[0] - 1 + 1e-3).all()
    assert cropped >= 8


def test_crop_settings_are_checked():
    with pytest.raises(ValueError, match="crop_probability"):
        PipelineConfig(crop_probability=1.5)
    with pytest.raises(ValueError, match="crop_min_scale"):
        PipelineConfig(crop_min_scale=0.0)


def first_batches(roidb, stats, seed, count=3):
    config = PipelineConfig(scales=(60, 90), max_size=200, seed=seed)
    sampling = SamplingConfig(images_per_batch=2, rois_per_batch=32)
    return [b for _, b in zip(range(count), training_dataset(roidb, stats, sampling, config))]


def test_pipeline_shapes_padding_and_determinism(tmp_path):
    roidb = make_roidb(tmp_path)
    stats = target_stats(roidb, 2)
    batches = first_batches(roidb, stats, seed=5)
    x, y = batches[0]
    assert x["images"].shape[0] == 2 and x["images"].shape[3] == 3
    assert x["rois"].shape == (32, 5) and y["labels"].shape == (32,)
    assert y["bbox_targets"].shape == (32, 4)
    np.testing.assert_array_equal(x["rois"][:16, 0], 0)
    np.testing.assert_array_equal(x["rois"][16:, 0], 1)
    assert float(tf.reduce_sum(y["bbox_weights"])) == float(tf.reduce_sum(
        tf.cast(y["labels"] > 0, tf.float32)))
    assert np.all(np.isfinite(y["bbox_targets"].numpy()))
    again = first_batches(roidb, stats, seed=5)
    for (xa, ya), (xb, yb) in zip(batches, again):
        np.testing.assert_array_equal(xa["images"].numpy(), xb["images"].numpy())
        np.testing.assert_array_equal(xa["rois"].numpy(), xb["rois"].numpy())
        np.testing.assert_array_equal(ya["labels"].numpy(), yb["labels"].numpy())
    other = first_batches(roidb, stats, seed=6)
    assert any(not np.array_equal(a[0]["rois"].numpy(), b[0]["rois"].numpy())
               for a, b in zip(batches, other))


def test_pipeline_under_tf_distribute(tmp_path):
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (set before TensorFlow initialises)")
    roidb = make_roidb(tmp_path)
    stats = target_stats(roidb, 2)
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
    sampling = SamplingConfig(images_per_batch=2, rois_per_batch=32)
    config = PipelineConfig(scales=(60,), max_size=200)
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: training_dataset(roidb, stats, sampling, config, input_context=ctx))
    x, y = next(iter(dist))
    per_replica = strategy.experimental_local_results(x["rois"])
    assert len(per_replica) == 2
    for rois in per_replica:
        assert rois.shape == (16, 5)  # one image and its 16 RoIs per replica
        np.testing.assert_array_equal(rois[:, 0], 0)


def test_unreadable_image_is_an_error_naming_the_file(tmp_path):
    roidb = make_roidb(tmp_path, 2)
    Path(roidb[1].record.image_path).write_bytes(b"\x89PNG truncated")
    stats = target_stats(roidb, 2)
    sampling = SamplingConfig(images_per_batch=2, rois_per_batch=8)
    dataset = training_dataset(roidb, stats, sampling, PipelineConfig(scales=(60,)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="im1.png"):
        next(iter(dataset))


def test_start_batch_continues_the_same_stream(tmp_path):
    roidb = make_roidb(tmp_path, 3)  # odd count: batches straddle epochs
    stats = target_stats(roidb, 2)
    config = PipelineConfig(scales=(60,), max_size=200, seed=2)
    sampling = SamplingConfig(images_per_batch=2, rois_per_batch=16)
    full = [b for _, b in zip(range(5), training_dataset(roidb, stats, sampling, config))]
    resumed = [b for _, b in zip(range(2), training_dataset(roidb, stats, sampling, config,
                                                            start_batch=3))]
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        np.testing.assert_array_equal(xa["rois"].numpy(), xb["rois"].numpy())
        np.testing.assert_array_equal(xa["images"].numpy(), xb["images"].numpy())
        np.testing.assert_array_equal(ya["labels"].numpy(), yb["labels"].numpy())


def test_resize_keeps_the_float_image_as_the_release():
    # blob.py subtracts the means from the float image, then resizes it: the result is
    # not rounded to integers, and equals resizing first and subtracting after.
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    resized = transforms.resize(image, 1.7)
    assert resized.dtype == np.float32 and np.any(resized != np.round(resized))
    means_first = transforms.resize(image.astype(np.float32) - transforms.PIXEL_MEANS_BGR, 1.7)
    np.testing.assert_allclose(transforms.preprocess(resized, "caffe"), means_first, atol=1e-3)
