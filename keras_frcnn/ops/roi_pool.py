"""``roi_pool``: RoI max pooling of Fast R-CNN, custom op or pure-TF composite.

Shapes: features [N, H, W, C]; rois [R, 5] = (batch_index, x1, y1, x2, y2) in
input-image pixels, 0-based inclusive corners; output [R, PH, PW, C]. The
arithmetic is fixed by DESIGN.md section 3 and shared by both implementations:
``"custom_op"`` (C++/CUDA, custom_ops/) and ``"composite"`` (pure TensorFlow,
roi_pool_composite.py) give the same output bit for bit.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_frcnn.ops import loader
from keras_frcnn.ops.roi_pool_composite import roi_pool_composite

IMPLEMENTATIONS = ("custom_op", "composite")
_NATIVE_DTYPES = (tf.float32, tf.float64)
_UPCAST_DTYPES = (tf.float16, tf.bfloat16)
_warned_fallback = False


def normalize_pooled_size(pooled_size):
    """``7`` or ``(7, 7)`` -> ``(7, 7)``; raises ValueError naming the value."""
    if isinstance(pooled_size, (int, np.integer)) and not isinstance(pooled_size, bool):
        pooled_size = (pooled_size, pooled_size)
    try:
        pooled_height, pooled_width = (int(v) for v in pooled_size)
        valid = all(int(v) == v and v >= 1 for v in pooled_size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"pooled_size must be a positive int or a pair of positive ints (e.g. 7 or (7, 7)), "
            f"got {pooled_size!r}")
    return pooled_height, pooled_width


def check_spatial_scale(spatial_scale):
    """Returns spatial_scale as a float; raises ValueError unless a positive, finite,
    normal float32, the op's attribute type (1e-50 is 0 there, 1e39 infinite, and
    TensorFlow flushes a denormal such as 1e-40 to 0)."""
    try:
        value = float(spatial_scale)
    except (TypeError, ValueError):
        value = float("nan")
    with np.errstate(over="ignore", under="ignore"):
        as_float32 = float(np.float32(value))
    if not (as_float32 >= np.finfo(np.float32).tiny and as_float32 != float("inf")):
        raise ValueError(
            f"spatial_scale must be a positive normal float32 number of feature cells per "
            f"input pixel (1/16 for a stride-16 backbone), got {spatial_scale!r}")
    return value


def resolve_implementation(implementation=None, warn=True):
    """Maps the ``implementation`` argument to ``"custom_op"`` or ``"composite"``.

    ``"custom_op"`` raises loader.CustomOpUnavailableError (with the rebuild
    command) when the library cannot be used; ``None`` picks the custom op when
    it loads, else the composite with a one-time warning.
    """
    global _warned_fallback
    if implementation not in IMPLEMENTATIONS + (None,):
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}")
    if implementation == "custom_op":
        loader.load()
        return implementation
    if implementation == "composite":
        return implementation
    try:
        loader.load()
        return "custom_op"
    except loader.CustomOpUnavailableError as err:
        if warn and not _warned_fallback:
            _warned_fallback = True
            warnings.warn(f"{err} Falling back to the pure-TensorFlow composite RoI pooling "
                          "(same results, slower).", RuntimeWarning, stacklevel=3)
        return "composite"


def _tape_recording():
    """Whether a GradientTape records here. TensorFlow has no public call for it; where
    the private one is gone, assume it does (the training kernel is always correct)."""
    try:
        from tensorflow.python.eager import record
    except ImportError:
        return True
    return record.could_possibly_record()


def _check_inputs(features, rois):
    if features.dtype not in _NATIVE_DTYPES + _UPCAST_DTYPES:
        raise TypeError(f"roi_pool: features must be float16, bfloat16, float32 or float64, "
                        f"got {features.dtype.name}")
    if not (rois.dtype.is_floating or rois.dtype.is_integer):
        raise TypeError(f"roi_pool: rois must be a real-valued tensor, got {rois.dtype.name}")
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(f"roi_pool: features must have rank 4 [N, H, W, C], got shape "
                         f"{features.shape}")
    if rois.shape.rank is not None and (rois.shape.rank != 2 or rois.shape[1] not in (None, 5)):
        raise ValueError(f"roi_pool: rois must have shape [R, 5] (batch_index, x1, y1, x2, y2), "
                         f"got shape {rois.shape}")


def roi_pool(features, rois, pooled_size, spatial_scale, implementation=None, training=None):
    """RoI max pooling (Fast R-CNN, section 2.1).

    Args:
      features: [N, H, W, C] float tensor (float16/bfloat16 are pooled in
        float32 and cast back, so mixed precision works).
      rois: [R, 5] (batch_index, x1, y1, x2, y2) in input-image pixels; cast to
        float32.
      pooled_size: int or (pooled_height, pooled_width), e.g. 7 for VGG16.
      spatial_scale: feature cells per input pixel, e.g. 1/16.
      implementation: "custom_op", "composite" or None (custom op when it
        loads, else the composite with a one-time warning).
      training: whether a gradient will be asked for. The custom op then also
        writes each bin's argmax for it; False runs its inference kernel, which
        writes only the pooled values (the same bits, half the bytes; a
        gradient still works, by running the op again for the argmax). None
        (default): True when a GradientTape is recording, including one inside
        the tf.function being traced, else False. The composite ignores it.

    Returns:
      [R, pooled_height, pooled_width, C] tensor of the features' dtype; the
      gradient flows to ``features`` through each bin's argmax (none to rois).

    Raises:
      ValueError / TypeError for bad arguments or static shapes;
      tf.errors.InvalidArgumentError at run time for a RoI whose batch index is
      outside [0, N) (any RoI when N = 0) or whose coordinates are not finite,
      and for RoIs on features without a cell (H = 0 or W = 0); zero RoIs give
      an empty [0, PH, PW, C] result whatever the features;
      loader.CustomOpUnavailableError when "custom_op" is asked for and the
      library is missing or stale (the message gives the rebuild command).
    """
    pooled_height, pooled_width = normalize_pooled_size(pooled_size)
    spatial_scale = check_spatial_scale(spatial_scale)
    implementation = resolve_implementation(implementation)
    features = tf.convert_to_tensor(features)
    rois = tf.convert_to_tensor(rois)
    _check_inputs(features, rois)
    rois = tf.cast(rois, tf.float32)
    pooled = features if features.dtype in _NATIVE_DTYPES else tf.cast(features, tf.float32)
    if training is None:
        training = _tape_recording()
    attrs = dict(pooled_height=pooled_height, pooled_width=pooled_width,
                 spatial_scale=spatial_scale)
    if implementation == "custom_op" and training:
        output, _ = loader.load().keras_frcnn_roi_pool(pooled, rois, **attrs)
    elif implementation == "custom_op":
        output = loader.load().keras_frcnn_roi_pool_inference(pooled, rois, **attrs)
    else:
        output = roi_pool_composite(pooled, rois, pooled_height, pooled_width, spatial_scale)
    return tf.cast(output, features.dtype)


def _attrs(op):
    return {name: op.get_attr(name) for name in ("pooled_height", "pooled_width", "spatial_scale")}


@tf.RegisterGradient("KerasFrcnn>RoiPool")
def _roi_pool_grad(op, grad, unused_argmax_grad):
    """Routes the output gradient to each bin's argmax cell; rois get none."""
    grad_features = loader.load().keras_frcnn_roi_pool_grad(
        op.inputs[0], op.inputs[1], op.outputs[1], grad, **_attrs(op))
    return [grad_features, None]


@tf.RegisterGradient("KerasFrcnn>RoiPoolInference")
def _roi_pool_inference_grad(op, grad):
    """The inference kernel kept no argmax: the full op runs again for it. (Reached
    only when a training=False result is differentiated, e.g. a tape around a
    tf.function traced without one.)"""
    library = loader.load()
    _, argmax = library.keras_frcnn_roi_pool(op.inputs[0], op.inputs[1], **_attrs(op))
    grad_features = library.keras_frcnn_roi_pool_grad(op.inputs[0], op.inputs[1], argmax,
                                                      grad, **_attrs(op))
    return [grad_features, None]
