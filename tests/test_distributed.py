"""Training under tf.distribute and in mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn import training, workdirs
from tests.test_training import tiny_config


def two_cpus():
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py sets them up)")
    return [d.name for d in cpus[:2]]


def run(config, workdir):
    keras.utils.set_random_seed(0)
    result = training.train(config, workdir, progress=False)
    model = workdirs.load_inference_model(workdir)
    return result["history"], model.get_weights()


def test_two_replicas_give_the_losses_of_one_device(tmp_path):
    """Global batch 2 images x 32 RoIs: one device, or one image and 16 RoIs on each of
    two replicas (same images, same RoIs, synchronised BatchNorm): same losses, weights."""
    config = tiny_config(tmp_path, steps=3)
    config.pipeline.flip = False
    one_history, one_weights = run(config, tmp_path / "one")
    config.train.distribute, config.train.devices = "mirrored", tuple(two_cpus())
    two_history, two_weights = run(config, tmp_path / "two")
    for name in ("loss", "cls_loss", "bbox_loss", "accuracy"):
        one = np.array([v for _, v in one_history[name]])
        two = np.array([v for _, v in two_history[name]])
        assert len(one) == len(two) == 3
        np.testing.assert_allclose(two, one, rtol=2e-4, atol=1e-6, err_msg=name)
    for a, b in zip(one_weights, two_weights):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


def test_global_batch_must_split_over_the_replicas(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    config.sampling.images_per_batch, config.sampling.rois_per_batch = 3, 48
    config.train.distribute, config.train.devices = "mirrored", tuple(two_cpus())
    with pytest.raises(ValueError, match="multiple of the 2 replicas; set it to 2"):
        training.train(config, tmp_path / "work", progress=False)


def test_bad_strategy_and_precision_names(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    config.train.distribute = "tpu"
    with pytest.raises(ValueError, match="train.distribute must be one of"):
        training.train(config, tmp_path / "a", progress=False)
    config.train.distribute, config.train.precision = "", "float8"
    with pytest.raises(ValueError, match="train.precision must be one of"):
        training.train(config, tmp_path / "b", progress=False)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_saves_a_float32_model(tmp_path, precision):
    config = tiny_config(tmp_path, steps=3)
    config.train.precision = precision
    history, _ = run(config, tmp_path / "work")
    assert all(np.isfinite(v) for _, v in history["loss"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = workdirs.load_inference_model(tmp_path / "work")
    assert model.get_layer("fc6").dtype_policy.name == "float32"
    x = {"images": np.zeros((1, 72, 96, 3), np.float32),
         "rois": np.array([[0, 5, 5, 40, 40]], np.float32)}
    assert model(x)["cls_prob"].dtype == "float32"
    # Training resumes from the mixed-precision checkpoint (loss-scale state included).
    config.train.steps = 4
    assert training.train(config, tmp_path / "work", progress=False)["step"] == 4


WORKER = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from keras_frcnn import training
from tests.test_training import tiny_config
config = tiny_config(Path(sys.argv[1]), steps=3, write=False)
config.pipeline.flip = False
config.train.distribute = "multi_worker"
import keras
keras.utils.set_random_seed(0)
result = training.train(config, Path(sys.argv[2]), progress=False)
print("RESULT", json.dumps([v for _, v in result["history"]["loss"]]))
"""


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_training_from_tf_config(tmp_path):
    """Two worker processes on this machine (TF_CONFIG, one CPU each) train the global
    batch of one device: same losses; the chief alone writes the model."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    config = tiny_config(tmp_path, steps=3)
    config.pipeline.flip = False
    one_history, _ = run(config, tmp_path / "one")
    root = Path(__file__).resolve().parents[1]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(tmp_path / "multi"), str(root)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:  # wait for both; kill them only if the wait fails
        done = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    outputs = []
    for worker, (out, err) in zip(workers, done):
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.split("RESULT", 1)[1]))
    one = [v for _, v in one_history["loss"]]
    for losses in outputs:
        np.testing.assert_allclose(losses, one, rtol=2e-4)
    assert (tmp_path / "multi" / "model.keras").is_file()
    assert not list((tmp_path / "multi").glob(".worker_*"))
