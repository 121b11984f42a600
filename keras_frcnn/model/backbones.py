"""Convolutional backbones: the paper's three networks, MobileNetV2 and a small CPU net.

Each backbone is a Keras model from images ``[N, H, W, 3]`` to the feature map
that RoI pooling cuts from (the layer before the last max pool, which RoI
pooling replaces), plus a ``BackboneSpec`` with what the rest of the detector
needs: stride (1 / spatial_scale), pooled size, fc6/fc7 widths, the input
preprocessing of data/transforms.py, and the layers frozen by default.

  name             paper  features       stride pooled fc6/fc7     frozen (paper 4.5)
  vgg16            L      conv5_3, 512   16     7x7    4096/4096   conv1_x, conv2_x
  vgg_cnn_m_1024   M      conv5, 512     16     6x6    4096/1024   conv1
  caffenet         S      conv5, 256     16     6x6    4096/4096   conv1
  mobilenet_v2     -      block_13, 576  16     7x7    1024/1024   BatchNorm statistics
  small            -      conv4, 128     8      7x7    256/256     -

Weights: None (random), "imagenet" (keras.applications, VGG16 and MobileNetV2
only; downloaded and cached by Keras, and for VGG16 its fc1/fc2 initialise
fc6/fc7), or the path of a weights file for the backbone's base model (e.g.
../shared/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5, which
loads into ``MobileNetV2(include_top=False, weights=None)``).
"""

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    stride: int
    pooled_size: int
    fc_units: tuple
    preprocessing: str  # data.transforms.preprocess mode
    frozen_prefixes: tuple  # layer-name prefixes frozen by default


@keras.saving.register_keras_serializable(package="keras_frcnn")
class LocalResponseNormalization(keras.layers.Layer):
    """Caffe's across-channel LRN: x / (k + alpha / n * sum of squares over n channels)^beta."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        return tf.nn.local_response_normalization(
            x, depth_radius=(self.size - 1) // 2, bias=self.k, alpha=self.alpha / self.size,
            beta=self.beta)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k}


def _conv(x, filters, kernel, name, strides=1, groups=1):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", groups=groups,
                               activation="relu", name=name)(x)


def _pool(x, name):
    return keras.layers.MaxPooling2D(3, 2, padding="same", name=name)(x)


def _caffenet(images):
    """CaffeNet (model S): AlexNet with pooling before normalisation, grouped conv2/4/5."""
    x = _conv(images, 96, 11, "conv1", strides=4)
    x = LocalResponseNormalization(name="norm1")(_pool(x, "pool1"))
    x = _conv(x, 256, 5, "conv2", groups=2)
    x = LocalResponseNormalization(name="norm2")(_pool(x, "pool2"))
    x = _conv(x, 384, 3, "conv3")
    x = _conv(x, 384, 3, "conv4", groups=2)
    return _conv(x, 256, 3, "conv5", groups=2)


def _vgg_cnn_m_1024(images):
    """VGG_CNN_M_1024 (model M, Chatfield et al. 2014)."""
    x = _conv(images, 96, 7, "conv1", strides=2)
    x = _pool(LocalResponseNormalization(name="norm1")(x), "pool1")
    x = _conv(x, 256, 5, "conv2", strides=2)
    x = _pool(LocalResponseNormalization(name="norm2")(x), "pool2")
    x = _conv(x, 512, 3, "conv3")
    x = _conv(x, 512, 3, "conv4")
    return _conv(x, 512, 3, "conv5")


def _small(images):
    """A stride-8 conv/batch-norm net for CPU experiments (the demo)."""
    x = images
    for stage, filters in enumerate((32, 64, 128), start=1):
        for k, strides in ((1, 1), (2, 2)):
            x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                                    name=f"conv{stage}_{k}")(x)
            # synchronized: under tf.distribute the batch statistics are those of the
            # global batch (one replica: plain BatchNormalization).
            x = keras.layers.BatchNormalization(synchronized=True, name=f"bn{stage}_{k}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{k}")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(x)
    return x


SPECS = {
    "vgg16": BackboneSpec("vgg16", 16, 7, (4096, 4096), "caffe", ("block1_", "block2_")),
    "vgg_cnn_m_1024": BackboneSpec("vgg_cnn_m_1024", 16, 6, (4096, 1024), "caffe", ("conv1",)),
    "caffenet": BackboneSpec("caffenet", 16, 6, (4096, 4096), "caffe", ("conv1",)),
    "mobilenet_v2": BackboneSpec("mobilenet_v2", 16, 7, (1024, 1024), "tf", ()),
    "small": BackboneSpec("small", 8, 7, (256, 256), "tf", ()),
}


def _check_weights(name, weights):
    if weights in (None, "imagenet"):
        if weights == "imagenet" and name not in ("vgg16", "mobilenet_v2"):
            raise ValueError(f"no ImageNet weights ship for backbone {name!r}; pass a weights "
                             "file or None")
        return
    if not Path(weights).is_file():
        raise ValueError(f"backbone weights {weights!r}: not 'imagenet', None or an existing file")


def build_backbone(name, weights=None):
    """(features model, BackboneSpec, fc initial weights or None) for a backbone name.

    The fc initial weights are {"fc6": [kernel, bias], "fc7": [kernel, bias]}
    from VGG16's ImageNet classifier when ``weights == "imagenet"``.
    """
    if name not in SPECS:
        raise ValueError(f"backbone must be one of {sorted(SPECS)}, got {name!r}")
    _check_weights(name, weights)
    spec = SPECS[name]
    images = keras.Input((None, None, 3), name="images")
    fc_init = None
    if name == "vgg16":
        base = keras.applications.VGG16(include_top=False, input_tensor=images,
                                        weights="imagenet" if weights == "imagenet" else None)
        if weights not in (None, "imagenet"):
            base.load_weights(weights)
        features = base.get_layer("block5_conv3").output
        if weights == "imagenet":
            classifier = keras.applications.VGG16(include_top=True, weights="imagenet")
            fc_init = {"fc6": classifier.get_layer("fc1").get_weights(),
                       "fc7": classifier.get_layer("fc2").get_weights()}
    elif name == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            include_top=False, input_tensor=images,
            weights="imagenet" if weights == "imagenet" else None)
        if weights not in (None, "imagenet"):
            base.load_weights(weights)
        features = base.get_layer("block_13_expand_relu").output
        for layer in base.layers:  # 2-image batches: keep ImageNet BN statistics
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    else:
        builder = {"caffenet": _caffenet, "vgg_cnn_m_1024": _vgg_cnn_m_1024, "small": _small}[name]
        features = builder(images)
        if weights is not None:
            keras.Model(images, features).load_weights(weights)
    model = keras.Model(images, features, name=f"{name}_features")
    return model, spec, fc_init


def freeze(model, prefixes):
    """Freezes the layers whose names start with any of ``prefixes``; returns their names."""
    frozen = [layer.name for layer in model.layers if layer.name.startswith(tuple(prefixes))]
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False
    return frozen
