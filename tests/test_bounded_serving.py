"""Bounded serving (issue 42): an export refuses a request above its proposal limit
before doing any work, and pools and runs the head on a bounded number of RoIs at a
time, so that no request can take a server's memory. Peak memory at the limit is
measured by benchmarks/serving_memory.py (docs/serving.md)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.configs import base_config
from keras_frcnn.detection import graph
from keras_frcnn.export import MAX_PROPOSALS, DetectionModule, export_saved_model, export_workdir
from tests.test_export import ALL_SCORES, model, scene  # noqa: F401


def many_proposals(count, seed=0):
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 100, count), rng.uniform(0, 70, count)
    return np.stack([x1, y1, x1 + rng.uniform(4, 27, count), y1 + rng.uniform(4, 25, count)],
                    axis=1).astype(np.float32)


def test_a_request_above_the_limit_is_refused_naming_it(model, tmp_path):  # noqa: F811
    image, _ = scene()
    export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                       preprocessing="tf", postprocess=ALL_SCORES, max_proposals=50)
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    out = serve(image=tf.constant(image), proposals=tf.constant(many_proposals(50)))
    assert int(out["num_detections"]) > 0  # at the limit: served
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"a request may carry at most\] \[50\] .* this one has\] \[51\] "
                             r".*--config.export.max_proposals"):
        serve(image=tf.constant(image), proposals=tf.constant(many_proposals(51)))
    recorded = json.loads((tmp_path / "1" / "assets.extra" / "keras_frcnn.json").read_text())
    assert recorded["max_proposals"] == 50


def saved_workdir(model, tmp_path, max_proposals):
    """``model`` saved with its class names in ``tmp_path``; the config that exports it."""
    model.save(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text('["red", "green"]')
    config = base_config()
    config.model.backbone, config.pipeline.preprocessing = "small", "tf"
    config.test.scales = (96,)
    config.export.max_proposals = max_proposals
    return config


def test_the_limit_is_a_config_key_with_a_server_sized_default(model, tmp_path):  # noqa: F811
    assert base_config().export.max_proposals == MAX_PROPOSALS == 20000
    config = saved_workdir(model, tmp_path, max_proposals=30)
    export_workdir(config, model_path=tmp_path / "model.keras", export_dir=tmp_path / "1",
                   verify=False)
    recorded = json.loads((tmp_path / "1" / "assets.extra" / "keras_frcnn.json").read_text())
    assert recorded["max_proposals"] == 30


@pytest.mark.parametrize("value", [-1, 1.5, True, "100"])
def test_a_limit_that_is_not_a_count_is_refused(model, value):  # noqa: F811
    with pytest.raises(ValueError, match="max_proposals must be a whole number"):
        DetectionModule(model, ["red", "green"], max_proposals=value)
    assert DetectionModule(model, ["red", "green"], max_proposals=np.int64(7)).max_proposals == 7


def test_a_numpy_integer_limit_is_recorded_as_a_number(model, tmp_path):  # noqa: F811
    export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                       preprocessing="tf", max_proposals=np.int64(40))
    recorded = json.loads((tmp_path / "1" / "assets.extra" / "keras_frcnn.json").read_text())
    assert recorded["max_proposals"] == 40


def test_the_export_check_stays_within_the_export_s_own_limit(model, tmp_path,  # noqa: F811
                                                              monkeypatch):
    # bin/export.py verifies the export on the first test image's proposals; with a
    # small limit they are cut to it rather than refused by the export just written.
    from keras_frcnn import export

    image, _ = scene()
    monkeypatch.setattr(export, "verification_inputs", lambda config: (image,
                                                                         many_proposals(100)))
    config = saved_workdir(model, tmp_path, max_proposals=30)
    result = export_workdir(config, model_path=tmp_path / "model.keras",
                            export_dir=tmp_path / "1")
    assert "a TensorFlow-only process gives the same" in result["verified"]


def test_rois_in_batches_give_every_rois_outputs_unchanged(model):  # noqa: F811
    # 1000 RoIs through the network at once, and 7 at a time (143 passes, the last one
    # holding 6): the same numbers, bit for bit, for every RoI.
    image = tf.random.stateless_uniform([1, 96, 128, 3], seed=[1, 2])
    boxes = many_proposals(1000)
    rois = tf.constant(np.concatenate([np.zeros((1000, 1), np.float32), boxes], axis=1))
    whole = tf.function(graph.make_network(model, roi_batch=10 ** 6))(image, rois)
    batched = tf.function(graph.make_network(model, roi_batch=7))(image, rois)
    for a, b in zip(whole, batched):
        assert a.shape == b.shape and a.dtype == tf.float32
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Eagerly, the loop's body runs once per batch: 142 batches of 7 RoIs, then 6.
    calls = []
    real_model = graph.keras.Model

    class CountingModel:
        def __init__(self, *args, **kwargs):
            self.model = real_model(*args, **kwargs)

        def __call__(self, inputs, training=False):
            if isinstance(inputs, list):  # the layers after the feature map
                calls.append(int(inputs[1].shape[0]))
            return self.model(inputs, training=training)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(graph.keras, "Model", CountingModel)
        eager = graph.make_network(model, roi_batch=7)(image, rois)
    assert calls == [7] * 142 + [6]
    np.testing.assert_array_equal(eager[0].numpy(), whole[0].numpy())
    empty = tf.function(graph.make_network(model, roi_batch=7))(image, tf.zeros([0, 5]))
    assert empty[0].shape == (0, 3) and empty[1].shape == (0, 8)
    with pytest.raises(ValueError, match="roi_batch must be a positive number of RoIs"):
        graph.make_network(model, roi_batch=0)


def test_an_export_in_batches_serves_what_the_detector_finds(model, tmp_path):  # noqa: F811
    from keras_frcnn.detection import Detector, DetectorConfig

    image, _ = scene()
    proposals = many_proposals(300)
    module = DetectionModule(model, ["red", "green"], scales=(96,), preprocessing="tf",
                             postprocess=ALL_SCORES, roi_batch=16)
    out = module(image, proposals)
    expected = Detector(model, DetectorConfig(scales=(96,), preprocessing="tf",
                                              postprocess=ALL_SCORES)).detect(
        image[..., ::-1], proposals)
    assert int(out["num_detections"]) == len(expected) > 10
    np.testing.assert_array_equal(out["detection_classes"], expected.classes)
    np.testing.assert_allclose(out["detection_scores"], expected.scores, rtol=1e-6)
    np.testing.assert_allclose(out["detection_boxes"], expected.boxes, atol=1e-3)
