"""keras-frcnn: Fast R-CNN for TensorFlow 2 / Keras 3.

Installing builds the RoI pooling op (custom_ops/Makefile) against the
TensorFlow already installed in the target environment, so install
TensorFlow first and build without isolation:

    pip install -r requirements.txt
    pip install --no-build-isolation -e .
"""

import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
OP_LIBRARIES = ("_roi_pool_ops.so", "_roi_pool_ops_gpu.so")


class BuildCustomOps(build_ext):
    """Runs custom_ops/Makefile for this interpreter's TensorFlow.

    The Makefile writes the libraries into keras_frcnn/ops/ of the source tree
    (what an editable install uses); a regular install also copies them into
    the build directory.
    """

    def run(self):
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            sys.exit("keras-frcnn: TensorFlow must be installed before building the RoI pooling "
                     "op: `pip install -r requirements.txt`, then `pip install "
                     "--no-build-isolation .`")
        subprocess.check_call(["make", "-C", str(ROOT / "custom_ops"), "-j2",
                               f"PYTHON={sys.executable}"])
        if not self.inplace:
            target = Path(self.build_lib) / "keras_frcnn" / "ops"
            target.mkdir(parents=True, exist_ok=True)
            for name in OP_LIBRARIES:
                built = ROOT / "keras_frcnn" / "ops" / name
                if built.is_file():
                    self.copy_file(str(built), str(target / name))

    def get_outputs(self):
        return [str(Path(self.build_lib) / "keras_frcnn" / "ops" / name) for name in OP_LIBRARIES]


def requirements(name):
    lines = (ROOT / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="keras-frcnn",
    version="0.1.0",
    description="Fast R-CNN (Girshick, ICCV 2015) for TensorFlow 2 and Keras 3, with an exact "
                "RoI max-pooling op",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_frcnn", "keras_frcnn.*"]) + ["keras_frcnn_bin"],
    package_dir={"keras_frcnn_bin": "bin"},
    # One placeholder extension makes setuptools run BuildCustomOps (also for
    # editable installs); the real work is the Makefile.
    ext_modules=[Extension("keras_frcnn.ops._roi_pool_ops", sources=[])],
    cmdclass={"build_ext": BuildCustomOps},
    install_requires=requirements("requirements.txt"),
    extras_require={"test": requirements("requirements-test.txt"),
                    "beam": requirements("requirements-beam.txt")},
    entry_points={"console_scripts": [
        f"frcnn-{name.replace('_', '-')}=keras_frcnn_bin.{name}:run"
        for name in ("train", "evaluate", "detect", "proposals", "compress", "export",
                     "study", "convert_caffemodel", "convert_tflite")]},
    zip_safe=False,
)
