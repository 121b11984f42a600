"""The whole pipeline on storage beyond the local disk: the demo's images, the proposal
cache, the export and the detection outputs on TensorFlow's in-memory file system
(ram://, which stands in for gs:// or s3://), through proposals on Beam, training,
export, batch detection on Beam and evaluation of its file."""

import json

import pytest
import tensorflow as tf

from keras_frcnn import training
from keras_frcnn.configs import load_config_file
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.evaluation.run import evaluate
from keras_frcnn.export import export_workdir
from keras_frcnn.files import read_text

pytest.importorskip("apache_beam")
from tests.beam.runners import IN_MEMORY  # noqa: E402
from keras_frcnn.beam import pipeline_options  # noqa: E402
from keras_frcnn.beam.detection import detect_on_beam  # noqa: E402
from keras_frcnn.beam.proposals import run_proposals_pipeline  # noqa: E402

# ram:// is this process's own: Beam's in-process runner (IN_MEMORY), and selective
# search in this process (compute_selective_search does so by itself for ram:// images).


def test_the_demo_on_ram_runs_through_proposals_detection_and_evaluation(tmp_path, request):
    root = f"ram://{request.node.name}"
    config = load_config_file("configs/demo.py")
    config.dataset.cache_dir = f"{root}/data"
    config.dataset.demo_sizes = (6, 1, 3)
    config.proposals.cache_dir = f"{root}/proposals"
    config.train.steps, config.train.checkpoint_every, config.train.log_every = 3, 3, 1
    config.test.mode, config.test.picture_images = "default", 2
    test = load_dataset(config.dataset, "test")
    assert all(r.image_path.startswith(f"{root}/data/datasets/") for r in test.records)
    counts = run_proposals_pipeline(pipeline_options(IN_MEMORY),
                                    [r.image_path for r in test.records], f"{root}/proposals",
                                    f"{root}/proposals/dead_letter.txt")
    assert counts == {"computed": 3, "cached": 0, "dead_letter": 0}
    assert read_text(f"{root}/proposals/dead_letter.txt") == ""
    training.train(config, tmp_path / "work", progress=False)  # reads the ram:// train split
    export_workdir(config, tmp_path / "work", export_dir=f"{root}/export/1", verify=False)
    assert tf.io.gfile.exists(f"{root}/export/1/saved_model.pb")
    summary = detect_on_beam(pipeline_options(IN_MEMORY), config, f"{root}/export/1",
                             f"{root}/out", split="test")
    assert "3 of 3 images detected on Beam" in summary
    lines = [json.loads(line) for line in read_text(f"{root}/out/detections.jsonl").splitlines()]
    assert sorted(line["image"] for line in lines) == sorted(r.image_path for r in test.records)
    assert isinstance(json.loads(read_text(f"{root}/out/coco_results.json")), list)
    # A folder given as a URL: every split's images (6 + 1 + 3).
    folder = test.records[0].image_path.rsplit("/", 1)[0]
    summary = detect_on_beam(pipeline_options(IN_MEMORY), config, f"{root}/export/1",
                             f"{root}/folder_out", images=[folder])
    assert "10 of 10 images detected on Beam" in summary
    normal = evaluate(config, tmp_path / "work", output_dir=tmp_path / "normal", progress=False)
    scored = evaluate(config, output_dir=tmp_path / "scored", progress=False,
                      detections_file=f"{root}/out/detections.jsonl")
    assert scored["images"] == normal["images"] == 3
    assert scored["detections"] == normal["detections"]
    assert scored["mAP"] == pytest.approx(normal["mAP"], abs=1e-6)
