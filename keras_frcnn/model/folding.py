"""Batch normalisation folded into the convolution before it, for inference.

In inference mode a BatchNormalization layer is the affine map
``(x - mean) * gamma / sqrt(var + eps) + beta`` per channel. After a convolution it can
be folded into the convolution's kernel and a bias: per output channel
``scale = gamma / sqrt(var + eps)``, ``kernel' = kernel * scale``,
``bias' = (bias - mean) * scale + beta``. The folded network computes the same function
(to float rounding) with two elementwise passes fewer per convolution, and Grappler
then fuses convolution, bias and ReLU6 into one oneDNN kernel (_MklNativeFusedConv2D /
_MklNativeFusedDepthwiseConv2dNative), which a multiply and an add between the
convolution and the activation prevent. MobileNetV2 has 52 such pairs and the demo's
small backbone 6; VGG16 and the Caffe networks have none. Used by the reduced-precision
inference copies (keras_frcnn/precision.py); training keeps the layers as they are.
"""

import keras
import numpy as np

CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class FoldedBatchNorm(keras.layers.Layer):
    """Where a folded BatchNormalization was: passes its input on, and takes the
    arguments the layer was called with (training, mask)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def foldable_pairs(model):
    """{BatchNormalization name: convolution name} of ``model`` (a functional model):
    each BatchNormalization over the last axis whose every call takes the output of one
    linear Conv2D or DepthwiseConv2D, whose output goes nowhere else. (A layer may be
    called in several models: the head of model/backbones.py calls the ImageNet
    model's layers again.)"""
    pairs = {}
    outputs = {id(tensor) for tensor in model.outputs}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3):
            continue
        if any(len(node.input_tensors) != 1 or node.arguments.kwargs.get("training") is True
               for node in layer._inbound_nodes):  # one input, never forced to train
            continue
        sources = {node.input_tensors[0]._keras_history.operation
                   for node in layer._inbound_nodes}
        if len(sources) != 1:
            continue
        (source,) = sources
        if (isinstance(source, CONVOLUTIONS)
                and source.activation is keras.activations.linear
                and source.data_format == "channels_last"
                and {node.operation for node in source._outbound_nodes} == {layer}
                and not any(id(node.outputs[0]) in outputs for node in source._inbound_nodes)):
            pairs[layer.name] = source.name
    return pairs


def fold_batchnorm_layers(model):
    """A copy of the functional ``model`` whose foldable BatchNormalization layers
    (foldable_pairs) pass their input on (FoldedBatchNorm) and whose convolutions before
    them have a bias. Its weights are new: set them with copy_folded_weights."""
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    convolutions = set(pairs.values())

    def clone(layer):
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in convolutions:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _layers(model):
    """{name: layer} of a model's layers and those of the models nested in it."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_layers(layer))
        found[layer.name] = layer
    return found


def folded_weights(conv, bn):
    """[kernel, bias] of ``conv`` with ``bn`` folded in, computed in float64."""
    kernel = conv.kernel.numpy().astype(np.float64)
    bias = (conv.bias.numpy().astype(np.float64) if conv.use_bias
            else np.zeros(kernel.shape[-1] * (kernel.shape[-2] if isinstance(
                conv, keras.layers.DepthwiseConv2D) else 1)))
    channels = bias.shape[0]
    gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else np.ones(channels)
    beta = bn.beta.numpy().astype(np.float64) if bn.center else np.zeros(channels)
    mean = bn.moving_mean.numpy().astype(np.float64)
    variance = bn.moving_variance.numpy().astype(np.float64)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    # Output channel c of a Conv2D is the kernel's last axis; of a DepthwiseConv2D it is
    # input channel c // multiplier, multiplier c % multiplier (kernel [kh, kw, C, M]).
    kernel = kernel * scale.reshape(kernel.shape[-2:] if isinstance(
        conv, keras.layers.DepthwiseConv2D) else (channels,))
    return [kernel, (bias - mean) * scale + beta]


def copy_folded_weights(source, target):
    """Sets every weight of ``target`` (fold_batchnorm_layers of ``source``'s networks)
    from ``source``: folded convolutions from their convolution and BatchNormalization,
    every other layer's weights as they are (cast to the target's dtype)."""
    source_layers, target_layers = _layers(source), _layers(target)
    folded = {}
    for layer in source_layers.values():
        if isinstance(layer, keras.Model):
            folded.update({conv: bn for bn, conv in foldable_pairs(layer).items()})
    for name, layer in target_layers.items():
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        original = source_layers[name]
        if name in folded:
            values = folded_weights(original, source_layers[folded[name]])
        else:
            values = [w.numpy() for w in original.weights]
        layer.set_weights([np.asarray(v, np.float32) for v in values])


__all__ = ["FoldedBatchNorm", "copy_folded_weights", "fold_batchnorm_layers", "foldable_pairs",
           "folded_weights"]
