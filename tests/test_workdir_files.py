"""Workdir files: checkpoints found in numeric order and refused when a required part is
missing; model.keras and every atomic_write replace the old file whole, by a rename,
leaving no temporary file when they fail."""

import errno
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import files, workdirs


def save_checkpoint(directory, number, value, with_optimizer=True):
    """ckpt-<number> holding a model whose one variable is ``value`` (and a built SGD
    optimiser, as training saves it), written as training writes its checkpoints."""
    variable = tf.Variable(float(value))
    parts = {"model": tf.train.Checkpoint(v=variable)}
    if with_optimizer:
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        optimizer.build([variable])
        parts["optimizer"] = optimizer
    tf.train.CheckpointManager(tf.train.Checkpoint(**parts), directory, 10).save(
        checkpoint_number=number)


def restore_target():
    """(required parts, the model variable) as training restores them."""
    variable = tf.Variable(0.0)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build([variable])
    return {"model": tf.train.Checkpoint(v=variable), "optimizer": optimizer}, variable


def test_checkpoints_are_ordered_by_number_not_by_name(tmp_path):
    """Catches a text sort of the checkpoint names: "ckpt-9" sorts after "ckpt-10"."""
    for number in (2, 9, 10):
        save_checkpoint(tmp_path, number, number)
    required, variable = restore_target()
    prefix, complete = workdirs.restore_latest(tmp_path, required)
    assert prefix == str(tmp_path / "ckpt-10") and complete
    assert variable.numpy() == 10.0


def test_a_checkpoint_without_the_required_optimizer_is_refused(tmp_path):
    """Catches a restore that does not check the required parts against the checkpoint:
    one that lacks the optimiser (its momentum, its step count) would resume with a fresh
    optimiser as if nothing were missing. It is refused as a mismatch naming the
    checkpoint (training stops there), not skipped as damaged for an older one."""
    save_checkpoint(tmp_path, 4, 4.0)
    save_checkpoint(tmp_path, 6, 6.0, with_optimizer=False)
    required, variable = restore_target()
    with pytest.raises(workdirs.CheckpointMismatch, match=r"ckpt-6 does not match the model"):
        workdirs.restore_latest(tmp_path, required)
    # Without the optimiser among the required parts the same checkpoint is complete.
    prefix, _ = workdirs.restore_latest(tmp_path, {"model": required["model"]})
    assert prefix.endswith("ckpt-6") and variable.numpy() == 6.0


def failing_write(monkeypatch, module):
    """Makes ``module``'s os.fdopen give files whose write stores half the data and then
    fails as a full disk does."""
    real_fdopen = os.fdopen

    class HalfFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(data[:len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(module.os, "fdopen", lambda *a, **k: HalfFile(real_fdopen(*a, **k)))


def test_atomic_write_replaces_the_file_whole_by_a_rename(tmp_path, monkeypatch):
    """Catches a write in place: a reader of the target sees the old bytes until the
    rename, and the new ones, whole, after it."""
    target = tmp_path / "detections.json"
    target.write_text("old")
    real_replace, seen = os.replace, []

    def checking_replace(src, dst):
        seen.append((open(src).read(), open(dst).read()))  # new beside, old in place
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", checking_replace)
    files.atomic_write(target, "new content")
    assert seen == [("new content", "old")] and target.read_text() == "new content"
    assert os.listdir(tmp_path) == ["detections.json"]


def test_atomic_write_that_fails_midway_keeps_the_old_file_and_no_temporary(tmp_path,
                                                                             monkeypatch):
    """Catches a write in place (the target would hold half the data) and a temporary file
    left behind on error."""
    target = tmp_path / "detections.json"
    target.write_text("old")
    failing_write(monkeypatch, files)
    with pytest.raises(OSError, match="No space left on device"):
        files.atomic_write(target, "new content that does not fit")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["detections.json"]


def test_atomic_write_whose_rename_fails_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "detections.json"
    target.write_text("old")

    def no_rename(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(OSError, match="cross-device"):
        files.atomic_write(target, b"new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["detections.json"]


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def test_save_model_replaces_model_keras_whole_by_a_rename(tiny_model, tmp_path, monkeypatch):
    """Catches model.save straight onto model.keras: until the rename, the target is the
    old model, whole."""
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")
    real_replace, seen = os.replace, []

    def checking_replace(src, dst):
        seen.append((keras.saving.load_model(src).get_weights(), open(dst, "rb").read()))
        real_replace(src, dst)

    monkeypatch.setattr(workdirs.os, "replace", checking_replace)
    workdirs.save_model(tiny_model, target)
    (weights, old), = seen
    assert old == b"old model"  # the new model complete beside it, the old one in place
    for got, want in zip(weights, tiny_model.get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(keras.saving.load_model(target).get_weights(), tiny_model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert os.listdir(tmp_path) == ["model.keras"]


def disk_full_save(monkeypatch, model):
    """Makes ``model.save`` fail as a full disk does: the file written so far (half of
    it) stays, and an OSError is raised."""
    real_save = type(model).save

    def disk_full(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(model), "save", disk_full)


def test_save_model_that_fails_midway_keeps_the_old_model(tiny_model, tmp_path, monkeypatch):
    """Catches model.save straight onto model.keras: the target would be a truncated zip."""
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")
    disk_full_save(monkeypatch, tiny_model)
    with pytest.raises(OSError, match="No space left on device"):
        workdirs.save_model(tiny_model, target)
    assert target.read_bytes() == b"old model"


def test_save_model_that_fails_midway_leaves_no_temporary(tiny_model, tmp_path, monkeypatch):
    """A half-written temporary model must not stay beside model.keras after a failed save
    (as atomic_write removes its temporary file)."""
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")
    disk_full_save(monkeypatch, tiny_model)
    with pytest.raises(OSError, match="No space left on device"):
        workdirs.save_model(tiny_model, target)
    assert os.listdir(tmp_path) == ["model.keras"]
