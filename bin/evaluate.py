"""Evaluates a trained detector: detection on a split, VOC AP per class (and COCO AP).

    python bin/evaluate.py --config=configs/demo.py --workdir=workdirs/demo
    python bin/evaluate.py --config=configs/voc07_vgg16.py --workdir=workdirs/voc07_vgg16 \
        --checkpoint=latest
    python bin/evaluate.py --config=configs/demo.py --workdir=workdirs/demo \
        --rescore=workdirs/demo/eval/test/detections.npz --rescore_nms=0.4
    python bin/evaluate.py --config=configs/demo.py --output_dir=eval/beam \
        --detections=detections/detections.jsonl   # bin/detect.py on Beam wrote it

Prints the per-class AP table and writes detections, VOC result files, metrics
and plots (see keras_frcnn/evaluation/run.py) into --output_dir (default
<workdir>/eval/<split>). Test settings are the config's ``test`` section:
--config.test.scales='(480, 576, 688, 864, 1200)', --config.test.mode=default, ...
"""

import logging
import sys

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir (model.keras, checkpoints)")
_MODEL = flags.DEFINE_string("model", None, "a saved .keras model instead of <workdir>/model.keras")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "evaluate a training checkpoint of --workdir: 'latest' or a "
                                  "checkpoint prefix")
_SPLIT = flags.DEFINE_string("split", None, "split to evaluate (default dataset.test_split)")
_OUTPUT = flags.DEFINE_string("output_dir", None, "default <workdir>/eval/<split>")
_RESCORE = flags.DEFINE_string("rescore", None,
                               "a detections.npz to re-score without running the network")
_DETECTIONS = flags.DEFINE_string(
    "detections", None, "a detections.jsonl or COCO results .json written by bin/detect.py on "
    "Beam (or any such file) to score without running the network")
_RESCORE_NMS = flags.DEFINE_float("rescore_nms", None, "with --rescore: re-apply NMS at this IoU")
_OVERLAP = flags.DEFINE_bool("overlap", True, "compute proposals while the network runs on the "
                             "images before them (--nooverlap: every image's first)")


def main(argv):
    if not (_WORKDIR.value or _MODEL.value or _RESCORE.value or _DETECTIONS.value):
        sys.exit("error: give --workdir (or --model, --rescore or --detections)")
    for flag in ("rescore", "detections"):
        if flags.FLAGS[flag].value and not (_WORKDIR.value or _OUTPUT.value):
            sys.exit(f"error: --{flag} needs --output_dir (or --workdir)")
    if _RESCORE.value and _DETECTIONS.value:
        sys.exit("error: give one of --rescore and --detections")
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.evaluation.run import evaluate, format_report

    try:
        metrics = evaluate(_CONFIG.value, _WORKDIR.value, _SPLIT.value, _MODEL.value,
                           _CHECKPOINT.value, _OUTPUT.value, _RESCORE.value, _RESCORE_NMS.value,
                           overlap=_OVERLAP.value, detections_file=_DETECTIONS.value)
    except (DatasetError, OSError, ValueError) as err:  # OSError: e.g. a full disk
        sys.exit(f"error: {err}")
    print(format_report(metrics))


def run():
    """Entry point of the console script frcnn-evaluate."""
    cli.run(main)


if __name__ == "__main__":
    run()
