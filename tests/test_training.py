"""Training: resume, divergence, export, and a short run of the demo config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import training, workdirs
from keras_frcnn.configs import base_config
from tests.data.fixtures import write_voc

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path, steps, write=True):
    """Four 96x72 textured images with one "cat" each, dense proposals, the small
    backbone; ``write=False`` reuses the files of an earlier call."""
    root = tmp_path / "VOC"
    if write:
        root = write_voc(root, {f"{k}": (96, 72, [("cat", 0, 10 + k, 10, 50 + k, 50)])
                                for k in range(4)}, split="train")
        rng = np.random.default_rng(0)
        from PIL import Image

        for k in range(4):  # texture, so selective search finds regions
            Image.fromarray(rng.integers(0, 255, (72, 96, 3), np.uint8)).save(
                root / "JPEGImages" / f"{k}.jpg")
    config = base_config()
    config.dataset.kind, config.dataset.root, config.dataset.classes = "voc", str(root), ("cat",)
    config.proposals.method = "dense"
    config.proposals.top_k = 300
    config.pipeline.scales, config.pipeline.max_size = (72,), 128
    config.pipeline.preprocessing = "tf"
    config.sampling.rois_per_batch = 32
    config.model.backbone, config.model.dropout = "small", 0.0
    config.train.steps, config.train.checkpoint_every, config.train.log_every = steps, 2, 1
    config.train.base_lr = 0.001
    return config


@pytest.mark.parametrize("key, value", [("steps", -5), ("steps", 0), ("checkpoint_every", 0),
                                        ("log_every", -1), ("step_size", -2),
                                        ("keep_checkpoints", 0)])
def test_non_positive_step_counts_are_refused_before_anything_is_written(tmp_path, key, value):
    config = base_config()
    config.train[key] = value
    with pytest.raises(ValueError, match=f"train.{key}={value}"):
        training.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_continues_the_step_count(tmp_path):
    config = tiny_config(tmp_path, steps=4)
    first = training.train(config, tmp_path / "work", progress=False)
    assert first["step"] == 4 and (tmp_path / "work" / "model.keras").is_file()
    config.train.steps = 6
    second = training.train(config, tmp_path / "work", progress=False)
    assert second["step"] == 6
    assert [s for s, _ in second["history"]["loss"]] == [5, 6]  # only the new steps ran
    state = tf.train.get_checkpoint_state(str(tmp_path / "work" / "checkpoints"))
    assert state.model_checkpoint_path.endswith("ckpt-6")
    assert (tmp_path / "work" / "config.json").is_file()
    assert (tmp_path / "work" / "target_stats.json").is_file()
    assert list((tmp_path / "work" / "logs").iterdir())


def test_fc_widths_are_recorded_for_resuming_and_checkpoint_evaluation(tmp_path):
    from keras_frcnn.evaluation.run import load_model

    config = tiny_config(tmp_path, steps=2)
    config.model.fc_units = (32, 16)
    training.train(config, tmp_path / "work", progress=False)
    plain = tiny_config(tmp_path, steps=4, write=False)  # no override: the recorded widths
    assert training.train(plain, tmp_path / "work", progress=False)["step"] == 4
    assert json.loads((tmp_path / "work" / "config.json").read_text())["model"]["fc_units"] == [32, 16]
    model = load_model(plain, tmp_path / "work", checkpoint="latest", num_classes=2)
    assert model.get_layer("fc6").units == 32 and model.get_layer("fc7").units == 16
    assert workdirs.load_inference_model(tmp_path / "work").get_layer("fc7").units == 16
    plain.model.fc_units = (64, 64)
    with pytest.raises(ValueError, match=r"fc_units=\(32, 16\).*drop the override"):
        training.build_model(plain, 2, tmp_path / "work")


def test_train_seed_fixes_the_initial_weights(tmp_path):
    def fc6_after_one_step(workdir, seed, write):
        config = tiny_config(tmp_path, steps=1, write=write)
        config.train.seed = seed
        training.train(config, tmp_path / workdir, progress=False)
        return workdirs.load_inference_model(tmp_path / workdir).get_layer("fc6").get_weights()[0]

    first = fc6_after_one_step("a", 7, True)
    np.testing.assert_allclose(fc6_after_one_step("b", 7, False), first, atol=1e-6)
    assert np.abs(fc6_after_one_step("c", 8, False) - first).max() > 1e-3


def test_a_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, steps=10)
    real = training.make_dataset

    def poisoned(config, roidb, stats, start_batch):
        def poison(index, batch):  # the third minibatch carries NaN targets
            x, y = batch
            bad = tf.fill(tf.shape(y["bbox_targets"]), float("nan"))
            return x, {**y, "bbox_targets": tf.where(index == 2, bad, y["bbox_targets"])}

        return real(config, roidb, stats, start_batch).enumerate().map(poison)

    monkeypatch.setattr(training, "make_dataset", poisoned)
    with pytest.raises(training.TrainingDiverged, match=r"at step 3.*ckpt-2"):
        training.train(config, tmp_path / "work", progress=False)
    state = tf.train.get_checkpoint_state(str(tmp_path / "work" / "checkpoints"))
    assert state.model_checkpoint_path.endswith("ckpt-2")
    assert not (tmp_path / "work" / "model.keras").exists()


def test_exported_model_emits_raw_deltas(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    training.train(config, tmp_path / "work", progress=False)
    exported = workdirs.load_inference_model(tmp_path / "work")
    stats = workdirs.load_target_stats(tmp_path / "work")
    trained = training.build_model(config, 2)  # same architecture, weights from the checkpoint
    x = {"images": np.zeros((1, 72, 96, 3), np.float32),
         "rois": np.array([[0, 5, 5, 40, 40]], np.float32)}
    checkpoint = tf.train.Checkpoint(model=trained)
    checkpoint.restore(tf.train.latest_checkpoint(str(tmp_path / "work" / "checkpoints"))).expect_partial()
    normalised = trained(x)["bbox_pred"].numpy()
    raw = exported(x)["bbox_pred"].numpy()
    np.testing.assert_allclose(raw, normalised * stats.stds[1] + stats.means[1], rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(900)  # eleven program runs, each importing TensorFlow
def test_demo_config_end_to_end(tmp_path):
    """bin/train.py, bin/evaluate.py and bin/detect.py on a tiny demo set."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    common = ["--config=configs/demo.py", f"--config.dataset.cache_dir={tmp_path / 'cache'}",
              "--config.dataset.demo_sizes=(6, 1, 2)",
              f"--config.proposals.cache_dir={tmp_path / 'p'}"]
    workdir = tmp_path / "demo"

    def run(program, *args):
        result = subprocess.run([sys.executable, str(ROOT / "bin" / program), *common, *args],
                                capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    out = run("train.py", f"--workdir={workdir}", "--config.train.steps=3",
              "--config.train.checkpoint_every=2")
    assert "finished 3 steps" in out
    assert (workdir / "model.keras").is_file()

    out = run("evaluate.py", f"--workdir={workdir}")
    assert "VOC AP (%) at IoU > 0.5, area metric:" in out
    assert ["disc", "ring", "square", "triang", "cross", "mAP"] in [
        line.split() for line in out.splitlines()]
    eval_dir = workdir / "eval" / "test"
    for name in ("metrics.json", "detections.npz", "pr_curves.png", "detections.png",
                 "results/comp4_det_test_disc.txt"):
        assert (eval_dir / name).is_file(), name
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["images"] == 2 and set(metrics["AP"]) == {
        "disc", "ring", "square", "triangle", "cross"}

    out = run("evaluate.py", f"--workdir={workdir}", f"--rescore={eval_dir / 'detections.npz'}",
              "--rescore_nms=0.5", f"--output_dir={tmp_path / 'rescored'}")
    assert "VOC AP" in out and (tmp_path / "rescored" / "metrics.json").is_file()

    # A training checkpoint (normalisation folded in on the fly) gives the same detections
    # as the exported model.
    run("evaluate.py", f"--workdir={workdir}", "--checkpoint=latest",
        f"--output_dir={tmp_path / 'from_checkpoint'}")
    assert json.loads((tmp_path / "from_checkpoint" / "metrics.json").read_text())["AP"] == \
        metrics["AP"]

    image = next((tmp_path / "cache").rglob("test_00000.jpg"))
    out = run("detect.py", f"--workdir={workdir}", f"--images={image}",
              f"--output_dir={tmp_path / 'pictures'}", "--score_threshold=0.0")
    assert (tmp_path / "pictures" / "test_00000.detections.jpg").is_file()
    found = json.loads((tmp_path / "pictures" / "detections.json").read_text())
    assert list(found) == [str(image)]

    # Truncated SVD: a new workdir that evaluate (model and checkpoint), train
    # (fine-tuning) and export accept.
    svd = tmp_path / "demo_svd"
    out = run("compress.py", f"--workdir={workdir}", "--layers=fc6:32,fc7:16",
              f"--output_workdir={svd}", "--calibration_images=1")
    assert "fc6" in out and "model parameters" in out
    run("evaluate.py", f"--workdir={svd}")
    run("evaluate.py", f"--workdir={svd}", "--checkpoint=latest",
        f"--output_dir={tmp_path / 'svd_checkpoint'}")
    np.testing.assert_allclose(
        list(json.loads((tmp_path / "svd_checkpoint" / "metrics.json").read_text())["AP"].values()),
        list(json.loads((svd / "eval" / "test" / "metrics.json").read_text())["AP"].values()),
        atol=1e-6)
    out = run("train.py", f"--workdir={svd}", "--config.train.steps=2")
    assert "finished 2 steps" in out

    out = run("export.py", f"--workdir={svd}")
    assert "verified: no Python-function op, no keras_frcnn op" in out
    assert "inputs['proposals']" in out and (svd / "export" / "1" / "saved_model.pb").is_file()


def test_tf32_setting_holds_once_the_trainer_starts(tmp_path, monkeypatch):
    # Caffe computed in full float32; the paper configs say model.tf32 = False, and the
    # trainer turns TensorFlow's TF32 default off before it builds anything.
    seen = []
    build = training.build_model

    def spy(*args, **kwargs):
        seen.append(tf.config.experimental.tensor_float_32_execution_enabled())
        return build(*args, **kwargs)

    monkeypatch.setattr(training, "build_model", spy)
    config = tiny_config(tmp_path, steps=1)
    config.model.tf32 = False
    try:
        assert tf.config.experimental.tensor_float_32_execution_enabled()  # TF's default
        training.train(config, tmp_path / "wd", progress=False)
        assert seen and not any(seen)
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)


def test_configs_that_require_weights_refuse_random_ones(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    config.model.require_weights = True
    with pytest.raises(ValueError, match="model.weights is empty, but this config trains small "
                                         "from ImageNet weights.*bin/convert_caffemodel.py"):
        training.train(config, tmp_path / "wd", progress=False)
    assert not (tmp_path / "wd").exists()  # refused before anything is written
    convs_only = tmp_path / "convs.npz"
    np.savez(convs_only, **{"conv1/kernel": np.zeros((1, 1, 3, 1), np.float32)})
    config.model.weights = str(convs_only)
    with pytest.raises(ValueError, match="holds no fc6/fc7, which the paper also initialises"):
        training.train(config, tmp_path / "wd", progress=False)
