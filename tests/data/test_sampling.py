"""RoI database, target statistics and hierarchical sampling, on hand-made boxes."""

import numpy as np
import pytest

from keras_frcnn.data.records import DatasetError, Dataset, ImageRecord
from keras_frcnn.data.roidb import (TargetStats, build_entry, build_roidb, crop_entry,
                                   target_stats)
from keras_frcnn.data.sampling import SamplingConfig, sample_rois, trainable_entries

GT = [[0, 0, 9, 9]]  # 10 x 10 = 100 pixels, class 1
# Proposals with IoUs against GT worked out by hand (+1 areas):
PROPOSALS = [
    [0, 0, 9, 4],   # 50 / 100 = 0.5 exactly   -> foreground (>= 0.5)
    [0, 0, 9, 3],   # 40 / 100 = 0.4           -> background
    [0, 0, 9, 0],   # 10 / 100 = 0.1 exactly   -> background (>= 0.1)
    [0, 0, 8, 0],   #  9 / 100 = 0.09          -> neither
    [50, 50, 60, 60],  # 0                     -> neither
]


def record(boxes=GT, classes=(1,), difficult=None, width=100, height=100):
    return ImageRecord.create("im", "im.jpg", width, height, boxes, classes, difficult)


def unit_stats(num_classes=3):
    return TargetStats(np.zeros((num_classes, 4)), np.ones((num_classes, 4)))


def test_entry_overlaps_classes_and_targets():
    entry = build_entry(record(), PROPOSALS)
    np.testing.assert_allclose(entry.max_overlaps, [1.0, 0.5, 0.4, 0.1, 0.09, 0.0])
    np.testing.assert_array_equal(entry.gt_classes, [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(entry.max_classes, [1, 1, 1, 1, 1, 0])
    # Targets only where IoU >= 0.5: the GT itself (zeros) and the 0.5 box:
    # The release's coder widths are x2 - x1 (+ EPS): P = (0, 0, 9, 4): w 9, h 4, centre
    # (4.5, 2); G = (0, 0, 9, 9): h 9, centre (4.5, 4.5): ty = 2.5 / 4, th = log(9 / 4).
    np.testing.assert_allclose(entry.targets[1], [0, 0.625, 0, np.log(9 / 4)], atol=1e-6)
    np.testing.assert_array_equal(entry.targets[[0, 2, 3, 4, 5]], 0)


def test_difficult_gt_only_with_use_difficult():
    rec = record(boxes=[[0, 0, 9, 9], [20, 20, 29, 29]], classes=(1, 2), difficult=(False, True))
    assert build_entry(rec, PROPOSALS).num_gt == 2  # the release trains on difficult ones
    assert build_entry(rec, PROPOSALS, use_difficult=False).num_gt == 1


def test_sampling_thresholds_counts_and_padding():
    entry = build_entry(record(), PROPOSALS)
    config = SamplingConfig(images_per_batch=1, rois_per_batch=8, fg_fraction=0.25)
    sample = sample_rois(entry, np.random.default_rng(0), config, unit_stats())
    # fg candidates: GT (IoU 1) and the 0.5 box; round(0.25 * 8) = 2 -> both.
    # bg candidates: IoU 0.4 and exactly 0.1; the 0.09 and 0 boxes never.
    assert (sample.num_fg, sample.num_bg) == (2, 2)
    assert {tuple(r) for r in sample.rois[:2]} == {(0, 0, 9, 9), (0, 0, 9, 4)}
    assert {tuple(r) for r in sample.rois[2:4]} == {(0, 0, 9, 3), (0, 0, 9, 0)}
    np.testing.assert_array_equal(sample.labels, [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sample.target_weights, [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sample.sample_weights, [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(sample.targets[2:], 0)
    np.testing.assert_array_equal(sample.rois[4:], 0)  # padding rows


def test_sampling_fg_fraction_and_no_replacement(rng):
    # 40 foreground and 300 background candidates: 16 + 48 of 64, all distinct.
    xs = rng.uniform(0, 2, size=40)
    fg = np.stack([xs, xs, xs + 9, xs + 9], 1)
    bg = np.stack([np.full(300, 5.0), np.zeros(300), np.full(300, 14.0), np.linspace(5, 9, 300)], 1)
    entry = build_entry(record(width=40, height=40), np.concatenate([fg, bg]))
    config = SamplingConfig()
    sample = sample_rois(entry, np.random.default_rng(1), config, unit_stats())
    assert (sample.num_fg, sample.num_bg) == (16, 48)
    assert sample.sample_weights.sum() == 64 and sample.target_weights.sum() == 16
    assert len(np.unique(sample.rois, axis=0)) == 64  # every candidate at most once
    again = sample_rois(entry, np.random.default_rng(1), config, unit_stats())
    np.testing.assert_array_equal(sample.rois, again.rois)  # same seed, same draw
    other = sample_rois(entry, np.random.default_rng(2), config, unit_stats())
    assert not np.array_equal(sample.rois, other.rois)


def test_sampling_takes_a_pool_of_exactly_the_wanted_size_whole():
    # 16 foreground candidates (the GT and 15 boxes shifted by 0.1 .. 1.5 pixels, IoU 0.98 ..
    # 0.74) and 48 background ones (IoU 0.23 .. 0.33): without replacement the 16 + 48 rows
    # are every candidate exactly once; a draw with replacement repeats some (p ~ 1 - 1e-6).
    shifts = 0.1 * np.arange(1, 16)
    fg = np.stack([shifts, np.zeros(15), 9 + shifts, np.full(15, 9.0)], 1)
    bg = np.stack([np.full(48, 5.0), np.zeros(48), np.full(48, 14.0), np.linspace(5, 9, 48)], 1)
    entry = build_entry(record(width=40, height=40), np.concatenate([fg, bg]))
    assert np.count_nonzero(entry.max_overlaps >= 0.5) == 16
    assert np.count_nonzero((entry.max_overlaps >= 0.1) & (entry.max_overlaps < 0.5)) == 48
    sample = sample_rois(entry, np.random.default_rng(0), SamplingConfig(), unit_stats())
    assert (sample.num_fg, sample.num_bg) == (16, 48)
    candidates = entry.boxes.astype(np.float32)
    np.testing.assert_array_equal(np.unique(sample.rois[:16], axis=0),
                                  np.unique(candidates[entry.max_overlaps >= 0.5], axis=0))
    np.testing.assert_array_equal(np.unique(sample.rois[16:], axis=0),
                                  np.unique(candidates[entry.max_overlaps < 0.5], axis=0))


def test_crop_entry_hand_worked():
    # GT A (centre 24.5, 29.5) lies in the crop x 20..69, y 0..59; GT B (centre 84.5) does not.
    rec = record(boxes=[[10, 10, 39, 49], [70, 5, 99, 30]], classes=(1, 2), width=100,
                 height=80)
    proposals = [[15, 10, 44, 49],  # -> (0, 10, 24, 49): 800 / 1000 = IoU 0.8 with A
                 [69, 0, 90, 20],   # -> (49, 0, 49, 20): 1 pixel wide, dropped
                 [80, 60, 95, 79],  # outside the crop, dropped
                 [30, 50, 60, 70]]  # -> (10, 50, 40, 59): IoU 0
    cropped = crop_entry(build_entry(rec, proposals), (20, 0, 69, 59))
    assert (cropped.record.width, cropped.record.height) == (50, 60)
    assert cropped.record.image_path == rec.image_path
    np.testing.assert_array_equal(cropped.record.boxes, [[0, 10, 19, 49]])
    np.testing.assert_array_equal(cropped.boxes, [[0, 10, 19, 49], [0, 10, 24, 49],
                                                  [10, 50, 40, 59]])
    np.testing.assert_array_equal(cropped.gt_classes, [1, 0, 0])
    np.testing.assert_allclose(cropped.max_overlaps, [1.0, 0.8, 0.0])
    np.testing.assert_array_equal(cropped.max_classes, [1, 1, 0])
    # P (0, 10, 24, 49): coder w 24, centre x 12; G (0, 10, 19, 49): w 19, centre x 9.5.
    np.testing.assert_allclose(cropped.targets[1], [-2.5 / 24, 0, np.log(19 / 24), 0],
                               atol=1e-6)


def test_crop_entry_keeps_difficult_gt_taken_in():
    rec = record(boxes=[[0, 0, 9, 9], [20, 20, 29, 29]], classes=(1, 2), difficult=(False, True))
    left_out = build_entry(rec, PROPOSALS, use_difficult=False)
    assert crop_entry(left_out, (0, 0, 49, 49)).num_gt == 1
    kept = crop_entry(build_entry(rec, PROPOSALS), (0, 0, 49, 49))  # default: trained on
    assert kept.num_gt == 2
    np.testing.assert_array_equal(kept.gt_classes[:2], [1, 2])


def test_flipped_sample_mirrors_rois_and_negates_tx():
    entry = build_entry(record(boxes=[[10, 0, 19, 9]], width=100), [[11, 0, 20, 9]])
    config = SamplingConfig(images_per_batch=1, rois_per_batch=2, fg_fraction=1.0)
    plain = sample_rois(entry, np.random.default_rng(0), config, unit_stats())
    flipped = sample_rois(entry, np.random.default_rng(0), config, unit_stats(), flipped=True)
    order = np.argsort(plain.rois[:, 0])
    np.testing.assert_array_equal(plain.rois[order], [[10, 0, 19, 9], [11, 0, 20, 9]])
    # x1' = W - x2 - 1 = 100 - 20 - 1 = 79 for the shifted box; its tx -1/9 (coder width
    # 9, centres 15.5 and 14.5) becomes +1/9.
    shifted = np.flatnonzero(plain.rois[:, 0] == 11)[0]
    np.testing.assert_array_equal(flipped.rois[shifted], [79, 0, 88, 9])
    np.testing.assert_allclose(plain.targets[shifted], [-1 / 9, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(flipped.targets[shifted], [1 / 9, 0, 0, 0], atol=1e-6)


def test_target_statistics_hand_worked():
    # Class 1 rows with IoU >= 0.5: the GT (targets 0) and a box whose tx is -1/9
    # (P = (11, 0, 20, 9), G = (10, 0, 19, 9), coder width 9): mean tx -1/18, std 1/18;
    # ty, tw, th are all 0: std 0 -> guarded to 1. Class 2 has no rows: mean 0, std 1.
    rec = record(boxes=[[10, 0, 19, 9]], width=100)
    roidb = [build_entry(rec, [[11, 0, 20, 9]])]
    stats = target_stats(roidb, num_classes=3, with_flipped=False)
    np.testing.assert_allclose(stats.means[1], [-1 / 18, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(stats.stds[1], [1 / 18, 1, 1, 1], atol=1e-9)
    np.testing.assert_array_equal(stats.means[2], 0)
    np.testing.assert_array_equal(stats.stds[2], 1)
    # With the mirrored copies (the release's flipped roidb): mean tx 0, std sqrt(E[tx^2]).
    flipped = target_stats(roidb, num_classes=3)
    np.testing.assert_allclose(flipped.means[1], [0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(flipped.stds[1, 0], np.sqrt(1 / 81 / 2), atol=1e-9)
    fixed = target_stats(roidb, 3, mode="fixed")
    np.testing.assert_array_equal(fixed.stds[1], [0.1, 0.1, 0.2, 0.2])
    assert TargetStats.from_dict(stats.to_dict()).stds.tolist() == stats.stds.tolist()
    normalised = stats.normalize(np.array([[-1 / 9, 0, 0, 0]]), np.array([1]))
    np.testing.assert_allclose(normalised, [[-1, 0, 0, 0]], atol=1e-6)


def test_empty_proposal_set_is_an_error_naming_the_image():
    dataset = Dataset("d", ("a",), (record(),))
    with pytest.raises(DatasetError, match="im.jpg: no proposals"):
        build_roidb(dataset, {"im": np.zeros((0, 4))})
    with pytest.raises(DatasetError, match="no usable image"):
        build_roidb(dataset, {}, on_error="skip")


def test_sampling_config_validation():
    with pytest.raises(ValueError, match="multiple of images_per_batch"):
        SamplingConfig(images_per_batch=3, rois_per_batch=128)
    with pytest.raises(ValueError, match="bg_threshold_lo"):
        SamplingConfig(bg_threshold_lo=0.6)


def test_far_background_share_is_drawn_below_bg_threshold_lo():
    # 4 foreground, 20 near-miss (IoU 0.4) and 30 far (IoU 0) candidates; 16 RoIs per image,
    # 4 foreground, 12 background: half of them (6) far, half near.
    gt = [[0, 0, 9, 9]]
    fg = [[0, 0, 9, 9 - k] for k in range(1, 4)]  # IoU 0.9, 0.8, 0.7 (+1 areas)
    near = [[0, 0, 9, 3]] * 20  # IoU 0.4
    far = [[50 + k, 50, 60 + k, 60] for k in range(30)]  # IoU 0
    entry = build_entry(record(boxes=gt), fg + near + far)
    config = SamplingConfig(images_per_batch=1, rois_per_batch=16, far_bg_fraction=0.5)
    sample = sample_rois(entry, np.random.default_rng(0), config, unit_stats())
    assert (sample.num_fg, sample.num_bg) == (4, 12)
    bg_rois = sample.rois[4:16]
    assert sum(r[0] >= 50 for r in bg_rois) == 6 and sum(r[3] == 3 for r in bg_rois) == 6
    np.testing.assert_array_equal(sample.labels[4:], 0)
    np.testing.assert_array_equal(sample.sample_weights, 1)
    # Default (the paper): no far row at all; the 12 background rows are the near-miss ones.
    paper = sample_rois(entry, np.random.default_rng(0), SamplingConfig(
        images_per_batch=1, rois_per_batch=16), unit_stats())
    assert all(r[3] == 3 for r in paper.rois[4:16])
    # A short near pool is topped up from the far one, and the other way round.
    short_near = build_entry(record(boxes=gt), fg + near[:2] + far)
    sample = sample_rois(short_near, np.random.default_rng(0), config, unit_stats())
    assert sample.num_bg == 12 and sum(r[0] >= 50 for r in sample.rois[4:16]) == 10
    short_far = build_entry(record(boxes=gt), fg + near + far[:1])
    sample = sample_rois(short_far, np.random.default_rng(0), config, unit_stats())
    assert sample.num_bg == 12 and sum(r[0] >= 50 for r in sample.rois[4:16]) == 1


def test_far_background_makes_images_without_objects_trainable():
    empty = build_entry(record(boxes=np.zeros((0, 4)), classes=()), [[50, 50, 60, 60]] * 3)
    with pytest.raises(DatasetError, match="far_bg_fraction"):
        trainable_entries([empty], SamplingConfig())
    assert len(trainable_entries([empty], SamplingConfig(far_bg_fraction=0.25))) == 1
    with pytest.raises(ValueError, match="far_bg_fraction"):
        SamplingConfig(far_bg_fraction=1.5)
