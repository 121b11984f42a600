"""MobileNetV2 ImageNet weights from a TensorFlow Lite file, for configs/kangaroo.py.

The kangaroo runs of docs/benchmarks.md started from ImageNet weights taken out of
google-coral/test_data's ``mobilenet_v2_1.0_224_quant.tflite`` (docs/kangaroo.md). This
module makes such a weights file from any TensorFlow Lite MobileNetV2, quantised or not:

* the convolutions (``CONV_2D``, ``DEPTHWISE_CONV_2D``) are read in the order the file
  runs them, which for MobileNetV2 is the order of keras.applications' conv layers (the
  residual additions carry no weights); the classifier after the global pool, a 1x1
  convolution in the Coral/TF-slim files, is left out, as ``include_top=False`` has none;
* quantised tensors are dequantised as ``(q - zero_point) * scale``, per output channel
  where the file gives per-channel parameters (``quantized_dimension``); a weight that
  a ``DEQUANTIZE`` op produces (float16 files) is read from that op's input (float16
  files are not among the tested ones);
* TensorFlow Lite kernels are [out, h, w, in] (``CONV_2D``) and [1, h, w, channels]
  (``DEPTHWISE_CONV_2D``): both become Keras' [h, w, in, out] by one transpose;
* the file's batch normalisation is folded into each convolution's bias, so each Keras
  ``BatchNormalization`` layer is set to pass its input plus that bias through
  unchanged: gamma 1, beta the bias, moving mean 0, moving variance ``1 - epsilon``.

Every convolution's shape is checked against the Keras layer it fills; a file with
fewer or more convolutions, or of another width (``alpha``), is a one-line error
naming the layer.
"""

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_frcnn.files import make_temp_dir

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
POOL_OPS = ("AVERAGE_POOL_2D", "MEAN")  # what comes before a classifier convolution


@dataclass(frozen=True)
class Convolution:
    """One convolution of a TensorFlow Lite file, dequantised to float32."""
    op: str  # CONV_2D or DEPTHWISE_CONV_2D
    name: str  # the weight tensor's name in the file
    kernel: np.ndarray  # the file's layout: [out, h, w, in] or [1, h, w, channels]
    bias: np.ndarray  # [out]
    after_pool: bool  # its input is a global pool's output (the classifier)


def dequantize(values, params):
    """``values`` (a constant tensor) as float32: ``(q - zero_point) * scale`` with the
    parameters broadcast along ``quantized_dimension`` when there is one per channel."""
    scales = np.asarray(params.get("scales", ()), np.float64)
    if scales.size == 0 or np.issubdtype(values.dtype, np.floating):
        return np.asarray(values, np.float32)
    zero_points = np.asarray(params.get("zero_points", ()), np.float64)
    if zero_points.size == 0:
        zero_points = np.zeros_like(scales)
    if scales.size > 1:
        shape = [1] * values.ndim
        shape[params.get("quantized_dimension", 0)] = scales.size
        scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)
    return ((values.astype(np.float64) - zero_points) * scales).astype(np.float32)


def _interpreter(source):
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's notice of its successor
        warnings.simplefilter("ignore")
        try:
            # No XNNPACK delegate: it would fold the convolutions into one DELEGATE op.
            plain = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            if isinstance(source, (bytes, bytearray)):
                interpreter = tf.lite.Interpreter(model_content=bytes(source),
                                                  experimental_op_resolver_type=plain)
            else:
                interpreter = tf.lite.Interpreter(model_path=str(source),
                                                  experimental_op_resolver_type=plain)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            where = "the given bytes" if isinstance(source, (bytes, bytearray)) else source
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"{where}: not a TensorFlow Lite model TensorFlow can read "
                             f"({reason})") from None
    return interpreter


def read_convolutions(source):
    """[Convolution] of a .tflite file (a path, or its bytes), in the order it runs them."""
    interpreter = _interpreter(source)

    def name(index):  # get_tensor_details() leaves out tensors without a name
        return interpreter._get_tensor_details(index, 0)["name"] or f"tensor {index}"

    ops = interpreter._get_ops_details()  # the public API lists tensors, not ops
    producer = {out: op for op in ops for out in op["outputs"]}

    def constant(index):
        op = producer.get(index)
        if op is not None and op["op_name"] == "DEQUANTIZE":
            return constant(op["inputs"][0])
        if op is not None:
            raise ValueError(f"{source}: the weights {name(index)!r} are computed "
                             f"by a {op['op_name']} op, not stored in the file")
        params = interpreter._get_tensor_details(index, 0)["quantization_parameters"]
        return dequantize(interpreter.get_tensor(index), params)

    convolutions = []
    for op in ops:
        if op["op_name"] not in CONV_OPS:
            continue
        inputs = [i for i in op["inputs"] if i >= 0]
        if len(inputs) < 2:
            raise ValueError(f"{source}: a {op['op_name']} op without weights")
        kernel = constant(inputs[1])
        out = kernel.shape[0] if op["op_name"] == "CONV_2D" else kernel.shape[-1]
        bias = constant(inputs[2]) if len(inputs) > 2 else np.zeros([out], np.float32)
        if bias.size != out:
            raise ValueError(f"{source}: {name(inputs[1])!r} has {out} outputs but its bias "
                             f"{bias.size} values")
        before = producer.get(inputs[0])
        convolutions.append(Convolution(
            op["op_name"], name(inputs[1]), kernel, bias.reshape([out]),
            before is not None and before["op_name"] in POOL_OPS))
    return convolutions


def _keras_layout(convolution):
    # [out, h, w, in] -> [h, w, in, out]; [1, h, w, c] -> [h, w, c, 1]: the same transpose.
    return np.transpose(convolution.kernel, (1, 2, 3, 0))


def mobilenet_v2(convolutions, alpha=1.0, source="the file"):
    """keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha) with
    the weights of ``convolutions`` (read_convolutions), batch norm set to add the bias."""
    import keras

    model = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha,
                                           input_shape=(None, None, 3))
    layers = [layer for layer in model.layers
              if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    norms = {}
    for i, layer in enumerate(model.layers):  # each conv's BatchNormalization follows it
        if layer in layers:
            after = model.layers[i + 1]
            if not isinstance(after, keras.layers.BatchNormalization):
                raise AssertionError(f"MobileNetV2's {layer.name} is not followed by "
                                     "batch normalisation")
            norms[layer.name] = after
    backbone = list(convolutions)
    while backbone and backbone[-1].after_pool:  # the classifier
        backbone.pop()
    if len(backbone) != len(layers):
        missing = (f"MobileNetV2's {layers[len(backbone)].name} and after have no "
                   "convolution in it" if len(backbone) < len(layers) else
                   f"{len(backbone) - len(layers)} convolutions left over, the first "
                   f"{backbone[len(layers)].name!r}")
        raise ValueError(f"{source}: {len(backbone)} backbone convolutions where "
                         f"MobileNetV2 has {len(layers)}: {missing}; is it a MobileNetV2?")
    for layer, convolution in zip(layers, backbone):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        expected = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        kernel = _keras_layout(convolution)
        wanted = tuple(layer.kernel.shape)
        if convolution.op != expected or kernel.shape != wanted:
            raise ValueError(
                f"{source}: {convolution.name!r} ({convolution.op}, Keras shape "
                f"{kernel.shape}) cannot fill MobileNetV2's {layer.name} ({expected}, "
                f"{wanted}) at alpha={alpha}: give the file's width as --alpha")
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(convolution.bias))):
            raise ValueError(f"{source}: {convolution.name!r} holds values that are not "
                             "finite")
        layer.set_weights([kernel])
        norm = norms[layer.name]
        ones = np.ones_like(convolution.bias)
        norm.set_weights([ones, convolution.bias, np.zeros_like(ones),
                          np.full_like(ones, 1.0 - norm.epsilon)])
    return model


def convert(tflite, output, alpha=1.0):
    """Writes ``output`` (a .weights.h5 that configs/kangaroo.py's model.weights takes)
    from the TensorFlow Lite MobileNetV2 ``tflite``; returns the model. The file appears
    whole or not at all; an existing one is refused."""
    tflite, output = Path(tflite), Path(output)
    if not tflite.is_file():
        raise ValueError(f"--tflite={tflite}: no such file")
    if not output.name.endswith(".weights.h5"):
        raise ValueError(f"--output={output}: Keras weights files end in .weights.h5")
    if output.exists():
        raise ValueError(f"--output={output} exists: remove it or give another path")
    model = mobilenet_v2(read_convolutions(tflite), alpha, source=tflite)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = make_temp_dir(output.parent, f".{output.name}.")
    try:
        built = scratch / output.name
        model.save_weights(built)
        os.replace(built, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model
