"""Per-RoI heads: fc6/fc7 ("fc") and MobileNetV2's ImageNet blocks ("imagenet_blocks")."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import training, workdirs
from keras_frcnn.compress import compress_model
from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig
from keras_frcnn.evaluation.run import load_model
from keras_frcnn.export import export_saved_model, run_in_fresh_process, verify_export
from keras_frcnn.model.backbones import build_backbone_and_head
from keras_frcnn.model.fast_rcnn import FastRCNN, sgd
from tests.model.mobilenet_weights import calibrated_mobilenet_v2_weights, structured_images
from tests.test_export import scene
from tests.test_training import tiny_config

HEAD = "imagenet_blocks"


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A Keras weights file of MobileNetV2 without its top (random, seeded), standing in
    for ImageNet weights: what matters is that every layer takes its values from it."""
    keras.utils.set_random_seed(3)
    reference = keras.applications.MobileNetV2(include_top=False, weights=None)
    # Keras initialises BN statistics to 0 / 1: give them values a copy must carry too.
    rng = np.random.default_rng(0)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma + rng.uniform(-0.1, 0.1, gamma.shape), beta,
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, var.shape)])
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.weights.h5"
    reference.save_weights(path)
    return reference, str(path)


def blocks_model(weights=None, **kwargs):
    keras.utils.set_random_seed(1)
    return FastRCNN(num_classes=3, backbone="mobilenet_v2", backbone_weights=weights, head=HEAD,
                    **kwargs)


def rois_batch(seed=0, count=8):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, size=(2, 96, 128, 3)).astype(np.float32)
    xy = rng.uniform(0, 60, size=(count, 2))
    rois = np.concatenate([np.repeat([[0.0], [1.0]], count // 2, axis=0), xy,
                           xy + rng.uniform(16, 60, size=(count, 2))], axis=1).astype(np.float32)
    labels = rng.integers(0, 3, count).astype(np.int32)
    targets = {"labels": labels, "bbox_targets": rng.normal(size=(count, 4)).astype(np.float32),
               "bbox_weights": (labels > 0).astype(np.float32),
               "sample_weights": np.ones(count, np.float32)}
    return {"images": images, "rois": rois}, targets


def test_head_geometry_and_parameters():
    model = blocks_model()
    assert model.get_layer("roi_pool").pooled_size == (8, 8)
    head = model.get_layer("mobilenet_v2_head")
    assert head.input.shape[-1] == 576 and head.output.shape[-1] == 1280
    # block_13's stride-2 depthwise pads (0, 1) as at 224 x 224: 8 x 8 RoIs -> 4 x 4.
    probe = keras.Model(model.inputs, model.get_layer("head_pool").input)
    x, _ = rois_batch()
    assert probe(x).shape == (8, 4, 4, 1280)
    assert model.get_layer("cls_score").kernel.shape == (1280, 3)
    assert model.get_layer("bbox_pred").kernel.shape == (1280, 8)
    names = {layer.name for layer in model.layers}
    assert not names & {"fc6", "fc7", "flatten"} and {"head_pool", "drop_head"} <= names
    fc = FastRCNN(num_classes=3, backbone="mobilenet_v2")
    # fc6 alone is 7 * 7 * 576 * 1024 weights; the blocks head trains ~2 M in all.
    assert fc.get_layer("fc6").kernel.shape == (7 * 7 * 576, 1024)
    assert fc.count_params() - model.count_params() > 28_000_000
    out = model(x)
    assert out["cls_score"].shape == (8, 3) and out["bbox_pred"].shape == (8, 8)


def test_head_starts_from_the_weights_file(imagenet_file):
    reference, path = imagenet_file
    model = blocks_model(path)
    head = model.get_layer("mobilenet_v2_head")
    features = model.get_layer("mobilenet_v2_features")
    for name in ("block_13_depthwise", "block_13_project_BN", "block_15_expand", "Conv_1",
                 "Conv_1_bn"):
        for got, want in zip(head.get_layer(name).get_weights(),
                             reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(features.get_layer("block_13_expand").kernel.numpy(),
                                  reference.get_layer("block_13_expand").kernel.numpy())
    # Per RoI, the head computes what the ImageNet network computes after block_13_expand:
    # an 8 x 8 input to the head gives the network's 4 x 4 Conv_1 map of that input.
    tail = keras.Model(reference.get_layer("block_13_expand_relu").output, reference.output)
    cells = np.random.default_rng(1).uniform(0, 6, (3, 8, 8, 576)).astype(np.float32)
    np.testing.assert_allclose(head(cells).numpy(), tail(cells).numpy(), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_head_but_not_frozen_layers_or_statistics(imagenet_file):
    _, path = imagenet_file
    model = blocks_model(path, frozen=("Conv1", "block_14_"), dropout=0.0)
    assert {"Conv1", "block_14_expand", "block_14_project"} <= set(model.frozen_layers)
    model.compile(optimizer=sgd(0.1))
    head = model.get_layer("mobilenet_v2_head")

    def values(name):
        return [w.copy() for w in head.get_layer(name).get_weights()]
    watched = ("block_13_depthwise", "block_15_expand", "Conv_1", "block_14_expand",
               "block_16_project_BN", "Conv_1_bn")
    before = {name: values(name) for name in watched}
    features = model.get_layer("mobilenet_v2_features")
    conv1 = features.get_layer("Conv1").kernel.numpy().copy()
    expand = features.get_layer("block_13_expand").kernel.numpy().copy()
    model.train_on_batch(*rois_batch())
    np.testing.assert_array_equal(features.get_layer("Conv1").kernel.numpy(), conv1)
    assert not np.array_equal(features.get_layer("block_13_expand").kernel.numpy(), expand)
    for name in ("block_13_depthwise", "block_15_expand", "Conv_1"):  # trained
        assert not np.array_equal(values(name)[0], before[name][0]), name
    # Frozen by prefix, and every BatchNorm (scale, offset, ImageNet statistics) kept.
    for name in ("block_14_expand", "block_16_project_BN", "Conv_1_bn"):
        for got, want in zip(values(name), before[name]):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_freeze_backbone_trains_the_head_alone(imagenet_file):
    # Paper Table 5's "fc layers only": with this head, the ImageNet blocks and siblings.
    model = blocks_model(imagenet_file[1], freeze_backbone=True, dropout=0.0)
    model.compile(optimizer=sgd(0.1))
    features = model.get_layer("mobilenet_v2_features")
    head = model.get_layer("mobilenet_v2_head")
    backbone_before = [w.copy() for w in features.get_weights()]
    conv_1 = head.get_layer("Conv_1").kernel.numpy().copy()
    model.train_on_batch(*rois_batch())
    for got, want in zip(features.get_weights(), backbone_before):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(head.get_layer("Conv_1").kernel.numpy(), conv_1)


def test_head_saves_and_loads(tmp_path, imagenet_file):
    model = blocks_model(imagenet_file[1])
    x, _ = rois_batch()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.get_config()["head"] == HEAD
    for key in ("cls_prob", "bbox_pred"):
        np.testing.assert_array_equal(model(x)[key].numpy(), loaded(x)[key].numpy())


def test_bad_head_arguments():
    with pytest.raises(ValueError, match="head must be one of"):
        FastRCNN(num_classes=3, backbone="mobilenet_v2", head="resnet_blocks",
                 factorized={"fc6": 8})
    with pytest.raises(ValueError, match="exists for backbones \\['mobilenet_v2'\\], not 'small'"):
        FastRCNN(num_classes=3, backbone="small", head=HEAD)
    with pytest.raises(ValueError, match="has no fc6/fc7"):
        FastRCNN(num_classes=3, backbone="mobilenet_v2", head=HEAD, fc_units=(64, 64))
    with pytest.raises(ValueError, match="no Dense layer named \\['fc6'\\] under head"):
        FastRCNN(num_classes=3, backbone="mobilenet_v2", head=HEAD, factorized={"fc6": 8})


@pytest.fixture(scope="module")
def calibrated_file(tmp_path_factory):
    """MobileNetV2 weights under which every RoI gets its own head output (random
    weights give all RoIs one constant Conv_1 map: tests/model/mobilenet_weights.py)."""
    return calibrated_mobilenet_v2_weights(tmp_path_factory.mktemp("calibrated") /
                                           "mobilenet_v2.weights.h5")


def calibrated_batch():
    x, targets = rois_batch()
    return {**x, "images": structured_images()}, targets


def test_svd_factors_the_siblings_only(calibrated_file):
    model = blocks_model(calibrated_file, dropout=0.0)
    with pytest.raises(ValueError, match="choose from \\['cls_score', 'bbox_pred'\\]; under head"):
        compress_model(model, {"fc6": 64})
    x, _ = calibrated_batch()
    full = model(x)["bbox_pred"].numpy()
    assert np.ptp(full, axis=0).max() > 1e-3  # the RoIs' deltas differ: the check can fail
    compressed, report = compress_model(model, {"bbox_pred": 8})  # full rank: same outputs
    assert report["layers"]["bbox_pred"]["params_after"] > 0
    np.testing.assert_allclose(compressed(x)["bbox_pred"].numpy(), full, rtol=1e-4, atol=1e-5)
    truncated, _ = compress_model(model, {"bbox_pred": 1})  # rank 1: other outputs
    assert np.abs(truncated(x)["bbox_pred"].numpy() - full).max() > 1e-4


def test_export_matches_the_detector_in_a_tensorflow_only_process(tmp_path, imagenet_file):
    model = blocks_model(imagenet_file[1], dropout=0.0)
    kernel, bias = model.get_layer("cls_score").get_weights()
    model.get_layer("cls_score").set_weights([kernel * 2000.0, bias])  # spread the scores
    image, proposals = scene()
    post = PostprocessConfig(mode="default", score_threshold=0.0)
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                                preprocessing="tf", postprocess=post)
    expected = Detector(model, DetectorConfig(scales=(96,), preprocessing="tf",
                                              postprocess=post)).detect(image[..., ::-1], proposals)
    served = verify_export(module, tmp_path / "1", image, proposals)
    assert int(served["num_detections"]) == len(expected) > 2
    np.testing.assert_array_equal(served["detection_classes"], expected.classes)
    np.testing.assert_allclose(served["detection_scores"], expected.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(served["detection_boxes"], expected.boxes, atol=1e-3)
    fresh = run_in_fresh_process(tmp_path / "1", image, proposals)  # imports TensorFlow only
    for name, value in served.items():
        np.testing.assert_array_equal(fresh[name], value, err_msg=name)


def blocks_config(tmp_path, steps, write=True):
    config = tiny_config(tmp_path, steps, write)
    config.model.backbone, config.model.head = "mobilenet_v2", HEAD
    return config


def test_training_resumes_and_records_the_head(tmp_path):
    config = blocks_config(tmp_path, steps=2)
    training.train(config, tmp_path / "work", progress=False)
    assert json.loads((tmp_path / "work" / "config.json").read_text())["model"]["head"] == HEAD
    config.train.steps = 3
    assert training.train(config, tmp_path / "work", progress=False)["step"] == 3
    assert workdirs.load_inference_model(tmp_path / "work").get_config()["head"] == HEAD
    checkpoint = load_model(config, tmp_path / "work", checkpoint="latest", num_classes=2)
    assert checkpoint.get_config()["head"] == HEAD
    other = blocks_config(tmp_path, steps=4, write=False)
    other.model.head = "fc"
    message = "model.head='imagenet_blocks', but the config says 'fc'"
    with pytest.raises(ValueError, match=message):
        training.train(other, tmp_path / "work", progress=False)
    with pytest.raises(ValueError, match=message):
        load_model(other, tmp_path / "work", checkpoint="latest", num_classes=2)


REPLICAS = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.model.test_heads import blocks_config
from tests.test_distributed import run
config = blocks_config(Path(sys.argv[1]), steps=2, write=False)
config.pipeline.flip = False
config.train.distribute = "mirrored"
config.train.devices = tuple(d.name for d in tf.config.list_logical_devices("CPU")[:2])
history, weights = run(config, Path(sys.argv[1]) / "two")
print("RESULT", json.dumps([v for _, v in history["loss"]]))
import numpy as np
np.savez(Path(sys.argv[1]) / "two.npz", *weights)
"""


def test_two_replicas_train_as_one_device_and_mixed_precision_trains(tmp_path):
    import subprocess
    import sys

    from tests.test_distributed import run

    config = blocks_config(tmp_path, steps=2)
    config.pipeline.flip = False
    one_history, one_weights = run(config, tmp_path / "one")
    # Two replicas of one image each: the head's BatchNorm keeps its statistics, so the
    # global batch's losses and the trained weights are the one device's. In a child
    # process: a second MirroredStrategy training in one process reuses collective keys.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", REPLICAS, str(tmp_path), str(root)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two_losses = json.loads(out.stdout.split("RESULT", 1)[1].splitlines()[0])
    np.testing.assert_allclose(two_losses, [v for _, v in one_history["loss"]], rtol=2e-4)
    with np.load(tmp_path / "two.npz") as two:
        for k, a in enumerate(one_weights):
            np.testing.assert_allclose(two[f"arr_{k}"], a, rtol=1e-3, atol=1e-5)
    config = blocks_config(tmp_path, steps=2, write=False)
    config.train.precision = "mixed_float16"
    history, _ = run(config, tmp_path / "mixed")
    assert all(np.isfinite(v) for _, v in history["loss"])
    model = workdirs.load_inference_model(tmp_path / "mixed")
    assert model.get_layer("mobilenet_v2_head").get_layer("Conv_1").dtype_policy.name == "float32"
    x, _ = rois_batch()
    assert model(x)["cls_prob"].dtype == tf.float32


def test_the_head_computes_in_float16_under_mixed_precision(calibrated_file):
    # Training builds the model under train.precision's policy (training.precision_policy):
    # the head's ImageNet layers then compute in float16 like the backbone's, with float32
    # variables; the losses cast the siblings' float16 outputs to float32 (losses.py).
    with training.precision_policy("mixed_float16"):
        model = blocks_model(calibrated_file, dropout=0.0)
    head = model.get_layer("mobilenet_v2_head")
    for name in ("block_14_project", "Conv_1"):
        layer = head.get_layer(name)
        assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32", name
    x, _ = calibrated_batch()
    out = model(x, training=True)
    assert out["cls_score"].dtype == tf.float16
    assert np.isfinite(out["cls_prob"].numpy()).all() and np.isfinite(out["bbox_pred"].numpy()).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    # The same network in float32: float16's numbers, per RoI, and RoIs that differ.
    full = blocks_model(calibrated_file, dropout=0.0)
    full.set_weights(model.get_weights())
    want = full(x, training=True)["cls_score"].numpy()
    assert np.ptp(want, axis=0).max() > 1e-2
    np.testing.assert_allclose(out["cls_score"].numpy().astype(np.float32), want, atol=0.05,
                               rtol=0.02)


def test_backbone_and_head_builder_refuses_other_backbones():
    with pytest.raises(ValueError, match="head 'imagenet_blocks' exists for backbones"):
        build_backbone_and_head("vgg16", None, HEAD)
    features, head, spec, _ = build_backbone_and_head("mobilenet_v2", None, "fc")
    assert head is None and spec.pooled_size == 7 and spec.fc_units == (1024, 1024)
