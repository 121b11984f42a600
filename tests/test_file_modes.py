"""Files and folders the package writes get the mode the umask gives (issue 42): 0644 and
0755 under umask 022, so another user (a TF Serving account, a colleague sharing a
proposal cache) can read an export, a workdir and a cache; 0600 and 0700 under 077."""

import contextlib
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from keras_frcnn import files, training
from keras_frcnn.proposals.selective_search import ProposalCache
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]
MODES = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700)}


@contextlib.contextmanager
def umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root):
    """{path relative to root: permission bits} of root and everything under it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_modes(root, mask, skip=()):
    file_mode, dir_mode = MODES[mask]
    for name, mode in modes(root).items():
        if any(name.startswith(s) for s in skip):
            continue
        path = root / name
        assert mode == (dir_mode if path.is_dir() else file_mode), (name, oct(mode))


@pytest.mark.parametrize("mask", sorted(MODES))
def test_atomic_writes_and_folders_follow_the_umask(tmp_path, mask):
    with umask(mask):
        files.atomic_write(tmp_path / "a.json", "{}")
        folder = files.make_temp_dir(tmp_path, "staging-")
        with files.run_folder(tmp_path / "run") as run:
            files.atomic_write(run / "metrics.json", "{}")
        ProposalCache(tmp_path / "cache" / "key").save("digest", np.zeros((2, 4)))
    file_mode, dir_mode = MODES[mask]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == file_mode
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
    assert_modes(tmp_path / "run", mask)
    assert_modes(tmp_path / "cache", mask)


@pytest.mark.parametrize("mask", sorted(MODES))
def test_the_demo_dataset_folder_follows_the_umask(tmp_path, mask):
    from keras_frcnn.data.demo import demo_root

    with umask(mask):
        root = demo_root(tmp_path, splits=(("train", 2), ("test", 1)))
    assert_modes(root, mask)


@pytest.fixture(scope="module", params=sorted(MODES))
def written(request):
    """(umask, shared root) with a trained workdir, its export and a proposal cache,
    written under the umask, in a folder any user can enter."""
    from keras_frcnn.export import export_workdir

    mask = request.param
    root = Path(tempfile.mkdtemp(prefix="modes-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        with umask(mask):
            config = tiny_config(root, steps=1)
            config.proposals.method = "selective_search"
            config.proposals.cache_dir = str(root / "cache")
            config.proposals.selective_search_min_size = 0
            config.model.backbone = "small"
            training.train(config, root / "work", progress=False)
            export_workdir(config, root / "work", export_dir=root / "work" / "export" / "1",
                           verify=False)
        os.chmod(root / "VOC", 0o755)  # the test's data, not the package's output
        yield mask, root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_a_workdir_its_export_and_the_cache_follow_the_umask(written):
    mask, root = written
    assert_modes(root / "work", mask, skip=("train.lock",))
    assert_modes(root / "cache", mask)


OTHER_USER = """
import sys
from pathlib import Path
import numpy as np
import tensorflow as tf
root = Path(sys.argv[1])
serve = tf.saved_model.load(str(root / "work" / "export" / "1")).signatures["serving_default"]
out = serve(image=tf.zeros([72, 96, 3], tf.uint8), proposals=tf.constant([[5., 5., 40., 40.]]))
from keras_frcnn import Predictor
from keras_frcnn.proposals.selective_search import ProposalCache
predictor = Predictor.from_workdir(root / "work")
entries = sorted((root / "cache").rglob("*.npz"))
assert entries and all(ProposalCache(p.parent).load(p.stem) is not None for p in entries)
print("loaded", int(out["num_detections"]), len(predictor.class_names), len(entries))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="dropping to another user needs root; the modes are checked above")
def test_another_user_loads_the_export_the_workdir_and_the_cache(written):
    mask, root = written
    try:
        done = subprocess.run(
            [sys.executable, "-c", OTHER_USER, str(root)], cwd=ROOT, capture_output=True,
            text=True, timeout=600, user=65534, group=65534, extra_groups=[],
            env={"PYTHONPATH": str(ROOT), "HOME": str(root), "PATH": "/usr/bin:/bin",
                 "TF_CPP_MIN_LOG_LEVEL": "3"})
    except PermissionError:  # e.g. an interpreter under /root
        pytest.skip("this Python cannot be run by another user here; the modes are checked "
                    "above")
    if mask == 0o022:
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("loaded")
    else:  # 077 keeps other users out, as the user asked
        assert done.returncode != 0 and "Permission denied" in done.stderr
