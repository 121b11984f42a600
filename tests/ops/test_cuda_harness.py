"""The standalone CUDA harness: CUDA kernels vs CPU kernels, no TensorFlow.

Compiled whenever nvcc is installed (so CUDA sources that no longer build fail
here); its CPU half runs everywhere, its GPU half only where a GPU is present
(the GPU test is skipped cleanly otherwise).
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CUSTOM_OPS = Path(__file__).resolve().parents[2] / "custom_ops"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                if Path("/usr/local/cuda/bin/nvcc").exists() else None)
NO_DEVICE = 77  # the harness's exit status when there is no CUDA device

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed: CUDA kernels not compiled")


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory):
    """Builds the harness once and runs it on 200 random cases."""
    build_dir = tmp_path_factory.mktemp("harness")
    build = subprocess.run(
        ["make", "-C", str(CUSTOM_OPS), "harness", f"BUILD_DIR={build_dir}", "CUDA_ARCHS=80",
         f"NVCC={NVCC}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    return subprocess.run([str(build_dir / "roi_pool_harness"), "200"], capture_output=True,
                          text=True, timeout=600)


def test_cpu_inference_values_match_cpu_forward(harness_run):
    # The CPU half runs with or without a GPU: RoiPoolValuesBins against
    # RoiPoolForwardBins, bit for bit, on the harness's random cases (a GPU
    # mismatch is the other test's to report).
    assert "CPU inference bit-identical to CPU forward output: yes" in harness_run.stdout, (
        harness_run.stdout[-4000:] + harness_run.stderr[-2000:])


def test_cuda_kernels_match_cpu_kernels(harness_run):
    if harness_run.returncode == NO_DEVICE:
        pytest.skip("no CUDA device: harness compiled, CPU kernels ran, GPU comparison skipped")
    out = harness_run.stdout
    assert harness_run.returncode == 0, out[-4000:] + harness_run.stderr[-2000:]
    assert re.search(r"^harness: \d+ cases, 0 failed;", out, re.MULTILINE), out[-4000:]
    assert "forward and deterministic backward bit-identical to CPU: yes" in out
    # KerasFrcnn>RoiPoolInference's CUDA kernel against the CPU inference
    # kernel and against the GPU forward's output, bit for bit.
    assert ("inference (no argmax): GPU output bit-identical to CPU inference: yes, "
            "to GPU forward output: yes" in out), out[-4000:]
