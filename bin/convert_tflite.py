"""Converts a TensorFlow Lite MobileNetV2 into the ImageNet weights configs/kangaroo.py
loads (docs/kangaroo.md): how our kangaroo runs' weights file was made.

    # google-coral/test_data @ 104342d2d3480b3e66203073dac24f4e2dbb4c41, Apache-2.0:
    #   mobilenet_v2_1.0_224_quant.tflite (uint8, the file of our published runs)
    python bin/convert_tflite.py --tflite=mobilenet_v2_1.0_224_quant.tflite \
        --output=data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5

Any MobileNetV2 .tflite converts, quantised (uint8, int8; float16 untested) or float; --alpha is
the file's width multiplier. The classifier is left out. keras_frcnn/tflite_weights.py
says how each tensor maps.
"""

import logging
import sys

from absl import flags

from keras_frcnn import cli

_TFLITE = flags.DEFINE_string("tflite", None, "the TensorFlow Lite MobileNetV2 to convert")
_OUTPUT = flags.DEFINE_string("output", None, "the Keras weights file to write "
                              "(.weights.h5; an existing one is refused)")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "the file's MobileNetV2 width multiplier")


def main(argv):
    del argv
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn import tflite_weights

    try:
        tflite_weights.convert(_TFLITE.value, _OUTPUT.value, _ALPHA.value)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"MobileNetV2 (alpha {_ALPHA.value:g}) ImageNet weights in {_OUTPUT.value}: train "
          f"with --config.model.weights={_OUTPUT.value}")


def run():
    """Entry point of the console script frcnn-convert-tflite."""
    cli.run(main, required=("tflite", "output"))


if __name__ == "__main__":
    run()
