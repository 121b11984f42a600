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
# One variant beyond the baseline where a sweep allows it: CI runs all eight experiments.
OPTIONS = Options(sampling_images=(2, 4), data_shares=(0.5, 1.0), proposal_counts=(0,),
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
    # All reused from runs/: an empty results folder, so no recorded row short-cuts them.
    run_study(config, root, ["multitask", "svm"], seeds=1, options=OPTIONS,
              results_dir=tmp / "empty", report=tmp / "again.md")
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
    # The baseline model (the config itself) is shared: svm's softmax arm is the same run.
    softmax = load_results(study["root"])["svm"]["rows"][0]["run"]
    assert softmax in {r["run"] for r in rows if r["variant"] == "lambda1"}
    assert len({r["run"] for r in rows}) == 3  # 3 variants, none trained twice


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
    # Its model minutes count the lambda = 0 training it starts from.
    seconds = {r["variant"]: r for r in rows if r["seed"] == 0}
    assert seconds["stagewise"]["model_seconds"] == pytest.approx(
        seconds["stagewise"]["train_seconds"] + seconds["lambda0"]["train_seconds"])
    assert seconds["lambda0"]["model_seconds"] == seconds["lambda0"]["train_seconds"]


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

    high, low = [0.5, 0.6, 0.55], [0.3, 0.4, 0.35]
    assert verdict(high, low, "higher") == "agrees"
    assert verdict(high, low, "lower") == "disagrees"
    assert verdict(low, high, "lower") == "agrees"
    assert verdict(high, low, "same") == "disagrees"  # the paper saw none
    assert verdict(low, high, "same") == "disagrees"
    assert verdict(high, low, "not lower") == "agrees"  # better is no worse
    assert verdict(low, high, "not lower") == "disagrees"
    assert verdict(high + [0.35], low, "higher") == "within the seed spread"
    assert verdict([0.4, 0.6, 0.5], low, "higher") == "within the seed spread"  # touching
    # Two seeds a side separate by chance one time in three: not judged.
    assert verdict([0.5, 0.6], [0.3, 0.4], "higher") == "not judged (under 3 seeds)"
    assert verdict([0.6], low, "higher") == "not judged (under 3 seeds)"
    with pytest.raises(ValueError, match="unknown claim"):
        verdict(high, low, "better")


def test_report_numbers_from_made_up_rows(tmp_path):
    from keras_frcnn.study.experiments import Comparison, Experiment, Variant
    import dataclasses
    from keras_frcnn.study.report import experiment_section

    experiment = Experiment("x", "X", "Table 0", "?", (
        Variant("a", "arm a", paper={"": "1.0"}), Variant("b", "arm b", kind="svm", source="a")),
        (Comparison("a against b", ("a", ""), ("b", ""), "higher", "+1"),))
    rows = [{"variant": v, "test": "", "seed": k, "mAP": m, "network_seconds_per_image": t,
             "test_seconds": 30.0, "train_seconds": own, "model_seconds": total,
             "run": f"{v}{k}"}
            for v, k, m, t, own, total in [("a", 0, 0.90, 0.02, 600, 600),
                                           ("a", 1, 0.92, 0.04, 540, 540),
                                           ("b", 0, 0.85, 0.03, 60, 660),
                                           ("b", 1, 0.86, 0.03, 60, 600),
                                           ("a", 2, 0.91, 0.03, 570, 570),
                                           ("b", 2, 0.84, 0.03, 60, 630)]]
    entry = {"experiment": dataclasses.asdict(experiment), "rows": rows, "seeds": 3,
             "command": "frcnn-study --experiments=y,x --seeds=3", "machine": "m",
             "figures": []}
    text = "\n".join(experiment_section(entry, tmp_path, tmp_path))
    # 600 + 540 + 570 + 3 x 60 s of models and 6 x 30 s of tests: 2070 s = 34.5 minutes.
    assert "`frcnn-study --experiments=x --seeds=3`: 34 minutes" in text
    assert "| arm a | as configured | 3 | 91.0 | 90.0 to 92.0 | 9.5 | 0.030 | 1.0 |" in text
    # b's model minutes include its source's training: (660 + 600 + 630) / 3 s.
    assert "| arm b | as configured | 3 | 85.0 | 84.0 to 86.0 | 10.5 | 0.030 |  |" in text
    assert "| a against b | +6.0 | +1 | agrees |" in text


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


def _ledger(study, tmp_path, names):
    """A results folder holding copies of the study's results of ``names``."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    for name in names:
        (ledger / f"{name}.json").write_bytes((study["root"] / "results" / f"{name}.json")
                                               .read_bytes())
    return ledger


def test_recorded_rows_are_reused_where_the_models_are_gone(study, tmp_path, monkeypatch):
    # A fresh clone: the results kept with the docs, no runs/ folder. Nothing is trained
    # or tested again, and the report is the same.
    from keras_frcnn.study.runner import Study

    ledger = _ledger(study, tmp_path, ["multitask", "svm"])

    def refuse(*args, **kwargs):
        raise AssertionError("a recorded row was made again")

    monkeypatch.setattr(Study, "make", refuse)
    monkeypatch.setattr(Study, "evaluate", refuse)
    done = run_study(study["config"], tmp_path / "fresh", ["multitask", "svm"], seeds=1,
                     options=OPTIONS, results_dir=ledger)
    for name in ("multitask", "svm"):
        before = load_results(study["root"])[name]["rows"]
        assert done[name]["rows"] == before and done[name]["complete"]
        assert all(r["evaluation"] for r in before)
    assert not (tmp_path / "fresh" / "runs").exists()
    assert "## Multi-task training" in (tmp_path / "fresh" / "study.md").read_text()


def test_a_stop_keeps_the_rows_that_finished(study, tmp_path, monkeypatch):
    # lambda = 0 (the middle arm) was never recorded: the study stops there, and the file
    # keeps lambda = 1's rows, reused, and the stage-wise rows recorded after it.
    from keras_frcnn.study.report import write_report
    from keras_frcnn.study.runner import Study

    ledger = _ledger(study, tmp_path, ["multitask"])
    entry = json.loads((ledger / "multitask.json").read_text())
    kept = [r for r in entry["rows"] if r["variant"] != "lambda0"]
    entry["rows"] = kept
    (ledger / "multitask.json").write_text(json.dumps(entry))

    def stop(self, run):
        raise KeyboardInterrupt("stopped")

    monkeypatch.setattr(Study, "make", stop)
    with pytest.raises(KeyboardInterrupt):
        run_study(study["config"], tmp_path / "fresh", ["multitask"], seeds=1,
                  options=OPTIONS, results_dir=ledger)
    after = json.loads((ledger / "multitask.json").read_text())
    assert sorted(map(json.dumps, after["rows"])) == sorted(map(json.dumps, kept))
    assert after["complete"] is False
    text = write_report(load_results(None, ledger), tmp_path / "r.md", tmp_path / "f")
    assert "Stopped before every arm and seed ran" in text
    assert "| multi-task, lambda = 1 |" in text and "| classification only" not in text


def test_fewer_seeds_or_changed_settings_keep_or_drop_recorded_rows(study, tmp_path):
    from keras_frcnn.study.runner import Study

    experiment = build("multitask", study["config"], OPTIONS)
    rows = load_results(study["root"])["multitask"]["rows"]
    same = Study(study["config"], tmp_path / "s")
    # A seed this sitting did not run (another --seeds) still holds under its digests.
    assert all(same.still_valid(experiment, r) for r in rows)
    assert same.still_valid(experiment, {**rows[0], "variant": "another_sweeps_arm"})
    changed = study["config"].copy_and_resolve_references()
    changed.train.base_lr = 0.5
    assert not any(Study(changed, tmp_path / "s").still_valid(experiment, r) for r in rows)
    tested = study["config"].copy_and_resolve_references()
    tested.test.nms_threshold = 0.2
    assert not any(Study(tested, tmp_path / "s").still_valid(experiment, r) for r in rows)


def test_report_only_reads_a_results_folder(study, tmp_path):
    ledger = _ledger(study, tmp_path, ["svm"])
    args = [sys.executable, str(ROOT / "bin" / "study.py"), "--report_only",
            f"--study_dir={tmp_path / 'nothing'}", f"--report={tmp_path / 'r.md'}",
            f"--figure_dir={tmp_path / 'f'}"]
    out = subprocess.run(args + [f"--results_dir={ledger}"], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr
    assert "## Softmax or SVMs" in (tmp_path / "r.md").read_text()
    out = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert out.returncode == 1 and "holds no results" in out.stderr.strip().splitlines()[-1]


def test_scales_follow_the_papers_proportions(tmp_path):
    from keras_frcnn.study.experiments import pyramid

    config = tiny_config(tmp_path, steps=2, write=False)
    config.pipeline.scales, config.pipeline.max_size = (600,), 1000
    assert pyramid(config) == ((480, 576, 688, 864, 1200), 2000)
    config.pipeline.scales, config.pipeline.max_size = (200,), 340
    assert pyramid(config) == ((160, 192, 229, 288, 400), 680)


def test_results_record_the_command_and_seeds(study):
    entry = load_results(study["root"])["multitask"]
    assert entry["seeds"] == 1 and entry["command"].startswith("frcnn-study")
    assert entry["machine"]


def test_a_model_is_keyed_by_what_decides_it(tmp_path):
    from keras_frcnn.study.runner import Study

    config = tiny_config(tmp_path, steps=2)
    study = Study(config, tmp_path / "study")
    experiment = build("svm", config, OPTIONS)
    softmax, svm = experiment.variants

    def folders(changed):
        other = Study(changed, tmp_path / "study")
        return (other.run_for(experiment, softmax, 0).folder,
                other.run_for(experiment, svm, 0).folder)

    base = (study.run_for(experiment, softmax, 0).folder, study.run_for(experiment, svm, 0).folder)
    quiet = config.copy_and_resolve_references()
    quiet.train.log_every, quiet.proposals.workers, quiet.dataset.test_split = 7, 1, "val"
    assert folders(quiet) == base  # logging, workers and the test split train nothing
    scale = config.copy_and_resolve_references()
    scale.test.scales = (64,)
    assert folders(scale)[0] == base[0] and folders(scale)[1] != base[1]  # SVM features
    lr = config.copy_and_resolve_references()
    lr.train.base_lr = 0.01
    assert folders(lr)[0] != base[0] and folders(lr)[1] != base[1]
    assert study.run_for(experiment, softmax, 1).folder != base[0]  # another seed


def test_a_weights_file_is_keyed_by_its_contents_not_its_path(tmp_path, weights_files):
    from keras_frcnn.study.runner import Study

    first, copy, other = weights_files
    config = tiny_config(tmp_path, steps=2)
    experiment = build("data", config, OPTIONS)

    def folder(weights):
        changed = config.copy_and_resolve_references()
        changed.model.weights = str(weights)
        return Study(changed, tmp_path / "study").run_for(experiment,
                                                          experiment.variants[0], 0).folder

    assert folder(first) == folder(copy)  # the same file elsewhere: the same model
    assert folder(first) != folder(other)
    assert folder(first) != folder("imagenet") != folder("")
    before = folder(first)
    first.write_bytes(b"weights three")  # another file at the same path
    assert folder(first) != before


def test_a_stopped_run_resumes_and_sums_its_minutes(tmp_path, monkeypatch):
    from keras_frcnn.study.runner import Study

    config = tiny_config(tmp_path, steps=2)
    study = Study(config, tmp_path / "study")
    experiment = build("data", config, OPTIONS)
    run = study.run_for(experiment, experiment.variants[0], 0)
    clock = iter([0.0, 30.0, 100.0, 145.0])
    monkeypatch.setattr("keras_frcnn.study.runner.time.perf_counter", lambda: next(clock))
    calls = []

    def stopped_then_done(run):
        calls.append(run.folder)
        if len(calls) == 1:
            raise KeyboardInterrupt("stopped")

    monkeypatch.setattr(study, "_train", stopped_then_done)
    with pytest.raises(KeyboardInterrupt):
        study.make(run)
    assert not run.finished
    assert study.make(run)["seconds"] == 75.0  # 30 s, then 45 s
    assert run.finished and study.make(run)["seconds"] == 75.0 and len(calls) == 2


def test_all_leaves_out_what_the_config_cannot_run(tmp_path, caplog):
    from keras_frcnn.study import runnable

    config = tiny_config(tmp_path, steps=2)  # no pretrained weights: no finetune
    names = [e.name for e in runnable(config, NAMES, OPTIONS, skip=True)]
    assert names == [n for n in NAMES if n != "finetune"]
    assert "finetune: left out: the finetune experiment" in caplog.text
    with pytest.raises(ValueError, match="finetune"):
        runnable(config, NAMES, OPTIONS)


@pytest.mark.parametrize("options, message", [
    (dict(sampling_images=(0, 2)), "--sampling_images: 0 is not a positive"),
    (dict(sampling_images=(2, 2)), "--sampling_images repeats"),
    (dict(data_shares=(0.25, 1.5)), "--data_shares: 1.5 is not a share"),
    (dict(data_shares=(0.25, 0.251)), "differ by at least one per cent"),
    (dict(proposal_counts=()), "--proposal_counts is empty"),
    (dict(dense_added=(-2,)), "--dense_added: -2 is not"),
])
def test_bad_sweep_values_are_refused_before_anything_runs(options, message):
    with pytest.raises(ValueError, match=message):
        Options(**options)


def test_sampling_refuses_an_uneven_split(tmp_path):
    config = tiny_config(tmp_path, steps=2)  # 32 RoIs per minibatch
    with pytest.raises(ValueError, match="--sampling_images=5 does not divide the 32 RoIs"):
        build("sampling", config, Options(sampling_images=(2, 5)))


def test_judged_arms_do_not_depend_on_flag_order(tmp_path):
    from keras_frcnn.study.runner import Study

    config = tiny_config(tmp_path, steps=2)
    options = Options(proposal_counts=(10, 0, 25), dense_added=(-1, 500),
                      sampling_images=(8, 2, 32))
    experiment = build("proposals", config, options)
    arms = {c.label: (c.a[0], c.b[0]) for c in experiment.comparisons}
    assert set(arms.values()) == {("ssall", "dense"), ("ssall", "ss_denseall")}
    # Only the judged ends get the study's seeds; the points between are drawn from one.
    seeds = {}
    for variant, seed, _ in Study(config, tmp_path / "s").plan(experiment, 3):
        seeds[variant.name] = seeds.get(variant.name, 0) + 1
    assert seeds == {"ss10": 1, "ssall": 3, "ss25": 1, "ss_denseall": 3, "ss_dense500": 1,
                     "dense": 3}
    sampling = build("sampling", config, options)
    assert {(c.a[0], c.b[0]) for c in sampling.comparisons} == {("n2", "n8"), ("n2_as_n8", "n8")}
    assert {c.claim for c in sampling.comparisons} == {"not lower"}  # N = 2 is no worse
    # The costliest arm (the largest N, of three or more) runs one seed, not judged.
    assert [sampling.variant(n).seeds for n in ("n8", "n2", "n32", "n2_as_n8")] == [0, 0, 1, 0]
    # N = 2 given N = 8's images: four times the steps, the rest as N = 2.
    assert sampling.variant("n2_as_n8").overrides == {"sampling.images_per_batch": 2,
                                                      "train.steps": 4 * config.train.steps}
    fixed = config.copy_and_resolve_references()
    fixed.train.step_size = 3  # an absolute lr step (the VOC configs') stretches with the steps
    assert build("sampling", fixed, options).variant("n2_as_n8").overrides["train.step_size"] == 12
    two = build("sampling", config, Options(sampling_images=(2, 8)))
    assert [v.seeds for v in two.variants] == [0, 0, 0] and len(two.comparisons) == 2
    # --experiments=all may leave out what the config cannot run, never a bad flag.
    from keras_frcnn.study import runnable

    with pytest.raises(ValueError, match="does not divide"):
        runnable(config, ["sampling"], Options(sampling_images=(2, 5)), skip=True)


def test_experiments_not_run_keep_their_sections(study, tmp_path):
    # Links into the report (docs/paper.md's) must hold before an experiment has run:
    # its heading is the one it will have, with the command that runs it.
    from keras_frcnn.study.report import write_report

    results = {"multitask": load_results(study["root"])["multitask"]}
    text = write_report(results, tmp_path / "r.md", tmp_path / "f", config=study["config"])
    proposals = build("proposals", study["config"], OPTIONS)
    heading = f"## {proposals.title} ({proposals.section})"
    assert heading in text
    after = text.split(heading, 1)[1]
    assert after.index("Not run yet: `frcnn-study --experiments=proposals`.") < after.index("## ")
    assert "--experiments=finetune --config=configs/kangaroo.py" in text
    assert "| multi-task, lambda = 1 |" in text  # the run experiment's table as before
    assert text.index("## Multi-task") < text.index(heading)  # the paper's order
    bare = write_report(results, tmp_path / "s.md", tmp_path / "f")
    assert heading not in bare
