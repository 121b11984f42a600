"""Loading the compiled op: lazy, version-checked, clear messages, CPU-safe GPU library."""

import importlib
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.ops import loader

# The module (keras_frcnn.ops.roi_pool is also the name of the function).
roi_pool_module = importlib.import_module("keras_frcnn.ops.roi_pool")


def run_python(code, **env):
    """Runs code in a fresh interpreter; returns stdout."""
    import os
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_built_library_records_this_tensorflow_and_sources():
    info = loader.read_build_info(loader.CPU_LIBRARY)
    assert info == {"tf": tf.__version__, "src": loader.source_digest()}
    assert loader.library_problem(loader.CPU_LIBRARY) is None


def test_stale_and_foreign_libraries_are_refused(tmp_path):
    missing = tmp_path / "_roi_pool_ops.so"
    assert "does not exist" in loader.library_problem(missing)
    foreign = tmp_path / "foreign.so"
    foreign.write_bytes(b"\x7fELF not ours")
    assert "no keras_frcnn build record" in loader.library_problem(foreign)
    old = tmp_path / "old.so"
    old.write_bytes(b"\x7fELF...KERAS_FRCNN_BUILD_INFO;tf=2.15.0;src=0123456789abcdef;...")
    assert "built for TensorFlow 2.15.0 but TensorFlow" in loader.library_problem(old)
    edited = tmp_path / "edited.so"
    edited.write_bytes(f"KERAS_FRCNN_BUILD_INFO;tf={tf.__version__};src=0000;".encode())
    assert "older sources" in loader.library_problem(edited)


def test_missing_library_message_names_the_rebuild_command(monkeypatch, tmp_path):
    monkeypatch.setattr(loader, "CPU_LIBRARY", tmp_path / "_roi_pool_ops.so")
    fresh = loader._Loader()
    with pytest.raises(loader.CustomOpUnavailableError) as err:
        fresh.load()
    message = str(err.value)
    assert "does not exist" in message
    assert f"make -C {loader.SOURCE_DIR} PYTHON={sys.executable}" in message
    assert not fresh.is_available()


def test_unavailable_op_errors_when_asked_for_and_falls_back_once_otherwise(monkeypatch, rng):
    def unavailable():
        raise loader.CustomOpUnavailableError("test: library missing. Rebuild it with: make")

    monkeypatch.setattr(loader, "load", unavailable)
    monkeypatch.setattr(roi_pool_module, "_warned_fallback", False)
    features = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    with pytest.raises(loader.CustomOpUnavailableError, match="Rebuild it with"):
        roi_pool_module.roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0, implementation="custom_op")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = roi_pool_module.roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0)
        roi_pool_module.roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0)
    fallbacks = [w for w in caught if "Falling back" in str(w.message)]
    assert len(fallbacks) == 1 and "Rebuild it with" in str(fallbacks[0].message)
    expected = roi_pool_module.roi_pool(features, [[0, 0, 0, 3, 3]], 2, 1.0, "composite")
    np.testing.assert_array_equal(out.numpy(), expected.numpy())


def test_import_does_not_load_the_library():
    out = run_python("""
        import keras_frcnn
        from keras_frcnn.ops import loader
        print(loader._LOADER._module is None)
        keras_frcnn.roi_pool([[[[1.0]]]], [[0, 0, 0, 0, 0]], 1, 1.0)
        print(loader._LOADER._module is not None)
    """)
    assert out.split() == ["True", "True"]


@pytest.mark.skipif(not loader.GPU_LIBRARY.is_file(), reason="GPU kernels not built (no nvcc)")
def test_gpu_library_loads_without_cuda_and_cpu_path_still_works():
    # This machine has no CUDA driver: the GPU library (static CUDA runtime)
    # must still load, and the op must still run on the CPU.
    out = run_python(f"""
        import tensorflow as tf
        tf.load_op_library({str(loader.CPU_LIBRARY)!r})
        tf.load_library({str(loader.GPU_LIBRARY)!r})
        import keras_frcnn
        print(float(keras_frcnn.roi_pool([[[[2.0]]]], [[0, 0, 0, 0, 0]], 1, 1.0,
                                         "custom_op")[0, 0, 0, 0]))
    """)
    assert out.split()[-1] == "2.0"


def test_cpu_gradient_is_deterministic_across_thread_counts(tmp_path):
    code = """
        import sys, numpy as np, tensorflow as tf
        threads = int(sys.argv[1])
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        import keras_frcnn
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(size=(2, 19, 25, 64)).astype(np.float32))
        xy = rng.uniform(0, 300, size=(256, 2))
        rois = np.concatenate([rng.integers(0, 2, (256, 1)), xy, xy + rng.uniform(16, 200, (256, 2))], 1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = keras_frcnn.roi_pool(x, rois, 7, 1 / 16, "custom_op")
        g = tape.gradient(y, x, output_gradients=tf.constant(rng.normal(size=y.shape).astype(np.float32)))
        np.save(sys.argv[2], g.numpy())
    """
    import os
    for threads in (1, 2):
        subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(threads),
                        str(tmp_path / f"g{threads}.npy")], check=True, capture_output=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    one, two = np.load(tmp_path / "g1.npy"), np.load(tmp_path / "g2.npy")
    assert one.tobytes() == two.tobytes()
