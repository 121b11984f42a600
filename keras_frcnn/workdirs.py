"""A training workdir: what it holds, and reading it back (locks, checkpoints, model).

Workdir layout:
  config.json          the resolved config (written before training starts)
  target_stats.json    regression-target normalisation of the training set
  classes.json         object class names (class k >= 1 is entry k - 1)
  train.lock           held (flock) by the run training in the workdir, with its PID
  checkpoints/         training state (model, optimiser, step, dropout random
                       states), ckpt-<steps done> every ``train.checkpoint_every``
                       steps and at the end
  model.keras          the trained model for inference: target normalisation
                       folded into bbox_pred, so it emits raw deltas
  logs/                TensorBoard scalars
  compress.json        (workdirs written by bin/compress.py) the truncated-SVD
                       ranks; training and --checkpoint evaluation build the
                       factored model from them

Every file is written to a temporary name and renamed (TensorFlow checkpoints are
written that way already), so only a failing disk or a hand edit leaves one damaged;
reading one that is says which file and how to write it again (docs/training.md).
"""

import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_frcnn.configs import format_ranks, parse_ranks
from keras_frcnn.data.roidb import TargetStats
from keras_frcnn.files import CorruptFile, read_json, weights_key

logger = logging.getLogger("keras_frcnn.workdirs")

# What to do about a damaged workdir file that training writes itself.
REWRITE = ("delete it and run bin/train.py with the same --config and --workdir to "
            "write it again")


class NoUsableCheckpoint(CorruptFile):
    """Every checkpoint of a workdir is damaged."""


class CheckpointMismatch(ValueError):
    """A checkpoint that can be read but holds another model or optimiser."""


def svd_ranks(config, workdir=None):
    """{layer: rank} of the model's truncated-SVD layers: config.model.svd, or
    the ranks recorded in a compressed workdir's compress.json (the two must
    agree when both are given)."""
    ranks = parse_ranks(config.model.svd)
    report = Path(workdir) / "compress.json" if workdir is not None else None
    if report is not None and report.is_file():
        fix = "run bin/compress.py again to write it"
        try:
            recorded = {k: int(v) for k, v in read_json(report, fix)["ranks"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            if isinstance(err, CorruptFile):
                raise
            raise CorruptFile(f"{report}: no valid 'ranks' entry ({err!r}); {fix}") from None
        if ranks and ranks != recorded:
            raise ValueError(f"{workdir} holds a model compressed with "
                             f"{format_ranks(recorded)}, but config.model.svd is "
                             f"{config.model.svd!r}; drop the override or use another workdir")
        return recorded
    return ranks


def fc_units(config, workdir=None):
    """(fc6, fc7) widths: config.model.fc_units, else those recorded in the workdir's
    config.json (so evaluating or resuming a checkpoint needs no repeated override),
    else None (the backbone's)."""
    given = None if config.model.fc_units is None else tuple(int(u) for u in config.model.fc_units)
    saved = Path(workdir) / "config.json" if workdir is not None else None
    if saved is None or not saved.is_file():
        return given
    model = read_json(saved, REWRITE).get("model", {})
    recorded = model.get("fc_units") if isinstance(model, dict) else None
    recorded = None if recorded is None else tuple(int(u) for u in recorded)
    if given is not None and recorded is not None and given != recorded:
        raise ValueError(f"{workdir} was trained with config.model.fc_units={recorded}, but the "
                         f"config says {given}; drop the override or use another workdir")
    return given if given is not None else recorded


def model_head(config, workdir=None):
    """config.model.head, checked against the head recorded in the workdir's config.json
    (workdirs written before heads existed hold an "fc" model)."""
    head = config.model.get("head", "fc")
    saved = Path(workdir) / "config.json" if workdir is not None else None
    if saved is None or not saved.is_file():
        return head
    model = read_json(saved, REWRITE).get("model", {})
    recorded = model.get("head", "fc") if isinstance(model, dict) else "fc"
    if recorded != head:
        raise ValueError(f"{workdir} was trained with config.model.head={recorded!r}, but the "
                         f"config says {head!r}; pass --config.model.head={recorded} or use "
                         f"another workdir")
    return head


# What a workdir's training must keep (workdir_conflicts): the settings that decide the
# trained weights, i.e. these sections but for the keys below. Not compared: paths (data
# and caches move), how the run goes (logging, checkpoints, devices, a RoI pooling that is
# bit-identical either way), and what only testing and export read (test.*, export.*,
# the test split), which the record then holds as given.
TRAINED_SECTIONS = ("dataset", "proposals", "sampling", "pipeline", "model", "train")
NOT_TRAINED = frozenset({
    "dataset.root", "dataset.annotations", "dataset.images", "dataset.cache_dir",
    "dataset.test_split", "dataset.test_root", "dataset.test_annotations", "dataset.test_images",
    "dataset.on_error", "dataset.max_image_pixels",
    "proposals.cache_dir", "proposals.workers", "proposals.mat_file",
    "proposals.test_mat_file", "proposals.mat_dir", "model.roi_pool", "model.require_weights",
    "model.tf32", "train.log_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.devices", "train.distribute"})
# What --overwrite deletes before training starts over (the layout above, and eval/).
TRAINING_OUTPUTS = ("checkpoints", "logs", "model.keras", "config.json", "target_stats.json",
                    "classes.json", "compress.json", "eval")


def _flatten(node, prefix=""):
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def trained_in(workdir):
    """True if training has made progress in ``workdir``: a checkpoint after step 0, or
    a model.keras that training saved (bin/compress.py's output workdir holds a
    compressed model and a step-0 checkpoint, from which training starts)."""
    workdir = Path(workdir)
    saved_model = (workdir / "model.keras").is_file() and not (workdir / "compress.json").is_file()
    return saved_model or any(step for step, _ in checkpoints(workdir / "checkpoints"))


def workdir_conflicts(config, workdir):
    """[(key, recorded, given)] of the settings where ``config`` differs from the
    workdir's config.json: what a training run in it must not change, for its model
    was trained with the recorded ones (TRAINED_SECTIONS but NOT_TRAINED). Empty when
    nothing was trained there yet (trained_in). ``train.steps`` may grow (training
    further from the last checkpoint), and ``model.weights`` may name the same file
    elsewhere (files.weights_key compares contents). A key the workdir predates is
    compared with its default."""
    from keras_frcnn.configs import base_config

    saved = Path(workdir) / "config.json"
    if not saved.is_file() or not trained_in(workdir):
        return []
    recorded = _flatten(read_json(saved, REWRITE))
    given = _flatten(json.loads(config.to_json_best_effort()))
    defaults = _flatten(json.loads(base_config().to_json_best_effort()))
    conflicts = []
    for key, value in given.items():
        old = recorded.get(key, defaults.get(key, value))
        if (key.split(".")[0] not in TRAINED_SECTIONS or key in NOT_TRAINED
                or old == value):
            continue
        if key == "train.steps" and isinstance(old, int) and value > old:
            continue
        if key == "model.weights" and weights_key(old) == weights_key(value):
            continue
        conflicts.append((key, old, value))
    return conflicts


def clear_training_outputs(workdir):
    """Deletes what training wrote in ``workdir`` (TRAINING_OUTPUTS), for --overwrite.
    A workdir of bin/compress.py is refused: its compressed model and step-0
    checkpoint are what training there starts from, and deleting them would start an
    uncompressed model from scratch."""
    if (Path(workdir) / "compress.json").is_file():
        raise ValueError(f"{workdir} holds a model compressed by bin/compress.py, which "
                         "--overwrite would delete; run bin/compress.py again into a new "
                         "workdir to start over")
    for name in TRAINING_OUTPUTS:
        path = Path(workdir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def random_states(model):
    """The model's random-number states: the dropout layers' seed generators, whose
    counters advance every step. tf.train.Checkpoint does not reach them through the
    model, and a resumed run that restarts them draws other dropout masks."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def training_state(model, optimizer, steps_done):
    """The tf.train.Checkpoint of a training run: what every step reads and changes.

    ``steps_done`` (an int64 variable the compiled step increments) counts the
    minibatches consumed, so it names the checkpoint and positions the data stream on
    resume; the optimiser's own count can lag it (a mixed-precision step skipped for
    overflow does not count). It and the random states form the "progress" part,
    which checkpoints of older versions lack (restore_latest).
    """
    progress = tf.train.Checkpoint(
        steps_done=steps_done, **{f"random_{k}": v for k, v in enumerate(random_states(model))})
    return {"model": model, "optimizer": optimizer}, {"progress": progress}


def _restore(prefix, required, optional):
    """Restores ``required`` (all of it must match) and, when the checkpoint has them,
    ``optional`` from ``prefix``; True if the optional part was there."""
    status = tf.train.Checkpoint(**required).restore(str(prefix))
    status.assert_existing_objects_matched()
    status.expect_partial()  # the optional part is restored below
    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(str(prefix))}
    if not all(name in saved for name in optional):
        return False
    # expect_partial: this part alone is asked for; without it TensorFlow warns, once the
    # status object is collected, about every value of the other parts ("Value in
    # checkpoint could not be found": 69 lines on a MobileNetV2 resume, all false).
    tf.train.Checkpoint(**optional).restore(
        str(prefix)).assert_existing_objects_matched().expect_partial()
    return True


def checkpoints(directory):
    """[(steps done, prefix)] of the checkpoints ``ckpt-<n>`` in ``directory``, by n."""
    return sorted((int(m.group(1)), path.with_suffix(""))
                  for path in Path(directory).glob("ckpt-*.index")
                  if (m := re.fullmatch(r"ckpt-(\d+)\.index", path.name)))


def restore_latest(directory, required, optional=None):
    """Restores the newest checkpoint ``ckpt-<n>`` in ``directory`` that can be read.

    ``required`` and ``optional`` are {name: trackable} parts of the saved
    tf.train.Checkpoint; checkpoints without the optional part still restore.
    Returns (prefix, optional part restored), or (None, False) without checkpoints.
    A damaged checkpoint (truncated by a crash or a full disk, a file missing) is
    skipped with a warning naming it, NoUsableCheckpoint if all are; one that reads
    but holds another model raises CheckpointMismatch (it is not damaged: the config is).
    """
    directory, optional = Path(directory), optional or {}
    damaged = []
    for _, prefix in reversed(checkpoints(directory)):
        try:
            complete = _restore(prefix, required, optional)
        except (tf.errors.OpError, IndexError) as err:  # IndexError: a truncated data file
            damaged.append(prefix)
            logger.warning("checkpoint %s is damaged and was skipped (%s)", prefix,
                           str(err).strip().splitlines()[0])
            continue
        except (AssertionError, ValueError) as err:
            raise CheckpointMismatch(
                f"{prefix} does not match the model this config builds "
                f"({str(err).strip().splitlines()[0][:300]}); resume with the config it was "
                f"trained with ({directory.parent / 'config.json'}) or give another "
                "--workdir") from None
        if damaged:
            logger.warning("resuming from %s instead", prefix.name)
        return str(prefix), complete
    if damaged:
        raise NoUsableCheckpoint(
            f"no checkpoint in {directory} can be read (damaged: "
            f"{', '.join(p.name for p in damaged)}); delete {directory} to train from the "
            "start, or restore it from a copy")
    return None, False


def save_model(model, path):
    """model.save to a temporary name, then rename; a failed save leaves no temporary
    file (Keras writes the zip in place, so a full disk would leave half of one)."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def lock_name(config):
    """The workdir lock of this process: ``train.lock``, which a multi-worker run's chief
    holds too (so a second run or cluster on the workdir is refused), and one per
    other task of a multi-worker run (its workers share the workdir)."""
    if config.train.distribute != "multi_worker":
        return "train.lock"
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task, kinds = cluster.get("task", {}), cluster.get("cluster", {})
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
    except (ValueError, AttributeError) as err:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({err}); see "
                         "docs/training.md") from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in kinds)
    return "train.lock" if chief else f"train.{kind}-{index}.lock"


def load_inference_model(workdir_or_path):
    """The exported model (raw deltas) of a workdir, or a .keras path."""
    path = Path(workdir_or_path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run bin/train.py first)")
    # Registers RoIPooling and FastRCNN (and the Caffe layers) for deserialisation.
    import keras_frcnn.layers  # noqa: F401
    import keras_frcnn.model.fast_rcnn  # noqa: F401

    # Keras says "File not found" for a file that is there but is not a whole zip.
    fix = ("run bin/train.py with the same --config and --workdir to write it again "
           "from the last checkpoint" if path.name == "model.keras"
           else "save or copy the model again")
    if not zipfile.is_zipfile(path):
        raise CorruptFile(f"{path}: corrupt or truncated (not a .keras zip file); {fix}")
    try:
        return keras.saving.load_model(path)
    except (OSError, zipfile.BadZipFile, KeyError, EOFError) as err:
        raise CorruptFile(f"{path}: corrupt or truncated ({str(err).splitlines()[0]}); "
                          f"{fix}") from None


def model_record(model):
    """What a FastRCNN records of itself: {"model.backbone", "model.head", "model.fc_units"
    (effective widths, fc head only), "model.svd" (ranks), "pipeline.preprocessing" and
    "classes"}, the last two None where the model predates them; {} for another model."""
    from keras_frcnn.model.backbones import SPECS

    config = model.get_config() if hasattr(model, "get_config") else {}
    if "backbone" not in config or config["backbone"] not in SPECS:
        return {}
    head = config.get("head", "fc")
    widths = config.get("fc_units") or SPECS[config["backbone"]].fc_units
    names = config.get("class_names")
    return {"model.backbone": config["backbone"], "model.head": head,
            "model.fc_units": tuple(widths) if head == "fc" else None,
            "model.svd": dict(config.get("factorized") or {}),
            "pipeline.preprocessing": config.get("preprocessing"),
            "classes": None if names is None else tuple(names),
            "num_classes": config.get("num_classes")}


def check_model_config(model, config, class_names=None, source="the model"):
    """ValueError naming every setting where ``config`` (an experiment config) or
    ``class_names`` contradict what ``model`` records (model_record): its backbone,
    head, fc widths and truncated-SVD ranks (when the config names them),
    preprocessing and class names. A model run with another backbone's
    preprocessing, or read with another dataset's class names, gives confident
    nonsense rather than an error."""
    record = model_record(model)
    if not record:
        return
    m = config.model
    head = m.get("head", "fc")
    given = {"model.backbone": m.backbone, "model.head": head,
             "pipeline.preprocessing": config.pipeline.preprocessing}
    if head == "fc" and m.fc_units:  # unset: whatever the model has (workdirs.fc_units)
        given["model.fc_units"] = tuple(m.fc_units)
    if parse_ranks(m.get("svd", "")):
        given["model.svd"] = parse_ranks(m.svd)
    problems = [f"{key}={record[key]!r} in the model but {value!r} in the config"
                for key, value in given.items()
                if record.get(key) is not None and record[key] != value]
    if class_names is not None:
        names = tuple(class_names)
        if record["classes"] is not None and names != record["classes"]:
            problems.append(f"classes {list(record['classes'])} in the model but "
                            f"{list(names)} given")
        elif record["num_classes"] is not None and len(names) != record["num_classes"] - 1:
            problems.append(f"{record['num_classes'] - 1} object classes in the model but "
                            f"{len(names)} class names given")
    if problems:
        raise ValueError(f"{source} does not match its config: {'; '.join(problems)}. Use the "
                         "config it was trained with (the workdir's config.json) and its "
                         "classes.json, or another model")


def load_target_stats(workdir):
    """The TargetStats of a trained workdir (target_stats.json)."""
    path = Path(workdir) / "target_stats.json"
    try:
        return TargetStats.from_dict(read_json(path, REWRITE))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CorruptFile):
            raise
        raise CorruptFile(f"{path}: not the target statistics training writes ({err!r}); "
                          f"{REWRITE}") from None
