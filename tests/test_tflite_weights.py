"""bin/convert_tflite.py / keras_frcnn/tflite_weights.py: MobileNetV2 weights out of a
TensorFlow Lite file, checked on files the tests convert from a Keras MobileNetV2 with
known weights (a small width and input, so conversion takes seconds)."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import tflite_weights

ALPHA = 0.35
SIZE = 64
REPO = Path(__file__).resolve().parents[1]


def _network():
    """MobileNetV2 with random batch-norm statistics (so folding them matters) and, as
    the Coral/TF-slim files have, a 1x1 convolution classifier after the global pool."""
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=ALPHA,
                                          input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(3)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape),
                               rng.normal(0, 0.1, shape), rng.uniform(0.5, 1.5, shape)])
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(base.output)
    x = keras.layers.Conv2D(10, 1, name="Logits")(x)
    full = keras.Model(base.input, keras.layers.Reshape((10,))(x))
    return base, full


def _tflite(model, directory, quantize):
    model.export(str(directory), input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3],
                                                                tf.float32)], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory))
    if quantize:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(4):
                yield [rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    base, full = _network()
    paths = {}
    for name, quantize in (("float", False), ("int8", True)):
        paths[name] = root / f"mobilenet_v2_{name}.tflite"
        paths[name].write_bytes(_tflite(full, root / f"saved_{name}", quantize))
    return base, paths


def _folded(base):
    """{conv layer name: (kernel, bias)} with each conv's batch norm folded in by hand."""
    folded, layers = {}, base.layers
    for layer, norm in zip(layers, layers[1:]):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            gamma, beta, mean, var = norm.get_weights()
            factor = gamma / np.sqrt(var + norm.epsilon)
            kernel = layer.get_weights()[0]
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                kernel = kernel * factor[None, None, :, None]
            else:
                kernel = kernel * factor
            folded[layer.name] = (kernel, beta - mean * factor)
    return folded


def test_float_file_gives_the_same_network(files):
    base, paths = files
    convolutions = tflite_weights.read_convolutions(paths["float"])
    assert convolutions[-1].after_pool and convolutions[-1].bias.shape == (10,)
    assert not any(c.after_pool for c in convolutions[:-1])
    model = tflite_weights.mobilenet_v2(convolutions, ALPHA)
    image = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    want = base(image, training=False).numpy()
    got = model(image, training=False).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_quantized_file_dequantizes_within_half_a_step(files):
    base, paths = files
    convolutions = tflite_weights.read_convolutions(paths["int8"])
    model = tflite_weights.mobilenet_v2(convolutions, ALPHA)
    folded = _folded(base)
    assert len(folded) == 52
    layers = {layer.name: layer for layer in model.layers}
    for name, (kernel, bias) in folded.items():
        got = layers[name].get_weights()[0]
        # int8 per channel, symmetric: a step of max|w| / 127 per output channel.
        axes = (0, 1, 3) if "depthwise" in name else (0, 1, 2)
        step = np.abs(kernel).max(axis=axes, keepdims=True) / 127
        assert np.all(np.abs(got - kernel) <= step / 2 + 1e-6), name
        assert np.any(got != kernel), name  # it was quantised: not the float weights
        norm = model.layers[model.layers.index(layers[name]) + 1]
        gamma, beta, mean, var = norm.get_weights()
        np.testing.assert_allclose(beta, bias, atol=1e-3 * max(1.0, np.abs(bias).max()))
        np.testing.assert_array_equal(gamma, 1.0)
        np.testing.assert_array_equal(mean, 0.0)
        np.testing.assert_allclose(var + norm.epsilon, 1.0, rtol=1e-7)


def test_dequantize_per_tensor_and_per_channel():
    q = np.array([[[[0, 255]]], [[[10, 20]]]], np.uint8)  # [2, 1, 1, 2]
    per_tensor = tflite_weights.dequantize(q, {"scales": [0.5], "zero_points": [128]})
    np.testing.assert_array_equal(per_tensor.ravel(), [-64.0, 63.5, -59.0, -54.0])
    per_channel = tflite_weights.dequantize(
        q.astype(np.int16), {"scales": [1.0, 0.25], "zero_points": [0, 4], "quantized_dimension": 0})
    np.testing.assert_array_equal(per_channel.ravel(), [0.0, 255.0, 1.5, 4.0])
    last_axis = tflite_weights.dequantize(  # a depthwise kernel's [1, h, w, channels]
        np.array([[[[3, 3]]]], np.int8), {"scales": [2.0, 0.5], "zero_points": [1, -1],
                                          "quantized_dimension": 3})
    np.testing.assert_array_equal(last_axis.ravel(), [4.0, 2.0])
    floats = np.array([1.5, -2.0], np.float32)
    np.testing.assert_array_equal(tflite_weights.dequantize(floats, {}), floats)


def test_program_writes_weights_the_keras_model_loads(files, tmp_path):
    base, paths = files
    output = tmp_path / "weights" / "mobilenet.weights.h5"
    run = subprocess.run([sys.executable, str(REPO / "bin" / "convert_tflite.py"),
                          f"--tflite={paths['float']}", f"--output={output}",
                          f"--alpha={ALPHA}"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--config.model.weights=" in run.stdout
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]  # no scratch
    loaded = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=ALPHA,
                                            input_shape=(SIZE, SIZE, 3))
    loaded.load_weights(output)
    image = np.random.default_rng(2).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    want = base(image, training=False).numpy()
    np.testing.assert_allclose(loaded(image, training=False).numpy(), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())
    again = subprocess.run([sys.executable, str(REPO / "bin" / "convert_tflite.py"),
                            f"--tflite={paths['float']}", f"--output={output}",
                            f"--alpha={ALPHA}"], capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert f"--output={output} exists" in again.stderr.strip().splitlines()[-1]


def test_wrong_width_names_the_layer_and_the_flag(files):
    _, paths = files
    with pytest.raises(ValueError, match=r"MobileNetV2's Conv1 .*alpha=1.0: give the "
                                         r"file's width as --alpha"):
        tflite_weights.mobilenet_v2(tflite_weights.read_convolutions(paths["float"]), 1.0)


def test_missing_and_extra_convolutions_are_named(files):
    _, paths = files
    convolutions = tflite_weights.read_convolutions(paths["float"])
    with pytest.raises(ValueError, match=r"51 backbone convolutions where MobileNetV2 has "
                                         r"52: MobileNetV2's Conv_1 and after"):
        tflite_weights.mobilenet_v2(convolutions[:51], ALPHA)
    extra = convolutions[:52] + [convolutions[51]]
    with pytest.raises(ValueError, match=r"53 backbone convolutions .* 1 convolutions left "
                                         r"over"):
        tflite_weights.mobilenet_v2(extra, ALPHA)


def test_a_bias_of_the_wrong_size_names_the_kernel(monkeypatch):
    # No converter writes such a file, so the interpreter is a stand-in: one CONV_2D of
    # 2 output channels (tensor 1, unnamed) whose bias (tensor 2) holds 3 values.
    class Interpreter:
        tensors = {1: np.ones([2, 1, 1, 1], np.float32), 2: np.zeros([3], np.float32)}

        def _get_ops_details(self):
            return [{"op_name": "CONV_2D", "inputs": [0, 1, 2], "outputs": [3]}]

        def _get_tensor_details(self, index, subgraph):
            return {"name": "", "quantization_parameters": {}}

        def get_tensor(self, index):
            return self.tensors[index]

    monkeypatch.setattr(tflite_weights, "_interpreter", lambda source: Interpreter())
    with pytest.raises(ValueError, match=r"^m.tflite: 'tensor 1' has 2 outputs but its bias "
                                         r"3 values$"):
        tflite_weights.read_convolutions("m.tflite")


def test_bad_inputs_are_refused(tmp_path, files):
    _, paths = files
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ValueError, match="not a TensorFlow Lite model"):
        tflite_weights.read_convolutions(junk)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(REPO / "bin" / "convert_tflite.py"),
                          f"--tflite={junk}", f"--output={out / 'w.weights.h5'}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {junk}: not a TensorFlow")
    assert not out.exists()
    with pytest.raises(ValueError, match="no such file"):
        tflite_weights.convert(tmp_path / "absent.tflite", tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"end in \.weights\.h5"):
        tflite_weights.convert(paths["float"], tmp_path / "w.h5")
    assert not list(tmp_path.glob("*.h5"))
