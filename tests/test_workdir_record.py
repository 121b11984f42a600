"""A workdir's record stays true (issue 42): training again with other settings is
refused naming them, --overwrite starts over, a saved model records what it is and a
config that contradicts it is refused, and weights files that are not numbers, or not
weights at all, are refused naming the file and the layer."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_frcnn import Predictor, training, workdirs
from keras_frcnn.model import backbones
from tests.test_training import tiny_config
from tests.test_training_faults import trained  # noqa: F401 (a finished 4-step run)

ROOT = Path(__file__).resolve().parents[1]


def test_training_again_with_other_settings_is_refused_naming_them(trained):  # noqa: F811
    config, workdir = trained
    before = {name: (workdir / name).read_bytes() for name in ("config.json", "model.keras")}
    other = config.copy_and_resolve_references()
    other.train.steps, other.train.base_lr, other.model.dropout = 1, 0.5, 0.9
    with pytest.raises(training.WorkdirConflict) as refused:
        training.train(other, workdir, progress=False)
    assert str(refused.value).startswith(
        f"{workdir} was trained with other settings (model.dropout 0.0 -> 0.9, train.steps "
        "4 -> 1, train.base_lr 0.001 -> 0.5); ")
    assert "--overwrite" in str(refused.value)
    assert {name: (workdir / name).read_bytes() for name in before} == before


def test_the_same_settings_and_operational_ones_run_as_before(trained):  # noqa: F811
    config, workdir = trained
    same = config.copy_and_resolve_references()
    same.train.log_every, same.proposals.workers = 5, 1  # how the run goes, not what it trains
    assert training.train(same, workdir, progress=False)["step"] == 4


def test_paths_test_settings_and_the_pooling_implementation_may_change(trained):  # noqa: F811
    # Data and caches move, test and export settings are read at test time, and both RoI
    # poolings compute the same numbers: none of them changes what was trained. The
    # record then holds them as given.
    config, workdir = trained
    moved = workdir.parent / "VOC_moved"
    (workdir.parent / "VOC").rename(moved)
    try:
        other = config.copy_and_resolve_references()
        other.dataset.root = str(moved)
        other.proposals.cache_dir = str(workdir.parent / "elsewhere")
        other.test.scales, other.test.flip = (64,), True
        other.model.roi_pool = "composite"
        other.export.max_proposals = 10
        assert training.train(other, workdir, progress=False)["step"] == 4
        recorded = json.loads((workdir / "config.json").read_text())
        assert recorded["test"]["scales"] == [64] and recorded["dataset"]["root"] == str(moved)
    finally:
        moved.rename(workdir.parent / "VOC")


def test_overwrite_refuses_a_compressed_workdir(tmp_path):
    (tmp_path / "compress.json").write_text("{}")
    with pytest.raises(ValueError, match="compressed by bin/compress.py, which --overwrite "
                                         "would delete"):
        training.train(tiny_config(tmp_path, steps=1), tmp_path, progress=False,
                       overwrite=True)


def test_overwrite_starts_over_with_the_new_settings(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    training.train(config, tmp_path / "work", progress=False)
    (tmp_path / "work" / "eval").mkdir()  # results of the old model go too
    (tmp_path / "work" / "notes.txt").write_text("mine")  # what training did not write stays
    config.train.steps, config.train.base_lr = 1, 0.002
    result = training.train(config, tmp_path / "work", progress=False, overwrite=True)
    assert result["step"] == 1 and result["history"]["loss"][0][0] == 1  # from step 0
    recorded = json.loads((tmp_path / "work" / "config.json").read_text())
    assert recorded["train"]["base_lr"] == 0.002 and recorded["train"]["steps"] == 1
    assert not (tmp_path / "work" / "eval").exists()
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine"


def test_bin_train_refuses_in_one_line(trained):  # noqa: F811
    config, workdir = trained
    script = workdir.parent / "config.py"
    script.write_text(
        "from tests.test_training import tiny_config\n"
        "from pathlib import Path\n\n\n"
        f"def get_config():\n    return tiny_config(Path({str(workdir.parent)!r}), 4, "
        "write=False)\n")
    done = subprocess.run([sys.executable, "bin/train.py", f"--config={script}",
                           f"--workdir={workdir}", "--config.train.base_lr=0.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: {workdir} was trained with other settings (train.base_lr 0.001 -> 0.5)")


def test_the_saved_model_records_what_it_is(trained):  # noqa: F811
    config, workdir = trained
    recorded = workdirs.load_inference_model(workdir).get_config()
    assert recorded["backbone"] == "small" and recorded["class_names"] == ("cat",)
    assert recorded["preprocessing"] == "tf" and recorded["head"] == "fc"


@pytest.mark.parametrize("key, value, named", [
    ("model.backbone", "vgg16", "model.backbone='small' in the model but 'vgg16'"),
    ("model.backbone", "caffenet", "model.backbone='small' in the model but 'caffenet'"),
    ("pipeline.preprocessing", "caffe", "pipeline.preprocessing='tf' in the model but 'caffe'"),
    ("model.fc_units", (64, 64), "model.fc_units=(256, 256) in the model but (64, 64)"),
    ("model.svd", "fc6:8", "model.svd={} in the model but {'fc6': 8}"),
])
def test_a_config_that_contradicts_the_model_is_refused(trained, key, value, named):  # noqa: F811
    from keras_frcnn.evaluation.run import evaluate

    config, workdir = trained
    other = config.copy_and_resolve_references()
    section, name = key.split(".")
    other[section][name] = value
    with pytest.raises(ValueError, match="does not match its config: " + named.replace(
            "(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        Predictor.from_workdir(workdir, config=other)
    with pytest.raises(ValueError, match="does not match its config"):
        Predictor.from_model(workdir / "model.keras", other, ["cat"])
    with pytest.raises(ValueError, match="does not match its config"):
        evaluate(other, workdir, split="train", progress=False)


def test_other_class_names_are_refused(trained):  # noqa: F811
    config, workdir = trained
    with pytest.raises(ValueError, match=r"classes \['cat'\] in the model but \['dog'\] given"):
        Predictor.from_model(workdir / "model.keras", workdir / "config.json", ["dog"])
    assert Predictor.from_model(workdir / "model.keras", workdir / "config.json", ["cat"])


def caffenet_npz(path, poison=None):
    """A weights .npz of every CaffeNet conv layer (random), ``poison`` (a key) set to NaN
    in one element."""
    model, _, _ = backbones.build_backbone("caffenet")
    arrays = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"] = kernel, bias
    if poison:
        arrays[poison].flat[7] = np.nan
    np.savez(path, **arrays)
    return path


def test_weights_that_are_not_numbers_are_refused_naming_the_file_and_layer(tmp_path):
    backbones.build_backbone("caffenet", str(caffenet_npz(tmp_path / "good.npz")))
    bad = caffenet_npz(tmp_path / "bad.npz", poison="conv3/kernel")
    with pytest.raises(ValueError, match=rf"weights file {bad}: conv3/kernel holds 1 non-finite"):
        backbones.build_backbone("caffenet", str(bad))


def test_a_file_numpy_reads_only_with_pickle_is_not_a_weights_file(tmp_path):
    text = tmp_path / "weights.npz"
    text.write_text("conv1 0.1 0.2 0.3\n")
    with pytest.raises(ValueError) as refused:
        backbones.build_backbone("caffenet", str(text))
    message = str(refused.value)
    assert message.startswith(f"weights file {text}: not a weights .npz (neither a .npz "
                              "nor a .npy file)")
    assert "pickle" not in message  # no advice to allow pickle
    single = tmp_path / "single.npz"
    with open(single, "wb") as file:
        np.save(file, np.zeros(3))
    with pytest.raises(ValueError, match="not a weights .npz .it holds one array"):
        backbones.build_backbone("caffenet", str(single))


def test_a_keras_weights_file_holding_nan_is_refused_naming_the_layer(tmp_path):
    base = keras.applications.MobileNetV2(include_top=False, weights=None)
    kernel = base.get_layer("block_3_project").get_weights()[0]
    kernel[0, 0, 0, 0] = np.inf
    base.get_layer("block_3_project").set_weights([kernel])
    path = tmp_path / "mobilenet.weights.h5"
    base.save_weights(path)
    with pytest.raises(ValueError, match=rf"weights file {path}: layer block_3_project .* "
                                         "holds 1 non-finite"):
        backbones.build_backbone("mobilenet_v2", str(path))


def test_resuming_logs_no_false_checkpoint_warnings(tmp_path, caplog):
    import gc

    config = tiny_config(tmp_path, steps=2)
    training.train(config, tmp_path / "work", progress=False)
    config.train.steps = 3
    with caplog.at_level(logging.WARNING, "tensorflow"):
        assert training.train(config, tmp_path / "work", progress=False)["step"] == 3
        gc.collect()  # TensorFlow warns when the restore status is collected
    assert "could not be found" not in caplog.text


def test_fc_widths_are_compared_only_where_the_config_names_them():
    # A workdir trained with fc_units=(32, 16) is read with its own config file, which
    # need not repeat the override (workdirs.fc_units); a config naming others is refused.
    from keras_frcnn.configs import base_config
    from keras_frcnn.model.fast_rcnn import FastRCNN

    model = FastRCNN(num_classes=2, backbone="small", fc_units=(32, 16))
    config = base_config()
    config.model.backbone, config.pipeline.preprocessing = "small", "tf"
    workdirs.check_model_config(model, config, ["cat"])
    config.model.fc_units = (64, 64)
    with pytest.raises(ValueError, match=r"model.fc_units=\(32, 16\) in the model but \(64, 64\)"):
        workdirs.check_model_config(model, config, ["cat"])


def test_the_same_weights_file_at_another_path_is_no_conflict(tmp_path, weights_files):
    # A workdir trained from ../shared's copy resumes from data/weights/'s (the study's
    # finetune runs): the same bytes are the same start; other bytes are not.
    first, copy, other = weights_files
    config = tiny_config(tmp_path, steps=2)
    config.model.weights = str(first)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.json").write_text(config.to_json_best_effort())
    (workdir / "model.keras").write_bytes(b"")  # trained there (workdirs.trained_in)
    moved = config.copy_and_resolve_references()
    moved.model.weights = str(copy)
    assert workdirs.workdir_conflicts(moved, workdir) == []
    moved.model.weights = str(other)
    assert workdirs.workdir_conflicts(moved, workdir) == [("model.weights", str(first),
                                                           str(other))]
