"""The detection run behind bin/detect.py: image files in, proposals computed (and
cached) as configured, detections drawn into pictures and listed in a JSON file.
(evaluation/run.py is its counterpart for bin/evaluate.py.)"""

import contextlib
import json
from pathlib import Path

import cv2

from keras_frcnn.data.folder import load_images
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import MAX_IMAGE_PIXELS
from keras_frcnn.detection.detector import Detector
from keras_frcnn.detection.draw import draw_detections
from keras_frcnn.files import atomic_write


def detect_images(model, paths, class_names, detector_config, proposals_config, output_dir,
                  score_threshold=0.5, progress=True, max_image_pixels=MAX_IMAGE_PIXELS,
                  overlap=True):
    """Detects objects in ``paths`` (files or folders); returns {image path: [detection]}.

    Writes ``<output_dir>/<image id>.detections.jpg`` per image (the file name
    without suffix, made unique: data/folder.py ``load_images``) and
    ``<output_dir>/detections.json`` with every detection at or above the
    threshold: {"image", "class", "score", "box" (0-based x1, y1, x2, y2)}.
    Images above ``max_image_pixels`` (config.dataset.max_image_pixels; 0: no
    limit) are refused from their header, before anything is decoded.

    ``overlap``: the network runs on each image while worker processes compute the
    next images' proposals (sources.ProposalStream); False computes every image's
    proposals first. Both give the same files; overlapping is faster on real photos
    (docs/benchmarks.md, "Detection throughput"). When a worker fails (an undecodable
    image), the pictures of the images before it are already written.
    """
    from keras_frcnn.proposals.sources import ProposalStream, proposals_for_dataset

    detector = Detector(model, detector_config)
    if len(class_names) != detector.num_classes - 1:
        raise ValueError(f"{len(class_names)} class names given for a model with "
                         f"{detector.num_classes - 1} object classes")
    dataset = load_images(paths, tuple(class_names), max_image_pixels=max_image_pixels)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)  # before any worker starts
    if overlap:
        stream = ProposalStream(dataset, proposals_config, progress)
        pairs = stream.pairs()
    else:
        stream = contextlib.nullcontext()
        proposals = proposals_for_dataset(dataset, proposals_config, progress)
        pairs = ((record, proposals[record.image_id]) for record in dataset.records)
    with stream:
        found = {str(record.image_path): _detect_one(detector, record, boxes, class_names,
                                                     score_threshold, output_dir,
                                                     dataset.max_image_pixels)
                 for record, boxes in pairs}
    atomic_write(output_dir / "detections.json", json.dumps(found, indent=1) + "\n")
    return found


def _detect_one(detector, record, proposals, class_names, score_threshold, output_dir,
                max_image_pixels):
    """The listed detections of one image; writes its picture."""
    image = read_image_bgr(record.image_path, max_image_pixels)
    dets = detector.detect(image, proposals)
    ok, jpg = cv2.imencode(".jpg", draw_detections(image, dets, class_names, score_threshold))
    if ok:
        atomic_write(output_dir / f"{record.image_id}.detections.jpg",
                     jpg.tobytes())
    keep = dets.select(dets.scores >= score_threshold)
    return [{"class": class_names[int(k) - 1], "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for b, s, k in zip(keep.boxes, keep.scores, keep.classes)]
