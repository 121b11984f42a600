"""Exports a trained detector as a SavedModel for TensorFlow Serving.

    python bin/export.py --config=configs/demo.py --workdir=workdirs/demo
    python bin/export.py --config=configs/demo.py --workdir=workdirs/demo_svd \
        --export_dir=exports/demo/2 --roi_pool=custom_op

Writes <export_dir> (default <workdir>/export/<next version number>) with the
signature "serving_default": image uint8 [H, W, 3] RGB + proposals float32
[R, 4] (image pixels) -> detection_boxes, detection_scores, detection_classes,
detection_class_names, num_detections (see keras_frcnn/export.py). Test
scales come from the config's test section. Then verifies the export: no
Python-function op, no keras_frcnn op (unless --roi_pool=custom_op), and a
fresh process importing only TensorFlow returns the same detections on the
first test image; prints `saved_model_cli show` of the signature.
"""

import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir (model.keras, classes.json)")
_MODEL = flags.DEFINE_string("model", None, "a .keras model instead of <workdir>/model.keras")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "new directory (default <workdir>/export/<next version>)")
_ROI_POOL = flags.DEFINE_enum("roi_pool", "composite", ["composite", "custom_op"],
                              "composite: loads in stock TF Serving; custom_op: faster, needs a "
                              "server built with the op (docs/serving.md)")
_MODE = flags.DEFINE_enum("mode", "default", ["default", "frcnn"],
                          "post-processing (detection/postprocess.py); default: score > "
                          "test.score_threshold, NMS, 100 per image")
_VERIFY = flags.DEFINE_bool("verify", True, "check the export in a fresh TensorFlow process")


def main(argv):
    if not (_WORKDIR.value or _MODEL.value):
        sys.exit("error: give --workdir (or --model)")
    if _MODEL.value and not _EXPORT_DIR.value:
        sys.exit("error: --model needs --export_dir")
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.export import ExportError, export_workdir, next_version_dir

    export_dir = _EXPORT_DIR.value or next_version_dir(Path(_WORKDIR.value) / "export")
    try:
        result = export_workdir(_CONFIG.value, _WORKDIR.value, _MODEL.value, export_dir,
                                _ROI_POOL.value, _MODE.value, _VERIFY.value)
    except (DatasetError, ExportError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    if result["verified"]:
        print(f"verified: {result['verified']}")
    if result.get("signature"):
        print(result["signature"])
    print(f"SavedModel written to {export_dir}")


def run():
    """Entry point of the console script frcnn-export."""
    cli.run(main)


if __name__ == "__main__":
    run()
