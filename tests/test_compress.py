"""Truncated SVD of the fc layers (paper section 3.1): factorisation, model, workdir."""

import json

import keras
import numpy as np
import pytest

from keras_frcnn import training, workdirs
from keras_frcnn.compress import compress_model, compress_workdir, format_report, truncated_svd
from keras_frcnn.configs import format_ranks, parse_ranks
from keras_frcnn.model.fast_rcnn import FastRCNN


def test_truncated_svd_keeps_the_largest_singular_values():
    # Hand-worked: a kernel with singular values 3, 2, 1 (rows and columns permuted);
    # rank 2 drops the 1, rank 3 is exact.
    kernel = np.array([[0, 2, 0], [0, 0, 1], [3, 0, 0], [0, 0, 0]], np.float64)
    first, second, sigma = truncated_svd(kernel, 2)
    np.testing.assert_allclose(sigma, [3, 2, 1])
    assert first.shape == (4, 2) and second.shape == (2, 3)
    expected = kernel.copy()
    expected[1, 2] = 0.0
    np.testing.assert_allclose(first @ second, expected, atol=1e-12)
    first, second, _ = truncated_svd(kernel, 3)
    np.testing.assert_allclose(first @ second, kernel, atol=1e-12)


def test_truncated_svd_error_is_the_dropped_energy(rng):
    kernel = rng.normal(size=(40, 24)).astype(np.float32)
    first, second, sigma = truncated_svd(kernel, 10)
    error = np.linalg.norm(kernel - first @ second) / np.linalg.norm(kernel)
    np.testing.assert_allclose(error, np.sqrt((sigma[10:] ** 2).sum() / (sigma ** 2).sum()),
                               rtol=1e-4)
    assert first.dtype == second.dtype == np.float32


def test_parse_ranks():
    assert parse_ranks("fc6:1024, fc7:256") == {"fc6": 1024, "fc7": 256}
    assert parse_ranks("") == {}
    assert format_ranks({"fc6": 3, "fc7": 2}) == "fc6:3,fc7:2"
    with pytest.raises(ValueError, match="layer:rank pairs"):
        parse_ranks("fc6=12")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return FastRCNN(num_classes=4, backbone="small", dropout=0.0)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {"images": rng.normal(size=(1, 48, 64, 3)).astype(np.float32),
            "rois": np.array([[0, 0, 0, 40, 30], [0, 10, 5, 60, 45], [0, 3, 3, 20, 20]],
                             np.float32)}


def test_factored_model_layers_and_parameters(model):
    compressed, report = compress_model(model, {"fc6": 32, "fc7": 16})
    fc6_l, fc6 = compressed.get_layer("fc6_L"), compressed.get_layer("fc6")
    assert fc6_l.kernel.shape == (7 * 7 * 128, 32) and not fc6_l.use_bias
    assert fc6.kernel.shape == (32, 256) and fc6.activation is keras.activations.relu
    assert compressed.get_layer("fc7_L").activation is keras.activations.linear
    assert report["layers"]["fc6"]["params_after"] == 32 * (6272 + 256) + 256
    assert report["layers"]["fc6"]["params_before"] == 6272 * 256 + 256
    saved = (6272 * 256 - 32 * (6272 + 256)) + (256 * 256 - 16 * (256 + 256))
    assert report["params_before"] - report["params_after"] == saved
    np.testing.assert_array_equal(compressed.get_layer("fc6").bias.numpy(),
                                  model.get_layer("fc6").bias.numpy())
    assert "model parameters" in format_report(report)


def test_full_rank_factorisation_reproduces_the_model(model):
    compressed, report = compress_model(
        model, {"fc6": 256, "fc7": 256, "cls_score": 4, "bbox_pred": 12}, [inputs()])
    expected, actual = model(inputs()), compressed(inputs())
    for name in ("cls_prob", "bbox_pred"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-4, atol=1e-6)
    for entry in report["layers"].values():
        assert entry["output_error"] < 1e-5 and entry["energy_kept"] > 1 - 1e-6


def test_output_error_is_measured_on_the_calibration_rois(model):
    compressed, report = compress_model(model, {"fc6": 8}, [inputs(0), inputs(1)])
    probe = keras.Model(model.inputs, model.get_layer("fc6").input)
    x = np.concatenate([probe(inputs(0)), probe(inputs(1))]).astype(np.float64)
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("fc6").get_weights())
    first = compressed.get_layer("fc6_L").kernel.numpy().astype(np.float64)
    second = compressed.get_layer("fc6").kernel.numpy().astype(np.float64)
    exact, approx = x @ kernel + bias, x @ first @ second + bias
    np.testing.assert_allclose(report["layers"]["fc6"]["output_error"],
                               np.linalg.norm(approx - exact) / np.linalg.norm(exact), rtol=1e-6)
    assert 0 < report["layers"]["fc6"]["output_error"] < 1


def test_bad_ranks_are_refused_with_the_limit(model):
    with pytest.raises(ValueError, match=r"rank 300 is outside \[1, min\(u, v\)\] = \[1, 256\]"):
        compress_model(model, {"fc6": 300})
    with pytest.raises(ValueError, match="outside"):
        compress_model(model, {"fc7": 0})
    with pytest.raises(ValueError, match="cannot factor layer 'conv4'"):
        compress_model(model, {"conv4": 8})
    compressed, _ = compress_model(model, {"fc6": 8})
    with pytest.raises(ValueError, match="already factored"):
        compress_model(compressed, {"fc6": 4})
    with pytest.raises(ValueError, match="no layers"):
        compress_model(model, {})


def test_compressed_model_saves_and_loads(model, tmp_path):
    compressed, _ = compress_model(model, {"fc6": 16, "fc7": 16})
    compressed.save(tmp_path / "m.keras")
    loaded = workdirs.load_inference_model(tmp_path / "m.keras")
    assert loaded.get_config()["factorized"] == {"fc6": 16, "fc7": 16}
    np.testing.assert_array_equal(loaded(inputs())["cls_prob"], compressed(inputs())["cls_prob"])


def test_compress_workdir_writes_a_workdir_that_trains_and_evaluates(tmp_path):
    from tests.test_training import tiny_config

    config = tiny_config(tmp_path, steps=2)
    training.train(config, tmp_path / "work", progress=False)
    report = compress_workdir(config, tmp_path / "work", tmp_path / "svd",
                              {"fc6": 16, "fc7": 8}, calibration_images=1)
    out = tmp_path / "svd"
    for name in ("model.keras", "compress.json", "config.json", "classes.json",
                 "target_stats.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["model"]["svd"] == "fc6:16,fc7:8"
    assert json.loads((out / "compress.json").read_text())["ranks"] == {"fc6": 16, "fc7": 8}
    assert "output_error" in report["layers"]["fc6"]
    with pytest.raises(ValueError, match="already holds a model"):
        compress_workdir(config, tmp_path / "work", out, {"fc6": 16})

    # The step-0 checkpoint holds the same network with training (normalised) targets.
    from keras_frcnn.evaluation.run import load_model

    from_checkpoint = load_model(config, out, checkpoint="latest", num_classes=2)
    saved = workdirs.load_inference_model(out)
    x = {"images": np.zeros((1, 72, 96, 3), np.float32),
         "rois": np.array([[0, 5, 5, 40, 40]], np.float32)}
    np.testing.assert_allclose(from_checkpoint(x)["bbox_pred"], saved(x)["bbox_pred"],
                               rtol=1e-4, atol=1e-6)

    # Fine-tuning: train() in the compressed workdir builds the factored model from
    # compress.json and starts at step 0.
    result = training.train(config, out, progress=False)
    assert result["step"] == 2
    assert workdirs.load_inference_model(out).get_config()["factorized"] == {"fc6": 16, "fc7": 8}
    config.model.svd = "fc6:4"
    with pytest.raises(ValueError, match="compressed with fc6:16,fc7:8"):
        training.train(config, out, progress=False)
