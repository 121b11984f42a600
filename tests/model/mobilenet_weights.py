"""A MobileNetV2 weights file for head tests whose outputs differ from RoI to RoI.

Random MobileNetV2 weights with Keras' BatchNorm statistics (0 / 1), or the random ones
of tests/model/test_heads.py's ``imagenet_file``, shrink the signal block after block:
there the Conv_1 map of every RoI is the same constant up to 3e-5, so checks of what the
head does per RoI pass whatever it does. Here each BatchNorm's moving statistics are
those of the batch it sees on a structured picture (as training on ImageNet leaves
them: every layer normalised), so the Conv_1 map varies by units across cells and RoIs.
"""

import keras
import numpy as np


def structured_images(count=2, height=96, width=128):
    """[count, height, width, 3] float32 in [-1, 1] ("tf" preprocessing): noise with two
    coloured rectangles."""
    images = np.random.default_rng(1).uniform(-1, 1, (count, height, width, 3))
    images[:, 10:50, 20:70] = (0.8, -0.7, -0.7)
    images[:, 40:90, 80:120] = (-0.7, 0.6, -0.3)
    return images.astype(np.float32)


def calibrated_mobilenet_v2_weights(path):
    """Writes the weights of a seeded random MobileNetV2 without top, its BatchNorm
    statistics set from one batch of structured_images, to ``path`` (.weights.h5)."""
    keras.utils.set_random_seed(3)
    network = keras.applications.MobileNetV2(include_top=False, weights=None)
    norms = [layer for layer in network.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    network(structured_images(), training=True)
    network.save_weights(path)
    return str(path)
