"""An evaluation's output folder holds one run (issue 42): the run is written into a
fresh folder that replaces the old one when complete, so a run that dies leaves the
previous results whole, never mixed with its own."""

import json
import os
from pathlib import Path

import pytest

from keras_frcnn import files, training
from keras_frcnn.evaluation import load_detections, run as evaluation_run
from keras_frcnn.evaluation.run import evaluate
from tests.test_training import tiny_config


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(config, workdir, its eval folder) after training two steps and evaluating."""
    root = tmp_path_factory.mktemp("evaluated")
    config = tiny_config(root, steps=2)
    config.test.picture_images = 1
    training.train(config, root / "work", progress=False)
    metrics = evaluate(config, root / "work", split="train", progress=False)
    return config, root / "work", root / "work" / "eval" / "train", metrics


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_run_that_dies_leaves_the_previous_results_whole(evaluated, monkeypatch, tmp_path):
    config, workdir, folder, _ = evaluated
    source = tmp_path / "detections.npz"  # rescored with NMS: other detections
    source.write_bytes((folder / "detections.npz").read_bytes())
    before = snapshot(folder)
    assert "detections.npz" in before and "metrics.json" in before

    def killed(*args, **kwargs):  # after detections.npz and results/ are written
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation_run, "draw_examples", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, workdir, split="train", progress=False, rescore=source,
                 rescore_nms=0.01)
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["train"]  # nothing left over


def test_a_rescored_run_replaces_the_folder_with_its_own_detections(evaluated, tmp_path):
    config, workdir, folder, metrics = evaluated
    out = tmp_path / "rescored"
    rescored = evaluate(config, workdir, split="train", progress=False, output_dir=out,
                        rescore=folder / "detections.npz", rescore_nms=0.01)
    saved = load_detections(out / "detections.npz")  # the rescored ones, not the originals
    assert sum(len(d) for d in saved.values()) == rescored["detections"] < metrics["detections"]
    assert json.loads((out / "metrics.json").read_text())["detections"] == rescored["detections"]
    again = evaluate(config, workdir, split="train", progress=False, output_dir=out,
                     rescore=folder / "detections.npz")
    assert json.loads((out / "metrics.json").read_text())["detections"] == again["detections"]
    assert sum(len(d) for d in load_detections(out / "detections.npz").values()) == \
        metrics["detections"]


def test_a_failed_final_rename_puts_the_earlier_run_back(tmp_path, monkeypatch):
    target = tmp_path / "run"
    with files.run_folder(target) as staging:
        (staging / "a").write_text("earlier")
    real = os.replace

    def failing(source, destination):  # the new run cannot be renamed into place
        if Path(source).name.startswith("run.tmp-") and Path(destination) == target:
            raise OSError(16, "Device or resource busy")
        return real(source, destination)

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError, match=r"cannot move the finished run into .*run \(Device or "
                                      r"resource busy\); its files are in .*run.failed-"):
        with files.run_folder(target) as staging:
            (staging / "b").write_text("new")
    assert (target / "a").read_text() == "earlier" and not (target / "b").exists()
    monkeypatch.undo()
    with files.run_folder(target) as staging:  # the next run leaves the named files alone
        (staging / "c").write_text("next")
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.failed-")]
    assert len(kept) == 1 and (kept[0] / "b").read_text() == "new"


def test_a_kill_between_the_renames_is_undone_by_the_next_run(tmp_path):
    target = tmp_path / "run"
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (tmp_path / f"run.old-{dead}-x").mkdir()  # the earlier run, moved aside
    (tmp_path / f"run.old-{dead}-x" / "a").write_text("earlier")
    (tmp_path / f"run.tmp-{dead}-y").mkdir()  # the new one, not yet renamed in
    with pytest.raises(RuntimeError):
        with files.run_folder(target):
            raise RuntimeError  # this run fails: the earlier one is what is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (target / "a").read_text() == "earlier"


def test_rescoring_the_folder_s_own_detections_with_nms_is_refused(evaluated):
    config, workdir, folder, _ = evaluated
    before = (folder / "detections.npz").read_bytes()
    with pytest.raises(ValueError, match=r"--rescore_nms would replace .*detections.npz, the "
                                         "detections it reads"):
        evaluate(config, workdir, split="train", progress=False,
                 rescore=folder / "detections.npz", rescore_nms=0.4)
    assert (folder / "detections.npz").read_bytes() == before


def test_leftovers_of_killed_runs_are_removed(evaluated, tmp_path):
    config, workdir, folder, _ = evaluated
    out = tmp_path / "out"
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (tmp_path / f"out.tmp-{dead}-abc").mkdir()
    (tmp_path / f"out.old-{dead}-def").mkdir()
    (tmp_path / f"out.tmp-{os.getpid()}-live").mkdir()  # a running process's: kept
    evaluate(config, workdir, split="train", progress=False, output_dir=out,
             rescore=folder / "detections.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", f"out.tmp-{os.getpid()}-live"]


def test_a_folder_holding_other_files_or_a_file_is_refused(evaluated, tmp_path):
    config, workdir, folder, _ = evaluated
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"mine holds files an evaluation does not write "
                                         r"\(notes.txt\)"):
        evaluate(config, workdir, split="train", progress=False, output_dir=tmp_path / "mine",
                 rescore=folder / "detections.npz")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"output folder .*file is a file; give a folder"):
        evaluate(config, workdir, split="train", progress=False, output_dir=tmp_path / "file",
                 rescore=folder / "detections.npz")


def test_a_link_to_a_folder_stands_for_it_and_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert evaluation_run.check_run_folder(tmp_path / "link") == tmp_path / "real"
    with files.run_folder(evaluation_run.check_run_folder(tmp_path / "link")) as staging:
        (staging / "metrics.json").write_text("{}")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link" / "metrics.json").is_file()
    (tmp_path / "plain").write_text("")
    with pytest.raises(ValueError, match=r"output folder .*plain/eval: cannot make .*plain "
                                         r"\(File exists\); give a writable folder"):
        evaluation_run.check_run_folder(tmp_path / "plain" / "eval")


def test_run_folder_replaces_only_when_the_block_completes(tmp_path):
    target = tmp_path / "run"
    with files.run_folder(target) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with files.run_folder(target) as staging:
            (staging / "b").write_text("2")
            raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with files.run_folder(target) as staging:
        (staging / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
