"""The paper's design evaluations (section 5) as a lab: bin/study.py's engine.

``run_study`` runs named experiments (study/experiments.py) from a base config, several
seeds per variant, in a study folder whose finished runs are reused
(study/runner.py), and writes the Markdown report with its plots (study/report.py).
docs/study.md is such a report, written by a full run on the demo.
"""

import dataclasses
import json
import platform
from pathlib import Path

from keras_frcnn.files import atomic_write
from keras_frcnn.study.experiments import NAMES, CannotRun, Options, build
from keras_frcnn.study.report import load_results, write_report
from keras_frcnn.study.runner import Study

__all__ = ["NAMES", "Options", "run_study", "runnable", "check_experiment"]


def machine():
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores"


def check_experiment(experiment, config):
    """One-line CannotRun (a ValueError) for a config the experiment cannot run."""
    if experiment.needs_pretrained and not config.model.weights:
        raise CannotRun(
            f"the {experiment.name} experiment compares which pretrained layers to keep, but "
            f"model.weights is empty: the {config.model.backbone} backbone starts from "
            "random weights, so there is nothing pretrained to keep; give a config with "
            "ImageNet weights (configs/kangaroo.py, docs/kangaroo.md)")


def runnable(config, names, options=Options(), skip=False):
    """[Experiment] of ``names`` built from ``config``, each checked before anything runs:
    one that cannot run with this config is a ValueError, or with ``skip`` left out with
    a warning (``--experiments=all``: the demo has no pretrained backbone for finetune);
    a bad sweep value stays an error either way."""
    import logging

    built = []
    for name in names:
        try:
            experiment = build(name, config, options)
            check_experiment(experiment, config)
        except CannotRun as err:
            if not skip:
                raise
            logging.getLogger("keras_frcnn.study").warning("%s: left out: %s", name, err)
            continue
        built.append(experiment)
    return built


def run_study(config, study_dir, names, seeds=3, options=Options(), report=None,
              figure_dir=None, command="", progress=False, intro=None, skip=False,
              results_dir=None):
    """Runs experiments ``names`` (those this config cannot run are an error, or with
    ``skip`` left out) and writes the report of every experiment ``results_dir``
    (default <study_dir>/results) holds; returns {name: results entry} of the
    experiments run now. Each experiment's results file is rewritten after every
    variant and seed ("complete" false until the last), and rows it already holds for
    the same model and test are reused, models or not (Study.run_experiment)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds={seeds}: give at least one seed")
    built = runnable(config, names, options, skip)
    study = Study(config, study_dir, progress=progress)
    results_dir = Path(results_dir) if results_dir else study.root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for experiment in built:
        path = results_dir / f"{experiment.name}.json"
        recorded = json.loads(path.read_text())["rows"] if path.is_file() else []
        entry = {"experiment": dataclasses.asdict(experiment), "rows": [], "seeds": seeds,
                 "command": command or f"frcnn-study --experiments={experiment.name}",
                 "machine": machine(), "complete": False}

        def save(rows, complete=False, entry=entry, path=path, recorded=recorded,
                 experiment=experiment):
            # Recorded rows this sitting did not reach (more seeds, another sweep's
            # variants, or those after a stop) are kept while they still hold.
            reached = {(r["variant"], r["test"], r["seed"]) for r in rows}
            kept = [r for r in recorded if (r["variant"], r["test"], r["seed"]) not in reached
                    and study.still_valid(experiment, r)]
            rows = list(rows) + kept
            entry.update(rows=rows, complete=complete,
                         seeds=max([seeds] + [r["seed"] + 1 for r in rows]))
            atomic_write(path, json.dumps(entry, indent=2, default=str) + "\n")

        save(study.run_experiment(experiment, seeds, recorded, on_row=save), complete=True)
        done[experiment.name] = entry
    report = report or study.root / "study.md"
    write_report(load_results(study.root, results_dir), report,
                 figure_dir or study.root / "figures", intro, config)
    return done


def describe(config, options=Options()):
    """Lines listing the experiments and their variants (frcnn-study --list)."""
    lines = []
    for name in NAMES:
        try:
            experiment = build(name, config, options)
        except ValueError as err:
            lines.append(f"{name}: {err}")
            continue
        variants = ", ".join(v.name for v in experiment.variants)
        lines.append(f"{name} ({experiment.section}): {variants}")
    return lines
