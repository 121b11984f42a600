"""Predictor: one image in, detections out, identical to bin/detect.py on the same files."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_frcnn import Predictor
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.predictor import experiment_config
from tests.detection.test_overlapped_proposals import textured_images

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
from keras_frcnn.configs import base_config


def get_config():
    config = base_config()
    config.dataset.classes = ("square", "other")
    config.pipeline.preprocessing = "tf"
    config.model.backbone = "small"
    config.test.scales, config.test.max_size = (96,), 128
    config.test.mode = "default"
    config.test.score_threshold = 0.0
    config.proposals.cache_dir = {cache!r}
    return config
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir as training leaves it: model.keras (scores spread), classes, config."""
    root = tmp_path_factory.mktemp("predictor")
    keras.utils.set_random_seed(0)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    kernel, bias = model.get_layer("cls_score").get_weights()
    model.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    work = root / "work"
    work.mkdir()
    model.save(work / "model.keras")
    (root / "config.py").write_text(CONFIG.format(cache=str(root / "cache")))
    config = experiment_config(root / "config.py")
    (work / "config.json").write_text(config.to_json_best_effort())
    (work / "classes.json").write_text(json.dumps(["square", "other"]))
    return work


def test_predictions_equal_bin_detect_s(workdir, tmp_path):
    images = textured_images(tmp_path, count=3)
    out = subprocess.run(
        [sys.executable, "bin/detect.py", f"--config={workdir.parent / 'config.py'}",
         f"--workdir={workdir}", f"--images={','.join(map(str, images))}",
         f"--output_dir={tmp_path / 'out'}", "--score_threshold=0.0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = json.loads((tmp_path / "out" / "detections.json").read_text())
    predictor = Predictor.from_workdir(workdir)
    for path in images:
        got = predictor(path).to_list(score_threshold=0.0)
        assert got == expected[str(path)] and len(got) > 3


def test_an_array_gives_the_file_s_detections_and_caches_its_proposals(workdir, tmp_path):
    (path,) = textured_images(tmp_path, count=1)
    predictor = Predictor.from_workdir(workdir)
    from_file = predictor(path)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    cache = workdir.parent / "cache"
    before = set(cache.rglob("array-*.npz"))
    from_array = predictor(rgb)
    assert len(set(cache.rglob("array-*.npz")) - before) == 1  # computed once, then cached
    assert predictor(rgb).to_list(0.0) == from_array.to_list(0.0)
    np.testing.assert_array_equal(from_array.boxes, from_file.boxes)
    np.testing.assert_array_equal(from_array.scores, from_file.scores)
    assert from_array.names == tuple(["square", "other"][k - 1] for k in from_array.classes)
    # BGR arrays (OpenCV's order) with rgb=False; given proposals are used as they are.
    bgr = predictor(rgb[..., ::-1], rgb=False)
    np.testing.assert_array_equal(bgr.scores, from_array.scores)
    one = predictor(rgb, proposals=[[10, 10, 60, 50]])
    assert len(one.to_list(0.0)) <= 2  # one proposal: at most one box per class


def test_draw_and_save(workdir, tmp_path):
    (path,) = textured_images(tmp_path, count=1)
    prediction = Predictor.from_workdir(workdir)(path)
    picture = prediction.draw(score_threshold=0.0)
    original = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape == original.shape and not np.array_equal(picture, original)
    prediction.save(tmp_path / "drawn.png", score_threshold=0.0)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "drawn.png")), picture)
    assert len(prediction.above(2.0)) == 0


def test_bad_inputs(workdir, tmp_path):
    predictor = Predictor.from_workdir(workdir)
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8 array"):
        predictor(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="2 object classes in the model but 3 class names given"):
        Predictor.from_model(workdir / "model.keras", workdir / "config.json", ["a", "b", "c"])
    with pytest.raises(FileNotFoundError):
        Predictor.from_workdir(tmp_path / "nothing")
