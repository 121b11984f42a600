"""Shared by the benchmark scripts: machine description and Markdown sections.

Each script owns one section of docs/benchmarks.md between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; rewriting it leaves the rest
of the file alone.
"""

import os
import platform
import re
from pathlib import Path

# The programs' choice of TensorFlow CPU kernels (oneDNN, docs/training.md), so that the
# figures are what bin/ gives; only effective when this module is imported before
# TensorFlow, hence first in every benchmark.
from keras_frcnn import cli  # noqa: F401


def machine_description():
    import tensorflow as tf

    cpu = platform.processor() or "unknown CPU"
    try:
        model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = model.group(1) if model else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
            f" (oneDNN kernels {_onednn_state()})")


def _onednn_state():
    """'on' or 'off': whether TensorFlow loaded its oneDNN CPU kernels."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without this private module: report the request
        return f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}"
    return "on" if _pywrap_util_port.IsMklEnabled() else "off"


def markers(name):
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path, section, name):
    """Replaces section ``name`` of a Markdown file (appends it if new), atomically."""
    start, end = markers(name)
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def publish(name, lines, output=None):
    """Wraps ``lines`` in section ``name``'s markers, prints it, writes it into ``output``."""
    start, end = markers(name)
    section = "\n".join([start, *lines, end]) + "\n"
    print(section)
    if output:
        write_section(output, section, name)
