"""bin/detect.py over a folder with bad files (issue 42): every good image is detected and
listed, each bad one skipped with a warning and counted, or the run stops at the first
with ``on_error="raise"`` and still lists what it did; subfolders are walked on request
and otherwise named."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from keras_frcnn.data.records import DatasetError
from keras_frcnn.detection.run import detect_images
from tests.detection.test_overlapped_proposals import (DETECTOR, model, proposals_config,  # noqa: F401
                                                       textured_images, undecodable_image)

ROOT = Path(__file__).resolve().parents[2]


def folder_with_bad_files(folder):
    """Ten files: seven good PNGs, a text file and an empty file named .jpg (their
    headers do not parse) and, seventh, an image whose pixels do not decode."""
    folder.mkdir()
    good = textured_images(folder, count=7)
    (folder / "a_text.jpg").write_text("not an image\n")
    (folder / "b_empty.jpg").write_bytes(b"")
    broken = undecodable_image(folder / "im5_broken.jpg")  # sorted between im5 and im6
    return good, [folder / "a_text.jpg", folder / "b_empty.jpg", broken]


@pytest.mark.parametrize("overlap", [True, False])
def test_bad_files_are_skipped_and_every_good_image_is_written(model, tmp_path, caplog,  # noqa: F811
                                                               overlap):
    good, bad = folder_with_bad_files(tmp_path / "photos")
    with caplog.at_level(logging.WARNING, "keras_frcnn"):
        run = detect_images(model, [tmp_path / "photos"], ["thing"], DETECTOR,
                            proposals_config(tmp_path / "cache"), tmp_path / "out",
                            score_threshold=0.0, progress=False, overlap=overlap)
    assert list(run.found) == [str(p) for p in good]
    assert len(run.skipped) == 3
    for path in bad:  # one warning naming each bad file
        assert sum(str(path) in r.getMessage() for r in caplog.records) == 1, path
    listed = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert list(listed) == [str(p) for p in good]
    pictures = sorted(p.name for p in (tmp_path / "out").glob("*.detections.jpg"))
    assert pictures == [f"im{k}.detections.jpg" for k in range(7)]
    assert run.summary("out") == ("3 of 10 images skipped (a warning each above); pictures "
                                  "and detections.json of 7 images in out")


def test_with_raise_the_run_stops_at_the_first_bad_file_and_lists_what_it_did(
        model, tmp_path):  # noqa: F811
    good = textured_images(tmp_path, count=9)
    paths = good[:6] + [undecodable_image(tmp_path / "broken.jpg")] + good[6:]
    with pytest.raises(DatasetError, match="broken.jpg: missing or not a decodable image"):
        detect_images(model, paths, ["thing"], DETECTOR, proposals_config(tmp_path / "cache"),
                      tmp_path / "out", score_threshold=0.0, progress=False, on_error="raise")
    listed = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert list(listed) == [str(p) for p in good[:6]]
    assert len(list((tmp_path / "out").glob("*.detections.jpg"))) == 6
    with pytest.raises(DatasetError, match="a_text.jpg"):  # an unreadable header as well
        (tmp_path / "a_text.jpg").write_text("text")
        detect_images(model, [tmp_path / "a_text.jpg", *good[:1]], ["thing"], DETECTOR,
                      proposals_config(tmp_path / "cache"), tmp_path / "out2",
                      progress=False, on_error="raise")


def test_subfolders_are_walked_with_recursive_and_named_without(model, tmp_path, caplog):  # noqa: F811
    (tmp_path / "photos" / "trip" / "day1").mkdir(parents=True)
    (tmp_path / "photos" / ".thumbnails").mkdir()
    top = textured_images(tmp_path / "photos", count=1)
    deep = textured_images(tmp_path / "photos" / "trip" / "day1", count=2)
    textured_images(tmp_path / "photos" / ".thumbnails", count=1)  # hidden: never taken
    (tmp_path / "photos" / "._im0.png").write_bytes(b"\x00\x05")  # a macOS resource fork
    with caplog.at_level(logging.WARNING, "keras_frcnn"):
        run = detect_images(model, [tmp_path / "photos"], ["thing"], DETECTOR,
                            proposals_config(tmp_path / "cache"), tmp_path / "out",
                            progress=False)
    assert list(run.found) == [str(top[0])]
    warned = [r.getMessage() for r in caplog.records if "subfolder" in r.getMessage()]
    assert len(warned) == 1 and "(trip)" in warned[0] and "--recursive" in warned[0]
    run = detect_images(model, [tmp_path / "photos"], ["thing"], DETECTOR,
                        proposals_config(tmp_path / "cache"), tmp_path / "out_all",
                        progress=False, recursive=True)
    assert sorted(run.found) == sorted(str(p) for p in top + deep)


def test_an_output_folder_that_is_a_file_is_one_line(model, tmp_path):  # noqa: F811
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match=r"--output_dir=.*out is a file, not a folder"):
        detect_images(model, textured_images(tmp_path, 1), ["thing"], DETECTOR,
                      proposals_config(tmp_path / "cache"), tmp_path / "out", progress=False)


def test_bin_detect_skips_by_default_and_prints_the_count(model, tmp_path):  # noqa: F811
    good, bad = folder_with_bad_files(tmp_path / "photos")
    workdir = tmp_path / "work"
    workdir.mkdir()
    model.save(workdir / "model.keras")
    (workdir / "classes.json").write_text('["thing"]')
    config = tmp_path / "config.py"
    config.write_text(
        "from keras_frcnn.configs import base_config\n\n\n"
        "def get_config():\n"
        "    config = base_config()\n"
        "    config.model.backbone = 'small'\n"
        "    config.pipeline.preprocessing = 'tf'\n"
        "    config.test.scales, config.test.max_size = (96,), 128\n"
        f"    config.proposals.cache_dir = {str(tmp_path / 'cache')!r}\n"
        "    config.proposals.selective_search_min_size = 0\n"
        "    return config\n")
    command = [sys.executable, "bin/detect.py", f"--config={config}", f"--workdir={workdir}",
               f"--images={tmp_path / 'photos'}", f"--output_dir={tmp_path / 'out'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 of 10 images skipped" in done.stdout
    assert len(json.loads((tmp_path / "out" / "detections.json").read_text())) == 7
    done = subprocess.run(command + ["--config.dataset.on_error=raise"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {bad[0]}: missing or not a decodable image")
    # Every image skipped: nothing a batch job can use, exit status 1.
    only_bad = [str(p) for p in bad]
    done = subprocess.run(command[:4] + [f"--images={','.join(only_bad)}",
                                          f"--output_dir={tmp_path / 'none'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: 3 of 3 images skipped (a warning each above); pictures and detections.json "
        "of 0 images")
