"""Detection: a trained FastRCNN applied to images and their proposals."""

from keras_frcnn.detection.detector import Detector, DetectorConfig
from keras_frcnn.detection.graph import pyramid_levels
from keras_frcnn.detection.postprocess import (MODES, Detections, PostprocessConfig,
                                               make_postprocess, nms)

__all__ = ["MODES", "Detections", "Detector", "DetectorConfig", "PostprocessConfig",
           "make_postprocess", "nms", "pyramid_levels"]
