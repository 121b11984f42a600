"""The detection run behind bin/detect.py: image files in, proposals computed (and
cached) as configured, detections drawn into pictures and listed in a JSON file.
(evaluation/run.py is its counterpart for bin/evaluate.py.)"""

import contextlib
import dataclasses
import json
import logging
from pathlib import Path

import cv2

from keras_frcnn.data.folder import load_images
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError, check_on_error, handle_error
from keras_frcnn.detection.detector import Detector
from keras_frcnn.detection.draw import draw_detections
from keras_frcnn.files import atomic_write, local_only

logger = logging.getLogger("keras_frcnn.detection")


@dataclasses.dataclass
class DetectionRun:
    """What ``detect_images`` did: ``found`` {image path: [detection]} of every image
    processed, in order, and ``skipped``, the one-line message of every image left out
    (unreadable, undecodable, too large)."""
    found: dict
    skipped: list

    def summary(self, output_dir):
        """The run's last line: how many images were skipped, and where the rest went."""
        done = f"pictures and detections.json of {len(self.found)} images in {output_dir}"
        if not self.skipped:
            return done
        return (f"{len(self.skipped)} of {len(self.found) + len(self.skipped)} images skipped "
                f"(a warning each above); {done}")


def check_output_dir(output_dir, flag="--output_dir"):
    """``output_dir`` as a Path, created if missing; ValueError naming it if it is a file
    or cannot be made, or a URL (pictures are written locally; detection on Beam writes
    its files to URLs: docs/scale.md)."""
    output_dir = Path(local_only(output_dir, flag, "give a local folder, or run detection on "
                                 "Beam, whose outputs may be URLs"))
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{flag}={output_dir} is a file, not a folder; give a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag}={output_dir}: cannot create it ({err.strerror}); give "
                         "a writable folder") from None
    return output_dir


def detect_images(model, paths, class_names, detector_config, proposals_config, output_dir,
                  score_threshold=0.5, progress=True, max_image_pixels=MAX_IMAGE_PIXELS,
                  overlap=True, on_error="skip", recursive=False, exif_orientation=True):
    """Detects objects in ``paths`` (files or folders); returns a DetectionRun.

    Writes ``<output_dir>/<image id>.detections.jpg`` per image (the file name
    without suffix, made unique: data/folder.py ``load_images``) as soon as it is
    done, and ``<output_dir>/detections.json``: {image path: [{"class", "score", "box"
    (0-based x1, y1, x2, y2)}]} of every detection at or above the threshold, of every
    image done, also when a later one stops the run. Images above ``max_image_pixels``
    (config.dataset.max_image_pixels; 0: no limit) are refused from their header,
    before anything is decoded.

    ``on_error``: "skip" (default; "" too) leaves out an image that cannot be read or
    decoded, with a warning, and goes on; "raise" stops at the first. ``recursive``:
    folders' subfolders too (without it, subfolders holding images are named in a
    warning).

    ``overlap``: the network runs on each image while worker processes compute the
    next images' proposals (sources.ProposalStream); False computes every image's
    proposals first. Both give the same files; overlapping is faster on real photos
    (docs/benchmarks.md, "Detection throughput").
    """
    from keras_frcnn.proposals.sources import ProposalStream, proposals_for_dataset

    check_on_error(on_error)
    on_error = on_error or "skip"
    detector = Detector(model, detector_config)
    if len(class_names) != detector.num_classes - 1:
        raise ValueError(f"{len(class_names)} class names given for a model with "
                         f"{detector.num_classes - 1} object classes")
    output_dir = check_output_dir(output_dir)  # before any worker starts
    dataset = load_images(paths, tuple(class_names), max_image_pixels=max_image_pixels,
                          on_error=on_error, recursive=recursive,
                          exif_orientation=exif_orientation)
    run = DetectionRun({}, list(dataset.metadata.get("skipped", ())))
    if overlap:
        stream = ProposalStream(dataset, proposals_config, progress)
        pairs = stream.pairs(on_error)
    else:
        stream = contextlib.nullcontext()
        proposals = proposals_for_dataset(dataset, proposals_config, progress,
                                          on_error=on_error)
        run.skipped += [f"{r.image_path}: no proposals (could not be decoded)"
                        for r in dataset.records if r.image_id not in proposals]
        pairs = ((r, proposals[r.image_id]) for r in dataset.records
                 if r.image_id in proposals)
    try:
        with stream:
            for record, boxes in pairs:
                try:
                    rows = _detect_one(detector, record, boxes, class_names, score_threshold,
                                       output_dir, dataset)
                except DatasetError as err:
                    handle_error(err, on_error)
                    run.skipped.append(str(err))
                    continue
                run.found[str(record.image_path)] = rows
    finally:  # what was done is listed, whatever stopped the run
        if overlap:
            run.skipped += stream.skipped
        atomic_write(output_dir / "detections.json", json.dumps(run.found, indent=1) + "\n")
    return run


def _detect_one(detector, record, proposals, class_names, score_threshold, output_dir,
                dataset):
    """The listed detections of one image; writes its picture."""
    image = read_image_bgr(record.image_path, dataset.max_image_pixels,
                           dataset.exif_orientation)
    dets = detector.detect(image, proposals)
    ok, jpg = cv2.imencode(".jpg", draw_detections(image, dets, class_names, score_threshold))
    if ok:
        atomic_write(output_dir / f"{record.image_id}.detections.jpg",
                     jpg.tobytes())
    keep = dets.select(dets.scores >= score_threshold)
    return [{"class": class_names[int(k) - 1], "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for b, s, k in zip(keep.boxes, keep.scores, keep.classes)]
