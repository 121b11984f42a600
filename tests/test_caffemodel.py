"""Caffe models read without Caffe (keras_frcnn/caffemodel.py): the schema's field
numbers against bytes encoded by hand, ImageNet models blob for blob, and trained
Fast R-CNN models (plain and SVD-compressed) against a numpy forward pass of the same
blobs in Caffe's layouts (tests/caffe_reference.py). The caffemodels are written here,
with random values; the real ones hold the same messages."""

import json
import pathlib
import struct

import numpy as np
import pytest

from keras_frcnn.caffemodel import (Layer, detect_backbone, fast_rcnn_model, imagenet_arrays,
                                    read_caffemodel, write_caffemodel)
from keras_frcnn.model.backbones import PROTOTXT, SPECS
from tests import caffe_reference

FC = (48, 24)  # fc6 / fc7 widths: the real 4096 would only make the files large


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def test_field_numbers_are_caffe_proto_s():
    # caffe.proto: NetParameter.layer = 100, LayerParameter name 1 / type 2 / blobs 7,
    # BlobProto shape 7 (BlobShape.dim 1, packed) / data 5 (packed floats);
    # NetParameter.layers = 2, V1LayerParameter name 4 / type 5 (INNER_PRODUCT 14) /
    # blobs 6, BlobProto num 1 / channels 2 / height 3 / width 4; V0 (V1.layer = 1)
    # name 1 / blobs 50.
    values = [1.5, -2.0, 0.25, 3.0, 4.0, -0.5]
    floats = struct.pack("<6f", *values)
    v2 = field(7, 2, field(7, 2, field(1, 2, varint(2) + varint(3))) + field(5, 2, floats))
    layer = field(1, 2, b"fc_new") + field(2, 2, b"InnerProduct") + v2
    v1_blob = (field(1, 0, varint(1)) + field(2, 0, varint(1)) + field(3, 0, varint(3))
               + field(4, 0, varint(2)) + field(5, 2, floats))
    v1 = field(4, 2, b"fc_v1") + field(5, 0, varint(14)) + field(6, 2, v1_blob)
    v0 = field(1, 2, field(1, 2, b"fc_v0") + field(50, 2, field(7, 2, field(1, 2, varint(6)))
                                                     + field(5, 2, floats)))
    net = field(1, 2, b"hand") + field(100, 2, layer) + field(2, 2, v1) + field(2, 2, v0)
    path = "hand.caffemodel"
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / path
        path.write_bytes(net)
        layers = read_caffemodel(path)
    assert [(l.name, l.type) for l in layers] == [
        ("fc_new", "InnerProduct"), ("fc_v1", "InnerProduct"), ("fc_v0", "")]
    np.testing.assert_array_equal(layers[0].blobs[0], np.reshape(values, (2, 3)))
    np.testing.assert_array_equal(layers[1].blobs[0], np.reshape(values, (1, 1, 3, 2)))
    np.testing.assert_array_equal(layers[2].blobs[0], values)


def test_unpacked_and_double_values_are_read(tmp_path):
    # Values written one record each (wire type 5), and double_data (field 8, packed).
    values = [0.5, -1.0, 2.0, 8.0]
    unpacked = b"".join(field(5, 5, struct.pack("<f", v)) for v in values)
    blob = field(7, 2, field(1, 2, varint(4))) + unpacked
    doubles = field(7, 2, field(1, 2, varint(2) + varint(2))) + field(
        8, 2, struct.pack("<4d", *values))
    net = (field(100, 2, field(1, 2, b"a") + field(7, 2, blob))
           + field(100, 2, field(1, 2, b"b") + field(7, 2, doubles)))
    path = tmp_path / "unpacked.caffemodel"
    path.write_bytes(net)
    a, b = read_caffemodel(path)
    np.testing.assert_array_equal(a.blobs[0], values)
    np.testing.assert_array_equal(b.blobs[0], np.reshape(values, (2, 2)))
    assert b.blobs[0].dtype == np.float32


def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def caffe_blobs(backbone, rng, fc=FC, head=None, svd=None):
    """{Caffe name: [weight, bias]} of a backbone with random values: convs, fc6, fc7,
    and ``head`` ("imagenet": fc8; K: cls_score and bbox_pred for K classes); ``svd``
    (l6, l7) factors fc6 and fc7 as the release's compress_net.py does."""
    blobs, channels = {}, 3
    for layer in PROTOTXT[backbone]:
        if layer.kind != "conv":
            continue
        name = layer.name
        if name.startswith("block"):
            name = "conv{}_{}".format(name[5], name[-1])
        per_group = channels // layer.groups
        blobs[name] = [he(rng, (layer.filters, per_group, layer.kernel, layer.kernel),
                          per_group * layer.kernel ** 2),
                       (0.1 * rng.standard_normal(layer.filters)).astype(np.float32)]
        channels = layer.filters
    inputs = channels * SPECS[backbone].pooled_size ** 2
    for name, width in zip(("fc6", "fc7"), fc):
        blobs[name] = [he(rng, (width, inputs), inputs),
                       (0.1 * rng.standard_normal(width)).astype(np.float32)]
        inputs = width
    if head == "imagenet":
        blobs["fc8"] = [he(rng, (10, inputs), inputs), np.zeros(10, np.float32)]
    elif head is not None:
        blobs["cls_score"] = [he(rng, (head + 1, inputs), inputs),
                              (0.1 * rng.standard_normal(head + 1)).astype(np.float32)]
        blobs["bbox_pred"] = [he(rng, (4 * (head + 1), inputs), inputs) * 0.1,
                              (0.1 * rng.standard_normal(4 * (head + 1))).astype(np.float32)]
    if svd:
        for name, rank in zip(("fc6", "fc7"), svd):
            weight, bias = blobs.pop(name)
            u, s, vt = np.linalg.svd(weight, full_matrices=False)  # compress_weights
            blobs[f"{name}_L"] = [(np.diag(s[:rank]) @ vt[:rank]).astype(np.float32)]
            blobs[f"{name}_U"] = [u[:, :rank].astype(np.float32), bias]
    return blobs


def to_layers(blobs):
    types = {True: "Convolution", False: "InnerProduct"}
    layers = [Layer(name, types[values[0].ndim == 4], values) for name, values in blobs.items()]
    # Layers without weights are in every real caffemodel; the reader skips them.
    return [Layer("data", "Data", []), *layers[:1], Layer("relu1", "ReLU", []), *layers[1:]]


@pytest.mark.parametrize("backbone,layer_format,legacy", [
    ("caffenet", "layer", False), ("caffenet", "layers", True),
    ("vgg_cnn_m_1024", "layers", False), ("vgg16", "layer", False)])
def test_imagenet_model_converts_blob_for_blob(backbone, layer_format, legacy, tmp_path):
    rng = np.random.default_rng(0)
    blobs = caffe_blobs(backbone, rng, head="imagenet")
    path = tmp_path / "imagenet.caffemodel"
    write_caffemodel(path, to_layers(blobs), layer_format, legacy_shapes=legacy)
    layers = read_caffemodel(path)
    assert detect_backbone(layers) == backbone
    arrays, found = imagenet_arrays(layers)
    assert found == backbone and not any(k.startswith("fc8") for k in arrays)
    conv1 = "block1_conv1" if backbone == "vgg16" else "conv1"
    caffe_conv1 = "conv1_1" if backbone == "vgg16" else "conv1"
    for o, i, y, x in ((0, 0, 0, 0), (5, 2, 1, 2), (63, 1, 2, 0)):
        # conv [out, in, kh, kw] -> [kh, kw, in, out]
        assert arrays[f"{conv1}/kernel"][y, x, i, o] == blobs[caffe_conv1][0][o, i, y, x]
    if backbone == "caffenet":  # grouped: conv2 sees 48 of conv1's 96 channels
        assert arrays["conv2/kernel"].shape == (5, 5, 48, 256)
        assert arrays["conv2/kernel"][4, 3, 47, 255] == blobs["conv2"][0][255, 47, 4, 3]
    pooled = SPECS[backbone].pooled_size
    channels = blobs["fc6"][0].shape[1] // pooled ** 2
    for h, w, c, out in ((0, 0, 0, 0), (1, 2, 3, 4), (pooled - 1, pooled - 1, channels - 1, 47)):
        # fc6 row (h, w, c) of ours is Caffe's column (c, h, w)
        assert (arrays["fc6/kernel"][(h * pooled + w) * channels + c, out]
                == blobs["fc6"][0][out, (c * pooled + h) * pooled + w])
    np.testing.assert_array_equal(arrays["fc7/kernel"], blobs["fc7"][0].T)
    np.testing.assert_array_equal(arrays["fc6/bias"], blobs["fc6"][1])
    # The .npz loads into the backbone the paper configs build.
    from keras_frcnn.model.backbones import build_backbone

    np.savez(tmp_path / "w.npz", **arrays)
    model, _, fc_init = build_backbone(backbone, str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(model.get_layer(conv1).get_weights()[0],
                                  arrays[f"{conv1}/kernel"])
    np.testing.assert_array_equal(fc_init["fc6"][0], arrays["fc6/kernel"])
    # ... and computes Caffe's conv5 from the same blobs.
    image = np.random.default_rng(1).uniform(-120, 130, (1, 64, 80, 3)).astype(np.float32)
    expected = caffe_reference.features(
        image[0].transpose(2, 0, 1).astype(np.float64),
        {k: [v.astype(np.float64) for v in vals] for k, vals in blobs.items()},
        PROTOTXT[backbone])
    ours = np.asarray(model(image))[0].transpose(2, 0, 1)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def forward_both(backbone, blobs, tmp_path, layer_format="layer", classes=3, legacy=False):
    path = tmp_path / "frcnn.caffemodel"
    write_caffemodel(path, to_layers(blobs), layer_format, legacy_shapes=legacy)
    names = [f"class{k}" for k in range(classes)]
    model, report = fast_rcnn_model(read_caffemodel(path), names)
    rng = np.random.default_rng(1)
    image = rng.uniform(-120, 130, (1, 64, 80, 3)).astype(np.float32)  # BGR, means removed
    rois = np.array([[0, 0, 0, 79, 63], [0, 8, 4, 40, 30], [0, 30, 20, 78, 60],
                     [0, 3, 3, 20, 50]], np.float32)
    ours = model({"images": image, "rois": rois}, training=False)
    prob, boxes = caffe_reference.fast_rcnn_forward(
        image[0].transpose(2, 0, 1).astype(np.float64), rois,
        {k: [v.astype(np.float64) for v in vals] for k, vals in blobs.items()},
        PROTOTXT[backbone], SPECS[backbone].pooled_size)
    return model, report, ours, prob, boxes


@pytest.mark.parametrize("backbone,svd,layer_format,legacy", [
    ("caffenet", None, "layer", False), ("vgg_cnn_m_1024", None, "layers", False),
    ("vgg16", None, "layer", False), ("caffenet", (16, 8), "layer", False),
    ("vgg_cnn_m_1024", (16, 8), "layers", True), ("caffenet", None, "v0", True)])
def test_fast_rcnn_model_gives_caffe_s_outputs(backbone, svd, layer_format, legacy, tmp_path):
    # legacy: every blob's shape in the old num/channels/height/width header (fc weights
    # 1 x 1 x out x in), as old V1 and V0 files hold them.
    blobs = caffe_blobs(backbone, np.random.default_rng(2), head=3, svd=svd)
    model, report, ours, prob, boxes = forward_both(backbone, blobs, tmp_path, layer_format,
                                                    legacy=legacy)
    assert report["svd"] == ({"fc6": svd[0], "fc7": svd[1]} if svd else {})
    np.testing.assert_allclose(ours["cls_prob"], prob, rtol=2e-4, atol=2e-6)
    assert prob.std() > 0.01  # the scores differ between RoIs and classes
    # The background's box (Caffe's outputs 0-3) is dropped; class k's follow in order.
    scale = np.abs(boxes).max()
    np.testing.assert_allclose(ours["bbox_pred"], boxes[:, 4:], atol=2e-4 * scale)
    if svd:
        assert model.get_layer("fc6_L").get_weights()[0].shape[1] == svd[0]
        assert not model.get_layer("fc6_L").get_config()["use_bias"]


def test_trained_model_errors_name_the_layer(tmp_path):
    rng = np.random.default_rng(3)
    base = caffe_blobs("caffenet", rng, head=2)

    def convert(blobs, classes=("a", "b")):
        path = tmp_path / "m.caffemodel"
        write_caffemodel(path, to_layers(blobs))
        return fast_rcnn_model(read_caffemodel(path), classes, path=path)

    with pytest.raises(ValueError, match="layer 'conv3' is missing"):
        convert({k: v for k, v in base.items() if k != "conv3"})
    bad = dict(base, conv4=[base["conv4"][0][:, :100], base["conv4"][1]])
    with pytest.raises(ValueError, match=r"layer 'conv4' has a blob of shape \(384, 100, 3, "
                                         r"3\), the model needs \(384, 192, 3, 3\)"):
        convert(bad)
    with pytest.raises(ValueError, match="layer 'fc9' \\(InnerProduct\\) is not part of"):
        convert(dict(base, fc9=base["fc7"]))
    with pytest.raises(ValueError, match="2 object classes and background, but 3 class names"):
        convert(base, ("a", "b", "c"))
    with pytest.raises(ValueError, match="bbox_pred has 8 outputs, not 4 x the 3"):
        convert(dict(base, bbox_pred=[base["bbox_pred"][0][4:], base["bbox_pred"][1][4:]]))
    with pytest.raises(ValueError, match="layer 'cls_score' is missing: not a trained"):
        convert({k: v for k, v in base.items() if k not in ("cls_score", "bbox_pred")})
    with pytest.raises(ValueError, match="'fc7_U' is missing"):
        svd = caffe_blobs("caffenet", rng, head=2, svd=(8, 4))
        convert({k: v for k, v in svd.items() if k != "fc7_U"})


def test_files_that_are_not_caffemodels_are_refused(tmp_path):
    text = tmp_path / "test.prototxt"
    text.write_text('name: "VGG_ILSVRC_16_layers"\ninput: "data"\n')
    with pytest.raises(ValueError, match="not a Caffe model.*give the binary .caffemodel"):
        read_caffemodel(text)
    empty = tmp_path / "empty.caffemodel"
    write_caffemodel(empty, [Layer("data", "Data", [])])
    with pytest.raises(ValueError, match="no layer holds weights"):
        read_caffemodel(empty)
    truncated = tmp_path / "cut.caffemodel"
    write_caffemodel(truncated, [Layer("fc", "InnerProduct", [np.ones((4, 5), np.float32)])])
    truncated.write_bytes(truncated.read_bytes()[:-7])
    with pytest.raises(ValueError, match="cut.caffemodel"):
        read_caffemodel(truncated)
    def one_blob(packed, count=3):
        blob = field(7, 2, field(1, 2, varint(count))) + field(5, 2, packed)
        return field(100, 2, field(1, 2, b"fc") + field(7, 2, blob))

    values = struct.pack("<3f", 1.0, float("nan"), 2.0)
    (tmp_path / "nan.caffemodel").write_bytes(one_blob(values))
    with pytest.raises(ValueError, match="layer 'fc' blob 0 holds 1 non-finite values"):
        read_caffemodel(tmp_path / "nan.caffemodel")
    (tmp_path / "odd.caffemodel").write_bytes(one_blob(values[:-1]))
    with pytest.raises(ValueError, match="a packed record of 11 bytes is not whole 4-byte"):
        read_caffemodel(tmp_path / "odd.caffemodel")
    with pytest.raises(ValueError, match="conv1 has 5x5 kernels"):
        detect_backbone([Layer("conv1", "Convolution", [np.zeros((8, 3, 5, 5), np.float32)])])


def test_converted_workdir_records_what_it_holds(tmp_path):
    from keras_frcnn.caffemodel import write_workdir
    from keras_frcnn.configs import load_config_file
    from keras_frcnn.workdirs import load_inference_model

    blobs = caffe_blobs("caffenet", np.random.default_rng(4), head=3, svd=(16, 8))
    model, report, ours, _, _ = forward_both("caffenet", blobs, tmp_path)
    config = load_config_file(str(pathlib.Path(__file__).parents[1] / "configs" / "voc07_caffenet.py"))
    workdir = write_workdir(model, report, config, tmp_path / "wd", tmp_path / "frcnn.caffemodel")
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["svd"] == "fc6:16,fc7:8" and saved["model"]["fc_units"] == list(FC)
    stats = json.loads((workdir / "target_stats.json").read_text())
    assert np.array(stats["stds"]).shape == (4, 4) and np.all(np.array(stats["stds"]) == 1)
    record = json.loads((workdir / "convert.json").read_text())
    assert len(record["sha256"]) == 64 and record["dropped"].startswith("bbox_pred rows 0-3")
    assert json.loads((workdir / "classes.json").read_text()) == ["class0", "class1", "class2"]
    loaded = load_inference_model(workdir)
    rois = np.array([[0, 8, 4, 40, 30]], np.float32)
    image = np.random.default_rng(5).uniform(-100, 100, (1, 64, 80, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded({"images": image, "rois": rois})["bbox_pred"],
                               model({"images": image, "rois": rois})["bbox_pred"], rtol=1e-6)
    with pytest.raises(ValueError, match="is a folder that is not empty"):
        write_workdir(model, report, config, workdir, tmp_path / "frcnn.caffemodel")
    # A workdir still training (checkpoints, no model.keras yet) is never written into.
    training = tmp_path / "training"
    (training / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="is a folder that is not empty"):
        write_workdir(model, report, config, training, tmp_path / "frcnn.caffemodel")
    assert sorted(p.name for p in training.iterdir()) == ["checkpoints"]
    # A failure while writing leaves nothing behind, not half a workdir.
    import keras_frcnn.workdirs

    def full_disk(model, path):
        raise OSError(28, "No space left on device")

    original = keras_frcnn.workdirs.save_model
    keras_frcnn.workdirs.save_model = full_disk
    try:
        with pytest.raises(OSError):
            write_workdir(model, report, config, tmp_path / "new", tmp_path / "frcnn.caffemodel")
    finally:
        keras_frcnn.workdirs.save_model = original
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.")]


def test_converted_model_runs_through_evaluate_and_detect(tmp_path):
    """bin/convert_caffemodel.py on an SVD-compressed CaffeNet detector of the demo's
    five classes and on an ImageNet model; bin/evaluate.py and bin/detect.py take the
    converted workdir as it is."""
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    classes = "disc,ring,square,triangle,cross"
    demo = ["--config=configs/demo.py", f"--config.dataset.cache_dir={tmp_path / 'cache'}",
            "--config.dataset.demo_sizes=(6, 1, 2)",
            f"--config.proposals.cache_dir={tmp_path / 'p'}",
            "--config.model.backbone=caffenet", "--config.pipeline.preprocessing=caffe"]

    def run(program, *args, ok=True):
        result = subprocess.run([sys.executable, str(root / "bin" / program), *args],
                                capture_output=True, text=True, env=env, cwd=root)
        assert (result.returncode == 0) == ok, result.stderr[-3000:]
        return result.stdout + result.stderr

    blobs = caffe_blobs("caffenet", np.random.default_rng(6), head=5, svd=(16, 8))
    model_file = tmp_path / "caffenet_fast_rcnn_iter_40000_svd_fc6_16_fc7_8.caffemodel"
    write_caffemodel(model_file, to_layers(blobs))
    workdir = tmp_path / "release"
    out = run("convert_caffemodel.py", f"--caffemodel={model_file}", f"--output={workdir}",
              f"--classes={classes}", *demo)
    assert "caffenet Fast R-CNN, 5 classes, fc 48/24, fc6 rank 16, fc7 rank 8" in out
    out = run("evaluate.py", f"--workdir={workdir}", *demo)
    assert "VOC AP (%) at IoU > 0.5" in out
    assert json.loads((workdir / "eval" / "test" / "metrics.json").read_text())["images"] == 2
    image = next((tmp_path / "cache").rglob("test_00000.jpg"))
    run("detect.py", f"--workdir={workdir}", f"--images={image}", *demo,
        f"--output_dir={tmp_path / 'pictures'}", "--score_threshold=0.0")
    assert list(json.loads((tmp_path / "pictures" / "detections.json").read_text())) == [
        str(image)]
    # Converting again over the workdir is refused; so is a class list of another length,
    # a bad classes file, and a trained model sent to an .npz.
    out = run("convert_caffemodel.py", f"--caffemodel={model_file}", f"--output={workdir}",
              f"--classes={classes}", ok=False)
    assert "is a folder that is not empty" in out and "Traceback" not in out
    out = run("convert_caffemodel.py", f"--caffemodel={model_file}",
              f"--output={tmp_path / 'voc'}", ok=False)
    assert "5 object classes and background, but 20 class names were given; pass" in out
    (tmp_path / "classes.json").write_text('{"a": 1}')
    out = run("convert_caffemodel.py", f"--caffemodel={model_file}",
              f"--output={tmp_path / 'x'}", f"--classes={tmp_path / 'classes.json'}", ok=False)
    assert "must hold a JSON list of class names" in out
    out = run("convert_caffemodel.py", f"--caffemodel={model_file}",
              f"--output={tmp_path / 'x.npz'}", f"--classes={classes}", ok=False)
    assert "converts to a workdir (a folder), not a weights .npz" in out
    # An ImageNet model: a backbone .npz, written whole.
    imagenet = tmp_path / "CaffeNet.v2.caffemodel"
    write_caffemodel(imagenet, to_layers(caffe_blobs("caffenet", np.random.default_rng(7),
                                                     head="imagenet")), "layers")
    out = run("convert_caffemodel.py", f"--caffemodel={imagenet}",
              f"--output={tmp_path / 'w' / 'caffenet.npz'}")
    assert "caffenet ImageNet weights (7 layers, fc8 left out)" in out
    assert sorted(np.load(tmp_path / "w" / "caffenet.npz").files)[:2] == ["conv1/bias",
                                                                          "conv1/kernel"]
    assert "exists; give a new path" in run("convert_caffemodel.py", f"--caffemodel={imagenet}",
                                            f"--output={tmp_path / 'w' / 'caffenet.npz'}",
                                            ok=False)
    assert "give a path ending in .npz" in run("convert_caffemodel.py",
                                               f"--caffemodel={imagenet}",
                                               f"--output={tmp_path / 'w'}", ok=False)
