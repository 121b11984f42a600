"""``RoIPooling``: the RoI max-pooling layer of Fast R-CNN as a Keras 3 layer.

Called as ``layer([features, rois])`` with features [N, H, W, C] and rois
[R, 5] = (batch_index, x1, y1, x2, y2) in input-image pixels; returns
[R, PH, PW, C] in the features' dtype. See keras_frcnn.ops.roi_pool.
"""

import keras

from keras_frcnn.ops.roi_pool import (
    check_spatial_scale,
    normalize_pooled_size,
    resolve_implementation,
    roi_pool,
)


@keras.saving.register_keras_serializable(package="keras_frcnn")
class RoIPooling(keras.layers.Layer):
    """RoI max pooling (Fast R-CNN, section 2.1), usable in any Keras model.

    Args:
      pooled_size: int or (pooled_height, pooled_width): 7 for VGG16, 6 for
        the CaffeNet-like and VGG_CNN_M_1024 nets.
      spatial_scale: feature cells per input pixel (1/16 for a stride-16
        backbone).
      implementation: "custom_op", "composite" or None (the custom op when it
        loads, else the pure-TF composite). The custom op has no XLA kernel, so
        the layer reports ``supports_jit = False`` when it will use it.
      **kwargs: standard Layer arguments (name, dtype, ...).

    ``training=False`` calls (detection, evaluation, export) run the custom op's
    inference kernel, which writes no argmax; see roi_pool's ``training``.

    The layer does not autocast: under a mixed-precision policy the features
    keep their (half) dtype and the rois stay float32, since pixel coordinates
    do not survive float16.
    """

    def __init__(self, pooled_size, spatial_scale, implementation=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pooled_size = normalize_pooled_size(pooled_size)
        self.spatial_scale = check_spatial_scale(spatial_scale)
        self.implementation = implementation
        self.supports_jit = resolve_implementation(implementation, warn=False) == "composite"

    def call(self, inputs, training=None):
        features, rois = inputs
        return roi_pool(features, rois, self.pooled_size, self.spatial_scale,
                        implementation=self.implementation, training=training)

    def compute_output_shape(self, input_shape):
        features_shape, rois_shape = input_shape
        return (rois_shape[0], *self.pooled_size, features_shape[-1])

    def compute_output_spec(self, inputs):
        features, rois = inputs
        return keras.KerasTensor(self.compute_output_shape((features.shape, rois.shape)),
                                 dtype=features.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(pooled_size=list(self.pooled_size), spatial_scale=self.spatial_scale,
                      implementation=self.implementation)
        return config
