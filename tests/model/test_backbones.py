"""Every backbone builds, has the release's geometry, loads weights and trains in the pipeline."""

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_frcnn.model.backbones import (SPECS, CaffeMaxPooling2D, LocalResponseNormalization,
                                         build_backbone, caffe_pool_size, feature_shape)
from keras_frcnn.model.weights_files import caffe_to_keras
from keras_frcnn.model.fast_rcnn import FastRCNN, sgd

SHARED_WEIGHTS = (Path(__file__).resolve().parents[3] / "shared" / "weights"
                  / "mobilenet_v2_1.0_224_from_coral_quant.weights.h5")


def _conv5(name, height, width):
    model, _, _ = build_backbone(name)
    return tuple(model(np.zeros((1, height, width, 3), np.float32)).shape)


# conv5 at 600x1000, worked out by hand from the release's prototxts (docs/model.md):
# Caffe convolutions round down, its max pooling rounds up.
@pytest.mark.parametrize("name, expected", [("vgg16", (1, 38, 63, 512)),
                                            ("vgg_cnn_m_1024", (1, 36, 61, 512)),
                                            ("caffenet", (1, 39, 64, 256))])
def test_conv5_size_at_600x1000_is_the_release_s(name, expected):
    assert _conv5(name, 600, 1000) == expected
    assert feature_shape(name, 600, 1000) == expected[1:3]


# 333x517 by hand: vgg16 333 -> 167 -> 84 -> 42 -> 21, 517 -> 259 -> 130 -> 65 -> 33;
# vgg_cnn_m_1024 conv1 164x256, pool1 82x128, conv2 40x63, pool2 20x31;
# caffenet conv1 84x130, pool1 43x66, pool2 22x34.
@pytest.mark.parametrize("name, expected", [("vgg16", (1, 21, 33, 512)),
                                            ("vgg_cnn_m_1024", (1, 20, 31, 512)),
                                            ("caffenet", (1, 22, 34, 256))])
def test_conv5_size_at_an_odd_size(name, expected):
    assert _conv5(name, 333, 517) == expected
    assert feature_shape(name, 333, 517) == expected[1:3]


@pytest.mark.parametrize("name, channels, odd_size", [("small", 128, (42, 65)),
                                                      ("mobilenet_v2", 576, (20, 32))])
def test_feature_shape_of_the_keras_backbones(name, channels, odd_size):
    """small rounds its 3 halvings up; Keras' MobileNetV2 its first up, the next 3 down."""
    model, _, fc_init = build_backbone(name)
    assert fc_init is None
    assert feature_shape(name, 333, 517) == odd_size
    for height, width in ((160, 224), (333, 517)):
        features = model(np.zeros((1, height, width, 3), np.float32))
        assert features.shape == (1, *feature_shape(name, height, width), channels)


def test_feature_shape_refuses_bad_inputs():
    with pytest.raises(ValueError, match="too small for backbone 'vgg_cnn_m_1024'"):
        feature_shape("vgg_cnn_m_1024", 6, 600)
    with pytest.raises(ValueError, match="backbone must be one of"):
        feature_shape("resnet50", 600, 1000)


def test_caffe_pool_size_by_hand():
    assert caffe_pool_size(150, 3, 2, 1) == 76  # ceil(149 / 2) + 1; 75 * 2 < 151
    assert caffe_pool_size(297, 3, 2) == 148  # ceil(294 / 2) + 1
    assert caffe_pool_size(73, 3, 2) == 36  # ceil(70 / 2) + 1 (Keras 'valid' also 36)
    assert caffe_pool_size(74, 3, 2) == 37  # ceil(71 / 2) + 1 (Keras 'valid': 36)
    assert caffe_pool_size(75, 2, 2) == 38  # Keras 'valid': 37
    assert caffe_pool_size(3, 2, 2, 1) == 2  # ceil(3 / 2) + 1 = 3, but (3 - 1) * 2 >= 3 + 1


def _caffe_max_pool(x, kernel, stride, pad):
    """pooling_layer.cpp's forward pass on one [H, W] channel."""
    height, width = x.shape
    sizes = []
    for size in (height, width):
        pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
        if pad and (pooled - 1) * stride >= size + pad:
            pooled -= 1
        sizes.append(pooled)
    out = np.zeros(sizes, x.dtype)
    for ph in range(sizes[0]):
        for pw in range(sizes[1]):
            hstart, wstart = ph * stride - pad, pw * stride - pad
            hend, wend = min(hstart + kernel, height + pad), min(wstart + kernel, width + pad)
            out[ph, pw] = x[max(hstart, 0):min(hend, height), max(wstart, 0):min(wend, width)].max()
    return out


@pytest.mark.parametrize("kernel, stride, pad", [(3, 2, 1), (3, 2, 0), (2, 2, 0), (2, 2, 1)])
def test_caffe_max_pooling_matches_caffe_s_loops(kernel, stride, pad):
    rng = np.random.default_rng(0)
    layer = CaffeMaxPooling2D(kernel, stride, pad)
    for height, width in ((7, 8), (6, 9), (5, 5), (3, 4)):
        x = rng.normal(size=(1, height, width, 2)).astype(np.float32)  # negative: -inf pad, not 0
        y = np.asarray(layer(x))
        assert y.shape[1:3] == layer.compute_output_shape((1, height, width, 2))[1:3]
        for c in range(2):
            expected = _caffe_max_pool(x[0, :, :, c], kernel, stride, pad)
            np.testing.assert_array_equal(y[0, :, :, c], expected)


@pytest.mark.parametrize("alpha, k", [(1e-4, 1.0), (5e-4, 2.0)])
def test_lrn_is_caffe_s(alpha, k):
    x = np.random.default_rng(1).uniform(0, 60, size=(1, 2, 3, 7)).astype(np.float32)
    squares = np.stack([(x[..., max(c - 2, 0):c + 3] ** 2).sum(-1) for c in range(7)], -1)
    expected = x / (k + alpha / 5 * squares) ** 0.75
    np.testing.assert_allclose(LocalResponseNormalization(5, alpha, 0.75, k)(x), expected,
                               rtol=1e-5)


def _geometry(model):
    """Convs (name, kernel, stride, pad, groups, filters), pools (name, kernel, stride, pad),
    LRNs (name, size, alpha, beta, k), in the model's order."""
    rows, layers = [], {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            pad_layer = layers.get(f"{layer.name}_pad")  # ((top, bottom), (left, right))
            pad = ((layer.kernel_size[0] - 1) // 2 if layer.padding == "same"
                   else pad_layer.padding[0][0] if pad_layer else 0)
            rows.append((layer.name, layer.kernel_size[0], layer.strides[0], pad, layer.groups,
                         layer.filters))
        elif isinstance(layer, CaffeMaxPooling2D):
            rows.append((layer.name, layer.pool_size, layer.strides, layer.pad))
        elif isinstance(layer, LocalResponseNormalization):
            rows.append((layer.name, layer.size, layer.alpha, layer.beta, layer.k))
    return rows


def test_layers_follow_the_prototxts():
    """models/CaffeNet/train.prototxt and models/VGG_CNN_M_1024/train.prototxt of the release."""
    assert _geometry(build_backbone("caffenet")[0]) == [
        ("conv1", 11, 4, 5, 1, 96), ("pool1", 3, 2, 1), ("norm1", 5, 1e-4, 0.75, 1.0),
        ("conv2", 5, 1, 2, 2, 256), ("pool2", 3, 2, 1), ("norm2", 5, 1e-4, 0.75, 1.0),
        ("conv3", 3, 1, 1, 1, 384), ("conv4", 3, 1, 1, 2, 384), ("conv5", 3, 1, 1, 2, 256)]
    assert _geometry(build_backbone("vgg_cnn_m_1024")[0]) == [
        ("conv1", 7, 2, 0, 1, 96), ("norm1", 5, 5e-4, 0.75, 2.0), ("pool1", 3, 2, 0),
        ("conv2", 5, 2, 1, 1, 256), ("norm2", 5, 5e-4, 0.75, 2.0), ("pool2", 3, 2, 0),
        ("conv3", 3, 1, 1, 1, 512), ("conv4", 3, 1, 1, 1, 512), ("conv5", 3, 1, 1, 1, 512)]
    vgg16 = _geometry(build_backbone("vgg16")[0])
    assert [row for row in vgg16 if "pool" in row[0]] == [
        (f"block{b}_pool", 2, 2, 0) for b in range(1, 5)]
    assert all(row[1:5] == (3, 1, 1, 1) for row in vgg16 if "conv" in row[0])


def test_paper_geometry_and_frozen_layers():
    assert (SPECS["vgg16"].pooled_size, SPECS["vgg16"].fc_units) == (7, (4096, 4096))
    assert (SPECS["vgg_cnn_m_1024"].pooled_size, SPECS["vgg_cnn_m_1024"].fc_units) == (6, (4096, 1024))
    assert SPECS["caffenet"].pooled_size == 6
    model = FastRCNN(num_classes=21, backbone="vgg16")
    assert sorted(model.frozen_layers) == ["block1_conv1", "block1_conv2", "block1_pool",
                                           "block2_conv1", "block2_conv2", "block2_pool"]
    assert model.get_layer("fc6").kernel.shape == (7 * 7 * 512, 4096)
    assert model.get_layer("bbox_pred").kernel.shape == (4096, 80)


def _random_npz(path, model, fc_units, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            arrays[f"{layer.name}/kernel"] = rng.normal(size=layer.kernel.shape).astype(np.float32)
            arrays[f"{layer.name}/bias"] = rng.normal(size=layer.bias.shape).astype(np.float32)
    rows = 6 * 6 * model.output.shape[-1]
    for name, shape in (("fc6", (rows, fc_units[0])), ("fc7", fc_units)):
        arrays[f"{name}/kernel"] = rng.normal(size=shape).astype(np.float32)
        arrays[f"{name}/bias"] = rng.normal(size=shape[1]).astype(np.float32)
    np.savez(path, **arrays)
    return arrays


def test_npz_initialises_the_convs_and_fc6_fc7(tmp_path):
    path = tmp_path / "caffenet.npz"
    arrays = _random_npz(path, build_backbone("caffenet")[0], (64, 32))
    model = FastRCNN(num_classes=3, backbone="caffenet", backbone_weights=str(path),
                     fc_units=(64, 32))
    features = model.get_layer("caffenet_features")
    for name in ("conv1", "conv4"):
        np.testing.assert_array_equal(features.get_layer(name).kernel.numpy(),
                                      arrays[f"{name}/kernel"])
    for name in ("fc6", "fc7"):
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, arrays[f"{name}/kernel"])
        np.testing.assert_array_equal(bias, arrays[f"{name}/bias"])


def test_npz_with_convs_only_leaves_fc_init_empty(tmp_path, caplog):
    model, spec, _ = build_backbone("vgg_cnn_m_1024")
    arrays = {k: v for k, v in _random_npz(tmp_path / "m.npz", model, (8, 4)).items()
              if not k.startswith("fc")}
    np.savez(tmp_path / "convs.npz", **arrays)
    with caplog.at_level("WARNING", logger="keras_frcnn.model"):
        loaded, _, fc_init = build_backbone("vgg_cnn_m_1024", str(tmp_path / "convs.npz"))
    assert fc_init is None
    assert "holds no fc6/fc7: they start from random weights" in caplog.text  # not silently
    np.testing.assert_array_equal(loaded.get_layer("conv2").kernel.numpy(), arrays["conv2/kernel"])


def test_bad_npz_files_are_refused(tmp_path):
    arrays = _random_npz(tmp_path / "good.npz", build_backbone("caffenet")[0], (8, 4))
    cases = [({k: v for k, v in arrays.items() if k != "conv5/bias"}, r"missing \['conv5/bias'\]"),
             ({k: v for k, v in arrays.items() if not k.startswith("fc7")}, "missing.*fc7/kernel"),
             ({**arrays, "conv1/weights": arrays["conv1/kernel"]}, r"unknown \['conv1/weights'\]"),
             ({**arrays, "conv1/kernel": arrays["conv1/kernel"].T}, "conv1/kernel has shape"),
             ({**arrays, "fc6/kernel": arrays["fc6/kernel"][:100]}, "fc6/kernel has shape")]
    for i, (bad, message) in enumerate(cases):
        np.savez(tmp_path / f"bad{i}.npz", **bad)
        with pytest.raises(ValueError, match=message):
            build_backbone("caffenet", str(tmp_path / f"bad{i}.npz"))
    with pytest.raises(ValueError, match=".npz files load into"):
        build_backbone("small", str(tmp_path / "good.npz"))


def test_caffe_to_keras_keeps_caffe_s_products():
    rng = np.random.default_rng(2)
    channels, pooled = 3, 2
    fc6 = rng.normal(size=(5, channels * pooled * pooled))  # Caffe: [out, in], in is (c, h, w)
    conv = rng.normal(size=(4, 3, 2, 3))  # Caffe: [out, in, kh, kw]
    arrays = caffe_to_keras({"conv1_1": (conv, np.zeros(4)), "fc6": (fc6, np.arange(5)),
                             "fc7": (fc6[:, :4], np.zeros(5))}, pooled)
    pool5 = rng.normal(size=(pooled, pooled, channels))  # ours: [h, w, c]
    np.testing.assert_allclose(pool5.reshape(-1) @ arrays["fc6/kernel"],
                               fc6 @ pool5.transpose(2, 0, 1).reshape(-1))
    assert arrays["block1_conv1/kernel"].shape == (2, 3, 3, 4)
    assert arrays["block1_conv1/kernel"][1, 0, 2, 3] == conv[3, 2, 1, 0]
    np.testing.assert_array_equal(arrays["fc7/kernel"], fc6[:, :4].T)


def test_vgg16_loads_a_keras_applications_weights_file(tmp_path):
    reference = keras.applications.VGG16(include_top=False, weights=None)
    reference.save_weights(tmp_path / "vgg16.weights.h5")
    model, _, fc_init = build_backbone("vgg16", str(tmp_path / "vgg16.weights.h5"))
    assert fc_init is None
    for name in ("block1_conv1", "block5_conv3"):
        for ours, theirs in zip(model.get_layer(name).get_weights(),
                                reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_a_features_weights_file_loads_into_caffenet(tmp_path):
    saved, _, _ = build_backbone("caffenet")
    saved.save_weights(tmp_path / "caffenet.weights.h5")
    model, _, fc_init = build_backbone("caffenet", str(tmp_path / "caffenet.weights.h5"))
    assert fc_init is None
    np.testing.assert_array_equal(model.get_layer("conv4").kernel.numpy(),
                                  saved.get_layer("conv4").kernel.numpy())


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason="../shared/weights not present")
def test_mobilenet_v2_loads_a_local_weights_file():
    reference = keras.applications.MobileNetV2(include_top=False, weights=None)
    reference.load_weights(SHARED_WEIGHTS)
    model, spec, _ = build_backbone("mobilenet_v2", str(SHARED_WEIGHTS))
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(),
                                  reference.get_layer("Conv1").kernel.numpy())
    assert spec.preprocessing == "tf"


def test_bad_weights_argument():
    with pytest.raises(ValueError, match="not 'imagenet', None or an existing file"):
        build_backbone("small", "/no/such/file.h5")


def test_fit_from_the_input_pipeline(tmp_path):
    from keras_frcnn.data.pipeline import PipelineConfig, training_dataset
    from keras_frcnn.data.roidb import target_stats
    from keras_frcnn.data.sampling import SamplingConfig
    from tests.data.test_pipeline import make_roidb

    roidb = make_roidb(tmp_path)
    stats = target_stats(roidb, 2)
    dataset = training_dataset(roidb, stats, SamplingConfig(rois_per_batch=32),
                               PipelineConfig(scales=(64,), max_size=128, preprocessing="tf"))
    keras.utils.set_random_seed(0)
    model = FastRCNN(num_classes=2, backbone="small")
    model.compile(optimizer=sgd(0.001))
    history = model.fit(dataset, steps_per_epoch=4, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert set(history.history) >= {"loss", "cls_loss", "bbox_loss", "accuracy", "fg_accuracy"}


@pytest.mark.parametrize("layer", [CaffeMaxPooling2D(3, 2, pad=1, name="pool1"),
                                   LocalResponseNormalization(5, 0.0005, 0.75, 2.0, name="n")])
def test_caffe_layers_survive_a_keras_round_trip(layer, tmp_path):
    # A model holding the layer is saved and loaded as a .keras file, and computes the same.
    inputs = keras.Input((9, 11, 4))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 4)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))
