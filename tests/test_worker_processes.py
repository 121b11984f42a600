"""Selective-search workers die with their parent (issue 42): a parent killed with
SIGKILL (or by the OOM killer) cannot stop them, so each worker watches for it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The parent: a search of slow images in two workers. ``spawn`` makes it start them as
# the programs do once TensorFlow is loaded (proposals/workers.py: worker_context), which
# brings multiprocessing's resource tracker along; ``fork`` as without TensorFlow.
PARENT = """
import sys, types
if sys.argv[1] == "spawn":
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")  # what the context looks at
from keras_frcnn.proposals import selective_search
selective_search.compute_selective_search(sys.argv[3:], sys.argv[2], mode="quality",
                                          workers=2, progress=False)
"""


def children(pid):
    """PIDs of the live (not zombie) processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_exit_when_their_parent_is_killed(tmp_path, context):
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):  # noise in quality mode: seconds per image
        paths.append(tmp_path / f"noise{k}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (700, 700, 3), dtype=np.uint8))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, context, str(tmp_path / "cache"),
                               *map(str, paths)], cwd=ROOT, env={**os.environ,
                               "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    workers = []
    try:
        # The two workers, and under spawn multiprocessing's resource tracker too.
        expected = 3 if context == "spawn" else 2
        deadline = time.monotonic() + 120
        while len(workers) < expected and time.monotonic() < deadline:
            assert parent.poll() is None, parent.stderr.read().decode()[-2000:]
            time.sleep(0.2)
            workers = children(parent.pid)
        assert len(workers) >= expected, "the workers did not start"
        time.sleep(1.0)  # into the search
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if alive(pid)], "orphaned workers left running"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
