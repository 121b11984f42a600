"""The bin/ programs ask TensorFlow for its oneDNN CPU kernels unless the user chose."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Imports a program as its console script does, then TensorFlow, and reports the variable
# and whether TensorFlow loaded its oneDNN kernels: it reads the variable once, when it
# loads, so the program must have set it on import.
PROBE = """
import os
import bin.{program}
import tensorflow
from tensorflow.python.util import _pywrap_util_port
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled())
"""


def probe(program, value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    result = subprocess.run([sys.executable, "-c", PROBE.format(program=program)],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


@pytest.mark.parametrize("program", ["train", "evaluate", "detect"])
def test_programs_turn_onednn_on_before_tensorflow_loads(program):
    assert probe(program, None) == ["1", "True"]


def test_a_users_choice_is_kept():
    assert probe("train", "0") == ["0", "False"]
