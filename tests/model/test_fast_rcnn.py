"""FastRCNN: the training step's SGD semantics, gradient flow, schedule, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.data.roidb import TargetStats
from keras_frcnn.model.fast_rcnn import FastRCNN, fold_target_stats, sgd, step_schedule


def batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 48, 64, 3)).astype(np.float32)
    xy = rng.uniform(0, 30, size=(16, 2))
    rois = np.concatenate([np.repeat([[0.0], [1.0]], 8, axis=0), xy,
                           xy + rng.uniform(8, 30, size=(16, 2))], axis=1).astype(np.float32)
    targets = {"labels": rng.integers(0, 3, 16).astype(np.int32),
               "bbox_targets": rng.normal(size=(16, 4)).astype(np.float32),
               "sample_weights": np.ones(16, np.float32)}
    targets["bbox_weights"] = (targets["labels"] > 0).astype(np.float32)
    return {"images": images, "rois": rois}, targets


def small_model(**kwargs):
    keras.utils.set_random_seed(1)
    return FastRCNN(num_classes=3, backbone="small", dropout=0.0, **kwargs)


def test_outputs_and_heads():
    model = small_model()
    x, _ = batch()
    out = model(x)
    assert out["cls_score"].shape == (16, 3) and out["bbox_pred"].shape == (16, 8)
    np.testing.assert_allclose(out["cls_prob"].numpy().sum(axis=1), 1, rtol=1e-5)
    kernel, bias = model.get_layer("bbox_pred").get_weights()
    assert abs(kernel.std() - 0.001) < 0.0002 and not bias.any()
    assert abs(model.get_layer("cls_score").get_weights()[0].std() - 0.01) < 0.002


def test_dropout_after_fc6_and_fc7_in_training_only():
    # The release's drop6 / drop7 (ratio 0.5, kept units scaled by 2 in training, identity
    # at test): the layers follow fc6 and fc7, and only a training call drops.
    keras.utils.set_random_seed(1)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.5)
    for name, after in (("drop6", "fc6"), ("drop7", "fc7")):
        layer = model.get_layer(name)
        assert layer.rate == 0.5 and layer.input is model.get_layer(after).output
    x, _ = batch()
    # fc6 and drop6 from the same call (the backbone's BatchNorm also changes with training).
    probe = keras.Model(model.inputs, [model.get_layer("fc6").output,
                                       model.get_layer("drop6").output])
    fc6, dropped = (t.numpy() for t in probe(x, training=True))
    assert np.all((dropped == 0) | np.isclose(dropped, 2 * fc6))  # kept units scaled by 2
    assert np.any((dropped == 0) & (fc6 > 0)) and np.any(dropped > 0)
    fc6, kept = (t.numpy() for t in probe(x, training=False))
    np.testing.assert_array_equal(kept, fc6)


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    model = small_model()
    model.compile(optimizer=sgd(0.01))
    x, y = batch()
    before = model.test_step((x, y))["loss"].numpy()
    for _ in range(3):
        model.train_on_batch(x, y)
    model.reset_metrics()
    after = model.test_step((x, y))["loss"].numpy()
    assert after < before


def test_gradients_flow_through_roi_pooling_and_frozen_layers_stay():
    model = small_model(frozen=("conv1_1", "bn1_1"))
    assert set(model.frozen_layers) == {"conv1_1", "bn1_1"}
    model.compile(optimizer=sgd(0.1))
    features = model.get_layer("small_features")
    frozen_before = features.get_layer("conv1_1").kernel.numpy().copy()
    trained_before = features.get_layer("conv2_1").kernel.numpy().copy()
    model.train_on_batch(*batch())
    np.testing.assert_array_equal(features.get_layer("conv1_1").kernel.numpy(), frozen_before)
    assert not np.array_equal(features.get_layer("conv2_1").kernel.numpy(), trained_before)


def test_freeze_backbone_trains_fc6_and_up_only():
    # Paper Table 5's "fc6 and up" with the paper's head: only fc6, fc7 and the two
    # siblings train; every backbone weight, BatchNorm statistics included, stays.
    model = small_model(freeze_backbone=True)
    trained = sorted(v.path for v in model.trainable_weights)
    assert trained == sorted(f"{layer}/{name}" for layer in ("fc6", "fc7", "cls_score",
                                                              "bbox_pred")
                             for name in ("kernel", "bias"))
    model.compile(optimizer=sgd(0.1))
    features = model.get_layer("small_features")
    backbone_before = [w.copy() for w in features.get_weights()]
    heads_before = {name: model.get_layer(name).kernel.numpy().copy()
                    for name in ("fc6", "fc7", "cls_score", "bbox_pred")}
    model.train_on_batch(*batch())
    for got, want in zip(features.get_weights(), backbone_before):
        np.testing.assert_array_equal(got, want)
    for name, before in heads_before.items():
        assert not np.array_equal(model.get_layer(name).kernel.numpy(), before), name


def test_biases_get_twice_the_rate_and_no_decay():
    model = small_model(weight_decay=0.01)
    lr = 0.05
    model.compile(optimizer=keras.optimizers.SGD(lr))  # plain SGD: the update is -lr * grad
    x, y = batch()
    fc6 = model.get_layer("fc6")
    kernel0, bias0 = fc6.kernel.numpy().copy(), fc6.bias.numpy().copy()
    with tf.GradientTape() as tape:
        losses = model.compute_losses(model(x, training=True), y)
    g_kernel, g_bias = tape.gradient(losses["loss"], [fc6.kernel, fc6.bias])
    model.train_on_batch(x, y)
    np.testing.assert_allclose(fc6.bias.numpy(), bias0 - lr * 2 * g_bias.numpy(), atol=1e-6)
    np.testing.assert_allclose(fc6.kernel.numpy(),
                               kernel0 - lr * (g_kernel.numpy() + 0.01 * kernel0), atol=1e-6)


def test_schedule_changes_rate_at_the_configured_step():
    schedule = step_schedule(0.001, total_steps=40_000)
    assert float(schedule(0)) == pytest.approx(0.001)
    assert float(schedule(29_999)) == pytest.approx(0.001)
    assert float(schedule(30_000)) == pytest.approx(0.0001)
    short = step_schedule(0.01, total_steps=100)
    assert float(short(74)) == pytest.approx(0.01) and float(short(75)) == pytest.approx(0.001)
    # VOC 2012 in the paper: 100k steps, x 0.1 every 40k.
    voc12 = step_schedule(0.001, total_steps=100_000, step_size=40_000)
    assert [float(voc12(s)) for s in (39_999, 40_000, 79_999, 80_000, 99_999)] == pytest.approx(
        [0.001, 0.0001, 0.0001, 0.00001, 0.00001])


def test_save_load_round_trip(tmp_path):
    model = small_model()
    x, _ = batch()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, FastRCNN) and loaded.get_config()["num_classes"] == 3
    for key in ("cls_prob", "bbox_pred"):
        np.testing.assert_array_equal(model(x)[key].numpy(), loaded(x)[key].numpy())


def test_folding_target_statistics_gives_raw_deltas(rng):
    stats = TargetStats(np.array([[0, 0, 0, 0], [0.1, -0.2, 0.3, 0.0], [0, 0.5, 0, -1]]),
                        np.array([[1, 1, 1, 1], [0.1, 0.1, 0.2, 0.2], [0.2, 0.3, 0.4, 0.5]]))
    kernel, bias = rng.normal(size=(5, 8)), rng.normal(size=8)
    features = rng.normal(size=(3, 5))
    normalised = features @ kernel + bias
    raw = normalised * stats.stds[1:].reshape(-1) + stats.means[1:].reshape(-1)
    folded_kernel, folded_bias = fold_target_stats([kernel, bias], stats, 3)
    np.testing.assert_allclose(features @ folded_kernel + folded_bias, raw, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        FastRCNN(num_classes=1)
    with pytest.raises(ValueError, match="backbone must be one of"):
        FastRCNN(num_classes=3, backbone="resnet50")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        FastRCNN(num_classes=3, backbone="caffenet", backbone_weights="imagenet")


def test_fc_units_override_the_backbone_widths_and_survive_saving():
    model = FastRCNN(num_classes=3, backbone="small", fc_units=(48, 24))
    assert model.get_layer("fc6").kernel.shape == (7 * 7 * 128, 48)
    assert model.get_layer("fc7").kernel.shape == (48, 24)
    assert model.get_layer("cls_score").kernel.shape == (24, 3)
    rebuilt = FastRCNN.from_config(model.get_config())
    assert rebuilt.get_layer("fc7").kernel.shape == (48, 24)
    default = FastRCNN(num_classes=3, backbone="small")
    assert default.get_layer("fc6").units == 256 and default.get_layer("fc7").units == 256


def test_fc_units_bad_values():
    with pytest.raises(ValueError, match="two positive widths"):
        FastRCNN(num_classes=3, backbone="small", fc_units=(64,))
    with pytest.raises(ValueError, match="two positive widths"):
        FastRCNN(num_classes=3, backbone="small", fc_units=(64, 0))
    # VGG16's ImageNet fc layers initialise fc6/fc7: another width cannot take them
    # (raised before any download).
    with pytest.raises(ValueError, match="4096"):
        FastRCNN(num_classes=3, backbone="vgg16", backbone_weights="imagenet",
                 fc_units=(1024, 1024))
