"""benchmarks/run_all.py: the suite's commands, order and refusals (nothing is timed here)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("roi_pool", "pipeline", "training", "head", "multitask", "kangaroo", "svd", "beam",
           "precision", "precision_accuracy")


def run_all(*args):
    return subprocess.run([sys.executable, "benchmarks/run_all.py", "--dry_run", *args],
                          cwd=ROOT, capture_output=True, text=True)


def test_every_benchmark_writes_its_section_of_one_file_in_order(tmp_path):
    out = run_all(f"--output={tmp_path / 'b.md'}")
    assert out.returncode == 0, out.stderr
    commands = [line for line in out.stdout.splitlines() if line.startswith("+ ")]
    scripts = [c.split()[2] for c in commands if "_benchmark.py" in c]
    assert scripts == [f"benchmarks/{name}_benchmark.py" for name in SCRIPTS]
    assert all(c.endswith(f"--output={tmp_path / 'b.md'}") for c in commands
               if "_benchmark.py" in c)
    # The RoI pooling op's floor parts and threading go to the page beside the output.
    assert f"--details={tmp_path / 'roi_pooling.md'}" in commands[0].split()
    # The SVD benchmark times random-weight models only (mAP: frcnn-study --experiments=svd).
    assert not any("bin/train.py" in c for c in commands)
    assert not (tmp_path / "b.md").exists()


def test_a_subset_runs_in_the_suite_order_and_unknown_names_are_refused(tmp_path):
    out = run_all("--only=pipeline,roi_pool")
    scripts = [line.split()[2] for line in out.stdout.splitlines() if line.startswith("+ ")]
    assert scripts == ["benchmarks/roi_pool_benchmark.py", "benchmarks/pipeline_benchmark.py"]
    out = run_all("--only=roi_pool,speed")
    assert out.returncode == 2 and "unknown benchmarks ['speed']" in out.stderr


def test_kangaroo_runs_one_training_per_seed_and_refuses_bad_seeds():
    out = run_all("--only=kangaroo")
    (command,) = [line for line in out.stdout.splitlines() if line.startswith("+ ")]
    assert "--seeds=0,1,2" in command.split()
    out = run_all("--only=kangaroo", "--kangaroo_seeds=3")
    assert "--seeds=3" in out.stdout.split()
    bad = subprocess.run([sys.executable, "benchmarks/kangaroo_benchmark.py", "--seeds=0,x"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "--seeds='0,x': give integers" in bad.stderr


def test_kangaroo_report_refuses_a_workdir_trained_otherwise(tmp_path, monkeypatch):
    import json

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import kangaroo_benchmark
    from keras_frcnn.configs import load_config_file

    config = load_config_file(ROOT / "configs" / "kangaroo.py")
    trained = json.loads(config.to_json())
    del trained["sampling"]["far_bg_fraction"]  # a key added later reads as its default
    (tmp_path / "config.json").write_text(json.dumps(trained))
    kangaroo_benchmark.check_trained_as_configured(config, tmp_path)
    trained["sampling"]["rois_per_batch"] = 2 * config.sampling.rois_per_batch
    (tmp_path / "config.json").write_text(json.dumps(trained))
    with pytest.raises(SystemExit, match=r"trained with sampling.rois_per_batch="):
        kangaroo_benchmark.check_trained_as_configured(config, tmp_path)


def test_kangaroo_paths_are_passed_on_and_the_report_names_the_config_s(monkeypatch):
    # Our machines' copies by default; a user's paths reach training, and the report's
    # commands use the config's defaults (docs/kangaroo.md) with a sentence for the run's.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import kangaroo_benchmark
    from keras_frcnn.configs import load_config_file

    command = kangaroo_benchmark.train_command("w", "data/kangaroo", "imagenet", 1)
    assert {"--config.dataset.root=data/kangaroo", "--config.model.weights=imagenet",
            "--config.train.seed=1"} <= set(command)
    (line,) = [line for line in run_all("--only=kangaroo", "--weights=imagenet").stdout
               .splitlines() if line.startswith("+ ")]
    assert "--weights=imagenet" in line.split()
    defaults = load_config_file(ROOT / "configs" / "kangaroo.py")
    same = kangaroo_benchmark.paths_sentence(defaults, defaults.dataset.root,
                                             defaults.model.weights)
    assert "`data/kangaroo`" in same and "this run read" not in same
    other = kangaroo_benchmark.paths_sentence(defaults, "../shared/data/kangaroo", "imagenet")
    assert "this run read `../shared/data/kangaroo` and `imagenet`" in other
