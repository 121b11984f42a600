"""Training: the one place where a FastRCNN is trained (bin/train.py calls ``train``).

The workdir layout is in keras_frcnn/workdirs.py.

Restarting with the same workdir resumes from the newest checkpoint that can be
read, with the same step count, learning-rate schedule, data stream and dropout
masks: the result is the uninterrupted run's, bit for bit. Ctrl-C saves a
checkpoint and returns. A non-finite loss stops training with a clear error
and keeps the last good checkpoint. Every file is written to a temporary name
and renamed. See docs/training.md.
"""

import contextlib
import dataclasses
import json
import logging
import shutil
import signal
import threading
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.configs import format_ranks, parse_ranks
from keras_frcnn.data.pipeline import PipelineConfig, training_dataset
from keras_frcnn.data.records import dataset_error
from keras_frcnn.data.roidb import build_roidb, target_stats
from keras_frcnn.data.sampling import SamplingConfig, trainable_entries
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.files import WorkdirLock, atomic_write, local_only
from keras_frcnn.model.fast_rcnn import (FastRCNN, dtype_policy, fold_target_stats, sgd,
                                        step_schedule)
from keras_frcnn.numerics import apply_tf32
from keras_frcnn.progress import training_bar
from keras_frcnn.proposals.sources import proposals_for_dataset
from keras_frcnn.workdirs import (clear_training_outputs, fc_units, lock_name, model_head,
                                  restore_latest, save_model, svd_ranks, training_state,
                                  workdir_conflicts)

logger = logging.getLogger("keras_frcnn.training")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def build_model(config, num_classes, workdir=None, class_names=None):
    """The FastRCNN a config describes (factored as svd_ranks(config, workdir) says),
    recording ``class_names`` and the config's preprocessing."""
    m, t = config.model, config.train
    return FastRCNN(num_classes=num_classes, backbone=m.backbone,
                    backbone_weights=m.weights or None,
                    frozen=None if m.frozen is None else tuple(m.frozen),
                    freeze_backbone=m.freeze_backbone, dropout=m.dropout,
                    fc_units=fc_units(config, workdir),
                    loss_lambda=t.loss_lambda, weight_decay=t.weight_decay,
                    bias_lr_mult=t.bias_lr_mult, roi_pool_implementation=m.roi_pool or None,
                    factorized=svd_ranks(config, workdir), head=model_head(config, workdir),
                    class_names=class_names, preprocessing=config.pipeline.preprocessing,
                    train_only=tuple(m.get("train_only", ())) or None)


STRATEGIES = ("", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(config):
    """The tf.distribute strategy of ``config.train.distribute``.

    "" (default): one device. "mirrored": MirroredStrategy over
    ``train.devices`` (default: all GPUs, or the CPU). "multi_worker":
    MultiWorkerMirroredStrategy configured by the TF_CONFIG environment
    variable. ``sampling.images_per_batch`` (and rois_per_batch) are the global
    batch, split evenly over the replicas (docs/training.md).
    """
    t = config.train
    if t.distribute not in STRATEGIES:
        raise ValueError(f"train.distribute must be one of {STRATEGIES}, got {t.distribute!r}")
    if t.distribute == "mirrored":
        return tf.distribute.MirroredStrategy(list(t.devices) or None)
    if t.distribute == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_required_weights(config):
    """ValueError unless the backbone starts from pretrained weights where the config
    says it must (model.require_weights: the paper configs, whose models S, M and L
    are fine-tuned from ImageNet, section 2.2), fc6/fc7 included for the fc head: an
    ``.npz`` of conv layers alone would leave them random."""
    m = config.model
    if not m.get("require_weights", False):
        return
    fix = ("convert the release's ImageNet model (data/imagenet_models/*.v2.caffemodel) "
           "with bin/convert_caffemodel.py and pass --config.model.weights=PATH.npz "
           "(docs/voc07.md), or pass --config.model.require_weights=False to train from "
           "random weights")
    if not m.weights:
        raise ValueError(f"model.weights is empty, but this config trains {m.backbone} from "
                         f"ImageNet weights, as the paper does: {fix}")
    if str(m.weights).endswith(".npz") and m.get("head", "fc") == "fc":
        try:
            with np.load(m.weights, allow_pickle=False) as file:
                names = set(file.files)
        except (OSError, ValueError):
            return  # not a readable .npz: load_npz says why, naming the file
        if not {"fc6/kernel", "fc7/kernel"} <= names:
            raise ValueError(f"model.weights={m.weights} holds no fc6/fc7, which the paper "
                             f"also initialises from ImageNet: {fix}")


def check_step_counts(config):
    """Refuses step counts that are not positive integers, before anything is written: a
    run of -5 steps would otherwise 'finish' at once and save an untrained model."""
    t = config.train
    for key, example in (("steps", 40000), ("checkpoint_every", 2000), ("log_every", 20),
                         ("keep_checkpoints", 5)):
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"train.{key}={value!r}: must be a positive whole number of steps "
                             f"(for example --config.train.{key}={example})")
    if t.step_size < 0:
        raise ValueError(f"train.step_size={t.step_size}: must be 0 (step_fraction of the run) "
                         "or a positive number of steps")


def check_global_batch(config, replicas):
    images = config.sampling.images_per_batch
    if images % replicas:
        suggestion = replicas * max(1, images // replicas)
        raise ValueError(f"sampling.images_per_batch={images} (the global batch) must be a "
                         f"multiple of the {replicas} replicas; set it to {suggestion} and "
                         "scale train.base_lr with it (docs/training.md)")


def is_chief(strategy):
    """True unless this is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def precision_policy(name):
    """The global Keras dtype policy ``name`` while a model is built, then the previous one."""
    if name not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {name!r}")
    with dtype_policy(name):
        yield


def make_optimizer(config):
    t = config.train
    return sgd(step_schedule(t.base_lr, t.steps, t.step_fraction, step_size=t.step_size),
               t.momentum)


def _checkpointing(config, model, workdir):
    """(optimizer, steps_done, (required, optional) parts, CheckpointManager) of a
    workdir. The checkpoint holds every state a training step reads: weights,
    optimiser (momentum, loss scale), random states and the number of steps done,
    of which the data stream is a function (workdirs.training_state)."""
    model.compile(optimizer=make_optimizer(config))  # mixed_float16: a LossScaleOptimizer
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    steps_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps_done")
    required, optional = training_state(model, optimizer, steps_done)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**required, **optional),
                                         Path(workdir) / "checkpoints",
                                         config.train.keep_checkpoints)
    return optimizer, steps_done, (required, optional), manager


def save_initial_checkpoint(config, model, workdir):
    """A step-0 training checkpoint of ``model`` (fresh optimiser) in ``workdir``,
    from which bin/train.py starts (fine-tuning) instead of from scratch."""
    *_, manager = _checkpointing(config, model, workdir)
    manager.save(checkpoint_number=0)


def prepare_training_data(config, progress=True):
    """(dataset, roidb, TargetStats) of the training split (``dataset.train_subset`` of
    its images: training_subset)."""
    dataset = training_subset(load_dataset(config.dataset, config.dataset.train_split),
                              config.dataset.get("train_subset", 1.0))
    proposals = proposals_for_dataset(dataset, config.proposals, progress,
                                      split=config.dataset.train_split)
    roidb = build_roidb(dataset, proposals, config.dataset.use_difficult,
                        on_error=config.dataset.on_error)
    roidb = trainable_entries(roidb, SamplingConfig(**config.sampling))
    stats = target_stats(roidb, dataset.num_classes, config.pipeline.target_normalization,
                         with_flipped=config.pipeline.flip)
    return dataset, roidb, stats


SUBSET_SEED = 20150413  # the draw of dataset.train_subset, fixed: seeds vary the training only


def training_subset(dataset, share):
    """``dataset`` with round(share * n) of its n images (at least one), the first ones of
    a fixed random permutation of the images, in their original order; smaller shares
    are subsets of larger ones (25 % inside 50 % inside 100 %, paper section 5.3)."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f"dataset.train_subset={share!r}: give the share of the training "
                         "images to use, in (0, 1] (1: all)")
    count = len(dataset.records)
    keep = max(1, int(round(share * count)))
    if keep >= count:
        return dataset
    chosen = np.sort(np.random.default_rng(SUBSET_SEED).permutation(count)[:keep])
    logger.info("training on %d of the %d images of %s (dataset.train_subset=%g)", keep,
                count, dataset.name, share)
    return dataclasses.replace(dataset, records=tuple(dataset.records[k] for k in chosen))


def make_dataset(config, roidb, stats, start_batch, input_context=None):
    """The minibatch stream of a config (a separate function so tests can replace it);
    with an ``input_context``, this input pipeline's share of the global batches."""
    sampling = SamplingConfig(**config.sampling)
    pipeline = PipelineConfig(scales=tuple(config.pipeline.scales),
                              max_size=config.pipeline.max_size, flip=config.pipeline.flip,
                              preprocessing=config.pipeline.preprocessing,
                              seed=config.pipeline.seed,
                              distort_colors=config.pipeline.distort_colors,
                              crop_probability=config.pipeline.crop_probability,
                              crop_min_scale=config.pipeline.crop_min_scale,
                              max_image_pixels=config.dataset.max_image_pixels,
                              exif_orientation=config.dataset.get("exif_orientation", True))
    return training_dataset(roidb, stats, sampling, pipeline, input_context=input_context,
                            start_batch=start_batch)


def inference_copy(model, stats, unfold=False):
    """A copy of ``model`` whose bbox_pred emits raw deltas (normalisation folded
    in); ``unfold=True`` is the inverse (a saved model back to training targets)."""
    copy = FastRCNN.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    layer = copy.get_layer("bbox_pred")
    layer.set_weights(fold_target_stats(layer.get_weights(), stats,
                                        copy.get_config()["num_classes"], inverse=unfold))
    return copy


def save_inference_model(model, stats, path):
    save_model(inference_copy(model, stats), path)


@contextlib.contextmanager
def interrupt_after_step():
    """Ctrl-C during the training loop: the first SIGINT sets the yielded event, which
    the loop reads after each step, so the run stops between steps, where its state is
    whole. (Raised as a KeyboardInterrupt anywhere, it could land inside TensorFlow's
    own Python code, e.g. while a checkpoint is written, and be lost there.) A second
    SIGINT raises KeyboardInterrupt at once. Only the main thread can take signals."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


class WorkdirConflict(ValueError):
    """Training again in a workdir with settings other than those it recorded."""


def train(config, workdir, progress=True, overwrite=False):
    """Trains (or resumes) per ``config`` in ``workdir``, holding the workdir's lock;
    returns {"step", "history", "interrupted"} and, when interrupted, "checkpoint".

    A workdir trained (or being trained) with other settings is refused
    (WorkdirConflict naming them; workdirs.workdir_conflicts), so its config.json
    stays the record of its model; ``overwrite`` deletes what training wrote there
    and starts over.
    """
    check_step_counts(config)
    check_required_weights(config)
    apply_tf32(config.model.get("tf32", True))
    workdir = Path(local_only(workdir, "workdir", "give a local or mounted --workdir (NFS "
                                                  "for multi-worker training)"))
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir={workdir} is a file, not a folder; give a folder")
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir, lock_name(config)):
        if overwrite:
            clear_training_outputs(workdir)
        return _train(config, workdir, progress)


def _train(config, workdir, progress):
    ranks = svd_ranks(config, workdir)
    if ranks and parse_ranks(config.model.svd) != ranks:  # a compressed workdir: record them
        config = config.copy_and_resolve_references()
        config.model.svd = format_ranks(ranks)
        logger.info("%s holds a compressed model (%s): training it", workdir, config.model.svd)
    widths = fc_units(config, workdir)
    if config.model.fc_units is None and widths is not None:  # resuming: keep the widths
        config = config.copy_and_resolve_references()
        config.model.fc_units = widths
        logger.info("%s was trained with fc6/fc7 widths %s: keeping them", workdir, widths)
    model_head(config, workdir)  # resuming: the same head, before config.json is rewritten
    conflicts = workdir_conflicts(config, workdir)
    if conflicts:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in conflicts)
        raise WorkdirConflict(
            f"{workdir} was trained with other settings ({listed}); train with the settings "
            f"of its config.json, give another --workdir, or pass --overwrite to delete its "
            f"checkpoints and model and start over")
    atomic_write(workdir / "config.json", config.to_json_best_effort(indent=2))
    dataset, roidb, stats = prepare_training_data(config, progress)
    atomic_write(workdir / "target_stats.json", json.dumps(stats.to_dict()))
    atomic_write(workdir / "classes.json", json.dumps(list(dataset.classes)))
    logger.info("%s: %d training images, %d classes", dataset.name, len(roidb),
                dataset.num_classes)

    t = config.train
    strategy = make_strategy(config)
    replicas = strategy.num_replicas_in_sync
    check_global_batch(config, replicas)
    chief = is_chief(strategy)
    # Non-chief workers save to their own folder (checkpointing is collective), removed at the end.
    state_dir = workdir if chief else workdir / f".worker_{strategy.cluster_resolver.task_id}"
    if t.seed >= 0:  # same config, same initial weights (the data order has pipeline.seed)
        keras.utils.set_random_seed(t.seed)
    with strategy.scope(), precision_policy(t.precision):
        model = build_model(config, dataset.num_classes, workdir, dataset.classes)
        optimizer, steps_done, (required, optional), manager = _checkpointing(
            config, model, state_dir)
    if replicas > 1 or t.precision != "float32":
        logger.info("%d replicas (%s), %s", replicas, t.distribute or "one device", t.precision)
    latest, complete = restore_latest(workdir / "checkpoints", required, optional)
    if latest and not complete:
        logger.warning("%s was written by an older version, without the dropout random "
                       "state: the resumed run will not repeat an uninterrupted one bit "
                       "for bit", latest)
        steps_done.assign(optimizer.iterations)
    step = int(steps_done.numpy())
    if step:
        logger.info("resuming from %s: %d steps done, next is step %d", latest, step, step + 1)

    history = {metric.name: [] for metric in model.metrics}
    if step < t.steps:
        if replicas > 1:
            # Each input pipeline feeds replicas / pipelines replicas per step.
            def batches_fn(context):
                per_pipeline = replicas // context.num_input_pipelines
                return make_dataset(config, roidb, stats, step * per_pipeline, context)

            batches = iter(strategy.distribute_datasets_from_function(batches_fn))

            @tf.function(reduce_retracing=True)
            def train_step(batch):
                logs = strategy.run(model.train_step, args=(batch,))
                steps_done.assign_add(1)
                return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                        for k, v in logs.items()}
        else:
            batches = iter(make_dataset(config, roidb, stats, start_batch=step))

            @tf.function(reduce_retracing=True)
            def train_step(batch):
                logs = model.train_step(batch)
                steps_done.assign_add(1)  # in the step, so an interrupt cannot split them
                return logs
        writer = (tf.summary.create_file_writer(str(workdir / "logs")) if chief
                  else tf.summary.create_noop_writer())
        bar = training_bar(t.steps, t.log_every, progress and chief, history)
        bar.update(step)
        try:
            with interrupt_after_step() as interrupted:
                while step < t.steps and not interrupted.is_set():
                    model.reset_metrics()
                    try:
                        logs = {k: float(v) for k, v in train_step(next(batches)).items()}
                    except tf.errors.InvalidArgumentError as err:  # raised inside tf.data?
                        raise dataset_error(err) or err
                    if not np.isfinite(logs["loss"]):
                        raise TrainingDiverged(
                            f"loss became {logs['loss']} at step {step + 1}; stopped without "
                            f"saving. The last good checkpoint is {manager.latest_checkpoint}. "
                            "Check the data, or train again with a lower train.base_lr "
                            "(--overwrite, or another --workdir: the workdir records the "
                            "settings its checkpoints were trained with).")
                    step += 1
                    bar.update(step, list(logs.items()))
                    if step % t.log_every == 0 or step == t.steps:
                        for name, value in logs.items():
                            history[name].append((step, value))
                        with writer.as_default(step=step):
                            for name, value in logs.items():
                                tf.summary.scalar(name, value)
                            tf.summary.scalar("learning_rate",
                                              float(optimizer.learning_rate.numpy()))
                    if step % t.checkpoint_every == 0 and step < t.steps:
                        manager.save(checkpoint_number=step)
        except KeyboardInterrupt:  # a second Ctrl-C, or one raised by other means
            interrupted.set()
        finally:
            writer.flush()
        if interrupted.is_set():
            # A KeyboardInterrupt can land after a step ran but before the loop counted it.
            step = int(steps_done.numpy())
            saved = manager.save(checkpoint_number=step)
            logger.warning("interrupted after step %d: saved %s", step, saved)
            return {"step": step, "history": history, "interrupted": True,
                    "checkpoint": saved}
        manager.save(checkpoint_number=step)
    if chief:
        save_inference_model(model, stats, workdir / "model.keras")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
    return {"step": step, "history": history, "interrupted": False}
