"""Training under faults: exact resume after a kill, Ctrl-C, damaged checkpoints and
workdir files, and the workdir lock."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import files, training, workdirs
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def weights(workdir):
    return workdirs.load_inference_model(workdir).get_weights()


def killed_after(batches, real):
    """make_dataset whose stream ends after ``batches`` minibatches: the run dies there
    with an exception, saving nothing, as it would under kill -9."""
    def make(config, roidb, stats, start_batch):
        return real(config, roidb, stats, start_batch).take(batches)
    return make


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, workdir) of a 4-step run with checkpoints ckpt-2 and ckpt-4."""
    root = tmp_path_factory.mktemp("trained")
    config = tiny_config(root, steps=4)
    training.train(config, root / "work", progress=False)
    return config, root / "work"


def copy_workdir(trained, tmp_path):
    config, workdir = trained
    shutil.copytree(workdir, tmp_path / "work")
    return config.copy_and_resolve_references(), tmp_path / "work"


def test_a_killed_run_resumes_to_the_same_weights_bit_for_bit(tmp_path, monkeypatch):
    """With dropout on: the dropout random state is part of the checkpoint."""
    config = tiny_config(tmp_path, steps=6)
    config.model.dropout = 0.5
    training.train(config, tmp_path / "whole", progress=False)

    real = training.make_dataset
    monkeypatch.setattr(training, "make_dataset", killed_after(3, real))
    with pytest.raises(StopIteration):  # dies in step 4, after the step-2 checkpoint
        training.train(config, tmp_path / "killed", progress=False)
    assert not (tmp_path / "killed" / "checkpoints" / "ckpt-4.index").exists()
    monkeypatch.setattr(training, "make_dataset", real)
    resumed = training.train(config, tmp_path / "killed", progress=False)
    assert [s for s, _ in resumed["history"]["loss"]] == [3, 4, 5, 6]
    for a, b in zip(weights(tmp_path / "whole"), weights(tmp_path / "killed")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["sigint", "keyboard_interrupt"])
def test_an_interrupt_saves_the_checkpoint_of_the_steps_that_ran(tmp_path, monkeypatch, how):
    """Ctrl-C (a SIGINT: the loop stops after the step; or a KeyboardInterrupt raised
    after a step ran but before the loop counted it): the checkpoint is named after
    the steps it holds, and the resumed run starts at the next one."""
    config = tiny_config(tmp_path, steps=5)
    real_isfinite, calls = np.isfinite, []

    def interrupted_isfinite(value):  # the loss check (of a float) runs after each step
        if isinstance(value, float):
            calls.append(value)
            if len(calls) == 3 and how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            elif len(calls) == 3:
                raise KeyboardInterrupt
        return real_isfinite(value)

    monkeypatch.setattr(training.np, "isfinite", interrupted_isfinite)
    result = training.train(config, tmp_path / "work", progress=False)
    monkeypatch.setattr(training.np, "isfinite", real_isfinite)
    assert result["interrupted"] and result["step"] == 3
    assert result["checkpoint"].endswith("ckpt-3")
    assert not (tmp_path / "work" / "model.keras").exists()
    resumed = training.train(config, tmp_path / "work", progress=False)
    assert [s for s, _ in resumed["history"]["loss"]] == [4, 5]


@pytest.mark.parametrize("part", ["data-00000-of-00001", "index"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(trained, tmp_path, part,
                                                                   caplog):
    config, workdir = copy_workdir(trained, tmp_path)
    damaged = workdir / "checkpoints" / f"ckpt-4.{part}"
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 3])
    config.train.steps = 5
    result = training.train(config, workdir, progress=False)
    assert [s for s, _ in result["history"]["loss"]] == [3, 4, 5]  # from ckpt-2
    assert "ckpt-4 is damaged and was skipped" in caplog.text


def test_no_readable_checkpoint_is_one_clear_error(trained, tmp_path):
    config, workdir = copy_workdir(trained, tmp_path)
    for index in (workdir / "checkpoints").glob("*.index"):
        index.write_bytes(b"\0" * 10)
    with pytest.raises(workdirs.NoUsableCheckpoint,
                       match=r"ckpt-4, ckpt-2\); delete \S+checkpoints "):
        training.train(config, workdir, progress=False)


def test_a_checkpoint_of_another_model_is_refused_not_called_damaged(trained, tmp_path):
    config, workdir = copy_workdir(trained, tmp_path)
    config.model.fc_units = (32, 32)  # the recorded widths differ: refused earlier, so
    (workdir / "config.json").unlink()  # drop the record; the checkpoint itself disagrees
    with pytest.raises(workdirs.CheckpointMismatch, match=r"ckpt-4 does not match the model "
                                                          r".*resume with the config"):
        training.train(config, workdir, progress=False)


def test_a_checkpoint_without_the_progress_part_resumes_with_a_warning(trained, tmp_path,
                                                                       caplog):
    """Checkpoints of the previous version held model and optimiser only."""
    config, workdir = copy_workdir(trained, tmp_path)
    model = training.build_model(config, 2, workdir)  # background and cat
    optimizer, _, (required, _), _ = training._checkpointing(config, model, tmp_path / "x")
    assert workdirs.restore_latest(workdir / "checkpoints", required)[0].endswith("ckpt-4")
    shutil.rmtree(workdir / "checkpoints")
    tf.train.CheckpointManager(tf.train.Checkpoint(**required), workdir / "checkpoints",
                               3).save(checkpoint_number=4)  # as the previous version did
    (workdir / "checkpoints" / "ckpt-2 (copy).index").write_bytes(b"")  # a stray file
    config.train.steps = 5
    result = training.train(config, workdir, progress=False)
    assert [s for s, _ in result["history"]["loss"]] == [5]  # from the optimiser's count
    assert "without the dropout random state" in caplog.text


def test_a_dataset_error_inside_the_pipeline_is_one_line(tmp_path, monkeypatch):
    """An image that no longer matches its record once training runs (replaced since the
    dataset was read): the DatasetError raised in tf.data comes out as itself."""
    import keras_frcnn.data.pipeline as pipeline
    from keras_frcnn.data.records import DatasetError

    config = tiny_config(tmp_path, steps=2)
    monkeypatch.setattr(pipeline, "read_image_bgr",
                        lambda path, max_pixels, orient=True: np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"^\S+\.jpg: image is 10x10 but its record says "
                                           r"96x72; fix the annotation") as caught:
        training.train(config, tmp_path / "work", progress=False)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("name", ["config.json", "target_stats.json", "model.keras"])
def test_a_truncated_workdir_file_is_named(trained, tmp_path, name):
    config, workdir = copy_workdir(trained, tmp_path)
    path = workdir / name
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(files.CorruptFile, match=rf"{path}: corrupt or truncated .*write it again"):
        if name == "config.json":
            training.train(config, workdir, progress=False)
        elif name == "target_stats.json":
            workdirs.load_target_stats(workdir)
        else:
            workdirs.load_inference_model(workdir)


def test_a_deleted_model_keras_is_written_again_by_the_same_command(trained, tmp_path):
    config, workdir = copy_workdir(trained, tmp_path)
    (workdir / "model.keras").unlink()
    assert training.train(config, workdir, progress=False)["step"] == 4  # no step runs
    for a, b in zip(weights(workdir), weights(trained[1])):
        np.testing.assert_array_equal(a, b)


def test_json_files_that_are_empty_or_of_the_wrong_kind_are_named(trained, tmp_path):
    (tmp_path / "classes.json").write_text("")
    with pytest.raises(files.CorruptFile, match=r"classes.json: empty; do this"):
        files.read_json(tmp_path / "classes.json", "do this", expect=list)
    (tmp_path / "classes.json").write_text("{}")
    with pytest.raises(files.CorruptFile, match=r"corrupt \(a JSON dict, not an array\)"):
        files.read_json(tmp_path / "classes.json", "do this", expect=list)
    _, workdir = copy_workdir(trained, tmp_path)
    (workdir / "target_stats.json").write_text("{}")
    with pytest.raises(files.CorruptFile, match="target_stats.json: not the target statistics"):
        workdirs.load_target_stats(workdir)


def test_a_second_training_on_a_workdir_is_refused_naming_the_first(trained, tmp_path):
    config, workdir = copy_workdir(trained, tmp_path)
    with files.WorkdirLock(workdir):
        with pytest.raises(files.WorkdirBusy, match=rf"in use by another training \(PID "
                                                    rf"{os.getpid()}\)"):
            training.train(config, workdir, progress=False)
    config.train.steps = 5  # released: the run goes ahead
    assert training.train(config, workdir, progress=False)["step"] == 5


@pytest.mark.parametrize("task, cluster, name", [
    ({"type": "worker", "index": 0}, {"worker": ["a", "b"]}, "train.lock"),
    ({"type": "worker", "index": 1}, {"worker": ["a", "b"]}, "train.worker-1.lock"),
    ({"type": "chief", "index": 0}, {"chief": ["a"], "worker": ["b"]}, "train.lock"),
    ({"type": "worker", "index": 0}, {"chief": ["a"], "worker": ["b"]}, "train.worker-0.lock"),
])
def test_the_chief_of_a_multi_worker_run_holds_the_workdir_lock(monkeypatch, task, cluster,
                                                                 name):
    import json

    from keras_frcnn.configs import base_config

    config = base_config()
    config.train.distribute = "multi_worker"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert workdirs.lock_name(config) == name
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid cluster description"):
        workdirs.lock_name(config)


def test_the_lock_of_a_killed_process_is_not_stale(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from keras_frcnn.files import WorkdirLock; WorkdirLock(sys.argv[2]).acquire();"
         "print('held', flush=True); time.sleep(60)", str(ROOT), str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.WorkdirBusy, match=f"PID {holder.pid}"):
            files.WorkdirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    files.WorkdirLock(tmp_path).acquire().release()


CONFIG = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.test_training import tiny_config

def get_config():
    return tiny_config(Path({data!r}), steps=100000, write=False)
"""


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path):
    tiny_config(tmp_path, steps=1)  # writes the images
    config_file = tmp_path / "tiny.py"
    config_file.write_text(CONFIG.format(root=str(ROOT), data=str(tmp_path)))
    workdir = tmp_path / "work"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.Popen([sys.executable, str(ROOT / "bin" / "train.py"),
                            f"--config={config_file}", f"--workdir={workdir}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        # Any checkpoint: with three kept, ckpt-2 lives for a few fast steps only.
        while not list((workdir / "checkpoints").glob("ckpt-*.index")):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1]
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    step = tf.train.get_checkpoint_state(str(workdir / "checkpoints")).model_checkpoint_path
    step = int(step.rsplit("-", 1)[1])
    assert last == (f"interrupted after step {step} of 100000: saved the training state in "
                    f"{workdir / 'checkpoints' / f'ckpt-{step}'} (no model.keras yet); run the "
                    f"same command again to go on from step {step + 1}")
    assert not (workdir / "model.keras").exists()


KILLED = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from keras_frcnn import training
from tests.test_training import tiny_config
config = tiny_config(Path(sys.argv[2]), steps=6, write=False)
config.model.dropout = 0.5
real = training.make_dataset

def make(config, roidb, stats, start_batch):  # stops for good at the fourth minibatch
    for k, batch in enumerate(real(config, roidb, stats, start_batch)):
        if k == 3:
            threading.Event().wait()
        yield batch

training.make_dataset = make
training.train(config, Path(sys.argv[3]), progress=False)
"""


def test_kill_9_after_a_checkpoint_then_a_restart_gives_the_uninterrupted_weights(tmp_path):
    config = tiny_config(tmp_path, steps=6)
    config.model.dropout = 0.5
    training.train(config, tmp_path / "whole", progress=False)
    workdir = tmp_path / "killed"
    run = subprocess.Popen([sys.executable, "-c", KILLED, str(ROOT), str(tmp_path),
                            str(workdir)], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "checkpoints" / "ckpt-2.index").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1]
            time.sleep(0.2)
        time.sleep(1)  # the run is stuck at its fourth minibatch
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert not (workdir / "model.keras").exists()
    resumed = training.train(config, workdir, progress=False)
    assert [s for s, _ in resumed["history"]["loss"]] == [3, 4, 5, 6]
    for a, b in zip(weights(tmp_path / "whole"), weights(workdir)):
        np.testing.assert_array_equal(a, b)
