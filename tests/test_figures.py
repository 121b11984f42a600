"""benchmarks/figures.py: every figure drawn from a tiny trained workdir, and the RoI
pooling figure's bin arithmetic against the op."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_frcnn import roi_pool, training
from keras_frcnn.ops.roi_pool_composite import roi_pool_with_argmax
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import figures  # noqa: E402


def test_bins_and_argmax_match_roi_pool(rng):
    """Integer-valued features (many ties) and corners on .5 and .49999997 boundaries:
    the figure's bins give roi_pool's output and the composite op's argmax, bit for bit."""
    height, width, channels, pooled, scale = 9, 13, 3, (3, 4), 0.25
    features = rng.integers(0, 4, (1, height, width, channels)).astype(np.float32)
    corners = rng.uniform(-8, 60, (40, 4)).astype(np.float32)
    corners[:8] = np.round(corners[:8]) + np.float32(0.5)  # x * 0.25 = k.125 / k.625 / ...
    corners[8:12] = [[2.0, 6.0, 1.99999988, 10.0]] * 4  # x * s = 0.49999997: rounds down
    corners = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                              np.maximum(corners[:, :2], corners[:, 2:])], axis=1)
    corners[-4:] = [[0, 0, 200, 200], [56, 40, 70, 60], [0, 0, 0, 0], [40, 3, 41, 3]]
    rois = np.concatenate([np.zeros((len(corners), 1), np.float32), corners], axis=1)
    expected = roi_pool(features, rois, pooled, scale).numpy()
    _, argmax, _ = roi_pool_with_argmax(tf.constant(features), tf.constant(rois), *pooled, scale)
    argmax = argmax.numpy()
    for r, roi in enumerate(rois):
        rows_lo, rows_hi, cols_lo, cols_hi, _ = figures.roi_bins(roi[1:], pooled, scale,
                                                                  height, width)
        for c in range(channels):
            values, cells = figures.bin_argmax(features[0, ..., c], rows_lo, rows_hi,
                                               cols_lo, cols_hi)
            np.testing.assert_array_equal(values, expected[r, ..., c], err_msg=f"RoI {roi}")
            np.testing.assert_array_equal(cells, argmax[r, ..., c], err_msg=f"RoI {roi}")


def test_c_round_rounds_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 2.4999998, -2.5], np.float32)
    assert figures.c_round(x).tolist() == [1, 2, 3, -1, -2, 0, 2, -3]


def test_unknown_figure_names_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        figures.main(["--workdir", str(tmp_path), "--config", "configs/demo.py",
                      "--only", "roi_pooling,pie_chart"])
    with pytest.raises(ValueError, match="pie_chart"):
        figures.draw_all(None, tmp_path, tmp_path, only=["pie_chart"])


def test_every_figure_from_a_tiny_trained_workdir(tmp_path):
    config = tiny_config(tmp_path, steps=3)
    config.test.scales, config.test.max_size = (72,), 128  # the training scale, not 600
    config.test.picture_threshold = 0.0  # an untrained model's scores: draw them all
    workdir = tmp_path / "work"
    training.train(config, workdir, progress=False)

    output_dir = tmp_path / "figures"
    results = figures.draw_all(config, workdir, output_dir, svd_ranks="fc6:16,fc7:16",
                               max_images=2, images=2, split="train")  # the data's one split

    assert list(results) == list(figures.FIGURES)
    for name, facts in results.items():
        path = Path(facts["path"])
        assert path == output_dir / f"{name}.png"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 400 <= width <= 900 and 150 <= height <= 1600, (name, image.size)
            # Not a blank canvas: something was drawn.
            assert np.asarray(image.convert("L")).std() > 5, name

    roi = results["roi_pooling"]
    assert roi["argmax_matches_roi_pool"] and roi["bins_checked"] == 7 * 7
    assert results["minibatch"]["images"] == config.sampling.images_per_batch
    assert all(fg > 0 and bg > 0 for fg, bg in results["minibatch"]["fg_bg_per_image"])
    assert results["training_curves"]["steps"] == 3  # log_every = 1
    (none, params, map_, seconds), (ranks, fewer, *_) = results["svd"]["rows"]
    assert none == "none" and ranks == "fc6:16,fc7:16" and fewer < params
    assert 0 <= map_ <= 100 and seconds > 0
    assert results["box_regression"]["images"] == 2

    # An empty --svd_ranks skips svd.png.
    again = figures.draw_all(config, workdir, tmp_path / "again", only=["svd"], svd_ranks="")
    assert again == {} and not (tmp_path / "again" / "svd.png").exists()
