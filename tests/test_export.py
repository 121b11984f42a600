"""SavedModel export: the serving graph, its checks, and parity with the Python detector."""

import json
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.compress import compress_model
from keras_frcnn.configs import base_config
from keras_frcnn.data import transforms
from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig
from keras_frcnn.export import (OUTPUTS, DetectionModule, ExportError, check_graph,
                                export_saved_model, export_workdir, graph_ops, next_version_dir,
                                run_in_fresh_process, saved_model_cli_show, verify_export)
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.ops import loader

ALL_SCORES = PostprocessConfig(mode="default", score_threshold=0.0)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    m = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    # Spread the scores so that NMS and the ordering are exercised.
    kernel, bias = m.get_layer("cls_score").get_weights()
    m.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    kernel, bias = m.get_layer("bbox_pred").get_weights()
    m.get_layer("bbox_pred").set_weights([kernel * 100.0, bias])
    return m


def scene(seed=0, height=96, width=128):
    """An RGB image with two bright rectangles, and proposals around them."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    image[10:50, 20:70] = (220, 40, 40)
    image[40:90, 80:120] = (40, 200, 90)
    base = np.array([[20, 10, 69, 49], [80, 40, 119, 89], [0, 0, 127, 95], [5, 5, 40, 40]],
                    np.float32)
    jitter = rng.uniform(-6, 6, (12, 4)).astype(np.float32)
    proposals = np.clip(np.repeat(base, 3, axis=0) + jitter, 0, [127, 95, 127, 95]).astype(np.float32)
    proposals[:, 2:] = np.maximum(proposals[:, 2:], proposals[:, :2] + 4)
    return image, proposals


@pytest.mark.parametrize("scales, postprocess", [
    ((96,), ALL_SCORES), ((192, 288), ALL_SCORES),
    ((96,), PostprocessConfig(mode="default", score_threshold=0.0, soft_nms_sigma=0.3))])
def test_export_matches_the_python_detector(model, tmp_path, scales, postprocess):
    # Scale 96 on a 96-pixel-high image is a factor of 1 (exact in both resizers), so the
    # graph must reproduce Detector's detections (Soft-NMS included). Scales 192 and 288
    # are factors 2 and 3, and the scene's proposals use both (below).
    image, proposals = scene()
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", scales=scales,
                                max_size=1000, preprocessing="tf", postprocess=postprocess)
    out = module(image, proposals)
    detector = Detector(model, DetectorConfig(scales=scales, max_size=1000, preprocessing="tf",
                                              postprocess=postprocess))
    expected = detector.detect(image[..., ::-1], proposals)
    if len(scales) > 1:
        # Each RoI goes to the factor whose scaled (+1) area is closest to 224^2 = 50176:
        # the jittered whole-image boxes (rows 6-8, 11600 to 12300 pixels) x4 = 46000 to
        # 49000 -> factor 2; the object-sized ones (950 to 2210) x9 = 8500 to 19900 (x4
        # is farther) -> factor 3. Graph and detector agree with that, and scale each RoI
        # by its own factor.
        levels = [1] * 6 + [0] * 3 + [1] * 3
        expected_rois = np.concatenate(
            [np.array(levels, np.float32)[:, None],
             proposals * np.array([2.0, 3.0], np.float32)[levels][:, None]], axis=1)
        images, graph_rois, graph_inverse = module._inputs(tf.constant(image),
                                                           tf.constant(proposals))
        assert images.shape == (2, 288, 384, 3)
        np.testing.assert_array_equal(graph_rois.numpy()[graph_inverse.numpy()], expected_rois)
        _, rois, inverse = detector.prepare(image[..., ::-1], proposals)
        np.testing.assert_array_equal(rois[inverse], expected_rois)
    if len(scales) == 1:
        assert int(out["num_detections"]) == len(expected) > 2
        np.testing.assert_array_equal(out["detection_classes"], expected.classes)
        np.testing.assert_allclose(out["detection_scores"], expected.scores, rtol=1e-5)
        np.testing.assert_allclose(out["detection_boxes"], expected.boxes, atol=1e-3)
    else:  # 2x, 3x: ScaleAndTranslate and cv2.resize agree to a few thousandths of a level
        np.testing.assert_allclose(images.numpy()[0, :192, :256],
                                   detector.prepare(image[..., ::-1], proposals)[0][0, :192, :256],
                                   atol=1e-4)
        assert int(out["num_detections"]) == len(expected) > 2
        np.testing.assert_array_equal(out["detection_classes"], expected.classes)
        np.testing.assert_allclose(out["detection_scores"], expected.scores, atol=1e-4)
        np.testing.assert_allclose(out["detection_boxes"], expected.boxes, atol=1e-2)
    names = {1: "red", 2: "green"}
    assert list(out["detection_class_names"]) == [
        names[c] for c in out["detection_classes"]]


@pytest.mark.parametrize("options", [dict(flip=True), dict(bbox_reg=False),
                                     dict(flip=True, deduplicate=False)])
def test_export_runs_the_detector_s_test_options(model, tmp_path, options):
    # The mirrored-image test, the proposals as boxes (Table 6) and the de-duplication
    # are the Detector's options and the graph's, through the same functions
    # (detection/graph.py): at factor 1 the two give the same detections.
    image, proposals = scene()
    common = dict(scales=(96,), max_size=1000, preprocessing="tf", postprocess=ALL_SCORES)
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", **common, **options)
    out = module(image, proposals)
    expected = Detector(model, DetectorConfig(**common, **options)).detect(image[..., ::-1],
                                                                           proposals)
    plain = Detector(model, DetectorConfig(**common)).detect(image[..., ::-1], proposals)
    assert int(out["num_detections"]) == len(expected) > 2
    assert not np.array_equal(expected.scores, plain.scores) or not options.get("bbox_reg", 1)
    np.testing.assert_array_equal(out["detection_classes"], expected.classes)
    np.testing.assert_allclose(out["detection_scores"], expected.scores, rtol=1e-5)
    np.testing.assert_allclose(out["detection_boxes"], expected.boxes, atol=1e-3)
    recorded = json.loads((tmp_path / "1" / "assets.extra" / "keras_frcnn.json").read_text())
    assert {k: recorded[k] for k in options} == options


def test_export_workdir_exports_the_config_s_test_section(model, tmp_path):
    # bin/export.py takes scales, flip, bbox_reg and de-duplication from config.test, as
    # bin/evaluate.py does: a kangaroo-style config (flip test on) exports its flip pass.
    model.save(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text(json.dumps(["red", "green"]))
    config = base_config()
    config.model.backbone = "small"
    config.pipeline.preprocessing = "tf"
    config.test.scales = (96,)
    config.test.flip = True
    config.test.soft_nms_sigma = 0.0
    config.test.score_threshold = 0.0
    export_workdir(config, model_path=tmp_path / "model.keras", export_dir=tmp_path / "1",
                   verify=False)
    recorded = json.loads((tmp_path / "1" / "assets.extra" / "keras_frcnn.json").read_text())
    assert recorded["flip"] is True and recorded["deduplicate"] is True
    assert recorded["scales"] == [96] and recorded["preprocessing"] == "tf"
    image, proposals = scene()
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    out = served(image=tf.constant(image), proposals=tf.constant(proposals))
    expected = Detector(model, DetectorConfig(
        scales=(96,), preprocessing="tf", flip=True,
        postprocess=PostprocessConfig.from_test_config(config.test, mode="default"))).detect(
        image[..., ::-1], proposals)
    assert int(out["num_detections"]) == len(expected) > 2
    np.testing.assert_allclose(out["detection_scores"].numpy(), expected.scores, rtol=1e-5)
    np.testing.assert_allclose(out["detection_boxes"].numpy(), expected.boxes, atol=1e-3)


def test_export_resizes_with_the_detector_s_factor(model):
    # Scale 100 on a 96 x 128 image: factor 100/96, output 100 x 133. OpenCV maps pixels
    # with the factor (cv2.resize fx), not with 133/128; so must the graph.
    image, proposals = scene()
    module = DetectionModule(model, ["red", "green"], scales=(100,), preprocessing="tf")
    images, _, _ = module._inputs(tf.constant(image), tf.constant(proposals))
    expected = transforms.preprocess(transforms.resize(image[..., ::-1], 100 / 96), "tf")[None]
    assert images.shape == expected.shape == (1, 100, 133, 3)
    np.testing.assert_allclose(images.numpy(), expected, atol=0.02 / 127.5)  # 0.02 grey level
    detector = Detector(model, DetectorConfig(scales=(100,), preprocessing="tf"))
    # The Detector runs the same function (traced, where the arithmetic may be fused
    # differently than eagerly: the last float32 bit).
    np.testing.assert_allclose(images.numpy(), detector.prepare(image[..., ::-1], proposals)[0],
                               rtol=0, atol=1e-6)


def test_default_export_runs_in_stock_tensorflow(model, tmp_path):
    image, proposals = scene(1)
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                                preprocessing="tf", postprocess=ALL_SCORES)
    ops = check_graph(tmp_path / "1")
    assert ops & {"While", "StatelessWhile"}  # the release's NMS, a graph loop
    assert not [op for op in ops if op.startswith("KerasFrcnn>")]
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    expected = verify_export(module, tmp_path / "1", image, proposals)
    fresh = run_in_fresh_process(tmp_path / "1", image, proposals)
    assert set(fresh) == set(OUTPUTS)
    for name in OUTPUTS:
        np.testing.assert_array_equal(fresh[name], expected[name])
    shown = saved_model_cli_show(tmp_path / "1")
    for text in ("inputs['image']", "DT_UINT8", "inputs['proposals']", "outputs['detection_boxes']",
                 "outputs['num_detections']", "tensorflow/serving/predict"):
        assert text in shown


@pytest.mark.skipif(not loader.is_available(), reason="custom op library not built")
def test_custom_op_export_records_the_op(model, tmp_path):
    image, proposals = scene(2)
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                                preprocessing="tf", postprocess=ALL_SCORES, roi_pool="custom_op")
    assert "KerasFrcnn>RoiPoolInference" in graph_ops(tmp_path / "1")  # no argmax
    with pytest.raises(ExportError, match="stock TF Serving"):
        check_graph(tmp_path / "1", "composite")
    composite = export_saved_model(model, ["red", "green"], tmp_path / "2", scales=(96,),
                                   preprocessing="tf", postprocess=ALL_SCORES)
    expected = verify_export(module, tmp_path / "1", image, proposals, roi_pool="custom_op")
    same = composite(image, proposals)
    for name in OUTPUTS:  # the composite is bit-identical to the op
        np.testing.assert_array_equal(same[name], expected[name])


def test_compressed_model_exports(model, tmp_path):
    image, proposals = scene(3)
    compressed, _ = compress_model(model, {"fc6": 32, "fc7": 32})
    module = export_saved_model(compressed, ["red", "green"], tmp_path / "1", scales=(96,),
                                preprocessing="tf", postprocess=ALL_SCORES)
    out = verify_export(module, tmp_path / "1", image, proposals)
    expected = Detector(compressed, DetectorConfig(scales=(96,), preprocessing="tf",
                                                   postprocess=ALL_SCORES)).detect(
        image[..., ::-1], proposals)
    np.testing.assert_allclose(out["detection_scores"], expected.scores, rtol=1e-5)


def test_no_proposals_give_no_detections(model, tmp_path):
    module = export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,),
                                preprocessing="tf")
    out = module(scene()[0], np.zeros((0, 4), np.float32))
    assert int(out["num_detections"]) == 0 and out["detection_boxes"].shape == (0, 4)


def test_bad_arguments_and_inputs(model, tmp_path):
    export_saved_model(model, ["red", "green"], tmp_path / "1", scales=(96,), preprocessing="tf")
    with pytest.raises(ValueError, match="exists"):
        export_saved_model(model, ["red", "green"], tmp_path / "1")
    with pytest.raises(ValueError, match="2 object classes but 3 class names"):
        export_saved_model(model, ["a", "b", "c"], tmp_path / "2")
    with pytest.raises(ValueError, match="roi_pool"):
        export_saved_model(model, ["a", "b"], tmp_path / "3", roi_pool="fast")
    assert not (tmp_path / "2").exists() and not (tmp_path / "3").exists()
    assert next_version_dir(tmp_path) == tmp_path / "2"
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    # A proposal with a NaN coordinate is dropped, as the Detector drops it (docs/serving.md).
    out = served(image=tf.zeros((96, 128, 3), tf.uint8),
                 proposals=tf.constant([[0, 0, np.nan, 10]], tf.float32))
    assert int(out["num_detections"]) == 0
