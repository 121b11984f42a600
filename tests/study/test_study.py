"""bin/study.py's engine end to end on a tiny dataset: every experiment runs, reports
every variant, reuses finished runs, and the stage-wise arm trains the box layer alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_frcnn.study import NAMES, Options, check_experiment, run_study
from keras_frcnn.study.experiments import build
from keras_frcnn.study.report import load_results
from tests.test_training import tiny_config

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = Options(sampling_images=(2, 4), data_shares=(0.5, 1.0), proposal_counts=(10, 0),
                  dense_added=(50,), svd_fractions=((1 / 4, 1 / 16),))


def study_config(tmp_path, weights):
    config = tiny_config(tmp_path, steps=2)
    config.dataset.test_split = "train"  # four images: test on what was trained on
    config.test.scales, config.test.max_size = (72,), 128
    config.model.weights = str(weights)  # "pretrained" small backbone, for finetune
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from keras_frcnn.model.backbones import build_backbone

    tmp = tmp_path_factory.mktemp("study")
    weights = tmp / "small.weights.h5"
    build_backbone("small")[0].save_weights(weights)
    config = study_config(tmp, weights)
    root = tmp / "study"
    run_study(config, root, list(NAMES), seeds=1, options=OPTIONS)
    first = {p: p.stat().st_mtime_ns for p in root.glob("runs/*/study_run.json")}
    first.update({p: p.stat().st_mtime_ns for p in root.glob("runs/*/eval/*/result.json")})
    run_study(config, root, ["multitask"], seeds=2, options=OPTIONS)  # seed 0 reused
    return {"config": config, "root": root, "first": first}


def test_every_experiment_reports_every_variant_and_test(study):
    results = load_results(study["root"])
    assert list(results) == list(NAMES)
    report = (study["root"] / "study.md").read_text()
    for name, entry in results.items():
        experiment = build(name, study["config"], OPTIONS)
        assert f"## {experiment.title} ({experiment.section})" in report
        for variant in experiment.variants:
            tests = {(r["variant"], r["test"]) for r in entry["rows"]}
            assert tests >= {(variant.name, t) for t in variant.tests}, name
            assert f"| {variant.label} |" in report
        for figure in ("study_" + name + ".png",):
            assert (study["root"] / "figures" / figure).stat().st_size > 1000
    assert (study["root"] / "figures" / "study_figure3.png").stat().st_size > 1000


def test_finished_runs_and_evaluations_are_reused(study):
    for path, mtime in study["first"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was written again"
    rows = load_results(study["root"])["multitask"]["rows"]
    assert sorted({r["seed"] for r in rows}) == [0, 1]
    seed0 = [r for r in rows if r["seed"] == 0]
    # The baseline model (the config itself) is shared: svm's softmax arm is the same run.
    softmax = load_results(study["root"])["svm"]["rows"][0]["run"]
    assert softmax in {r["run"] for r in seed0 if r["variant"] == "lambda1"}
    assert len({r["run"] for r in rows}) == 6  # 3 variants x 2 seeds, none trained twice


def test_stagewise_arm_changes_only_the_box_layer(study):
    from keras_frcnn.workdirs import load_inference_model, load_target_stats
    from keras_frcnn.training import inference_copy

    rows = load_results(study["root"])["multitask"]["rows"]
    run = {r["variant"]: r["run"] for r in rows if r["seed"] == 0}
    folder = study["root"] / "runs"
    before = inference_copy(load_inference_model(folder / run["lambda0"]),
                            load_target_stats(folder / run["lambda0"]), unfold=True)
    after = inference_copy(load_inference_model(folder / run["stagewise"]),
                           load_target_stats(folder / run["stagewise"]), unfold=True)
    changed = []
    for layer in before.layers:
        for old, new in zip(layer.get_weights(), after.get_layer(layer.name).get_weights()):
            if not np.array_equal(old, new):
                changed.append(layer.name)
    assert set(changed) == {"bbox_pred"}


def test_svm_arm_saves_a_model_that_scores_with_its_svms(study):
    from keras_frcnn.workdirs import load_inference_model

    rows = load_results(study["root"])["svm"]["rows"]
    run = {r["variant"]: r["run"] for r in rows}
    folder = study["root"] / "runs" / run["svm"]
    model = load_inference_model(folder)
    assert model.get_config()["svm_scores"]
    assert not isinstance(model.get_layer("cls_prob"), __import__("keras").layers.Softmax)
    report = json.loads((folder / "svms.json").read_text())
    assert report["classes"]["cat"]["positives"] == 4  # 4 images, not mirrored (svm.yml)
    assert report["feature_scale"] > 0
    kernel = model.get_layer("cls_score").get_weights()[0]
    assert np.all(kernel[:, 0] == 0)  # background scores 0


def test_verdicts():
    from keras_frcnn.study.report import verdict

    assert verdict([0.5, 0.6], [0.3, 0.4], +1) == "agrees"
    assert verdict([0.5, 0.6], [0.3, 0.4], -1) == "disagrees"
    assert verdict([0.5, 0.6], [0.3, 0.4], 0) == "disagrees"  # the paper saw no difference
    assert verdict([0.3, 0.4], [0.5, 0.6], 0) == "disagrees"
    assert verdict([0.5, 0.6, 0.35], [0.3, 0.4], +1) == "within the seed spread"
    assert verdict([0.4, 0.6], [0.3, 0.4], +1) == "within the seed spread"  # ranges touch
    assert verdict([0.6], [0.3, 0.4], +1) == "not judged (one seed)"


def test_finetune_refuses_a_backbone_without_pretrained_weights(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    with pytest.raises(ValueError, match="model.weights is empty") as err:
        check_experiment(build("finetune", config), config)
    assert "\n" not in str(err.value)


def test_help_lists_the_experiments():
    out = subprocess.run([sys.executable, str(ROOT / "bin" / "study.py"), "--help"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 1, out.stderr  # absl exits with 1 after --help
    for name in NAMES:
        assert f"  {name} " in out.stdout


def test_unknown_experiment_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bin" / "study.py"),
                          "--experiments=multitask,tables", f"--study_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --experiments: no experiment tables; choose from "
        f"{', '.join(NAMES)} or all")
    assert not any(tmp_path.iterdir())


def test_report_only_rewrites_the_report_from_the_results(study, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bin" / "study.py"), "--report_only",
                          f"--study_dir={study['root']}", f"--report={tmp_path / 'r.md'}",
                          f"--figure_dir={tmp_path / 'f'}"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.md").read_text() == (study["root"] / "study.md").read_text().replace(
        "figures/", "f/")
    assert not any(p.stat().st_mtime_ns != m for p, m in study["first"].items())


def test_scales_follow_the_papers_proportions(tmp_path):
    from keras_frcnn.study.experiments import pyramid

    config = tiny_config(tmp_path, steps=2, write=False)
    config.pipeline.scales, config.pipeline.max_size = (600,), 1000
    assert pyramid(config) == ((480, 576, 688, 864, 1200), 2000)
    config.pipeline.scales, config.pipeline.max_size = (200,), 340
    assert pyramid(config) == ((160, 192, 229, 288, 400), 680)


def test_results_record_the_command_and_seeds(study):
    entry = load_results(study["root"])["multitask"]
    assert entry["seeds"] == 2 and entry["command"].startswith("frcnn-study")
    assert json.loads(json.dumps(entry)) == entry
