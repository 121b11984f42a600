"""Detects objects in images with a trained detector and draws them.

    python bin/detect.py --config=configs/demo.py --workdir=workdirs/demo \
        --images=path/to/folder_or_image[,more] --output_dir=detections/

Proposals are computed as the config says (selective search by default,
cached; worker processes search the next images while the network runs on
the current one), or read from the release's demo files with
--config.proposals.method=demo_mat --config.proposals.mat_dir=<folder>.
Writes <name>.detections.jpg per image and detections.json into --output_dir.
Images that cannot be read are skipped with a warning each and counted at the end
(--config.dataset.on_error=raise stops at the first; what was done is written).
Exit status 1 if no image could be detected.

On Apache Beam (the extra: pip install ".[beam]"): any Beam pipeline option, given as
--name=value, runs detection over the images (--images, or a split of the config's
dataset with --split) as a Beam pipeline with the SavedModel bin/export.py wrote
(--saved_model), writing detections.jsonl and coco_results.json (every detection the
export returns) and dead_letter.txt into --output_dir; bin/evaluate.py --detections
scores either file. Proposals are read from the cache or computed in the pipeline.
No pictures are drawn. (docs/scale.md)

    python bin/detect.py --config=configs/demo.py --saved_model=exports/demo/1 \
        --split=test --output_dir=detections/beam \
        --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2
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
_MODEL = flags.DEFINE_string("model", None, "a saved .keras model instead of <workdir>/model.keras")
_CLASSES = flags.DEFINE_list("classes", None, "class names (default <workdir>/classes.json)")
_IMAGES = flags.DEFINE_list("images", None, "image files or folders")
_OUTPUT = flags.DEFINE_string("output_dir", "detections", "where pictures and JSON go")
_THRESHOLD = flags.DEFINE_float("score_threshold", 0.5, "draw and list detections above this")
_OVERLAP = flags.DEFINE_bool("overlap", True, "compute proposals while the network runs on the "
                             "images before them (--nooverlap: every image's first)")
_RECURSIVE = flags.DEFINE_bool("recursive", False, "also the images in subfolders of --images")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "with Beam options: the SavedModel "
                                   "bin/export.py wrote (its folder, e.g. exports/demo/1)")
_SPLIT = flags.DEFINE_string("split", None, "with Beam options: detect on this split of the "
                             "config's dataset instead of --images")


def class_names(workdir, classes):
    if classes:
        return list(classes)
    from keras_frcnn.files import read_json

    path = Path(workdir or ".") / "classes.json"
    fix = "give --classes=name1,name2,... (in model order)"
    if not path.is_file():
        sys.exit(f"error: {path} not found: {fix}")
    try:
        return read_json(path, fix, expect=list)
    except ValueError as err:
        sys.exit(f"error: {err}")


def main(argv):
    if argv[1:]:
        return _main_on_beam(argv[1:])
    if _SAVED_MODEL.value or _SPLIT.value:
        flag = "--saved_model" if _SAVED_MODEL.value else "--split"
        sys.exit(f"error: {flag} is for detection on Beam: add Beam pipeline options (e.g. "
                 "--runner=DirectRunner), or give --workdir and --images")
    if not _IMAGES.value:
        sys.exit("error: give --images (image files or folders)")
    if not (_WORKDIR.value or _MODEL.value):
        sys.exit("error: give --workdir or --model")
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.detection.run import detect_images
    from keras_frcnn.evaluation.run import detector_config
    from keras_frcnn.workdirs import check_model_config, load_inference_model

    config = _CONFIG.value
    names = class_names(_WORKDIR.value, _CLASSES.value)
    try:
        model = load_inference_model(_MODEL.value or _WORKDIR.value)
        check_model_config(model, config, names, _MODEL.value or _WORKDIR.value)
        run = detect_images(model, _IMAGES.value, names, detector_config(config),
                            config.proposals, _OUTPUT.value, _THRESHOLD.value,
                            max_image_pixels=config.dataset.max_image_pixels,
                            exif_orientation=config.dataset.get("exif_orientation", True),
                            overlap=_OVERLAP.value, on_error=config.dataset.on_error,
                            recursive=_RECURSIVE.value)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    for path, rows in run.found.items():
        listed = ", ".join(f"{r['class']} {r['score']:.2f}" for r in rows) or "nothing"
        print(f"{path}: {listed}")
    if not run.found:  # every image skipped: nothing a batch job can use
        sys.exit(f"error: {run.summary(_OUTPUT.value)}")
    print(run.summary(_OUTPUT.value))


def _main_on_beam(beam_args):
    """Batch detection as a Beam pipeline (module docstring)."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' INFO chatter
    from keras_frcnn.beam import BeamMissing, pipeline_options

    config = _CONFIG.value
    try:  # first: a misspelt flag of this program reaches here as an unknown option
        options = pipeline_options(beam_args, cli.program_flags(main))
    except (BeamMissing, ValueError) as err:
        sys.exit(f"error: {err}")
    if not _SAVED_MODEL.value:
        sys.exit("error: detection on Beam runs an exported SavedModel: give --saved_model "
                 "(bin/export.py writes one)")
    if bool(_IMAGES.value) == bool(_SPLIT.value):
        sys.exit("error: give one of --images and --split")
    from keras_frcnn.beam import PipelineFailed
    from keras_frcnn.beam.detection import detect_on_beam
    from keras_frcnn.data.records import DatasetError

    try:
        done = detect_on_beam(options, config, _SAVED_MODEL.value, _OUTPUT.value,
                              images=_IMAGES.value, split=_SPLIT.value,
                              recursive=_RECURSIVE.value)
    except (DatasetError, OSError, PipelineFailed, ValueError) as err:
        sys.exit(f"error: {err}")
    print(done)


def run():
    """Entry point of the console script frcnn-detect."""
    cli.run(main, pass_through=True)


if __name__ == "__main__":
    run()
