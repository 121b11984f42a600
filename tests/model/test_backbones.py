"""Every backbone builds, has the paper's geometry, and trains through the pipeline."""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_frcnn.model.backbones import SPECS, build_backbone
from keras_frcnn.model.fast_rcnn import FastRCNN, sgd

SHARED_WEIGHTS = (Path(__file__).resolve().parents[3] / "shared" / "weights"
                  / "mobilenet_v2_1.0_224_from_coral_quant.weights.h5")


@pytest.mark.parametrize("name, channels", [("small", 128), ("caffenet", 256),
                                            ("vgg_cnn_m_1024", 512), ("mobilenet_v2", 576),
                                            ("vgg16", 512)])
def test_feature_stride_and_channels(name, channels):
    model, spec, fc_init = build_backbone(name)
    features = model(np.zeros((1, 160, 224, 3), np.float32))
    assert features.shape == (1, 160 // spec.stride, 224 // spec.stride, channels)
    assert fc_init is None


def test_paper_geometry_and_frozen_layers():
    assert (SPECS["vgg16"].pooled_size, SPECS["vgg16"].fc_units) == (7, (4096, 4096))
    assert (SPECS["vgg_cnn_m_1024"].pooled_size, SPECS["vgg_cnn_m_1024"].fc_units) == (6, (4096, 1024))
    assert SPECS["caffenet"].pooled_size == 6
    model = FastRCNN(num_classes=21, backbone="vgg16")
    assert sorted(model.frozen_layers) == ["block1_conv1", "block1_conv2", "block1_pool",
                                           "block2_conv1", "block2_conv2", "block2_pool"]
    assert model.get_layer("fc6").kernel.shape == (7 * 7 * 512, 4096)
    assert model.get_layer("bbox_pred").kernel.shape == (4096, 80)


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
