"""Compresses a trained detector's fully connected layers by truncated SVD (paper 3.1).

    python bin/compress.py --config=configs/voc07_vgg16.py --workdir=workdirs/voc07_vgg16
    python bin/compress.py --config=configs/demo.py --workdir=workdirs/demo \
        --layers=fc6:64,fc7:64 --output_workdir=workdirs/demo_svd

Writes a new workdir (default <workdir>_svd) that bin/evaluate.py, bin/detect.py,
bin/export.py and bin/train.py (further fine-tuning) accept, and prints the
parameter counts and the relative output error of each factored layer,
measured on the RoIs of --calibration_images training images.
"""

import logging
import sys

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir whose model.keras to compress")
_MODEL = flags.DEFINE_string("model", None, "a .keras model instead of --workdir")
_OUTPUT = flags.DEFINE_string("output_workdir", None, "default <workdir>_svd")
_LAYERS = flags.DEFINE_string("layers", "fc6:1024,fc7:256",
                              "layer:rank pairs (fc6, fc7, cls_score, bbox_pred; a "
                              "MobileNetV2 model with head imagenet_blocks has the last two "
                              "only)")
_CALIBRATION = flags.DEFINE_integer(
    "calibration_images", 2, "training images whose RoIs measure each layer's output error "
    "(0: skip; the weight-space error is always reported)")


def main(argv):
    if bool(_WORKDIR.value) == bool(_MODEL.value):
        sys.exit("error: give exactly one of --workdir and --model")
    if _MODEL.value and not _OUTPUT.value:
        sys.exit("error: --model needs --output_workdir")
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.compress import compress_workdir, format_report
    from keras_frcnn.configs import parse_ranks
    from keras_frcnn.data.records import DatasetError

    source = _WORKDIR.value or _MODEL.value
    output = _OUTPUT.value or _WORKDIR.value.rstrip("/") + "_svd"
    try:
        report = compress_workdir(_CONFIG.value, source, output, parse_ranks(_LAYERS.value),
                                  _CALIBRATION.value)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(format_report(report))
    print(f"compressed model in {output}/model.keras")


def run():
    """Entry point of the console script frcnn-compress."""
    cli.run(main)


if __name__ == "__main__":
    run()
