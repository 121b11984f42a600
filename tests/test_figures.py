"""benchmarks/figures.py: every figure drawn from a tiny trained workdir; the RoI pooling
figure's bins, channel choice and eq. 4 against the op; the IoU numbers of the box
regression figure on hand-made boxes; texts the canvas would cut."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_frcnn import roi_pool, training
from keras_frcnn.boxes import iou_matrix
from keras_frcnn.ops.roi_pool import IMPLEMENTATIONS
from keras_frcnn.ops.roi_pool_composite import roi_pool_with_argmax
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import figure_box_regression as box_figure  # noqa: E402
import figure_common  # noqa: E402
import figure_roi_pooling as roi_figure  # noqa: E402
import figures  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402


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
        rows_lo, rows_hi, cols_lo, cols_hi, _ = roi_figure.roi_bins(roi[1:], pooled, scale,
                                                                     height, width)
        for c in range(channels):
            values, cells = roi_figure.bin_argmax(features[0, ..., c], rows_lo, rows_hi,
                                                  cols_lo, cols_hi)
            np.testing.assert_array_equal(values, expected[r, ..., c], err_msg=f"RoI {roi}")
            np.testing.assert_array_equal(cells, argmax[r, ..., c], err_msg=f"RoI {roi}")


def test_c_round_rounds_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 2.4999998, -2.5], np.float32)
    assert roi_figure.c_round(x).tolist() == [1, 2, 3, -1, -2, 0, 2, -3]


def test_object_channel_is_the_largest_mean_inside_minus_outside():
    """Channel 0 is brightest everywhere, channel 3 has the highest single cell inside:
    the rule picks channel 1, bright inside the window (mean 2) and dark outside."""
    features = np.zeros((6, 8, 4), np.float32)
    features[..., 0] = 5
    features[1:4, 2:5, 1] = 2  # the window below: cells x 2..4, y 1..3
    features[..., 2] = 3
    features[1:4, 2:5, 2] = 0
    features[2, 3, 3] = 9  # mean inside 1, outside 0
    channel, contrast = roi_figure.object_channel(features, (2, 1, 4, 3))
    assert channel == 1
    np.testing.assert_allclose(contrast, [0, 2, -3, 1])
    # A window wider than the map is cut to it; one covering it all compares with 0.
    assert roi_figure.object_channel(features, (-3, -3, 20, 20))[1].tolist() == pytest.approx(
        features.mean(axis=(0, 1)).tolist())
    with pytest.raises(ValueError, match="outside the 6x8 feature map"):
        roi_figure.object_channel(features, (9, 0, 12, 3))


def test_route_gradient_sums_over_bins_and_rois():
    argmax = np.array([[[0, 0], [5, -1]], [[5, 2], [2, 2]]])  # two RoIs, 2x2 bins, a 2x3 map
    upstream = np.array([[[1, 2], [4, 7]], [[10, 20], [40, 80]]])
    np.testing.assert_array_equal(roi_figure.route_gradient((2, 3), argmax, upstream),
                                  [[3, 0, 140], [0, 0, 14]])  # the empty bin routes nothing
    assert roi_figure.cell_sharing(argmax[0]) == {1: 1, 2: 1}
    assert roi_figure.cell_sharing(argmax[1]) == {1: 1, 3: 1}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_cell_shared_by_bins_and_rois_receives_the_sum(rng, implementation):
    """RoI A (0, 0, 4, 4) at scale 1 has 2x2 bins of rows and columns [0, 3) and [2, 5):
    cell (2, 2) lies in all four and holds the map's maximum. RoI B (2, 2, 5, 5) has bins
    [2, 4) and [4, 6): the cell is the maximum of its bin (0, 0). With dL/dy 1 on A's
    bins and 10 on B's, the op's gradient there is 4 x 1 + 1 x 10 = 14."""
    features = rng.uniform(0, 1, (1, 6, 6, 1)).astype(np.float32)
    features[0, 2, 2, 0] = 9
    rois = np.array([[0, 0, 0, 4, 4], [0, 2, 2, 5, 5]], np.float32)
    upstream = np.broadcast_to(np.reshape([1.0, 10.0], (2, 1, 1, 1)), (2, 2, 2, 1))
    gradient = roi_figure.op_gradient(features, rois, upstream, (2, 2), 1.0, implementation)
    assert gradient[0, 2, 2, 0] == 14
    assert gradient.sum() == 4 * 1 + 4 * 10  # every bin routes its dL/dy somewhere
    pooled = roi_pool(features, rois, (2, 2), 1.0, implementation).numpy()
    argmax = roi_figure.checked_argmax(features[0], rois, pooled, gradient[0], upstream,
                                       (2, 2), 1.0)
    assert roi_figure.cell_sharing(argmax[0, ..., 0]) == {4: 1}
    np.testing.assert_array_equal(
        gradient[0, ..., 0], roi_figure.route_gradient((6, 6), argmax[..., 0], upstream[..., 0]))


def test_checked_argmax_is_the_ops_and_refuses_another_gradient(rng):
    height, width, channels, pooled, scale = 9, 13, 3, (3, 4), 0.25
    features = rng.integers(0, 4, (1, height, width, channels)).astype(np.float32)  # ties
    corners = np.sort(rng.uniform(-8, 60, (6, 2, 2)), axis=1).reshape(6, 4)[:, [0, 2, 1, 3]]
    rois = np.concatenate([np.zeros((6, 1)), corners], axis=1).astype(np.float32)
    upstream = rng.integers(1, 5, (6, *pooled, channels)).astype(np.float32)
    output = roi_pool(features, rois, pooled, scale).numpy()
    gradient = roi_figure.op_gradient(features, rois, upstream, pooled, scale)[0]
    argmax = roi_figure.checked_argmax(features[0], rois, output, gradient, upstream, pooled,
                                       scale)
    _, expected, _ = roi_pool_with_argmax(tf.constant(features), tf.constant(rois), *pooled,
                                          scale)
    np.testing.assert_array_equal(argmax, expected.numpy())
    wrong = gradient.copy()
    wrong[4, 6, 1] += 1
    with pytest.raises(AssertionError, match="channel 1: roi_pool's gradient is not eq. 4"):
        roi_figure.checked_argmax(features[0], rois, output, wrong, upstream, pooled, scale)


def test_partner_shares_the_fewest_argmax_cells():
    """Values rise in row-major order, so a bin's argmax is its bottom-right cell. The
    first RoI (0, 0, 3, 3) with 2x2 bins has argmax cells (1, 1), (1, 3), (3, 1), (3, 3)."""
    channel_map = np.arange(64, dtype=np.float32).reshape(8, 8)
    rois = np.array([[0, 0, 0, 3, 3],
                     [0, 1, 0, 3, 3],  # cells (1, 2), (1, 3), (3, 2), (3, 3): 2 shared
                     [0, 1, 1, 3, 3],  # (2, 2), (2, 3), (3, 2), (3, 3): 1 shared, IoU 0.56
                     [0, 0, 0, 3, 5],  # (1, 2), (1, 5), (3, 2), (3, 5): none shared
                     [0, 0, 0, 3, 3],  # the same cells as the first
                     [0, 2, 2, 3, 3]], np.float32)  # shares (3, 3), IoU 0.25 < 0.3
    assert roi_figure.pick_partner(rois, 0, channel_map, (2, 2), 1.0) == 2
    assert roi_figure.pick_partner(rois[[0, 3, 4, 5]], 0, channel_map, (2, 2), 1.0) is None


def test_tiles_and_sharing_text():
    np.testing.assert_array_equal(
        roi_figure.tile_origins(np.array([0, 2, 5]), np.array([3, 6, 8]), 0.5), [0, 3.5, 8])
    assert roi_figure.sharing_text({1: 37, 2: 4, 4: 1}) == (
        "4 cells are the max of 2 bins, 1 of 4")
    assert roi_figure.sharing_text({1: 1, 3: 1}) == "1 cell is the max of 3 bins"
    assert roi_figure.sharing_text({1: 49}) == "no cell is the max of two bins"


def test_paired_iou_hand_worked_and_as_iou_matrix(rng):
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9]])
    other = np.array([[5, 0, 14, 9], [0, 0, 9, 9], [10, 0, 19, 9]])
    np.testing.assert_allclose(box_figure.paired_iou(boxes, other), [50 / 150, 1, 0])
    a = np.sort(rng.uniform(0, 50, (20, 2, 2)), axis=1).reshape(20, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 50, (20, 2, 2)), axis=1).reshape(20, 4)[:, [0, 2, 1, 3]]
    np.testing.assert_allclose(box_figure.paired_iou(a, b), np.diag(iou_matrix(a, b)))


def test_regression_ious_use_the_ground_truths_class():
    gt_boxes = np.array([[0, 0, 9, 9], [20, 20, 29, 29]], np.float32)
    gt_classes = np.array([2, 1])
    proposals = np.array([[0, 0, 9, 14],  # IoU 100 / 150 with box 0
                          [0, 0, 19, 19],  # IoU 0.25 with box 0: not matched
                          [20, 20, 29, 34]], np.float32)  # IoU 100 / 150 with box 1
    boxes = np.array([[0, 0, 4, 4, 0, 0, 9, 9],  # class 1 | class 2 (box 0's class)
                      [0, 0, 9, 9, 0, 0, 9, 9],
                      [20, 20, 29, 24, 20, 20, 29, 29]], np.float64)  # box 1's class is 1
    index, gt, before, after = box_figure.regression_ious(proposals, boxes, gt_boxes,
                                                          gt_classes)
    assert index.tolist() == [0, 2] and gt.tolist() == [0, 1]
    np.testing.assert_allclose(before, [2 / 3, 2 / 3])
    np.testing.assert_allclose(after, [1.0, 0.5])  # 50 of box 1's 100 pixels
    assert [len(v) for v in box_figure.regression_ious(proposals, boxes, gt_boxes[:0],
                                                       gt_classes[:0])] == [0] * 4


def test_mean_iou_gain_and_examples():
    gain = box_figure.iou_gain([0.5, 0.6, 0.7], [0.9, 0.6, 0.65])
    assert gain["proposals"] == 3 and gain["improved"] == pytest.approx(1 / 3)
    assert gain["mean_before"] == pytest.approx(0.6)
    assert gain["mean_after"] == pytest.approx(2.15 / 3)
    assert gain["mean_gain"] == pytest.approx(0.35 / 3)
    with pytest.raises(ValueError, match="no proposal overlaps"):
        box_figure.iou_gain([], [])
    rows = [("a", None, None, None, None, np.array([0.5, 0.6]), np.array([0.7, 0.95])),
            ("b", None, None, None, None, np.array([]), np.array([])),
            ("c", None, None, None, None, np.array([0.5]), np.array([0.9]))]
    picked = box_figure.pick_examples(rows, 2)
    assert [(row[0], k) for row, k in picked] == [("c", 0), ("a", 1)]


def test_texts_beyond_the_canvas_are_refused(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.set_title("fits")
    fig.tight_layout()
    assert figure_common.clipped_texts(fig) == []
    fig.suptitle("a title much wider than a four-inch figure can hold on one line of text")
    assert figure_common.clipped_texts(fig) == [fig.texts[0].get_text()]
    with pytest.raises(ValueError, match="cut by the edge"):
        figure_common.save(fig, tmp_path / "cut.png")
    assert not (tmp_path / "cut.png").exists()


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
    assert roi["argmax_matches_roi_pool"] and roi["gradient_matches_eq4"]
    assert roi["bins_checked"] == 2 * 7 * 7 * 128  # two RoIs, every channel of "small"
    first, second = roi["framed_bins"]  # a cell that both RoIs route to, eq. 4's sum
    assert first >= 1 and second >= 1 and roi["framed_gradient"] == first + 10 * second
    assert results["minibatch"]["images"] == config.sampling.images_per_batch
    assert all(fg > 0 and bg > 0 for fg, bg in results["minibatch"]["fg_bg_per_image"])
    assert results["training_curves"]["steps"] == 3  # log_every = 1
    (none, params, map_, seconds), (ranks, fewer, *_) = results["svd"]["rows"]
    assert none == "none" and ranks == "fc6:16,fc7:16" and fewer < params
    assert 0 <= map_ <= 100 and seconds > 0
    box = results["box_regression"]
    assert box["images"] == 2 and 1 <= len(box["examples"]) <= 2 and box["proposals"] > 0
    assert 0.5 <= box["mean_before"] <= 1 and 0 <= box["mean_after"] <= 1
    assert box["mean_gain"] == pytest.approx(box["mean_after"] - box["mean_before"])
    assert all(e["iou_before"] >= 0.5 for e in box["examples"])

    # An empty --svd_ranks skips svd.png.
    again = figures.draw_all(config, workdir, tmp_path / "again", only=["svd"], svd_ranks="")
    assert again == {} and not (tmp_path / "again" / "svd.png").exists()
