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
                                                8x8    head "imagenet_blocks": block_13-Conv_1
  small            -      conv4, 128     8      7x7    256/256     -

Geometry. The Caffe nets are built from ``PROTOTXT``, the conv, max-pool and
LRN layers of the release's models/<net>/train.prototxt (kernel, stride, pad,
groups, LRN parameters). Caffe rounds convolution sizes down and pooling sizes
up, so VGG16's conv5_3 is 38x63 at 600x1000 as in the release (Keras' pooling
would give 37x62); ``feature_shape`` gives any backbone's feature-map size.
VGG16 keeps keras.applications' layer names (block1_conv1 ... block5_conv3).

Weights (``build_backbone(name, weights)``):
  None        random (Keras' default initialisers).
  "imagenet"  keras.applications, vgg16 and mobilenet_v2 only (downloaded and
              cached by Keras); VGG16's fc1/fc2 also initialise fc6/fc7.
  "*.npz"     vgg16, vgg_cnn_m_1024 and caffenet: every conv layer and
              optionally fc6/fc7, in Keras layout (model/weights_files.py:
              ``load_npz`` has the format; ``caffe_to_keras`` converts pycaffe
              blobs to it).
  other path  a Keras weights file, no fc6/fc7: for vgg16 and mobilenet_v2 of
              keras.applications' model with include_top=False (e.g.
              data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5),
              for the other backbones of the features model itself.
Every weights file is checked as it loads: values that are not finite are refused
naming the file and the layer (model/weights_files.py).
"""

import dataclasses
import logging
from pathlib import Path

import keras
import tensorflow as tf

from keras_frcnn.model.weights_files import check_model_weights_finite, load_npz

logger = logging.getLogger("keras_frcnn.model")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    stride: int
    pooled_size: int
    fc_units: tuple
    preprocessing: str  # data.transforms.preprocess mode
    frozen_prefixes: tuple  # layer-name prefixes frozen by default


def caffe_conv_size(size, kernel, stride=1, pad=0):
    """Output length of a Caffe convolution over ``size`` inputs (rounded down)."""
    return (size + 2 * pad - kernel) // stride + 1


def caffe_pool_size(size, kernel, stride, pad=0):
    """Output length of Caffe's pooling over ``size`` inputs (Python ints or int tensors).

    Rounded up: ceil((size + 2 pad - kernel) / stride) + 1, less one when pad > 0
    and the last window would start in the bottom/right padding (pooling_layer.cpp).
    """
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad == 0:
        return out
    starts_in_pad = (out - 1) * stride >= size + pad
    return tf.where(starts_in_pad, out - 1, out) if tf.is_tensor(out) else out - starts_in_pad


@keras.saving.register_keras_serializable(package="keras_frcnn")
class CaffeMaxPooling2D(keras.layers.Layer):
    """Caffe's max pooling: ``pad`` on every side, output size rounded up (caffe_pool_size).

    Caffe's windows skip the padding and the clipped bottom/right overhang, which
    for a max is the same as padding with -inf; every window keeps at least one
    real pixel, so -inf never reaches the output.
    """

    def __init__(self, pool_size, strides, pad=0, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= pad < pool_size or not 1 <= strides <= pool_size:
            raise ValueError(f"CaffeMaxPooling2D {kwargs.get('name')}: need 0 <= pad < pool_size "
                             f"and 1 <= strides <= pool_size (no empty windows), got pad {pad}, "
                             f"strides {strides}, pool_size {pool_size}")
        self.pool_size, self.strides, self.pad = pool_size, strides, pad

    def call(self, x):
        k, s, p = self.pool_size, self.strides, self.pad
        if p == 0 and k == s == 2:
            # Identical and cheaper: both give ceil(H / 2) rows, and SAME pads at most one
            # row/column at the bottom/right, which TF's max pooling ignores.
            return tf.nn.max_pool2d(x, 2, 2, "SAME")
        shape = tf.shape(x)
        outs = [caffe_pool_size(shape[axis], k, s, p) for axis in (1, 2)]
        # Enough bottom/right padding for the last window; slicing drops any extra one.
        ends = [tf.maximum((out - 1) * s + k - shape[axis] - p, 0)
                for out, axis in zip(outs, (1, 2))]
        padded = tf.pad(x, [[0, 0], [p, ends[0]], [p, ends[1]], [0, 0]],
                        constant_values=float("-inf"))
        return tf.nn.max_pool2d(padded, k, s, "VALID")[:, :outs[0], :outs[1]]

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        size = [None if d is None else caffe_pool_size(d, self.pool_size, self.strides, self.pad)
                for d in (h, w)]
        return (n, *size, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "pad": self.pad}


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


@dataclasses.dataclass(frozen=True)
class CaffeLayer:
    """One layer of a prototxt: "conv" (with its ReLU), "pool" (max) or "lrn" (size = kernel)."""
    kind: str
    name: str
    kernel: int
    stride: int = 1
    pad: int = 0
    filters: int = 0
    groups: int = 1
    alpha: float = 0.0
    beta: float = 0.75
    k: float = 1.0


def _vgg16_layers():
    """The prototxt's conv1_1 ... conv5_3 and pool1 ... pool4 under keras.applications' names."""
    layers = []
    for block, (convs, filters) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        layers += [CaffeLayer("conv", f"block{block}_conv{i}", 3, pad=1, filters=filters)
                   for i in range(1, convs + 1)]
        if block < 5:  # pool5 is replaced by RoI pooling
            layers.append(CaffeLayer("pool", f"block{block}_pool", 2, 2))
    return tuple(layers)


def _lrn(name, alpha, k):
    return CaffeLayer("lrn", name, 5, alpha=alpha, beta=0.75, k=k)


PROTOTXT = {
    "vgg16": _vgg16_layers(),
    # AlexNet with pooling before LRN; the release pads conv1 by 5 and pool1/pool2 by 1
    # (the BVLC reference CaffeNet pads neither).
    "caffenet": (
        CaffeLayer("conv", "conv1", 11, 4, 5, filters=96),
        CaffeLayer("pool", "pool1", 3, 2, 1), _lrn("norm1", 1e-4, 1.0),
        CaffeLayer("conv", "conv2", 5, 1, 2, filters=256, groups=2),
        CaffeLayer("pool", "pool2", 3, 2, 1), _lrn("norm2", 1e-4, 1.0),
        CaffeLayer("conv", "conv3", 3, 1, 1, filters=384),
        CaffeLayer("conv", "conv4", 3, 1, 1, filters=384, groups=2),
        CaffeLayer("conv", "conv5", 3, 1, 1, filters=256, groups=2)),
    # Chatfield et al. 2014: LRN before pooling, k = 2.
    "vgg_cnn_m_1024": (
        CaffeLayer("conv", "conv1", 7, 2, 0, filters=96), _lrn("norm1", 5e-4, 2.0),
        CaffeLayer("pool", "pool1", 3, 2, 0),
        CaffeLayer("conv", "conv2", 5, 2, 1, filters=256), _lrn("norm2", 5e-4, 2.0),
        CaffeLayer("pool", "pool2", 3, 2, 0),
        CaffeLayer("conv", "conv3", 3, 1, 1, filters=512),
        CaffeLayer("conv", "conv4", 3, 1, 1, filters=512),
        CaffeLayer("conv", "conv5", 3, 1, 1, filters=512)),
}


def _caffe_net(images, layers):
    x = images
    for layer in layers:
        if layer.kind == "conv":
            # Keras 'same' at stride 1 pads (kernel - 1) / 2 on each side, i.e. Caffe's pad;
            # anything else gets Caffe's symmetric zero padding explicitly.
            same = layer.stride == 1 and 2 * layer.pad == layer.kernel - 1
            if layer.pad and not same:
                x = keras.layers.ZeroPadding2D(layer.pad, name=f"{layer.name}_pad")(x)
            x = keras.layers.Conv2D(layer.filters, layer.kernel, strides=layer.stride,
                                    padding="same" if same else "valid", groups=layer.groups,
                                    activation="relu", name=layer.name)(x)
        elif layer.kind == "pool":
            x = CaffeMaxPooling2D(layer.kernel, layer.stride, layer.pad, name=layer.name)(x)
        else:
            x = LocalResponseNormalization(layer.kernel, layer.alpha, layer.beta, layer.k,
                                           name=layer.name)(x)
    return x


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


# Per-RoI heads and the backbones that have them: fc6/fc7 (all), and MobileNetV2's
# "imagenet_blocks" runs block_13's stride-2 depthwise and projection, blocks 14-16 and
# Conv_1 on each 8 x 8 pooled RoI (4 x 4 after block_13), then global average pooling:
# 25.7 M multiply-adds per RoI against fc6's 28.9 M (docs/model.md).
HEADS = {"fc": tuple(SPECS), "imagenet_blocks": ("mobilenet_v2",)}
BLOCKS_POOLED_SIZE = 8


def feature_shape(name, height, width):
    """(rows, columns) of backbone ``name``'s feature map for a ``height`` x ``width`` input.

    The Caffe nets follow their prototxt layer by layer (convolutions round down,
    max pooling up); ``small`` rounds each of its 3 halvings up, ``mobilenet_v2``
    its first of 4 up and the others down, as Keras builds them.
    """
    if name not in SPECS:
        raise ValueError(f"backbone must be one of {sorted(SPECS)}, got {name!r}")
    size = (int(height), int(width))
    if name not in PROTOTXT:
        # Keras' 'same' stride-2 convs round up; MobileNetV2's strided depthwise convs,
        # padded (0, 1) when the input size is unknown, round down.
        for rounding in ("ceil",) * 3 if name == "small" else ("ceil", "floor", "floor", "floor"):
            size = tuple(-(-s // 2) if rounding == "ceil" else s // 2 for s in size)
    for layer in PROTOTXT.get(name, ()):
        if layer.kind == "conv":
            size = tuple(caffe_conv_size(s, layer.kernel, layer.stride, layer.pad) for s in size)
        elif layer.kind == "pool":
            size = tuple(caffe_pool_size(s, layer.kernel, layer.stride, layer.pad) for s in size)
        if min(size) < 1:
            break
    if min(size) < 1:
        raise ValueError(f"a {height}x{width} input is too small for backbone {name!r} (its "
                         f"features would be {size[0]}x{size[1]}); use a larger image")
    return size


def _check_weights(name, weights):
    if weights in (None, "imagenet"):
        if weights == "imagenet" and name not in ("vgg16", "mobilenet_v2"):
            raise ValueError(f"no ImageNet weights ship for backbone {name!r}; pass a weights "
                             "file (.npz or Keras) or None")
        return
    if not Path(weights).is_file():
        raise ValueError(f"backbone weights {weights!r}: not 'imagenet', None or an existing "
                         "file; give --config.model.weights=imagenet (downloads Keras' file) "
                         "or a weights file's path (docs/kangaroo.md#the-imagenet-weights)")
    if str(weights).endswith(".npz") and name not in PROTOTXT:
        raise ValueError(f"backbone weights {weights!r}: .npz files load into {sorted(PROTOTXT)}; "
                         f"for {name!r} pass a Keras weights file")


def _copy_from_applications_vgg16(model, weights):
    """Copies keras.applications.VGG16's conv weights into ``model`` by layer name."""
    if weights == "imagenet":
        # One download: the include_top file holds the convs and the classifier.
        base = keras.applications.VGG16(include_top=True, weights="imagenet")
        fc_init = {"fc6": base.get_layer("fc1").get_weights(),
                   "fc7": base.get_layer("fc2").get_weights()}
    else:
        base = keras.applications.VGG16(include_top=False, weights=None)
        base.load_weights(weights)
        check_model_weights_finite(base, weights)
        fc_init = None
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(base.get_layer(layer.name).get_weights())
    return fc_init


def build_backbone(name, weights=None):
    """(features model, BackboneSpec, fc initial weights or None) for a backbone name.

    ``weights``: None, "imagenet", an ``.npz`` file or a Keras weights file
    (module docstring). The fc initial weights are {"fc6": [kernel, bias],
    "fc7": [kernel, bias]}, from VGG16's ImageNet classifier or an ``.npz``.
    """
    features, _, spec, fc_init = build_backbone_and_head(name, weights)
    return features, spec, fc_init


def build_backbone_and_head(name, weights=None, head="fc"):
    """(features model, head model or None, BackboneSpec, fc initial weights or None).

    ``head`` "fc" (every backbone): the paper's fc6/fc7, built by FastRCNN, so the
    head model is None. "imagenet_blocks" (mobilenet_v2): the ImageNet layers after
    the pooling point (HEADS), a model from pooled RoIs [R, P, P, 576] to [R, 4, 4,
    1280] with the backbone's weights; the spec then has the head's pooled size P = 8
    and no fc widths.
    """
    if name not in SPECS:
        raise ValueError(f"backbone must be one of {sorted(SPECS)}, got {name!r}")
    if head not in HEADS:
        raise ValueError(f"model head must be one of {sorted(HEADS)}, got {head!r}")
    if name not in HEADS[head]:
        raise ValueError(f"head {head!r} exists for backbones {sorted(HEADS[head])}, not "
                         f"{name!r}: it is MobileNetV2's ImageNet layers after the pooling "
                         f"point; the other backbones' are fc6/fc7, which head 'fc' builds "
                         f"(docs/model.md)")
    _check_weights(name, weights)
    spec = SPECS[name]
    images = keras.Input((None, None, 3), name="images")
    fc_init = None
    if name == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            include_top=False, input_tensor=images,
            weights="imagenet" if weights == "imagenet" else None)
        if weights not in (None, "imagenet"):
            base.load_weights(weights)
            check_model_weights_finite(base, weights)
        pooling_point = base.get_layer("block_13_expand_relu").output
        model = keras.Model(images, pooling_point, name=f"{name}_features")
        for layer in base.layers:  # 2-image batches: keep ImageNet BN statistics
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        if head == "fc":
            return model, None, spec, fc_init
        # The rest of the ImageNet network, sharing the base's layers (and weights):
        # block_13_pad pads (0, 1) as at 224 x 224, where block_13 sees 14 x 14.
        head_model = keras.Model(pooling_point, base.output, name=f"{name}_head")
        spec = dataclasses.replace(spec, pooled_size=BLOCKS_POOLED_SIZE, fc_units=())
        return model, head_model, spec, fc_init
    features = _small(images) if name == "small" else _caffe_net(images, PROTOTXT[name])
    model = keras.Model(images, features, name=f"{name}_features")
    if weights is not None and str(weights).endswith(".npz"):
        fc_init = load_npz(model, weights, spec)
        if fc_init is None and head == "fc":
            logger.warning("%s holds no fc6/fc7: they start from random weights (the paper "
                           "initialises them from ImageNet too; the paper configs refuse "
                           "this, model.require_weights)", weights)
    elif name == "vgg16" and weights is not None:
        fc_init = _copy_from_applications_vgg16(model, weights)
    elif weights is not None:
        model.load_weights(weights)
        check_model_weights_finite(model, weights)
    return model, None, spec, fc_init


def freeze(model, prefixes):
    """Freezes the layers whose names start with any of ``prefixes``; returns their names."""
    frozen = [layer.name for layer in model.layers if layer.name.startswith(tuple(prefixes))]
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False
    return frozen
