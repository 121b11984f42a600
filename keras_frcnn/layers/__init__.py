"""Keras layers of keras_frcnn."""

from keras_frcnn.layers.roi_pooling import RoIPooling

__all__ = ["RoIPooling"]
