"""The evaluation run of a trained detector on a split (bin/evaluate.py calls ``evaluate``):
a workdir or model file -> the split's proposals -> ``Detector`` -> the metrics, the
report (``format_report``) and the pictures. The metrics themselves live beside it in
this package: evaluation/voc.py (VOC AP), evaluation/evaluator.py (VOC over a dataset,
detection files) and evaluation/coco.py (COCO AP).

Output folder (default ``<workdir>/eval/<split>``), one run's files and no others:
written into a fresh folder beside it that replaces it when the run is complete
(files.run_folder), so a killed run leaves the previous results whole:
  detections.npz        every detection, for re-scoring without the network
  results/              VOC result files comp4_det_<split>_<class>.txt (1-based)
  metrics.json          AP per class, mAP, COCO numbers, timing, settings
  pr_curves.png         precision-recall curve per class
  detections.png        a few test images with their detections drawn
  coco_results.json     (COCO metric) the official results format
"""

import contextlib
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import cv2

from keras_frcnn.configs import split_sections
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.evaluation import (evaluate_voc, load_detections, reapply_nms, save_detections,
                                    write_voc_results)
from keras_frcnn.files import CorruptFile, atomic_write, local_only, run_folder

logger = logging.getLogger("keras_frcnn.evaluation.run")
METRICS = ("voc", "coco", "both")


def detector_config(config):
    from keras_frcnn.detection import DetectorConfig, PostprocessConfig

    t = config.test
    return DetectorConfig(
        scales=tuple(t.scales), max_size=t.max_size, preprocessing=config.pipeline.preprocessing,
        postprocess=PostprocessConfig.from_test_config(t),
        deduplicate=t.deduplicate, score_empty_rois=t.score_empty_rois, flip=t.flip,
        bbox_reg=t.get("bbox_reg", True), tf32=config.model.get("tf32", True),
        precision=t.get("precision", "float32"))


def load_model(config, workdir=None, model_path=None, checkpoint=None, num_classes=None):
    """The inference model: a .keras file, the workdir's model.keras, or a training
    checkpoint of the workdir ("latest" or a prefix) with the target
    normalisation folded in."""
    from keras_frcnn import training, workdirs

    if checkpoint:
        import tensorflow as tf

        if workdir is None:
            raise ValueError("--checkpoint needs --workdir (for target_stats.json)")
        model = training.build_model(config, num_classes, workdir)
        if checkpoint == "latest":  # the newest one that can be read
            if not workdirs.restore_latest(Path(workdir) / "checkpoints", {"model": model})[0]:
                raise FileNotFoundError(f"{workdir}/checkpoints: no checkpoint to evaluate")
        else:
            try:
                tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
            except tf.errors.NotFoundError:
                raise FileNotFoundError(f"{checkpoint}: no such checkpoint") from None
            except (tf.errors.OpError, ValueError, IndexError) as err:
                raise CorruptFile(
                    f"checkpoint {checkpoint} is damaged ({str(err).strip().splitlines()[0]});"
                    " give another one, or --checkpoint=latest") from None
        return training.inference_copy(model, workdirs.load_target_stats(workdir))
    return workdirs.load_inference_model(model_path or workdir)


# What an evaluation writes into its output folder (module docstring).
RUN_FILES = ("detections.npz", "results", "metrics.json", "pr_curves.png", "detections.png",
             "coco_results.json")


def check_run_folder(output_dir):
    """``output_dir`` as a Path, its parent made, after refusing a file, a mount point,
    a place that cannot be written, or a folder holding anything an evaluation does
    not write (the run replaces the folder: files.run_folder), or a URL. A symbolic link
    to a folder stands for that folder (the run replaces the folder, and the link keeps
    pointing at it)."""
    output_dir = Path(local_only(output_dir, "output folder", "give a local --output_dir"))
    if output_dir.is_symlink():
        output_dir = output_dir.resolve()
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"output folder {output_dir}: cannot make {output_dir.parent} "
                         f"({err.strerror}); give a writable folder (--output_dir)") from None
    if not os.access(output_dir.parent, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {output_dir}: {output_dir.parent} is not writable; "
                         "give a writable folder (--output_dir)")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output folder {output_dir} is a file; give a folder (--output_dir)")
    if os.path.ismount(output_dir):  # a mount point cannot be renamed over
        raise ValueError(f"output folder {output_dir} is a mount point, which the run cannot "
                         "replace; give a folder inside it (--output_dir)")
    if output_dir.is_dir():
        foreign = sorted(p.name for p in output_dir.iterdir() if p.name not in RUN_FILES)
        if foreign:
            raise ValueError(f"output folder {output_dir} holds files an evaluation does not "
                             f"write ({', '.join(foreign[:5])}); the run replaces the folder, "
                             "so give an empty or new one (--output_dir)")
    return output_dir


def draw_examples(dataset, detections, path, count, threshold):
    """detections.png: the first ``count`` images with detections >= threshold, each
    scaled to one height (draw.tile_scale) with its boxes drawn at that scale."""
    from keras_frcnn.detection.draw import contact_sheet, draw_detections, tile_scale

    pictures = []
    for record in dataset.records[:count]:
        image = read_image_bgr(record.image_path, dataset.max_image_pixels,
                               dataset.exif_orientation)
        scale = tile_scale(*image.shape[:2])
        pictures.append(draw_detections(image, detections[record.image_id], dataset.classes,
                                        threshold, scale))
    if pictures:
        ok, png = cv2.imencode(".png", contact_sheet(pictures))
        if ok:
            atomic_write(path, png.tobytes())


def _detect(config, dataset, proposals_config, split, workdir, model_path, checkpoint,
            progress, overlap):
    """(detections, timing, the precision the network ran in) of the dataset. Timing: seconds per image of the network
    (with post-processing), of the whole run (the model's loading included), and of
    the difference: proposals as far as the network waited for them (all of their
    time when not overlapped; about 0 when cached) and the model's loading."""
    from keras_frcnn.detection import Detector
    from keras_frcnn.proposals.sources import ProposalStream, proposals_for_dataset
    from keras_frcnn.workdirs import check_model_config

    images = max(len(dataset.records), 1)
    start = time.perf_counter()
    if overlap:  # the workers start here and search while the model loads
        proposals = stream = ProposalStream(dataset, proposals_config, progress, split=split)
    else:
        proposals = proposals_for_dataset(dataset, proposals_config, progress, split=split)
        stream = contextlib.nullcontext()
    with stream:
        model = load_model(config, workdir, model_path, checkpoint, dataset.num_classes)
        check_model_config(model, config, dataset.classes, model_path or workdir)
        detector = Detector(model, detector_config(config))
        if detector.num_classes != dataset.num_classes:
            raise ValueError(f"the model has {detector.num_classes - 1} object classes but "
                             f"{dataset.name} has {dataset.num_classes - 1}")
        detections, timing = detector.detect_dataset(dataset, proposals, progress)
    # Wall time of the whole detection, the model's loading included in both ways
    # (overlapped, the workers search while it loads).
    total = (time.perf_counter() - start) / images
    timing["total_seconds_per_image"] = max(total, timing["network_seconds_per_image"])
    timing["proposal_seconds_per_image"] = (timing["total_seconds_per_image"] -
                                            timing["network_seconds_per_image"])
    return detections, timing, detector.precision


def evaluate(config, workdir=None, split=None, model_path=None, checkpoint=None,
             output_dir=None, rescore=None, rescore_nms=None, progress=True, overlap=True,
             max_images=0, detections_file=None):
    """Runs detection and evaluation; returns the metrics dict written to metrics.json.

    max_images: if > 0, only the split's first ``max_images`` images (a quick look).

    rescore: a detections.npz to evaluate instead of running the network (with
    NMS re-applied at ``rescore_nms`` if given).
    detections_file: a JSON-lines or COCO results file written outside this program
    (the Beam batch detection: evaluation/detection_files.py) to score instead of
    running the network; the split's images it has no entry for count as images
    without detections, with a warning.
    overlap: compute proposals in worker processes while the network runs on the
    images before them (sources.ProposalStream); False: every image's first. The
    detections are the same.
    """
    t = config.test
    if t.metric not in METRICS:
        raise ValueError(f"test.metric must be one of {METRICS}, got {t.metric!r}")
    split = split or config.dataset.test_split
    dataset_config, proposals_config = split_sections(config, split)
    dataset = load_dataset(dataset_config, split)
    if max_images > 0:
        dataset = dataclasses.replace(dataset, records=tuple(dataset.records[:max_images]))
    if output_dir is None:
        if workdir is None:
            raise ValueError("give an output directory or a workdir")
        output_dir = Path(workdir) / "eval" / split
    output_dir = check_run_folder(output_dir)
    if (rescore and rescore_nms is not None
            and Path(rescore).resolve() == (output_dir / "detections.npz").resolve()):
        raise ValueError(f"--rescore_nms would replace {rescore}, the detections it reads "
                         "(an evaluation folder holds one run); give another --output_dir")
    timing, precision = {}, None
    with run_folder(output_dir) as folder:  # made first: an unwritable place fails now
        if detections_file:
            from keras_frcnn.evaluation.detection_files import load_detection_file

            detections, missing = load_detection_file(detections_file, dataset)
            if missing:
                logger.warning("%s: no entry for %d of the %d images of %s (first: %s); "
                               "they count as images without detections", detections_file,
                               len(missing), len(dataset.records), dataset.name,
                               ", ".join(missing[:3]))
        elif rescore:
            detections = load_detections(rescore)
            if rescore_nms is not None:
                detections = reapply_nms(detections, rescore_nms)
        else:
            detections, timing, precision = _detect(config, dataset, proposals_config, split,
                                                    workdir, model_path, checkpoint, progress,
                                                    overlap)
        metrics = _write_results(config, dataset, split, detections, timing, folder, precision)
    metrics["output_dir"] = str(output_dir)
    return metrics


def _write_results(config, dataset, split, detections, timing, folder, precision=None):
    """Writes the run's files into ``folder``; returns the metrics. ``precision``: what
    the network computed in (precision.py), None where no network ran (rescoring)."""
    t = config.test
    save_detections(detections, folder / "detections.npz")
    metrics = {"dataset": dataset.name, "split": split, "images": len(dataset.records),
               "detections": int(sum(len(d) for d in detections.values())), "timing": timing,
               "test": config.test.to_dict()}
    if precision is not None:
        metrics["precision"] = precision
    result = None
    if t.metric in ("voc", "both"):
        result = evaluate_voc(dataset, detections, t.iou_threshold, t.use_07_metric,
                              t.devkit_ge)
        write_voc_results(detections, dataset.classes, folder / "results", split)
        from keras_frcnn.evaluation.plots import plot_pr_curves

        plot_pr_curves(result, folder / "pr_curves.png")
        metrics["table"] = result.table()
    if t.metric in ("coco", "both"):
        from keras_frcnn.evaluation.coco import evaluate_coco

        metrics["coco"], metrics["coco_summary"] = evaluate_coco(
            dataset, detections, folder / "coco_results.json")
    if t.picture_images > 0:
        draw_examples(dataset, detections, folder / "detections.png", t.picture_images,
                      t.picture_threshold)
    if result is not None:
        metrics = {**result.to_dict(), **metrics}
    atomic_write(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def format_report(metrics):
    """The text bin/evaluate.py prints."""
    lines = [f"{metrics['dataset']} ({metrics['images']} images, "
             f"{metrics['detections']} detections)"]
    if "table" in metrics:
        kind = "11-point" if metrics["metric"] == "voc07_11point" else "area"
        lines += [f"VOC AP (%) at {metrics['match_rule']}, {kind} metric:",
                  metrics["table"]]
    if "coco_summary" in metrics:
        lines.append(metrics["coco_summary"].rstrip())
    timing = metrics.get("timing") or {}
    if timing:
        lines.append(f"seconds per image: network {timing['network_seconds_per_image']:.3f}, "
                     f"with proposals {timing['total_seconds_per_image']:.3f} "
                     f"(proposals not hidden behind the network, and the model's loading: "
                     f"{timing['proposal_seconds_per_image']:.3f})")
    lines.append(f"written to {metrics['output_dir']}")
    return "\n".join(lines)

