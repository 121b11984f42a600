"""Evaluation: PASCAL VOC average precision and COCO AP (pycocotools).

Importing this package does not import TensorFlow.
"""

from keras_frcnn.evaluation.evaluator import (VocResult, evaluate_voc, load_detections,
                                              reapply_nms, save_detections, write_voc_results)
from keras_frcnn.evaluation.voc import PRCurve, ap_from_curve, curve_ap, match_detections, voc_ap

__all__ = ["PRCurve", "VocResult", "ap_from_curve", "curve_ap", "evaluate_voc",
           "load_detections", "match_detections", "reapply_nms", "save_detections", "voc_ap",
           "write_voc_results"]
