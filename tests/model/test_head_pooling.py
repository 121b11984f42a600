"""The "imagenet_blocks" head after RoI pooling: per RoI, the ImageNet blocks' Conv_1 map
is averaged over its cells (global average, not max, pooling) and dropped out at the
model's rate in training only. Uses BatchNorm-calibrated weights (mobilenet_weights.py),
so that RoIs get different outputs."""

import keras
import numpy as np
import pytest

from keras_frcnn.model.fast_rcnn import FastRCNN
from tests.model.mobilenet_weights import calibrated_mobilenet_v2_weights, structured_images

# Six RoIs of image 0 and two of image 1: on each rectangle, across both, elsewhere.
ROIS = np.array([[0, 20, 10, 69, 49], [0, 80, 40, 119, 89], [0, 0, 0, 127, 95],
                 [0, 5, 5, 40, 40], [0, 0, 60, 30, 95], [0, 60, 0, 127, 40],
                 [1, 30, 20, 100, 80], [1, 10, 50, 60, 90]], np.float32)
INPUTS = {"images": structured_images(), "rois": ROIS}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return calibrated_mobilenet_v2_weights(tmp_path_factory.mktemp("head") / "mnv2.weights.h5")


@pytest.fixture(scope="module")
def model(weights):
    keras.utils.set_random_seed(1)  # the siblings' initialisers and the dropout seed
    return FastRCNN(num_classes=3, backbone="mobilenet_v2", backbone_weights=weights,
                    head="imagenet_blocks", dropout=0.5)


def head_probe(model):
    """The head's Conv_1 map [n, 4, 4, 1280], the pooled [n, 1280] and dropped-out
    [n, 1280] vectors, and cls_score [n, 3]."""
    return keras.Model(model.inputs, [model.get_layer("head_pool").input,
                                      model.get_layer("head_pool").output,
                                      model.get_layer("drop_head").output,
                                      model.get_layer("cls_score").output])


def test_rois_get_different_outputs(model):
    """Guards the other checks: with these weights every pair of RoIs differs by more than
    0.01 in class probability (a head whose outputs were one constant would not)."""
    probs = model(INPUTS, training=False)["cls_prob"].numpy()
    gaps = np.abs(probs[:, None] - probs[None]).max(axis=2)
    assert gaps[~np.eye(len(ROIS), dtype=bool)].min() > 0.01


def test_the_head_map_is_averaged_over_its_cells(model):
    """Catches GlobalMaxPooling2D (or any other pooling) for the average: the pooled
    vector is the mean of the 4 x 4 Conv_1 map (which here differs from its maximum by
    units), and cls_score is computed from it."""
    conv, pooled, _, score = (t.numpy() for t in head_probe(model)(INPUTS, training=False))
    assert conv.shape == (len(ROIS), 4, 4, 1280)
    assert np.abs(conv.max(axis=(1, 2)) - conv.mean(axis=(1, 2))).max() > 1.0
    np.testing.assert_allclose(pooled, conv.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    kernel, bias = model.get_layer("cls_score").get_weights()
    np.testing.assert_allclose(score, conv.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-4,
                               atol=1e-5)


def test_head_dropout_applies_in_training_only(model):
    """Catches the head's dropout ignored (rate 0, or its output unused): in training each
    pooled value is dropped (0) or scaled by 1 / (1 - 0.5) = 2, about half of them each
    way, and cls_score follows; in inference nothing is dropped. The ImageNet blocks'
    BatchNorms are frozen, so the map itself is the same in both modes."""
    probe = head_probe(model)
    conv, pooled, dropped, score = (t.numpy() for t in probe(INPUTS, training=True))
    conv_eval, pooled_eval, dropped_eval, score_eval = (t.numpy()
                                                        for t in probe(INPUTS, training=False))
    np.testing.assert_allclose(conv, conv_eval, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dropped_eval, pooled_eval)
    active = pooled != 0
    kept = dropped[active] != 0
    np.testing.assert_allclose(dropped[active][kept], 2 * pooled[active][kept], rtol=1e-6)
    assert 0.4 < kept.mean() < 0.6 and active.sum() > 1000
    kernel, bias = model.get_layer("cls_score").get_weights()
    np.testing.assert_allclose(score, dropped @ kernel + bias, rtol=1e-4, atol=1e-5)
    assert np.abs(score - score_eval).max() > 1e-3
