"""VOC AP against hand-worked vectors and a published answer."""

import numpy as np
import pytest

from keras_frcnn.evaluation import ap_from_curve, match_detections, voc_ap

EMPTY = (np.zeros((0, 4)), np.zeros(0, bool))


def gt(*boxes, difficult=None):
    boxes = np.array(boxes, np.float64).reshape(-1, 4)
    return boxes, np.zeros(len(boxes), bool) if difficult is None else np.array(difficult)


@pytest.mark.parametrize("use_07", [False, True])
def test_one_perfect_detection_has_ap_one(use_07):
    ground_truth = {"a": gt((10, 10, 49, 39)), "b": EMPTY}
    assert voc_ap([("a", 0.9, (10, 10, 49, 39))], ground_truth, use_07_metric=use_07) == 1.0


def test_tp_then_fp_with_a_missed_box():
    # npos = 2; ranked: TP (recall .5, precision 1), FP (recall .5, precision .5).
    # 11-point: precision 1 at t = 0, .1, ..., .5 (6 points), 0 above -> 6/11.
    # Area: recall 0 -> .5 at precision 1, nothing after -> 0.5.
    ground_truth = {"a": gt((0, 0, 9, 9)), "b": gt((20, 20, 29, 29))}
    detections = [("a", 0.9, (0, 0, 9, 9)), ("b", 0.8, (50, 50, 59, 59))]
    assert voc_ap(detections, ground_truth, use_07_metric=True) == pytest.approx(6 / 11)
    assert voc_ap(detections, ground_truth) == pytest.approx(0.5)


def test_iou_exactly_at_threshold():
    # GT 10x10 (area 100, +1 convention); detection its top half, 10x5: IoU = 50/100 = 0.5.
    ground_truth = {"a": gt((0, 0, 9, 9))}
    detections = [("a", 0.9, (0, 0, 9, 4))]
    assert voc_ap(detections, ground_truth) == 0.0  # > 0.5 needed (Python evaluator)
    assert voc_ap(detections, ground_truth, devkit_ge=True) == 1.0  # MATLAB devkit >=


def test_detection_on_a_difficult_box_is_ignored_and_the_box_not_counted():
    ground_truth = {"a": gt((0, 0, 9, 9), (30, 30, 49, 49), difficult=[True, False])}
    detections = [("a", 0.95, (0, 0, 9, 9)), ("a", 0.5, (30, 30, 49, 49))]
    curve = match_detections(detections, ground_truth)
    assert curve.num_positives == 1
    assert curve.tp.tolist() == [False, True] and curve.fp.tolist() == [False, False]
    assert voc_ap(detections, ground_truth) == 1.0


def test_duplicate_is_false_even_when_another_box_overlaps_it():
    # Boxes A (0..9) and B (2..11) overlap; both detections match A best (IoU 1),
    # the second is a duplicate and false although its IoU with B is 80/120 > 0.5.
    ground_truth = {"a": gt((0, 0, 9, 9), (2, 0, 11, 9))}
    detections = [("a", 0.9, (0, 0, 9, 9)), ("a", 0.8, (0, 0, 9, 9))]
    curve = match_detections(detections, ground_truth)
    assert curve.tp.tolist() == [True, False] and curve.fp.tolist() == [False, True]
    assert voc_ap(detections, ground_truth) == pytest.approx(0.5)


def test_score_order_decides_not_input_order():
    ground_truth = {"a": gt((0, 0, 9, 9))}
    detections = [("a", 0.1, (50, 50, 59, 59)), ("a", 0.9, (0, 0, 9, 9))]
    assert voc_ap(detections, ground_truth) == 1.0


def test_no_detections_give_zero_and_no_positives_give_nan():
    ground_truth = {"a": gt((0, 0, 9, 9)), "b": EMPTY}
    assert voc_ap([], ground_truth) == 0.0
    assert np.isnan(voc_ap([("b", 0.5, (0, 0, 9, 9))], {"b": EMPTY}))
    assert np.isnan(voc_ap([], {"a": gt((0, 0, 9, 9), difficult=[True])}))


def test_bad_detections_are_errors_naming_them():
    ground_truth = {"a": gt((0, 0, 9, 9))}
    with pytest.raises(ValueError, match="not in the ground truth.*'zzz'"):
        voc_ap([("zzz", 0.5, (0, 0, 9, 9))], ground_truth)
    with pytest.raises(ValueError, match="detection 0 on image 'a' has a non-finite"):
        voc_ap([("a", 0.5, (0, np.nan, 9, 9))], ground_truth)
    with pytest.raises(ValueError, match="expected \\(image_id, score"):
        voc_ap([("a", 0.5)], ground_truth)


def test_area_metric_uses_the_monotone_envelope():
    # precision rises from .5 to .667 at recall 1: the envelope lifts the first part.
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    assert ap_from_curve(recall, precision) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


# rafaelpadilla/Object-Detection-Metrics (MIT), the "person" example:
# ground truth (left, top, width, height) and detections (confidence, left, top,
# width, height), boxes (x, y, x + w, y + h) with +1 areas. Published: AP 24.57 %
# (all-point interpolation) and 26.84 % (11-point) at IoU 0.3.
PADILLA_GT = {
    "00001": [(25, 16, 38, 56), (129, 123, 41, 62)],
    "00002": [(123, 11, 43, 55), (38, 132, 59, 45)],
    "00003": [(16, 14, 35, 48), (123, 30, 49, 44), (99, 139, 47, 47)],
    "00004": [(53, 42, 40, 52), (154, 43, 31, 34)],
    "00005": [(59, 31, 44, 51), (48, 128, 34, 52)],
    "00006": [(36, 89, 52, 76), (62, 58, 44, 67)],
    "00007": [(28, 31, 55, 63), (58, 67, 50, 58)],
}
PADILLA_DETECTIONS = {
    "00001": [(.88, 5, 67, 31, 48), (.70, 119, 111, 40, 67), (.80, 124, 9, 49, 67)],
    "00002": [(.71, 64, 111, 64, 58), (.54, 26, 140, 60, 47), (.74, 19, 18, 43, 35)],
    "00003": [(.18, 109, 15, 77, 39), (.67, 86, 63, 46, 45), (.38, 160, 62, 36, 53),
              (.91, 105, 131, 47, 47), (.44, 18, 148, 40, 44)],
    "00004": [(.35, 83, 28, 28, 26), (.78, 28, 68, 42, 67), (.45, 87, 89, 25, 39),
              (.14, 10, 155, 60, 26)],
    "00005": [(.62, 50, 38, 28, 46), (.44, 95, 11, 53, 28), (.95, 29, 131, 72, 29),
              (.23, 29, 163, 72, 29)],
    "00006": [(.45, 43, 48, 74, 38), (.84, 17, 155, 29, 35), (.43, 95, 110, 25, 42)],
    "00007": [(.48, 16, 20, 101, 88), (.95, 33, 116, 37, 49)],
}


def _xyxy(x, y, w, h):
    return (x, y, x + w, y + h)


@pytest.mark.parametrize("use_07, published", [(False, 0.2457), (True, 0.2684)])
def test_padilla_published_answer(use_07, published):
    ground_truth = {i: gt(*[_xyxy(*b) for b in boxes]) for i, boxes in PADILLA_GT.items()}
    detections = [(i, score, _xyxy(*box)) for i, rows in PADILLA_DETECTIONS.items()
                  for score, *box in rows]
    assert sum(len(b) for b in PADILLA_GT.values()) == 15 and len(detections) == 24
    ap = voc_ap(detections, ground_truth, iou_threshold=0.3, use_07_metric=use_07)
    assert ap == pytest.approx(published, abs=5e-5)


def test_devkit_11_point_thresholds_are_matlab_s():
    # 5 objects, 3 found first: recall 3/5 = 0.6 at precision 1. MATLAB's 0:0.1:1 holds 0.6
    # exactly (1 - 4 * 0.1), so 7 of its 11 thresholds see precision 1; Python's
    # np.arange(0, 1.1, 0.1) holds 0.6000000000000001, above 3/5, so only 6 do.
    recall, precision = np.arange(1, 4) / 5, np.ones(3)
    assert ap_from_curve(recall, precision, use_07_metric=True, devkit_ge=True) == 7 / 11
    assert ap_from_curve(recall, precision, use_07_metric=True) == 6 / 11
    boxes = np.array([[20 * k, 0, 20 * k + 9, 9] for k in range(5)], np.float64)
    gt = {"a": (boxes, np.zeros(5, bool))}
    dets = [("a", 0.9 - 0.1 * k, boxes[k]) for k in range(3)]
    assert voc_ap(dets, gt, use_07_metric=True, devkit_ge=True) == 7 / 11
    assert voc_ap(dets, gt, use_07_metric=True) == 6 / 11
