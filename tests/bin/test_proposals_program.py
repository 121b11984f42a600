"""bin/proposals.py end to end on a small VOC folder written by the test."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.fixtures import write_voc

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(ROOT / "bin" / "proposals.py"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_precomputes_and_caches_selective_search(tmp_path):
    root = write_voc(tmp_path / "VOC", {
        "a": (96, 64, [("cat", 0, 10, 10, 40, 40)]),
        "b": (80, 80, [("dog", 0, 5, 5, 60, 70)]),
    }, split="train")
    rng = np.random.default_rng(0)
    for image_id in ("a", "b"):  # texture so that selective search has regions to merge
        path = root / "JPEGImages" / f"{image_id}.jpg"
        size = Image.open(path).size
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)
    args = ["--config=configs/demo.py", "--config.dataset.kind=voc", f"--config.dataset.root={root}",
            "--config.dataset.classes=('cat', 'dog')", f"--config.proposals.cache_dir={tmp_path / 'c'}",
            "--split=train"]
    result = run(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VOC_train: 2 images" in result.stdout
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 2


def test_bad_inputs_exit_with_one_line():
    result = run("--config=configs/demo.py", "--config.dataset.nope=1")
    assert result.returncode != 0
    assert "unknown config key 'nope' in --config.dataset.nope=1" in result.stderr
    assert "Traceback" not in result.stderr
    # A misspelt key: one line, the nearest key and the keys of its section.
    result = run("--config=configs/demo.py", "--config.train.stepz=20")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert ("error: unknown config key 'stepz' in --config.train.stepz=20; did you mean "
            "'steps'? (valid keys of config.train: base_lr, ") in result.stderr
    assert ", steps, weight_decay)" in result.stderr
    result = run("--config=configs/demo.py", "--config.model.backbone.depth=1")
    assert ("error: config.model.backbone in --config.model.backbone.depth=1 is a setting, "
            "not a section") in result.stderr
    result = run("--config=configs/kangaroo.py", "--config.dataset.root=/nonexistent")
    assert result.returncode != 0 and "error: /nonexistent/annots: no .xml" in result.stderr
    assert "Traceback" not in result.stderr
    # A config file that does not exist: one line naming it, not two chained tracebacks.
    for overrides in ((), ("--config.train.steps=3",)):  # loaded at parse time with one
        result = run("--config=configs/nope.py", *overrides)
        assert result.returncode != 0
        assert "error: --config=configs/nope.py: no such file" in result.stderr
        assert "Traceback" not in result.stderr
