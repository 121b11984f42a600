"""COCO evaluation through pycocotools' COCOeval.

Results follow the official format: one ``{"image_id", "category_id", "bbox",
"score"}`` per detection, ``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` (the
inverse of the reader's conversion, as the release writes them), category ids
from ``dataset.metadata["category_ids"]``.
"""

import contextlib
import io
import json
from pathlib import Path


from keras_frcnn.evaluation.detection_files import coco_rows
from keras_frcnn.files import atomic_write

COCO_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")


def coco_results(dataset, detections):
    """The results list of ``detections`` ({image_id: Detections}) on a COCO dataset."""
    category_ids = dataset.metadata.get("category_ids")
    if not category_ids:
        raise ValueError(f"{dataset.name} is not a COCO dataset (no category ids): use the "
                         "VOC metric, or load the split with dataset.kind='coco'")
    results = []
    for image_id, dets in detections.items():
        results += coco_rows(int(image_id), dets.boxes, dets.scores, dets.classes, category_ids)
    return results


def evaluate_coco(dataset, detections, results_file=None):
    """COCOeval's 12 numbers (dict, COCO_METRICS) and its printed summary.

    The ground truth is the dataset's original annotation file, so crowd
    regions are handled as COCOeval defines. Images without detections count.
    """
    from pycocotools.cocoeval import COCOeval

    from keras_frcnn.data.coco import coco_api

    results = coco_results(dataset, detections)
    if results_file is not None:
        atomic_write(Path(results_file), json.dumps(results))
    if not results:
        return dict.fromkeys(COCO_METRICS, 0.0), "no detections: every COCO metric is 0\n"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ground_truth = coco_api(dataset.metadata["annotation_file"])
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluator.params.imgIds = [int(r.image_id) for r in dataset.records]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = printed.getvalue()
    return dict(zip(COCO_METRICS, (float(v) for v in evaluator.stats))), summary[
        summary.find(" Average Precision"):]
