"""Lazy loading of the RoI pooling op libraries built from ``custom_ops/``.

Nothing here runs at import time: the libraries are read and loaded on the
first call of :func:`load`. Before loading, the build record embedded in each
library (TensorFlow version, source digest; see custom_ops/roi_pool_build_info.h)
is read from the file, so that a stale library is reported with the command
that rebuilds it instead of being loaded (an ABI mismatch can abort the process).
"""

import hashlib
import re
import sys
import threading
from pathlib import Path

import tensorflow as tf

OPS_DIR = Path(__file__).resolve().parent
CPU_LIBRARY = OPS_DIR / "_roi_pool_ops.so"
GPU_LIBRARY = OPS_DIR / "_roi_pool_ops_gpu.so"
# Present in a source checkout (and an editable install), absent in a wheel.
SOURCE_DIR = OPS_DIR.parent.parent / "custom_ops"

_BUILD_INFO = re.compile(rb"KERAS_FRCNN_BUILD_INFO;tf=([^;\x00]*);src=([^;\x00]*);")


class CustomOpUnavailableError(RuntimeError):
    """The compiled RoI pooling op is missing, stale or failed to load."""


def rebuild_command():
    """The shell command that rebuilds the op for the running interpreter."""
    if (SOURCE_DIR / "Makefile").is_file():
        return f"make -C {SOURCE_DIR} PYTHON={sys.executable}"
    return (
        f"{sys.executable} -m pip install --no-build-isolation --force-reinstall --no-deps "
        "<your keras-frcnn source checkout>"
    )


def read_build_info(path):
    """Returns ``{"tf": version, "src": digest}`` recorded in a library, or None."""
    match = _BUILD_INFO.search(Path(path).read_bytes())
    if match is None:
        return None
    return {"tf": match.group(1).decode(), "src": match.group(2).decode()}


def source_digest(source_dir=SOURCE_DIR):
    """Digest of the op sources, computed as custom_ops/Makefile computes it.

    Returns None when the sources are not around (installed from a wheel).
    """
    source_dir = Path(source_dir)
    files = sorted(list(source_dir.glob("*.h")) + list(source_dir.glob("*.cc")), key=lambda p: p.name)
    if not files:
        return None
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


def library_problem(path, tf_version=tf.__version__, digest=None):
    """Why the library at ``path`` cannot be used, or None if it can."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist (the op was never built)"
    info = read_build_info(path)
    if info is None:
        return f"{path} carries no keras_frcnn build record (not built by custom_ops/Makefile)"
    if info["tf"] != tf_version:
        return f"{path} was built for TensorFlow {info['tf']} but TensorFlow {tf_version} is installed"
    digest = source_digest() if digest is None else digest
    if digest is not None and info["src"] != digest:
        return f"{path} was built from older sources than those in {SOURCE_DIR}"
    return None


class _Loader:
    """Loads the libraries once per process; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._module = None
        self._error = None
        self.gpu_problem = None

    def load(self):
        with self._lock:
            if self._module is None and self._error is None:
                self._load_locked()
        if self._error is not None:
            raise CustomOpUnavailableError(self._error)
        return self._module

    def _load_locked(self):
        problem = library_problem(CPU_LIBRARY)
        if problem is None:
            try:
                self._module = tf.load_op_library(str(CPU_LIBRARY))
            except (tf.errors.NotFoundError, OSError) as err:
                problem = f"{CPU_LIBRARY} failed to load: {err}"
        if problem is not None:
            self._error = (
                f"keras_frcnn's RoI pooling op is unavailable: {problem}. "
                f"Rebuild it with: {rebuild_command()}"
            )
            return
        # GPU kernels are optional: without them the op runs on the CPU.
        if GPU_LIBRARY.is_file():
            self.gpu_problem = library_problem(GPU_LIBRARY)
            if self.gpu_problem is None:
                try:
                    tf.load_library(str(GPU_LIBRARY))
                except (tf.errors.NotFoundError, OSError) as err:
                    self.gpu_problem = f"{GPU_LIBRARY} failed to load: {err}"
            if self.gpu_problem is not None:
                tf.get_logger().warning(
                    "keras_frcnn: RoI pooling GPU kernels not loaded (%s); the op runs on "
                    "the CPU. Rebuild with: %s", self.gpu_problem, rebuild_command())

    def is_available(self):
        try:
            self.load()
        except CustomOpUnavailableError:
            return False
        return True


_LOADER = _Loader()
load = _LOADER.load
is_available = _LOADER.is_available
