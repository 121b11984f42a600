"""How much the release's VOC result files move AP (docs/fidelity.md, row 40).

The release scores VOC through the MATLAB devkit, which reads result files with
scores printed to 3 decimals and 1-based boxes to 1 decimal
(pascal_voc.py ``_write_voc_results_file``); ties between rounded scores then
fall back to file order (image order). We score the float32 detections in
memory. This re-scores a workdir's saved detections both ways, with the
config's AP rules, and prints the two mAPs; no network runs.

    python benchmarks/result_file_rounding.py --config=configs/demo.py \
        --detections=workdirs/demo/eval/test/detections.npz
"""

import argparse

import numpy as np

from keras_frcnn.configs import load_config_file, split_sections
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.detection.postprocess import Detections
from keras_frcnn.evaluation import evaluate_voc, load_detections


def as_written(detections):
    """The detections as the devkit reads them back from the release's result files.

    Image order stays (the devkit's tie order); scores and boxes are rounded as
    ``'{:.3f} {:.1f} {:.1f} {:.1f} {:.1f}'`` prints them (+1 and back: the same
    rounding on 0-based values up to a half-way case)."""
    return {image_id: Detections(np.round(d.boxes + 1, 1).astype(np.float32) - 1,
                                 np.round(d.scores, 3).astype(np.float32), d.classes)
            for image_id, d in detections.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--detections", required=True, help="a detections.npz of evaluate")
    parser.add_argument("--split", default="")
    parser.add_argument("--paper_rules", action="store_true",
                        help="score as the paper: 11-point AP, a match at IoU >= 0.5")
    args = parser.parse_args()
    config = load_config_file(args.config)
    split = args.split or config.dataset.test_split
    dataset = load_dataset(split_sections(config, split)[0], split)
    detections = load_detections(args.detections)
    t = config.test
    if args.paper_rules:
        t.use_07_metric, t.devkit_ge = True, True
    for name, dets in (("in memory (ours)", detections), ("result files (release)",
                                                           as_written(detections))):
        result = evaluate_voc(dataset, dets, t.iou_threshold, t.use_07_metric, t.devkit_ge)
        print(f"{name:24s} mAP {100 * result.mean_ap:.2f} ({result.match_rule}, "
              f"{'11-point' if t.use_07_metric else 'area'})")


if __name__ == "__main__":
    main()
