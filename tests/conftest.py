"""Shared pytest setup: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CPU kernels the bin/ programs choose (docs/training.md), picked by importing their
# start-up module before TensorFlow loads: importing the benchmarks' report module would
# otherwise pick them midway, and processes started later (export's fresh-process check)
# would use other kernels than this one.
from keras_frcnn import cli  # noqa: E402,F401

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A numpy Generator with a fixed seed per test."""
    return np.random.default_rng(20150413)


@pytest.fixture
def weights_files(tmp_path):
    """(first, copy, other): two weights files with the same bytes at two paths and one
    with other bytes (what the model.weights keys compare)."""
    first, copy, other = (tmp_path / f"{name}.weights.h5" for name in "abc")
    first.write_bytes(b"weights one")
    copy.write_bytes(b"weights one")
    other.write_bytes(b"weights two")
    return first, copy, other


def pytest_configure(config):
    """Two logical CPU devices, so tf.distribute tests can run on one CPU."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
