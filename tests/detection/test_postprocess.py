"""NMS and the two post-processing modes on hand-made boxes."""

import numpy as np
import pytest

from keras_frcnn.detection import PostprocessConfig, make_postprocess, nms
from keras_frcnn.detection.postprocess import (Detections, apply_set_cap, frcnn_candidates,
                                               set_cap_thresholds, soft_nms,
                                               soft_nms_candidates)


@pytest.mark.parametrize("block", [1, 256])
def test_nms_uses_plus_one_areas_and_suppresses_at_or_above_the_threshold(block):
    # A is 10x10 (area 100 with +1 areas). B = 3x10 inside A: IoU 30/100 = 0.3
    # exactly -> suppressed at threshold 0.3 (nms.pyx: ovr >= thresh). C = 4x10
    # inside A, apart from B: IoU 0.4 -> suppressed at 0.3, 0.35 and 0.4. Without the
    # +1, A would be 9x9 and B 2x9: IoU 18/81 = .22, C 27/81 = .33.
    boxes = np.array([[0, 0, 9, 9], [0, 0, 2, 9], [5, 0, 8, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.3, block=block).numpy().tolist() == [0]
    assert nms(boxes, scores, 0.35, block=block).numpy().tolist() == [0, 1]
    assert nms(boxes, scores, 0.4, block=block).numpy().tolist() == [0, 1]
    assert nms(boxes, scores, 0.45, block=block).numpy().tolist() == [0, 1, 2]


@pytest.mark.parametrize("block", [1, 256])
def test_nms_compares_the_float32_iou_with_the_threshold(block):
    # B = 7x10 inside A: IoU 70/100, which float32 rounds to 0.69999999 (0.3 rounds up
    # to 0.30000001). The release computes ovr in float32 and compares it with the
    # Python float, so at threshold 0.7 B survives, although 7/10 >= 0.7 exactly.
    boxes = np.array([[0, 0, 9, 9], [0, 0, 6, 9]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert float(np.float32(70) / np.float32(100)) < 0.7  # C compares float with double
    assert nms(boxes, scores, 0.7, block=block).numpy().tolist() == [0, 1]
    assert nms(boxes, scores, 0.69, block=block).numpy().tolist() == [0]


def greedy_nms(boxes, scores, threshold):
    """The release's loop (nms.pyx) in numpy: float32 arithmetic, a float64 comparison."""
    order, suppressed, kept = np.argsort(-scores, kind="stable"), set(), []
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    for a, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        for j in order[a + 1:]:
            w = max(np.float32(0), min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
            h = max(np.float32(0), min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
            inter = np.float32(w * h)
            if float(inter / (areas[i] + areas[j] - inter)) >= threshold:
                suppressed.add(j)
    return kept


def test_nms_matches_a_plain_greedy_loop(rng):
    # 300 random boxes, many overlaps: the vectorised fixed point equals the release's
    # loop, written here in numpy with float32 arithmetic and a float64 comparison.
    xy = rng.uniform(0, 200, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (300, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, threshold).numpy().tolist() == greedy_nms(boxes, scores,
                                                                            threshold)


@pytest.mark.parametrize("block", [1, 7, 64, 256])
def test_nms_in_blocks_is_the_greedy_loop(rng, block):
    # 200 boxes in clusters, decided 1, 7 or 64 at a time (one block at 256): a box is
    # suppressed by kept boxes of earlier blocks and by those of its own, as in the loop.
    centres = rng.uniform(0, 300, (12, 2))
    xy = (centres[rng.integers(0, 12, 200)] + rng.normal(0, 6, (200, 2))).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(20, 60, (200, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    scores[::9] = scores[0]  # ties, taken in index order
    for threshold in (0.3, 0.7):
        expected = greedy_nms(boxes, scores, threshold)
        assert nms(boxes, scores, threshold, block=block).numpy().tolist() == expected
        assert nms(boxes, scores, threshold, 5, block=block).numpy().tolist() == expected[:5]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3, block=block).numpy().tolist() == []


def test_nms_compares_a_block_with_the_boxes_before_it_not_all_with_all(monkeypatch):
    # Its memory: the IoU matrices it builds are [block, boxes ranked before] and
    # [block, block], never [n, n] (eagerly the loops run in Python, so the calls show).
    from keras_frcnn.detection import postprocess

    shapes = []
    real = postprocess._release_iou
    monkeypatch.setattr(postprocess, "_release_iou",
                        lambda a, b: shapes.append((a.shape[0], b.shape[0])) or real(a, b))
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (600, 1))
    assert nms(boxes, np.linspace(1, 0, 600, dtype=np.float32), 0.3,
               block=256).numpy().tolist() == [0]
    assert shapes == [(256, 0), (256, 256), (256, 256), (256, 256), (88, 512), (88, 88)]


@pytest.mark.parametrize("block", [1, 256])
def test_nms_keeps_score_order_and_is_greedy(block):
    # B overlaps A and C; A suppresses B, so C survives although B would suppress it.
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [10, 0, 19, 9]], np.float32)
    scores = np.array([0.5, 0.9, 0.4], np.float32)
    assert nms(boxes, scores, 0.3, block=block).numpy().tolist() == [1]
    scores = np.array([0.9, 0.5, 0.4], np.float32)
    assert nms(boxes, scores, 0.3, block=block).numpy().tolist() == [0, 2]


def test_soft_nms_decays_overlapping_scores_by_a_gaussian_of_the_plus_one_iou():
    # B overlaps A by 5 of its 10 columns: IoU 50 / 150 = 1/3 with +1 areas (4 * 9 / 126 =
    # 0.286 without). C is apart. With sigma 0.5, B keeps 0.8 * exp(-(1/3)^2 / 0.5)
    # = 0.8 * exp(-2/9) = 0.6406 and falls behind C.
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [20, 0, 29, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    keep, decayed = soft_nms(boxes, scores, 0.5)
    assert keep.numpy().tolist() == [0, 2, 1]
    np.testing.assert_allclose(decayed.numpy(), [0.9, 0.7, 0.8 * np.exp(-2 / 9)], rtol=1e-6)
    # A decayed score at or below the floor drops the box; a smaller sigma decays more.
    assert soft_nms(boxes, scores, 0.5, score_threshold=0.65)[0].numpy().tolist() == [0, 2]
    assert soft_nms(boxes, scores, 0.5, score_threshold=0.7)[0].numpy().tolist() == [0]
    _, decayed = soft_nms(boxes, scores, 0.1)
    np.testing.assert_allclose(decayed.numpy()[2], 0.8 * np.exp(-1 / 0.9), rtol=1e-6)


def test_soft_nms_keeps_a_neighbour_that_nms_deletes():
    # Two animals side by side (A, B: IoU 1/3): NMS at 0.3 deletes B, Soft-NMS keeps it
    # decayed. C (0.06) overlaps A at 0.25 and B at 0.82: NMS keeps it (B is gone), while
    # Soft-NMS decays it to 0.06 * exp(-0.0625 / 0.5) * exp(-0.669 / 0.5) = 0.014, under the
    # default mode's floor of 0.05.
    boxes, scores = _inputs(2, [[0, 0, 9, 9], [5, 0, 14, 9], [6, 0, 15, 9]],
                            [[0.1, 0.9], [0.2, 0.8], [0.94, 0.06]])
    _, s, _ = make_postprocess(2, PostprocessConfig(mode="default"))(boxes, scores)
    assert s.numpy().tolist() == pytest.approx([0.9, 0.06])
    _, s, c = make_postprocess(2, PostprocessConfig(mode="default", soft_nms_sigma=0.5))(
        boxes, scores)
    assert s.numpy() == pytest.approx([0.9, 0.8 * np.exp(-2 / 9)], rel=1e-6)
    assert c.numpy().tolist() == [1, 1]


def _inputs(num_classes, per_class_boxes, scores):
    """boxes [R, 4K] with the same box for every class."""
    boxes = np.tile(np.asarray(per_class_boxes, np.float32), (1, num_classes - 1))
    return boxes, np.asarray(scores, np.float32)


def test_default_mode_threshold_nms_per_class_and_image_cap():
    post = make_postprocess(3, PostprocessConfig(mode="default"))
    boxes, scores = _inputs(3, [[0, 0, 9, 9], [1, 0, 10, 9], [40, 40, 49, 49]],
                            [[0.0, 0.6, 0.3], [0.0, 0.5, 0.45], [0.0, 0.05, 0.051]])
    b, s, c = (t.numpy() for t in post(boxes, scores))
    # class 1: rows 0 and 1 overlap (IoU 90/110) -> row 0; row 2 scores 0.05, not > 0.05.
    # class 2: row 1 (0.45) suppresses row 0 (0.3); row 2 (0.051) passes.
    assert c.tolist() == [1, 2, 2]
    np.testing.assert_allclose(s, [0.6, 0.45, 0.051])
    np.testing.assert_array_equal(b, [[0, 0, 9, 9], [1, 0, 10, 9], [40, 40, 49, 49]])


def test_default_mode_keeps_the_100_best_per_image():
    n = 150
    grid = np.array([[20 * (i % 15), 20 * (i // 15), 20 * (i % 15) + 9, 20 * (i // 15) + 9]
                     for i in range(n)], np.float32)  # disjoint boxes
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.1, 0.9, size=(n, 2)).astype(np.float32)
    boxes, scores = _inputs(3, grid, np.concatenate([np.zeros((n, 1)), probs], axis=1))
    _, s, _ = make_postprocess(3)(boxes, scores)
    assert len(s) == 100
    np.testing.assert_allclose(np.sort(s.numpy()), np.sort(probs.ravel())[-100:])


def test_default_mode_keeps_ties_at_the_per_image_cut():
    # 120 disjoint boxes, scores 0.5 for the best 90, 0.4 for the next 30: the 100th
    # best is 0.4, and test.py keeps every score >= it, so all 120 stay.
    n = 120
    grid = np.array([[20 * (i % 15), 20 * (i // 15), 20 * (i % 15) + 9, 20 * (i // 15) + 9]
                     for i in range(n)], np.float32)
    probs = np.where(np.arange(n) < 90, 0.5, 0.4).astype(np.float32)
    boxes, scores = _inputs(2, grid, np.stack([1 - probs, probs], axis=1))
    _, s, _ = make_postprocess(2)(boxes, scores)
    assert len(s) == 120
    probs[90:] = np.linspace(0.3, 0.4, 30)  # distinct: exactly the 100 best
    boxes, scores = _inputs(2, grid, np.stack([1 - probs, probs], axis=1))
    _, s, _ = make_postprocess(2)(boxes, scores)
    assert len(s) == 100 and s.numpy().min() == pytest.approx(probs[110])


def test_frcnn_mode_top_100_per_class_before_nms_and_no_score_threshold():
    n = 150
    grid = np.array([[20 * (i % 15), 20 * (i // 15), 20 * (i % 15) + 9, 20 * (i // 15) + 9]
                     for i in range(n)], np.float32)
    scores = np.zeros((n, 3), np.float32)
    scores[:, 1] = np.linspace(0.001, 0.02, n)  # all below 0.05
    scores[:, 2] = 0.0
    scores[0, 2] = 0.01
    boxes, scores = _inputs(3, grid, scores)
    _, s, c = make_postprocess(3, PostprocessConfig(mode="frcnn"))(boxes, scores)
    c = c.numpy()
    assert np.count_nonzero(c == 1) == 100  # top 100 of class 1 (boxes are disjoint)
    np.testing.assert_allclose(np.sort(s.numpy()[c == 1]), np.sort(scores[:, 1])[-100:])
    assert np.count_nonzero(c == 2) == 100  # zeros too: no score threshold in this mode


def test_empty_input_gives_empty_output():
    b, s, c = make_postprocess(4)(np.zeros((0, 12), np.float32), np.zeros((0, 4), np.float32))
    assert b.shape == (0, 4) and s.shape == (0,) and c.shape == (0,)


def test_set_cap_drops_scores_at_or_below_the_cap_th_best():
    # factor 1, 2 images: per class keep scores > the 2nd best pre-NMS candidate score.
    dets = {"a": Detections(np.zeros((2, 4), np.float32), np.array([0.9, 0.4], np.float32),
                            np.array([1, 1], np.int32)),
            "b": Detections(np.zeros((1, 4), np.float32), np.array([0.6], np.float32),
                            np.array([1], np.int32))}
    pre = [np.array([[0, 0.4], [0, 0.9]], np.float32), np.array([[0, 0.6], [0, 0.2]], np.float32)]
    capped = apply_set_cap(dets, pre, factor=1)
    assert capped["a"].scores.tolist() == pytest.approx([0.9]) and len(capped["b"]) == 0


def test_set_cap_comes_before_soft_nms_as_the_release_filters_before_nms():
    # Image a: A = [0, 0, 9, 9] (0.9) and B = [0, 2, 9, 11] (0.8) overlap by 80 / 120 = 2/3
    # (+1 areas). Image b: three disjoint boxes, 0.7, 0.5 and 0.3. Factor 2, two images:
    # five candidates, keep those > the 4th best, 0.5. B passes; Soft-NMS (sigma 0.5) then
    # decays it to 0.8 exp(-(4/9) / 0.5) = 0.329, below 0.5, yet it stays: the threshold
    # applies to candidates, as the release thresholds before NMS. Thresholding the decayed
    # score (apply_set_cap) would drop it.
    boxes_a = np.array([[0, 0, 9, 9], [0, 2, 9, 11]], np.float32)
    scores_a = np.array([[0.1, 0.9], [0.2, 0.8]], np.float32)
    boxes_b = np.array([[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]], np.float32)
    scores_b = np.array([[0.3, 0.7], [0.5, 0.5], [0.7, 0.3]], np.float32)
    thresholds = set_cap_thresholds([scores_a, scores_b], 2, factor=2)
    assert thresholds.tolist() == [-np.inf, pytest.approx(0.5)]
    a = soft_nms_candidates(frcnn_candidates(boxes_a, scores_a), thresholds, 0.5)
    b = soft_nms_candidates(frcnn_candidates(boxes_b, scores_b), thresholds, 0.5)
    np.testing.assert_allclose(a.scores, [0.9, 0.8 * np.exp(-(4 / 9) / 0.5)], rtol=1e-6)
    np.testing.assert_array_equal(a.boxes, boxes_a)
    assert a.classes.tolist() == [1, 1]
    assert b.scores.tolist() == pytest.approx([0.7]) and b.boxes.tolist() == [[0, 0, 9, 9]]
    dets = {"a": a, "b": b}
    assert len(apply_set_cap(dets, [scores_a, scores_b], factor=2)["a"]) == 1


def test_soft_nms_candidates_without_a_cap_equal_mode_frcnn():
    # 80 overlapping random boxes per class, more than max_per_class.
    rng = np.random.default_rng(3)
    corner = rng.uniform(0, 40, (80, 2, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (80, 2, 2))], axis=2)
    boxes = boxes.reshape(80, 8).astype(np.float32)
    scores = rng.dirichlet(np.ones(3), 80).astype(np.float32)
    config = PostprocessConfig(mode="frcnn", soft_nms_sigma=0.3, max_per_class=50)
    b, s, c = make_postprocess(3, config)(boxes, scores)
    no_cap = np.full(3, -np.inf)
    dets = soft_nms_candidates(frcnn_candidates(boxes, scores, 50), no_cap, 0.3)
    np.testing.assert_array_equal(dets.classes, c.numpy())
    np.testing.assert_allclose(dets.scores, s.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(dets.boxes, b.numpy())


def test_frcnn_candidates_take_the_top_rows_per_class_ties_lower_row_first():
    boxes = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    scores = np.array([[0, 0.2, 0.5], [0, 0.6, 0.5], [0, 0.2, 0.1], [0, 0.9, 0.0]], np.float32)
    (b1, s1), (b2, s2) = frcnn_candidates(boxes, scores, max_per_class=3)
    assert s1.tolist() == pytest.approx([0.9, 0.6, 0.2]) and b1[:, 0].tolist() == [24, 8, 0]
    assert s2.tolist() == pytest.approx([0.5, 0.5, 0.1]) and b2[:, 0].tolist() == [4, 12, 20]


def test_bad_config_is_an_error():
    with pytest.raises(ValueError, match="mode must be one of"):
        PostprocessConfig(mode="soft")
    with pytest.raises(ValueError, match="soft_nms_sigma must be >= 0"):
        PostprocessConfig(soft_nms_sigma=-0.5)
