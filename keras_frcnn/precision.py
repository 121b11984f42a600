"""Reduced-precision inference: ``config.test.precision`` = float32 | bfloat16 | float16.

Detection (bin/evaluate.py, bin/detect.py, the Predictor) and the export compute the
network in the chosen dtype; everything around it stays as it is:

  images, proposals, resizing   float32, as in float32 detection (detection/graph.py)
  backbone, RoI pooling, head   the precision, weights stored in it (a Keras "pure"
                                policy, not the "mixed" one that keeps float32 weights
                                and casts each of them on every call)
  cls_score, bbox_pred, softmax float32 (from the head's reduced-precision features)
  box decoding, clipping, NMS   float32 / float64, as in float32 detection

RoI pooling of bfloat16 or float16 features pools them in float32 and casts back
(ops/roi_pool.py): each pooled value is one of the features, so the result is the
maximum in the features' dtype, bit for bit, whichever implementation pools it.

The release computed in float32 and the paper's numbers are float32 numbers, so every
config keeps ``test.precision = "float32"`` (docs/fidelity.md); bfloat16 is the choice
for a CPU with native bfloat16 (AVX512_BF16 or AMX on x86, BF16 on Arm), float16 for a
GPU. A CPU without bfloat16 arithmetic would run it emulated, slower than float32:
``resolve_precision`` says so in one line and stays in float32. float16 on a CPU runs
(TensorFlow emulates it, slower than float32, said in one line), so that a GPU
deployment can be checked on a laptop. Measured speed and accuracy: docs/benchmarks.md.
"""

import logging
import platform

from keras_frcnn.model.fast_rcnn import PRECISIONS

CPUINFO = "/proc/cpuinfo"
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX512_BF16 and AMX
# tiles on x86-64, FEAT_BF16 on Arm.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# Native float16 arithmetic: AVX512_FP16 and AMX-FP16 on x86-64 (oneDNN's float16 kernels
# need one), FP16 arithmetic on Arm.
FLOAT16_FLAGS = frozenset({"avx512_fp16", "amx_fp16", "fphp", "asimdhp"})

logger = logging.getLogger("keras_frcnn.precision")


def check_precision(precision, name="test.precision"):
    """``precision`` if it is one of PRECISIONS; ValueError naming ``name`` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def cpu_flags(cpuinfo=CPUINFO):
    """The CPU's feature flags from ``cpuinfo`` (Linux); None where it cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def _gpu_capabilities():
    """Compute capabilities (major, minor) of the visible GPUs; [] without one."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def unsupported_reason(precision, flags=None, gpus=None):
    """Why this machine cannot compute in ``precision`` natively, or None if it can.

    ``flags``: the CPU's flags (cpu_flags()); ``gpus``: the visible GPUs' compute
    capabilities (None: asked of TensorFlow). With a GPU the network runs there:
    bfloat16 needs compute capability 8.0 (Ampere), float16 5.3.
    """
    if precision == "float32":
        return None
    gpus = _gpu_capabilities() if gpus is None else gpus
    if gpus:
        need = (8, 0) if precision == "bfloat16" else (5, 3)
        if min(gpus) >= need:
            return None
        return (f"the GPU (compute capability {'.'.join(map(str, min(gpus)))}) has no "
                f"{precision} arithmetic (it needs {need[0]}.{need[1]})")
    flags = cpu_flags() if flags is None else flags
    wanted = BFLOAT16_FLAGS if precision == "bfloat16" else FLOAT16_FLAGS
    if flags is not None and flags & wanted:
        return None
    cpu = platform.processor() or platform.machine() or "this CPU"
    if flags is None:
        return f"{cpu}'s features cannot be read ({CPUINFO}), so {precision} support is unknown"
    return f"the CPU ({cpu}) has no {precision} arithmetic (none of {sorted(wanted)})"


def resolve_precision(precision, name="test.precision", flags=None, gpus=None):
    """The precision detection runs in: ``precision`` where the machine computes in it,
    else float32 for bfloat16 (with a one-line warning: emulated bfloat16 is slower
    than float32); float16 runs anyway, with a one-line warning, as a check of a GPU
    deployment. ValueError for a name not in PRECISIONS."""
    check_precision(precision, name)
    if precision == "float32":
        return precision
    gpus = _gpu_capabilities() if gpus is None else gpus
    reason = unsupported_reason(precision, flags, gpus)
    if reason is None:
        return precision
    if precision == "bfloat16":
        logger.warning("%s=bfloat16: %s; detecting in float32 instead", name, reason)
        return "float32"
    advice = ("use float32 on this GPU" if gpus
              else "use bfloat16 on a CPU that has it, float16 on a GPU")
    logger.warning("%s=float16: %s; TensorFlow emulates it, slower than float32 (%s)", name,
                   reason, advice)
    return precision


def overflow_message(precision, remedy):
    """The error of a network whose outputs in ``precision`` are not finite; ``remedy``:
    the verb of the fix ("detect", "export it")."""
    other = "bfloat16 or float32" if precision == "float16" else "float32"
    return (f"the network's outputs in {precision} are not finite (its activations overflow "
            f"that dtype); {remedy} in {other} (test.precision)")


def precision_copy(model, precision, fold_batchnorm=None):
    """``model`` (a FastRCNN as trained) computing in ``precision``: the model itself for
    float32, else a copy built in that precision with the same weights (cast to it).

    ``fold_batchnorm`` (default: for a reduced precision): the copy's BatchNormalization
    layers are folded into their convolutions (model/folding.py), so that oneDNN runs
    each convolution, bias and ReLU6 as one kernel. float32 keeps the trained graph by
    default, so float32 detection is the model as trained, op for op. (Not
    training.inference_copy, which folds the target normalisation into bbox_pred.)
    """
    check_precision(precision, "precision")
    if fold_batchnorm is None:
        fold_batchnorm = precision != "float32"
    config = model.get_config()
    if config.get("precision") not in (None, "float32") or config.get("fold_batchnorm"):
        if (config.get("precision") == precision
                and bool(config.get("fold_batchnorm")) == bool(fold_batchnorm)):
            return model
        raise ValueError("precision_copy: the model is a copy already (rounded weights or "
                         "BatchNormalization folded); copy the model it was made from")
    if precision == "float32" and not fold_batchnorm:
        return model
    from keras_frcnn.model.fast_rcnn import FastRCNN
    from keras_frcnn.model.folding import copy_folded_weights

    copy = FastRCNN.from_config({**config, "precision": precision,
                                 "fold_batchnorm": bool(fold_batchnorm)})
    if fold_batchnorm:
        copy_folded_weights(model, copy)
    else:
        copy.set_weights(model.get_weights())
    return copy


__all__ = ["PRECISIONS", "check_precision", "cpu_flags", "overflow_message", "precision_copy",
           "resolve_precision", "unsupported_reason"]
