"""The RoIPooling Keras layer: config, functional use, saving, jit, mixed precision."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.layers import RoIPooling
from tests.ops.naive_roi_pool import naive_roi_pool

ROOT = Path(__file__).resolve().parents[2]


def inputs(rng):
    features = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
    rois = np.array([[0, 0, 0, 60, 40], [1, 8, 8, 100, 90], [1, -5, 3, 20, 200]], np.float32)
    return features, rois


@pytest.mark.parametrize("implementation", ["custom_op", "composite", None])
def test_layer_output_matches_reference(implementation, rng):
    features, rois = inputs(rng)
    layer = RoIPooling((3, 2), 1 / 8, implementation=implementation)
    out = layer([features, rois])
    np.testing.assert_array_equal(out.numpy(), naive_roi_pool(features, rois, 3, 2, 1 / 8)[0])


def test_get_config_round_trip():
    layer = RoIPooling(7, 0.0625, implementation="composite", name="pool5")
    config = layer.get_config()
    assert config["pooled_size"] == [7, 7]
    assert config["spatial_scale"] == 0.0625 and config["implementation"] == "composite"
    clone = RoIPooling.from_config(config)
    assert (clone.pooled_size, clone.spatial_scale, clone.name) == ((7, 7), 0.0625, "pool5")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, RoIPooling) and restored.get_config() == config


def test_functional_model_with_symbolic_inputs():
    features = keras.Input(shape=(None, None, 16))
    rois = keras.Input(shape=(5,), batch_size=None)
    pooled = RoIPooling(7, 1 / 16)([features, rois])
    assert tuple(pooled.shape) == (None, 7, 7, 16) and pooled.dtype == "float32"
    model = keras.Model([features, rois], keras.layers.Flatten()(pooled))
    out = model([tf.ones([2, 5, 5, 16]), tf.constant([[1, 0, 0, 50, 50]], tf.float32)])
    assert out.shape == (1, 7 * 7 * 16)


@pytest.mark.parametrize("implementation", ["custom_op", "composite"])
def test_keras_file_round_trip(tmp_path, implementation, rng):
    features, rois = inputs(rng)
    f_in = keras.Input(shape=(6, 8, 3))
    r_in = keras.Input(shape=(5,))
    x = RoIPooling(2, 1 / 8, implementation=implementation)([f_in, r_in])
    x = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    model = keras.Model([f_in, r_in], x)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.layers[2], RoIPooling)
    np.testing.assert_array_equal(model.predict_on_batch([features, rois]),
                                  reloaded.predict_on_batch([features, rois]))


def test_supports_jit_follows_the_implementation():
    assert RoIPooling(7, 1 / 16, implementation="composite").supports_jit
    assert not RoIPooling(7, 1 / 16, implementation="custom_op").supports_jit
    # None picks the custom op, which is built here.
    assert not RoIPooling(7, 1 / 16).supports_jit


def test_jit_compiled_training_with_composite(rng):
    features, rois = inputs(rng)
    f_in = keras.Input(shape=(6, 8, 3))
    r_in = keras.Input(shape=(5,))
    x = keras.layers.Conv2D(4, 1)(f_in)
    x = RoIPooling(2, 1 / 8, implementation="composite")([x, r_in])
    model = keras.Model([f_in, r_in], keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    dataset = tf.data.Dataset.from_tensors(((features, rois), np.ones((3, 1), np.float32)))
    history = model.fit(dataset.repeat(3), epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_mixed_precision_keeps_rois_in_float32(rng):
    features, _ = inputs(rng)
    # Coordinates just below a cell's rounding point (8k + 4 at 1/8) whose float16 is on
    # it: 35.99 / 8 = 4.49875 -> cell 4, but float16(35.99) = 36.0 -> 4.5 -> cell 5;
    # likewise 19.995 -> 20.0 (cell 2 -> 3), 11.998 -> 12.0 (1 -> 2), 27.995 -> 28.0
    # (3 -> 4) and 43.99 -> 44.0 (5 -> 6). Autocast rois would pool other cells.
    rois = np.array([[0, 35.99, 19.995, 63, 47], [1, 11.998, 27.995, 43.99, 47],
                     [1, 0, 0, 35.99, 19.995]], np.float32)
    halved = rois.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(halved[:, 1:3], [[36, 20], [12, 28], [0, 0]])
    assert halved[1, 3] == 44 and halved[2, 3] == 36 and halved[2, 4] == 20
    layer = RoIPooling(2, 1 / 8, dtype="mixed_float16")
    out = layer([tf.cast(features, tf.float16), rois])
    assert out.dtype == tf.float16
    features = features.astype(np.float16).astype(np.float32)
    expected = naive_roi_pool(features, rois, 2, 2, 1 / 8)[0]
    np.testing.assert_array_equal(tf.cast(out, tf.float32).numpy(), expected)
    # The case tells the two apart: with float16 rois every RoI pools something else.
    autocast = naive_roi_pool(features, halved, 2, 2, 1 / 8)[0]
    assert all(not np.array_equal(a, b) for a, b in zip(expected, autocast))


@pytest.mark.parametrize("kwargs, error", [
    (dict(pooled_size=(7, 0), spatial_scale=0.0625), "pooled_size"),
    (dict(pooled_size=7, spatial_scale=-1), "spatial_scale"),
    (dict(pooled_size=7, spatial_scale=1, implementation="bilinear"), "implementation"),
])
def test_bad_arguments_name_the_value(kwargs, error):
    with pytest.raises(ValueError, match=error):
        RoIPooling(**kwargs)


def test_documented_example_trains_with_fit(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "roi_pooling_example", ROOT / "docs" / "examples" / "roi_pooling_in_your_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(tmp_path)
    assert results["test_accuracy"] >= 0.9
    assert results["reloaded_predictions_equal"]
