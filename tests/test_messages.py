"""Messages of issue 42, item 10: each names the input and the fix, in one line, and
logs read as lines off a terminal."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_frcnn import Predictor, files, training
from keras_frcnn.progress import LogProgress, progress_bar
from tests.test_predictor import workdir  # noqa: F401
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_from_workdir_names_a_missing_folder_and_a_model_file(workdir, tmp_path):  # noqa: F811
    with pytest.raises(FileNotFoundError, match=r"nothing: no such workdir \(the folder "
                                                r"bin/train.py trained in"):
        Predictor.from_workdir(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"model.keras is a file; from_workdir takes a training "
                                         r"workdir .* Predictor.from_model"):
        Predictor.from_workdir(workdir / "model.keras")
    with pytest.raises(FileNotFoundError, match=r"empty/classes.json: not found; .*empty is "
                                                "not a training workdir"):
        (tmp_path / "empty").mkdir()
        Predictor.from_workdir(tmp_path / "empty")


def test_saving_to_a_format_without_an_encoder_is_one_value_error(workdir, tmp_path):  # noqa: F811
    prediction = Predictor.from_workdir(workdir)(np.zeros((96, 128, 3), np.uint8),
                                                 proposals=[[10, 10, 60, 50]])
    with pytest.raises(ValueError, match=r"out.txt: cannot write a '.txt' image; use .jpg"):
        prediction.save(tmp_path / "out.txt")
    assert not list(tmp_path.iterdir())


def test_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing" / "metrics.json"
    with pytest.raises(FileNotFoundError) as raised:
        files.atomic_write(target, "{}")
    assert str(raised.value) == (f"[Errno 2] cannot write {target}: its folder "
                                 f"{target.parent} does not exist")
    (tmp_path / "plain").write_text("")
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'plain' / 'x'}: .*plain is "
                                      "not a folder"):
        files.atomic_write(tmp_path / "plain" / "x", "{}")


@pytest.mark.parametrize("program", ["evaluate.py", "proposals.py"])
def test_an_unknown_split_is_one_line(tmp_path, program):
    done = subprocess.run(
        [sys.executable, f"bin/{program}", "--config=configs/demo.py", "--split=bogus",
         f"--workdir={tmp_path}", f"--config.dataset.cache_dir={tmp_path}"]
        if program == "evaluate.py" else
        [sys.executable, f"bin/{program}", "--config=configs/demo.py", "--split=bogus",
         f"--config.dataset.cache_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: demo split must be one of ['train', 'val', 'test'], got 'bogus'")


def test_off_a_terminal_progress_is_log_lines(caplog, capsys):
    assert isinstance(progress_bar(10, "detecting", "image"), LogProgress)  # pytest's stderr
    with caplog.at_level(logging.INFO, "keras_frcnn.progress"):
        bar = progress_bar(25, "detecting", "image")
        for _ in range(25):
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "detecting: 25 images" and lines[-1] == "detecting: 25 of 25 images done"
    assert "detecting: 3 of 25 images (12 %)" in lines and len(lines) <= 12
    captured = capsys.readouterr()
    assert captured.err == captured.out == ""


def test_training_off_a_terminal_logs_lines_without_carriage_returns(tmp_path, caplog, capfd):
    config = tiny_config(tmp_path, steps=2)
    with caplog.at_level(logging.INFO, "keras_frcnn"):
        training.train(config, tmp_path / "work", progress=True)
    out, err = capfd.readouterr()
    assert "\r" not in out + err and "\x1b[" not in out + err
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split(":")[0] for line in steps] == ["step 1 of 2", "step 2 of 2"]
    assert "loss" in steps[-1]
