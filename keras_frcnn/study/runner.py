"""Running a study: one workdir per trained model, reused by every experiment that needs
the same model, and one evaluation folder per test of it.

Layout of a study folder (``--study_dir``):

    runs/<kind>-<hash>/          a model: a training workdir (bin/train.py's layout),
        study_run.json           written last: what made it, training seconds
        eval/<test>-<hash>/      an evaluation (bin/evaluate.py's files); result.json last
    proposals/<hash>.json        Average Recall of a proposal setting on the test split
    results/<experiment>.json    its rows, each (variant, test, seed) with the digests of
                                 its model and test; rewritten after every variant and
                                 seed (or kept elsewhere: run_study's results_dir)

``<hash>`` digests the settings that decide the model (or the evaluation): the config's
trained sections, the kind, and the source model's hash. A run whose study_run.json
exists is finished and is never trained again; a stopped one resumes from its latest
checkpoint (training.train), so a study can be stopped and started again at any point,
and two experiments that need the same model (the demo config at seed 0 is the
baseline of several) train it once. A row already in the results file for the same
model and test digests is reused even where runs/ is gone, so the results kept with the
docs (docs/study/results) let a study go on from a fresh clone.
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np

from keras_frcnn.files import atomic_write, weights_key
from keras_frcnn.workdirs import NOT_TRAINED, TRAINED_SECTIONS, _flatten

logger = logging.getLogger("keras_frcnn.study")


def _apply(config, overrides):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in overrides.items():
            section, name = key.split(".")
            config[section][name] = value
    return config


def seeded(config, seed):
    """``config`` with its training seeds (weights, dropout, and the data order, flips and
    sampling) set to ``seed``; seed 0 of the demo config is the README's main job."""
    return _apply(config, {"train.seed": seed, "pipeline.seed": seed})


def _digest(value):
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# Settings of the trained sections that only the test split reads (NOT_TRAINED leaves
# them out of a model's key): they belong to an evaluation's key.
TEST_ONLY = ("dataset.test_split", "dataset.test_root", "proposals.test_mat_file")
# Paths that say which data a model saw (workdirs.NOT_TRAINED leaves them out, for data
# moves; a study's key keeps them, resolved, since two datasets make two models).
DATA_PATHS = ("dataset.root", "dataset.annotations", "dataset.images", "proposals.mat_file",
              "proposals.mat_dir")
# Weights files a model starts from: keyed by their contents (files.weights_key).
WEIGHT_FILES = ("model.weights",)


def trained_settings(config):
    """The settings that decide ``config``'s model, as {dotted key: value}: its trained
    sections (workdirs.TRAINED_SECTIONS) without what does not change the weights
    (workdirs.NOT_TRAINED: logging, checkpoints, caches, devices) or is read by the test
    split only, data paths resolved, a weights file by its contents' digest, and only
    where they differ from base_config()'s,
    so that a key the package adds later, with a default, leaves the digests of earlier
    runs (and so their reuse) as they were."""
    from keras_frcnn.configs import base_config

    given = _flatten(json.loads(config.to_json_best_effort()))
    defaults = _flatten(json.loads(base_config().to_json_best_effort()))
    settings = {}
    for key, value in sorted(given.items()):
        if key.split(".")[0] not in TRAINED_SECTIONS:
            continue
        if key in DATA_PATHS:
            value = "+".join(str(Path(p).resolve()) for p in value.split("+")) if value else ""
        elif key in WEIGHT_FILES:
            value = weights_key(value)
        elif key in NOT_TRAINED:
            continue
        if key not in defaults or defaults[key] != value:
            settings[key] = value
    return settings


def evaluation_settings(config):
    """What decides an evaluation of a model: the test section's settings where they
    differ from base_config()'s (as trained_settings, so that a test key added later
    with a default leaves recorded evaluations matching) and the test split."""
    from keras_frcnn.configs import base_config

    flat = _flatten(json.loads(config.to_json_best_effort()))
    defaults = _flatten(json.loads(base_config().to_json_best_effort()))
    settings = {key: value for key, value in flat.items() if key.startswith("test.")
                and (key not in defaults or defaults[key] != value)}
    settings.update({key: flat.get(key) for key in TEST_ONLY})
    return dict(sorted(settings.items()))


# Bump when a default or the code changes what a recorded model or test means: every
# digest then changes, and nothing made before is reused. (Left out of the digests while
# it is 1, so that the runs recorded before it existed keep their names.)
KEY_VERSION = 1


def _keyed(key):
    return {**key, "version": KEY_VERSION} if KEY_VERSION > 1 else key


@dataclasses.dataclass
class Run:
    """One model of the study and the evaluations asked of it."""

    kind: str
    config: object
    folder: Path
    source: "Run" = None

    @property
    def finished(self):
        return (self.folder / "study_run.json").is_file()

    def record(self):
        return json.loads((self.folder / "study_run.json").read_text())


TIME_KEEPING_SECONDS = 30.0


@contextlib.contextmanager
def _time_kept(path, every=TIME_KEEPING_SECONDS):
    """Adds the seconds spent inside the block to the total in ``path`` (study_seconds.json),
    rewriting it every ``every`` seconds as well as at the end: a sitting that is killed,
    not stopped (a machine handed back), loses at most that much of its time, where a
    write at the end alone lost all of it (a 145-minute model was recorded as the 30 of
    its last sitting)."""
    before = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    start = time.perf_counter()
    done = threading.Event()

    def write():
        atomic_write(path, json.dumps({"seconds": before + time.perf_counter() - start}))

    def keep():
        while not done.wait(every):
            write()

    keeper = threading.Thread(target=keep, name="study-time", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
        write()


class Study:
    """Runs variants of experiments from ``config`` in ``root``."""

    def __init__(self, config, root, progress=False):
        self.config = config
        self.root = Path(root)
        self.progress = progress

    # ------------------------------------------------------------ models

    def run_for(self, experiment, variant, seed):
        """The Run that makes ``variant``'s model at ``seed`` (its source's first)."""
        config = seeded(_apply(self.config, variant.overrides), seed)
        source = None
        if variant.kind != "train":
            source = self.run_for(experiment, experiment.variant(variant.source), seed)
        key = {"kind": variant.kind, "settings": trained_settings(config),
               "source": source.folder.name if source else None}
        if variant.kind == "svm":  # its features are taken at the first test scale
            key["features"] = [config.test.scales[0], config.test.max_size]
        folder = self.root / "runs" / f"{variant.kind}-{_digest(_keyed(key))}"
        return Run(variant.kind, config, folder, source)

    def make(self, run):
        """Trains (or compresses, or fits SVMs for) ``run`` unless it is finished."""
        if run.finished:
            return run.record()
        if run.source is not None:
            self.make(run.source)
        run.folder.mkdir(parents=True, exist_ok=True)
        makers = {"train": self._train, "stagewise": self._stagewise, "svm": self._svm,
                  "svd": self._svd}
        if run.kind not in makers:
            raise ValueError(f"unknown variant kind {run.kind!r}")
        spent = run.folder / "study_seconds.json"  # summed over sittings: a stop resumes
        with _time_kept(spent):
            makers[run.kind](run)
        record = {"kind": run.kind, "seconds": json.loads(spent.read_text())["seconds"],
                  "source": run.source.folder.name if run.source else None,
                  "config": json.loads(run.config.to_json_best_effort())}
        atomic_write(run.folder / "study_run.json", json.dumps(record, indent=2) + "\n")
        return record

    def model_seconds(self, run):
        """Seconds it took to make ``run``'s model from nothing: its own and its source's
        (the lambda = 0 model of a stage-wise run, the model an SVM or SVD starts from)."""
        own = float(run.record()["seconds"])
        return own + (self.model_seconds(run.source) if run.source is not None else 0.0)

    def _train(self, run):
        from keras_frcnn.training import train

        result = train(run.config, run.folder, progress=self.progress)
        if result["interrupted"]:
            raise KeyboardInterrupt(f"training in {run.folder} stopped after step "
                                    f"{result['step']}")

    def _stagewise(self, run):
        """The source model (lambda = 0) with bbox_pred alone trained on the multi-task loss
        (paper section 5.1): its weights into a step-0 checkpoint, then training."""
        from keras_frcnn import training, workdirs

        if not workdirs.checkpoints(run.folder / "checkpoints"):
            source = workdirs.load_inference_model(run.source.folder)
            stats = workdirs.load_target_stats(run.source.folder)
            trained = training.inference_copy(source, stats, unfold=True)
            classes = json.loads((run.source.folder / "classes.json").read_text())
            model = training.build_model(run.config, len(classes) + 1, None, classes)
            model.set_weights(trained.get_weights())
            training.save_initial_checkpoint(run.config, model, run.folder)
        self._train(run)

    def _svm(self, run):
        from keras_frcnn.data.sources import load_dataset
        from keras_frcnn.model.svms import train_svms
        from keras_frcnn.proposals.sources import proposals_for_dataset
        from keras_frcnn.workdirs import load_inference_model, save_model

        from keras_frcnn.training import training_subset

        config = run.config
        dataset = training_subset(load_dataset(config.dataset, config.dataset.train_split),
                                  config.dataset.get("train_subset", 1.0))
        proposals = proposals_for_dataset(dataset, config.proposals, self.progress,
                                          split=config.dataset.train_split)
        model = load_inference_model(run.source.folder)
        scored, report = train_svms(model, dataset, proposals, config.test.scales[0],
                                    config.test.max_size, config.pipeline.preprocessing,
                                    use_difficult=config.dataset.use_difficult,
                                    seed=config.train.seed)
        save_model(scored, run.folder / "model.keras")
        atomic_write(run.folder / "svms.json", json.dumps(report, indent=2) + "\n")

    def _svd(self, run):
        from keras_frcnn.compress import compress_workdir
        from keras_frcnn.configs import parse_ranks

        if (run.folder / "model.keras").exists():  # compressed before a stop
            (run.folder / "model.keras").unlink()
        compress_workdir(run.config, run.source.folder, run.folder,
                         parse_ranks(run.config.model.svd))

    # ------------------------------------------------------------ tests

    def _evaluation(self, run, test_name, test_overrides):
        """The config of an evaluation of ``run`` and its folder, named by its digest."""
        config = _apply(run.config, {f"test.{k}": v for k, v in test_overrides.items()})
        with config.unlocked():
            config.test.picture_images = 0
        name = f"{test_name or 'test'}-{_digest(_keyed(evaluation_settings(config)))}"
        return config, run.folder / "eval" / name

    def evaluate(self, run, test_name, test_overrides):
        """The result of testing ``run``'s model with ``test_overrides`` (test.* keys):
        {"mAP", "network_seconds_per_image", "seconds"}; reused when done before."""
        from keras_frcnn.evaluation.run import evaluate

        config, folder = self._evaluation(run, test_name, test_overrides)
        done = folder / "result.json"
        if done.is_file():
            return json.loads(done.read_text())
        start = time.perf_counter()
        model_path = run.folder / "model.keras"
        # Proposals first (overlap=False): selective search in worker processes would
        # otherwise share the cores with the network while it is timed.
        metrics = evaluate(config, run.folder, model_path=model_path, output_dir=folder,
                           progress=self.progress, overlap=False)
        timing = metrics.get("timing") or {}
        result = {"mAP": float(metrics["mAP"]),
                  "network_seconds_per_image": timing.get("network_seconds_per_image"),
                  "seconds": time.perf_counter() - start,
                  "precision": metrics.get("precision")}  # what the network ran in
        atomic_write(done, json.dumps(result, indent=2) + "\n")
        return result

    def proposal_quality(self, config):
        """Average Recall and proposals per image of ``config``'s test-split proposals."""
        from keras_frcnn.configs import split_sections
        from keras_frcnn.data.sources import load_dataset
        from keras_frcnn.evaluation.recall import proposal_quality
        from keras_frcnn.proposals.sources import proposals_for_dataset

        split = config.dataset.test_split
        dataset_config, proposals_config = split_sections(config, split)
        dataset_key = dataset_config.to_dict()
        if dataset_key.get("exif_orientation", True):  # the default: keys as before it existed
            dataset_key.pop("exif_orientation", None)
        key = {"dataset": dataset_key, "proposals": proposals_config.to_dict(), "split": split}
        path = self.root / "proposals" / f"{_digest(key)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        dataset = load_dataset(dataset_config, split)
        proposals = proposals_for_dataset(dataset, proposals_config, self.progress, split=split)
        quality = proposal_quality(dataset.records, proposals)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(quality, indent=2) + "\n")
        return quality

    # ------------------------------------------------------------ experiments

    def seeds_of(self, variant, seeds):
        return list(range(min(seeds, variant.seeds) if variant.seeds else seeds))

    def plan(self, experiment, seeds):
        """[(variant, seed, Run)] of an experiment, in the order they run: seed by seed,
        so that a stopped study has every variant at its first seeds."""
        rows = []
        for seed in range(seeds):
            for variant in experiment.variants:
                if seed in self.seeds_of(variant, seeds):
                    rows.append((variant, seed, self.run_for(experiment, variant, seed)))
        return rows

    def recorded_rows(self, recorded, variant, seed, run):
        """The rows of ``recorded`` (an earlier results file's rows) that hold every test
        of ``variant`` at ``seed`` on this very model and test settings (the digests in
        "run" and "evaluation"), or None: a study resumed where its models are gone (a
        fresh machine, the rows kept with the docs) reuses them instead of training."""
        found = []
        for test_name, overrides in variant.tests.items():
            evaluation = self._evaluation(run, test_name, overrides)[1].name
            match = [r for r in recorded if r["variant"] == variant.name and r["seed"] == seed
                     and r["test"] == test_name and r["run"] == run.folder.name
                     and r.get("evaluation") == evaluation]
            if not match:
                return None
            found.append(match[0])
        return found

    def still_valid(self, experiment, row):
        """Whether a recorded ``row`` still describes ``experiment``: its model and test
        digests are those its variant and seed would have now (a row of a variant this
        experiment does not have, another sweep's, is kept under its own digests)."""
        variant = {v.name: v for v in experiment.variants}.get(row["variant"])
        if variant is None:
            return True
        if row["test"] not in variant.tests:
            return False
        run = self.run_for(experiment, variant, row["seed"])
        evaluation = self._evaluation(run, row["test"], variant.tests[row["test"]])[1].name
        return row["run"] == run.folder.name and row.get("evaluation") == evaluation

    def run_experiment(self, experiment, seeds, recorded=(), on_row=None):
        """Makes and tests every variant at every seed; returns the experiment's rows:
        [{"variant", "test", "seed", "mAP", "network_seconds_per_image",
        "train_seconds", "run", "evaluation"}] (plus AR where the experiment reports
        it). Rows in ``recorded`` for the same model and test are reused as they are;
        ``on_row(rows)`` is called with the rows so far after each variant and seed."""
        rows = []
        quality = {}
        for variant, seed, run in self.plan(experiment, seeds):
            earlier = self.recorded_rows(recorded, variant, seed, run)
            logger.info("%s: %s, seed %d (%s)", experiment.name, variant.label, seed,
                        "recorded" if earlier else "reused" if run.finished else "running")
            if earlier:
                rows += earlier
                if on_row:
                    on_row(rows)
                continue
            record = self.make(run)
            if experiment.proposal_quality and variant.name not in quality:
                quality[variant.name] = self.proposal_quality(run.config)
            for test_name, overrides in variant.tests.items():
                result = self.evaluate(run, test_name, overrides)
                row = {"variant": variant.name, "test": test_name, "seed": seed,
                       "mAP": result["mAP"],
                       "network_seconds_per_image": result["network_seconds_per_image"],
                       "test_seconds": result["seconds"],
                       "train_seconds": float(record["seconds"]),
                       "model_seconds": self.model_seconds(run),
                       "run": run.folder.name,
                       "evaluation": self._evaluation(run, test_name, overrides)[1].name}
                row.update(quality.get(variant.name, {}))
                rows.append(row)
            if on_row:
                on_row(rows)
        return rows


def summarize(values):
    values = np.asarray([v for v in values if v is not None], np.float64)
    if not len(values):
        return None
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
            "n": int(len(values))}
