"""Batch detection as a Beam pipeline (keras_frcnn/beam/detection.py, bin/detect.py with
Beam options): its detections are bin/detect.py's on the same images and proposals,
and bin/evaluate.py scores its files (--detections) to a normal evaluation's mAP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_frcnn import training
from keras_frcnn.detection.run import detect_images
from keras_frcnn.evaluation.run import detector_config, evaluate
from keras_frcnn.export import export_workdir
from keras_frcnn.workdirs import load_inference_model
from tests.test_robustness import folder_config

pytest.importorskip("apache_beam")
from tests.beam.runners import IN_MEMORY, TWO_PROCESSES  # noqa: E402
from keras_frcnn.beam import pipeline_options  # noqa: E402
from keras_frcnn.beam.detection import detect_on_beam  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-step model on five 96 x 72 photos (one truncated, one without objects), exported
    with post-processing mode "default", which the config's evaluation uses too."""
    tmp = tmp_path_factory.mktemp("beam_detection")
    config = folder_config(tmp)
    config.test.mode = "default"
    training.train(config, tmp / "work", progress=False)
    export_workdir(config, tmp / "work", export_dir=tmp / "export" / "1", verify=False)
    return config, tmp


def lines(path):
    return {entry["image"]: entry for entry in map(json.loads, Path(path).read_text().splitlines())}


def test_beam_detections_are_bin_detect_s(trained, tmp_path):
    config, tmp = trained
    images = Path(config.dataset.root) / "images"
    summary = detect_on_beam(pipeline_options(TWO_PROCESSES), config, tmp / "export" / "1",
                             tmp_path / "beam", images=[str(images)])
    assert summary.startswith("images: 5 of 5 images detected on Beam in ")
    model = load_inference_model(tmp / "work")
    run = detect_images(model, [images], ["cat"], detector_config(config), config.proposals,
                        tmp_path / "plain", score_threshold=0.0, progress=False)
    beam = lines(tmp_path / "beam" / "detections.jsonl")
    assert sorted(beam) == sorted(run.found) and len(beam) == 5
    total = 0
    for path, rows in run.found.items():  # detect.py's rows are rounded: 4 and 1 decimals
        found = beam[path]["detections"]
        assert [d["class"] for d in found] == [r["class"] for r in rows]
        np.testing.assert_allclose([d["score"] for d in found], [r["score"] for r in rows],
                                   atol=5e-5 + 1e-5)
        np.testing.assert_allclose(np.reshape([d["box"] for d in found], (-1, 4)),
                                   np.reshape([r["box"] for r in rows], (-1, 4)), atol=0.05 + 1e-3)
        total += len(rows)
    assert total > 0
    assert (tmp_path / "beam" / "dead_letter.txt").read_text() == ""
    coco = json.loads((tmp_path / "beam" / "coco_results.json").read_text())
    assert len(coco) == total and {row["category_id"] for row in coco} == {1}


def test_an_image_the_listing_refuses_is_in_the_dead_letter_file_and_the_count(trained,
                                                                              tmp_path):
    config, tmp = trained
    images = Path(config.dataset.root) / "images"
    missing = tmp_path / "gone.jpg"
    summary = detect_on_beam(pipeline_options(IN_MEMORY), config, tmp / "export" / "1",
                             tmp_path / "beam", images=[str(images), str(missing)])
    assert summary.startswith("images: 5 of 6 images detected on Beam in ")
    assert summary.endswith(f"; 1 image in {tmp_path / 'beam' / 'dead_letter.txt'}")
    assert (tmp_path / "beam" / "dead_letter.txt").read_text() == (
        f"{missing}: missing or not a decodable image\n")


def test_evaluate_scores_the_beam_files_as_a_normal_evaluation(trained, tmp_path):
    config, tmp = trained
    detect_on_beam(pipeline_options(IN_MEMORY), config, tmp / "export" / "1", tmp_path / "beam",
                   split="all")
    normal = evaluate(config, tmp / "work", output_dir=tmp_path / "normal", progress=False)
    scored = evaluate(config, output_dir=tmp_path / "jsonl", progress=False,
                      detections_file=tmp_path / "beam" / "detections.jsonl")
    assert scored["detections"] == normal["detections"] > 0
    assert scored["mAP"] == pytest.approx(normal["mAP"], abs=1e-6)
    # The COCO file's boxes are rounded to 2 decimals and scores to 5, as the release's.
    coco = evaluate(config, output_dir=tmp_path / "coco", progress=False,
                    detections_file=tmp_path / "beam" / "coco_results.json")
    assert coco["detections"] == normal["detections"]
    assert coco["mAP"] == pytest.approx(normal["mAP"], abs=1e-3)


def test_the_program_detects_on_beam_and_evaluate_scores_its_file(trained, tmp_path):
    config, tmp = trained
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    overrides = ["--config.dataset.kind=voc_folder", f"--config.dataset.root={config.dataset.root}",
                 "--config.dataset.classes=('cat',)", "--config.dataset.test_split=all",
                 "--config.dataset.train_split=all", "--config.test.mode=default",
                 f"--config.proposals.cache_dir={config.proposals.cache_dir}",
                 "--config.pipeline.scales=(72,)", "--config.pipeline.max_size=128",
                 "--config.pipeline.preprocessing=tf", "--config.model.backbone=small"]
    result = subprocess.run([sys.executable, "bin/detect.py", "--config=configs/demo.py",
                             *overrides, f"--saved_model={tmp / 'export' / '1'}", "--split=all",
                             f"--output_dir={tmp_path / 'out'}", *IN_MEMORY],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "photos_all: 5 of 5 images detected on Beam" in result.stdout
    result = subprocess.run([sys.executable, "bin/evaluate.py", "--config=configs/demo.py",
                             *overrides, f"--detections={tmp_path / 'out' / 'detections.jsonl'}",
                             f"--output_dir={tmp_path / 'eval'}"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "photos_all (5 images," in result.stdout
    # A misspelt flag of the program among Beam options: the nearest flag, in one line.
    result = subprocess.run([sys.executable, "bin/detect.py", "--config=configs/demo.py",
                             "--split=all", "--score_treshold=0.3", *IN_MEMORY],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --score_treshold=0.3: neither a flag of this program nor a Beam pipeline "
        "option; did you mean --score_threshold? (--help lists the program's flags)")
    # Beam-only flags without Beam options, and Beam options without a SavedModel.
    result = subprocess.run([sys.executable, "bin/detect.py", "--config=configs/demo.py",
                             "--split=all"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --split is for detection on Beam: add Beam pipeline options")
    result = subprocess.run([sys.executable, "bin/detect.py", "--config=configs/demo.py",
                             "--split=all", *IN_MEMORY], capture_output=True, text=True, env=env,
                            cwd=ROOT)
    assert result.stderr.strip().splitlines()[-1] == (
        "error: detection on Beam runs an exported SavedModel: give --saved_model "
        "(bin/export.py writes one)")


def test_a_config_precision_the_export_lacks_is_named_in_one_line(trained, tmp_path, caplog):
    """On Beam the SavedModel's own precision runs (float32 here), whatever the config's
    test.precision says; the difference is said, not silently dropped."""
    import logging

    config, tmp = trained
    run = config.copy_and_resolve_references()
    run.test.precision = "bfloat16"
    images = Path(config.dataset.root) / "images"
    with caplog.at_level(logging.WARNING, "keras_frcnn.beam.detection"):
        detect_on_beam(pipeline_options(IN_MEMORY), run, tmp / "export" / "1", tmp_path / "beam",
                       images=[str(images)])
    (record,) = [r for r in caplog.records if "test.precision" in r.getMessage()]
    assert "computes in float32 (its export's setting), which is what runs on Beam" in (
        record.getMessage())
