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
import zipfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_frcnn.compress import format_ranks, parse_ranks
from keras_frcnn.data.roidb import TargetStats
from keras_frcnn.files import CorruptFile, read_json

logger = logging.getLogger("keras_frcnn.workdirs")

# What to do about a damaged workdir file that training writes itself.
REWRITE = ("delete it and run bin/train.py with the same --config and --workdir to "
            "write it again")



class NoUsableCheckpoint(RuntimeError):
    """Every checkpoint of a workdir is damaged."""



def svd_ranks(config, workdir=None):
    """{layer: rank} of the model's truncated-SVD layers: config.model.svd, or
    the ranks recorded in a compressed workdir's compress.json (the two must
    agree when both are given)."""
    ranks = parse_ranks(config.model.svd)
    report = Path(workdir) / "compress.json" if workdir is not None else None
    if report is not None and report.is_file():
        fix = "run bin/compress.py again to write it"
        recorded = {k: int(v) for k, v in read_json(report, fix)["ranks"].items()}
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
    recorded = read_json(saved, REWRITE).get("model", {}).get("fc_units")
    recorded = None if recorded is None else tuple(int(u) for u in recorded)
    if given is not None and recorded is not None and given != recorded:
        raise ValueError(f"{workdir} was trained with config.model.fc_units={recorded}, but the "
                         f"config says {given}; drop the override or use another workdir")
    return given if given is not None else recorded



def random_states(model):
    """The model's random-number states: the dropout layers' seed generators, whose
    counters advance every step. tf.train.Checkpoint does not reach them through the
    model, and a resumed run that restarts them draws other dropout masks."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]



def restore_latest(checkpoint, directory):
    """Restores the newest checkpoint in ``directory`` that can be read and returns its
    prefix (None if there is none). A damaged one (truncated by a crash or a full disk)
    is skipped with a warning naming it; NoUsableCheckpoint if none can be read."""
    directory = Path(directory)
    prefixes = sorted((p.with_suffix("") for p in directory.glob("ckpt-*.index")),
                      key=lambda p: int(p.name.split("-")[1]), reverse=True)
    damaged = []
    for prefix in prefixes:
        try:
            status = checkpoint.restore(str(prefix))
            try:
                status.assert_existing_objects_matched()
            except AssertionError:  # written before random states were checkpointed
                status.expect_partial()
                logger.warning("%s holds no dropout random state (an older version wrote "
                               "it): the resumed run will not repeat an uninterrupted "
                               "one bit for bit", prefix)
            if damaged:
                logger.warning("resuming from %s instead", prefix.name)
            return str(prefix)
        except (tf.errors.OpError, ValueError, IndexError) as err:  # IndexError: truncated data
            damaged.append(prefix)
            logger.warning("checkpoint %s is damaged and was skipped (%s)", prefix,
                           str(err).strip().splitlines()[0])
    if damaged:
        raise NoUsableCheckpoint(
            f"no checkpoint in {directory} can be read (damaged: "
            f"{', '.join(p.name for p in damaged)}); delete the folder to train from the "
            "start, or restore it from a copy")
    return None



def save_model(model, path):
    """model.save to a temporary name, then rename."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)



def lock_name(config):
    """The workdir lock of this process: one per task of a multi-worker run (its workers
    share the workdir), else one per workdir."""
    if config.train.distribute != "multi_worker":
        return "train.lock"
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return f"train.{task.get('type', 'worker')}-{task.get('index', 0)}.lock"



def load_inference_model(workdir_or_path):
    """The exported model (raw deltas) of a workdir, or a .keras path."""
    path = Path(workdir_or_path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run bin/train.py first)")
    import keras_frcnn.layers  # noqa: F401  (registers RoIPooling for deserialisation)

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


def load_target_stats(workdir):
    """The TargetStats of a trained workdir (target_stats.json)."""
    return TargetStats.from_dict(read_json(Path(workdir) / "target_stats.json", REWRITE))
