"""Float32 as Caffe computed it, or TensorFlow's TF32.

On Ampere and newer NVIDIA GPUs TensorFlow runs float32 convolutions and matrix
products in TF32 by default: inputs rounded to a 10-bit mantissa, sums in float32
(``tf.config.experimental.tensor_float_32_execution_enabled()`` is True after importing
the package). Caffe computed in full float32, so the paper configs set
``model.tf32 = False`` and training and detection turn TF32 off before they build
anything (docs/fidelity.md). The setting is process-wide, and has no effect on CPUs or
older GPUs. A SavedModel does not carry it: TF Serving decides for itself.
"""

import tensorflow as tf


def apply_tf32(enabled):
    """Turns TF32 execution on or off for this process; returns the previous setting."""
    previous = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(bool(enabled))
    return previous
