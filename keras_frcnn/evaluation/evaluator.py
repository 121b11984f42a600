"""Dataset-level VOC evaluation: per-class AP, mAP, result files and a summary.

Detections are ``{image_id: Detections}`` (keras_frcnn.detection: boxes [n, 4]
0-based inclusive, scores [n], classes [n] in 1..K), as the detector returns
them or as ``load_detections`` reads them back, so saved detections can be
re-scored without running the network again (the release's ``reval``), with
NMS re-applied at another threshold if asked.

Files (``write_voc_results``): ``comp4_det_<set>_<class>.txt``, one line per
detection, ``<image_id> <score> <x1> <y1> <x2> <y2>`` with 1-based VOC
coordinates, the format of the VOC evaluation server and the release.
"""

import dataclasses
import io
import logging
from pathlib import Path

import numpy as np

from keras_frcnn.evaluation.voc import curve_ap, match_detections
from keras_frcnn.files import atomic_write

logger = logging.getLogger("keras_frcnn.evaluation")


@dataclasses.dataclass(frozen=True)
class VocResult:
    classes: tuple  # names, class k >= 1 is classes[k - 1]
    aps: dict  # name -> AP (NaN: no ground truth)
    curves: dict  # name -> PRCurve
    iou_threshold: float
    use_07_metric: bool
    devkit_ge: bool = False  # matches at IoU >= threshold (MATLAB devkit), else >

    @property
    def match_rule(self):
        """"IoU >= 0.5" or "IoU > 0.5": how a detection matched, for reports."""
        return f"IoU {'>=' if self.devkit_ge else '>'} {self.iou_threshold}"

    @property
    def mean_ap(self):
        values = [ap for ap in self.aps.values() if np.isfinite(ap)]
        return float(np.mean(values)) if values else float("nan")

    def table(self):
        """The per-class AP table in the layout of the paper's Table 1 (AP in %)."""
        names = [name[:6] for name in self.classes] + ["mAP"]
        values = [self.aps[name] for name in self.classes] + [self.mean_ap]
        cells = ["n/a" if not np.isfinite(v) else f"{100 * v:.1f}" for v in values]
        widths = [max(len(n), len(c)) for n, c in zip(names, cells)]
        return "\n".join(" ".join(s.rjust(w) for s, w in zip(row, widths))
                         for row in (names, cells))

    def to_dict(self):
        return {"metric": "voc07_11point" if self.use_07_metric else "voc_area",
                "iou_threshold": self.iou_threshold,
                "devkit_ge": self.devkit_ge,
                "match_rule": self.match_rule,
                "mAP": None if not np.isfinite(self.mean_ap) else self.mean_ap,
                "AP": {name: (None if not np.isfinite(ap) else ap)
                       for name, ap in self.aps.items()}}


def ground_truth_by_class(dataset):
    """{class k: {image_id: (boxes, difficult)}} over every image of the split."""
    by_class = {}
    for k in range(1, dataset.num_classes):
        by_class[k] = {r.image_id: (r.boxes[r.classes == k], r.difficult[r.classes == k])
                       for r in dataset.records}
    return by_class


def detections_by_class(detections, num_classes):
    """{class k: [(image_id, score, box), ...]} from ``{image_id: Detections}``."""
    rows = {k: [] for k in range(1, num_classes)}
    for image_id, dets in detections.items():
        classes = np.asarray(dets.classes).reshape(-1)
        bad = classes[(classes < 1) | (classes >= num_classes)]
        if len(bad):
            raise ValueError(f"detections of image {image_id!r} have class {int(bad[0])}, "
                             f"outside 1..{num_classes - 1} of this dataset")
        for box, score, k in zip(np.asarray(dets.boxes).reshape(-1, 4),
                                 np.asarray(dets.scores).reshape(-1), classes):
            rows[int(k)].append((image_id, float(score), box))
    return rows


def evaluate_voc(dataset, detections, iou_threshold=0.5, use_07_metric=False, devkit_ge=False):
    """VocResult of ``detections`` ({image_id: Detections}) on ``dataset``."""
    known = {r.image_id for r in dataset.records}
    unknown = sorted(str(i) for i in detections if i not in known)
    if unknown:
        raise ValueError(f"detections for {len(unknown)} images not in {dataset.name} "
                         f"(first: {unknown[:3]}); evaluate against the split they came from")
    gt = ground_truth_by_class(dataset)
    rows = detections_by_class(detections, dataset.num_classes)
    aps, curves = {}, {}
    for k, name in enumerate(dataset.classes, start=1):
        curve = match_detections(rows[k], gt[k], iou_threshold, devkit_ge)
        curves[name] = curve
        aps[name] = curve_ap(curve, use_07_metric, devkit_ge)
        if curve.num_positives == 0:
            logger.warning("class %r has no ground truth in %s: AP n/a, left out of the mean",
                           name, dataset.name)
    return VocResult(tuple(dataset.classes), aps, curves, iou_threshold, use_07_metric,
                     devkit_ge)


def write_voc_results(detections, classes, directory, image_set):
    """comp4_det_<image_set>_<class>.txt per class (1-based boxes); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = detections_by_class(detections, len(classes) + 1)
    paths = []
    for k, name in enumerate(classes, start=1):
        lines = [f"{image_id} {score:.3f} {box[0] + 1:.1f} {box[1] + 1:.1f} {box[2] + 1:.1f} "
                 f"{box[3] + 1:.1f}\n" for image_id, score, box in rows[k]]
        path = directory / f"comp4_det_{image_set}_{name}.txt"
        atomic_write(path, "".join(lines))
        paths.append(path)
    return paths


def save_detections(detections, path):
    """Writes {image_id: Detections} to one .npz (atomically) for later re-scoring."""
    ids = list(detections)
    counts = np.array([len(detections[i]) for i in ids], np.int64)

    def cat(name, shape, dtype):
        parts = [np.asarray(getattr(detections[i], name), dtype).reshape(shape) for i in ids]
        return np.concatenate(parts) if parts else np.zeros((0,) + shape[1:], dtype)

    buffer = io.BytesIO()
    np.savez_compressed(buffer, image_ids=np.array(ids, dtype=str), counts=counts,
                        boxes=cat("boxes", (-1, 4), np.float32),
                        scores=cat("scores", (-1,), np.float32),
                        classes=cat("classes", (-1,), np.int32))
    atomic_write(Path(path), buffer.getvalue())


def load_detections(path):
    """{image_id: Detections} written by ``save_detections``."""
    from keras_frcnn.detection.postprocess import Detections

    try:
        with np.load(path) as data:
            ids, counts = list(data["image_ids"]), data["counts"]
            boxes, scores, classes = data["boxes"], data["scores"], data["classes"]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a detections file written by save_detections "
                         f"({err})") from err
    ends = np.cumsum(counts)
    starts = ends - counts
    return {str(i): Detections(boxes[a:b], scores[a:b], classes[a:b])
            for i, a, b in zip(ids, starts, ends)}


def reapply_nms(detections, iou_threshold):
    """Detections with per-class NMS re-applied at ``iou_threshold`` (as ``reval``)."""
    from keras_frcnn.detection.postprocess import nms

    out = {}
    for image_id, dets in detections.items():
        keep = []
        for k in np.unique(dets.classes):
            index = np.nonzero(dets.classes == k)[0]
            keep.append(index[nms(dets.boxes[index], dets.scores[index], iou_threshold).numpy()])
        out[image_id] = dets.select(np.sort(np.concatenate(keep)) if keep else
                                    np.zeros(0, np.int64))
    return out
