"""Truncated SVD of the fully connected layers (paper section 3.1).

A Dense layer ``y = x K + b`` with kernel ``K`` [v, u] (Keras stores the
transpose of the paper's ``W`` [u, v]) is replaced by its rank-t approximation
``W ~ U_t S_t V_t^T``: a bias-free layer ``<name>_L`` computing ``S_t V_t^T x``
(t units) followed by ``<name>`` computing ``U_t (.) + b`` with the original
bias and activation, and nothing in between. Parameters drop from ``u v`` to
``t (u + v)``. Defaults are the paper's: 1024 singular values of fc6 and 256 of
fc7 (VGG16: 4096 units each).

``compress_model`` returns the factored FastRCNN and a report (parameter
counts, singular-value energy kept, and the relative error of each factored
layer's pre-activation output, on real RoI features when calibration inputs
are given); ``compress_workdir`` writes a complete workdir that evaluate,
detect, export and further training accept.
"""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import keras
import numpy as np

from keras_frcnn.configs import format_ranks
from keras_frcnn.files import atomic_write, read_json
from keras_frcnn.model.fast_rcnn import FastRCNN, factorizable

logger = logging.getLogger("keras_frcnn.compress")

DEFAULT_RANKS = {"fc6": 1024, "fc7": 256}


def truncated_svd(kernel, rank):
    """(first [v, t], second [t, u], singular values [min(u, v)]) of a Dense kernel [v, u]:
    ``kernel ~ first @ second`` with the top ``rank`` singular values."""
    kernel = np.asarray(kernel)
    a, sigma, bt = np.linalg.svd(kernel, full_matrices=False)
    first = (a[:, :rank] * sigma[:rank]).astype(kernel.dtype)  # V_t S_t, i.e. (S_t V_t^T)^T
    second = bt[:rank].astype(kernel.dtype)  # U_t^T
    return first, second, sigma


def count_params(model):
    return int(sum(np.prod(w.shape) for w in model.weights))


def _check_ranks(model, ranks):
    config = model.get_config()
    factored = config.get("factorized") or {}
    head = config.get("head", "fc")
    allowed = factorizable(head)
    for name, rank in ranks.items():
        if name not in allowed:
            why = ("" if head == "fc" else f"; under head {head!r} the per-RoI layers before "
                   f"them are ImageNet convolutions, not fc layers, and the siblings are "
                   f"small, so there is little to gain (docs/compression.md)")
            raise ValueError(f"cannot factor layer {name!r}: choose from {list(allowed)}{why}")
        if name in factored:
            raise ValueError(f"layer {name!r} is already factored (rank {factored[name]}); "
                             "compress the uncompressed model instead")
        v, u = model.get_layer(name).kernel.shape
        if not 1 <= rank <= min(u, v):
            raise ValueError(f"layer {name!r}: rank {rank} is outside [1, min(u, v)] = "
                             f"[1, {min(u, v)}] for its {v} inputs and {u} outputs; pass a "
                             f"smaller rank, e.g. --layers={name}:{max(1, min(u, v) // 4)}")


def layer_inputs(model, names, calibration):
    """{name: [R, v] inputs of each named Dense layer} on calibration inputs (a list
    of {"images", "rois"} network inputs), in inference mode."""
    probe = keras.Model(model.inputs, {name: model.get_layer(name).input for name in names})
    outputs = [probe(inputs, training=False) for inputs in calibration]
    return {name: np.concatenate([np.asarray(o[name]) for o in outputs]) for name in names}


def compress_model(model, ranks=None, calibration=None):
    """(factored FastRCNN, report) of a FastRCNN.

    Args:
      model: a FastRCNN (a trained inference model or a training model).
      ranks: {layer name: rank}; default DEFAULT_RANKS.
      calibration: optional list of {"images": [N, H, W, 3], "rois": [R, 5]}
        network inputs on which each layer's relative output error is measured.

    Raises ValueError for unknown or already factored layers and ranks outside
    [1, min(u, v)].
    """
    ranks = dict(DEFAULT_RANKS if ranks is None else ranks)
    if not ranks:
        raise ValueError("no layers to factor: give layer:rank pairs, e.g. fc6:1024,fc7:256")
    if not isinstance(model, FastRCNN):
        raise ValueError(f"compress_model needs a FastRCNN, got {type(model).__name__}")
    _check_ranks(model, ranks)
    config = model.get_config()
    compressed = FastRCNN.from_config({**config,
                                       "factorized": {**(config.get("factorized") or {}),
                                                      **ranks}})
    inputs = layer_inputs(model, list(ranks), calibration) if calibration else {}
    report = {"ranks": dict(ranks), "layers": {}}
    for layer in compressed.layers:
        if layer.name in ranks or (layer.name.endswith("_L") and layer.name[:-2] in ranks):
            continue
        layer.set_weights(model.get_layer(layer.name).get_weights())
    for name, rank in ranks.items():
        kernel, bias = model.get_layer(name).get_weights()
        first, second, sigma = truncated_svd(kernel, rank)
        compressed.get_layer(f"{name}_L").set_weights([first])
        compressed.get_layer(name).set_weights([second, bias])
        energy = np.square(sigma.astype(np.float64))
        entry = {"inputs": int(kernel.shape[0]), "outputs": int(kernel.shape[1]), "rank": rank,
                 "params_before": int(kernel.size + bias.size),
                 "params_after": int(first.size + second.size + bias.size),
                 "energy_kept": float(energy[:rank].sum() / energy.sum()),
                 "weight_error": float(np.sqrt(energy[rank:].sum() / energy.sum()))}
        if name in inputs:
            x = inputs[name].astype(np.float64)
            exact = x @ kernel.astype(np.float64) + bias
            approx = (x @ first.astype(np.float64)) @ second.astype(np.float64) + bias
            entry["output_error"] = float(np.linalg.norm(approx - exact) /
                                          max(np.linalg.norm(exact), 1e-30))
        report["layers"][name] = entry
    report["params_before"] = count_params(model)
    report["params_after"] = count_params(compressed)
    return compressed, report


def format_report(report):
    lines = [f"{'layer':10s} {'shape':>13s} {'rank':>6s} {'params before':>14s} "
             f"{'after':>11s} {'energy kept':>12s} {'weight err':>11s} {'output err':>11s}"]
    for name, e in report["layers"].items():
        output_error = f"{e['output_error']:11.4f}" if "output_error" in e else f"{'-':>11s}"
        lines.append(f"{name:10s} {e['inputs']:>6d}x{e['outputs']:<6d} {e['rank']:6d} "
                     f"{e['params_before']:14,d} {e['params_after']:11,d} "
                     f"{e['energy_kept']:12.4f} {e['weight_error']:11.4f} {output_error}")
    lines.append(f"model parameters: {report['params_before']:,d} -> {report['params_after']:,d} "
                 f"({report['params_after'] / report['params_before']:.1%})")
    return "\n".join(lines)


def calibration_inputs(config, model, count):
    """Network inputs ({"images", "rois"}) of the first ``count`` training images of
    ``config``'s dataset with their proposals, prepared as the detector does."""
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.detection import Detector
    from keras_frcnn.evaluation.run import detector_config
    from keras_frcnn.proposals.sources import first_images

    if count <= 0:
        return []
    # Only its input preparation is used: no reduced-precision copy of the network.
    detector = Detector(model, dataclasses.replace(detector_config(config), precision="float32"))
    inputs = []
    for record, proposals in first_images(config, config.dataset.train_split, count):
        image = read_image_bgr(record.image_path, config.dataset.max_image_pixels,
                               config.dataset.get("exif_orientation", True))
        proposals = detector.usable_proposals(proposals, image.shape[1], image.shape[0])
        images, rois, _ = detector.prepare(image, proposals)
        if len(rois):
            inputs.append({"images": images, "rois": rois})
    return inputs


def compress_workdir(config, source, output_workdir, ranks=None, calibration_images=2):
    """Compresses a workdir's model.keras (or a .keras file) into ``output_workdir``;
    returns the report.

    From a workdir the output is a workdir like it: model.keras (factored, raw
    deltas), compress.json (the report), config.json (with model.svd set),
    classes.json, target_stats.json, and checkpoints/ holding the factored
    training model (normalised targets) at step 0 with a fresh optimiser, so
    ``bin/train.py --workdir=<output>`` fine-tunes it and
    ``bin/evaluate.py --checkpoint=latest`` evaluates it. From a .keras file:
    model.keras and compress.json only. Each layer's output error is measured
    on the RoIs of ``calibration_images`` training images (0: weight error only).
    """
    from keras_frcnn.workdirs import load_inference_model, save_model

    source, output_workdir = Path(source), Path(output_workdir)
    if output_workdir.resolve() == source.resolve():
        raise ValueError("the output workdir must differ from the input workdir")
    if (output_workdir / "model.keras").exists():
        raise ValueError(f"{output_workdir} already holds a model; choose a new output "
                         "directory or remove it")
    model = load_inference_model(source)
    calibration = calibration_inputs(config, model, calibration_images)
    compressed, report = compress_model(model, ranks, calibration)
    report["source"] = str(source / "model.keras" if source.is_dir() else source)
    output_workdir.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        _write_workdir(config, source, output_workdir, compressed)
    save_model(compressed, output_workdir / "model.keras")
    atomic_write(output_workdir / "compress.json", json.dumps(report, indent=2) + "\n")
    return report


def _write_workdir(config, workdir, output_workdir, compressed):
    from keras_frcnn import training
    from keras_frcnn.workdirs import REWRITE, load_target_stats

    stats = load_target_stats(workdir)
    for name in ("classes.json", "target_stats.json"):
        shutil.copyfile(workdir / name, output_workdir / name)
    saved = read_json(workdir / "config.json", REWRITE) if (
        workdir / "config.json").is_file() else config.to_dict()
    saved.setdefault("model", {})["svd"] = format_ranks(compressed.get_config()["factorized"])
    atomic_write(output_workdir / "config.json", json.dumps(saved, indent=2, default=str))
    training_model = training.inference_copy(compressed, stats, unfold=True)
    config = _with_svd(config, saved["model"]["svd"])
    training.save_initial_checkpoint(config, training_model, output_workdir)


def _with_svd(config, svd):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.svd = svd
    return config
