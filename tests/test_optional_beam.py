"""Apache Beam is an optional extra: the package imports without it, and a program given
Beam options without it says so in one line naming the extra."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A sitecustomize that hides Beam from a subprocess, installed or not.
BLOCK = "import sys\nsys.modules['apache_beam'] = None\n"


def without_beam(tmp_path, *args):
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


def test_every_module_but_the_beam_pipelines_imports_without_beam(tmp_path):
    script = """
import importlib, pkgutil, keras_frcnn
names = [m.name for m in pkgutil.walk_packages(keras_frcnn.__path__, "keras_frcnn.")
         if not m.name.startswith("keras_frcnn.beam.")
         and ".ops._roi_pool_ops" not in m.name]  # the op libraries: tf.load_op_library
for name in names:
    importlib.import_module(name)
from keras_frcnn.beam import BeamMissing, require_beam
try:
    require_beam("this")
except BeamMissing as err:
    print(err)
print(len(names), "modules")
"""
    result = without_beam(tmp_path, "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == ('this needs Apache Beam, which is not installed: pip install ".[beam]" '
                        "(or: pip install -r requirements-beam.txt)")
    assert int(lines[1].split()[0]) > 40


def test_beam_options_without_beam_installed_are_one_line_in_both_programs(tmp_path):
    """Beam hidden from the program (a sitecustomize that blocks the import)."""
    result = without_beam(tmp_path, "bin/proposals.py", "--config=configs/demo.py",
                          "--runner=DirectRunner")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: running as a Beam pipeline (--runner=DirectRunner) needs Apache Beam, which "
        "is not installed: pip install \".[beam]\" (or: pip install -r requirements-beam.txt)")
    result = without_beam(tmp_path, "bin/detect.py", "--config=configs/demo.py",
                          "--saved_model=exports/x/1", "--split=test", "--runner=DirectRunner")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: running as a Beam pipeline (--runner=DirectRunner) needs Apache Beam, which "
        "is not installed: pip install \".[beam]\" (or: pip install -r requirements-beam.txt)")
