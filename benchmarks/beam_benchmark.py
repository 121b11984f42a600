"""Beam pipelines against one machine's tools: selective search and batch detection on
Apache Beam's DirectRunner (one worker, and two worker processes) against today's
process pool (bin/proposals.py) and bin/detect.py, on the same photos, in one run.

The photos are the kangaroo test split (configs/kangaroo.py; --images: the first N).
Proposals: ``compute_selective_search`` with a process pool of --workers (0: one per
core), then the Beam pipeline (keras_frcnn/beam/proposals.py) in one process
(DirectRunner in_memory) and in two worker processes (multi_processing), each into an
empty cache; every cache must equal the first byte for byte. Detection, the cache
warm: ``detect_images`` (bin/detect.py after loading its model: network with the flip
test, pictures, detections.json) against the Beam pipeline (keras_frcnn/beam/
detection.py: the exported SavedModel through RunInference, detections.jsonl and
coco_results.json) on one and on two workers; the Beam runs' detections at
bin/detect.py's 0.5 must be bin/detect.py's. Times run from the call to its return,
Beam's start-up (its worker processes, each loading TensorFlow and the SavedModel)
included, since a user pays it; bin/detect.py's model load is outside, as in the
detection-throughput benchmark.

The model is configs/kangaroo.py's untrained (detect_throughput_benchmark.py's
``untrained_workdir``): the time does not depend on training.

    python benchmarks/beam_benchmark.py --output docs/benchmarks.md
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads
from detect_throughput_benchmark import outputs, untrained_workdir

SECTION = "beam_benchmark"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kangaroo.py"
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
TWO_PROCESSES = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                 "--direct_num_workers=2"]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def compare(expected, found, threshold=0.5, score_tolerance=1e-3, box_tolerance=1.0):
    """(largest score difference, largest box difference in pixels) between the
    detections of bin/detect.py (``expected``: {path: rows, scores rounded to 4 decimals,
    boxes to 1}) and of the Beam run (``found``: {path: rows}), matched in order by
    class; SystemExit naming the image where they differ by more than the tolerances.
    The SavedModel resizes with TensorFlow's ScaleAndTranslate where the Detector uses
    OpenCV, which agree to about 1e-4 in the image (tests/test_export.py), so scores
    differ in the fourth decimal; a detection that close to the 0.5 threshold on one side
    may sit below it on the other, and is left out of the comparison."""
    worst_score = worst_box = 0.0
    for path, rows in expected.items():
        near = [r for r in found.get(path, ()) if r["score"] >= threshold - score_tolerance]
        mine = [r for r in rows if r["score"] >= threshold + score_tolerance]
        near_expected = [r for r in rows if r["score"] >= threshold - score_tolerance]
        theirs = [r for r in near if r["score"] >= threshold + score_tolerance]
        if not (len(mine) <= len(near) and len(theirs) <= len(near_expected)):
            raise SystemExit(f"{path}: {len(rows)} detections at 0.5 from bin/detect.py, "
                             f"{len(theirs)} from Beam")
        for a in mine:
            candidates = [b for b in near if b["class"] == a["class"]]
            best = min(candidates, default=None, key=lambda b: max(
                abs(x - y) for x, y in zip(a["box"], b["box"])))
            if best is None:
                raise SystemExit(f"{path}: a {a['class']} at {a['box']} has no Beam detection")
            score = abs(a["score"] - best["score"])
            box = max(abs(x - y) for x, y in zip(a["box"], best["box"]))
            if score > score_tolerance or box > box_tolerance:
                raise SystemExit(f"{path}: {a} against Beam's {best}")
            worst_score, worst_box = max(worst_score, score), max(worst_box, box)
    return worst_score, worst_box


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/kangaroo", help="kangaroo folder")
    parser.add_argument("--weights",
                        default="data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5",
                        help="MobileNetV2 ImageNet weights file, or imagenet")
    parser.add_argument("--workers", type=int, default=0,
                        help="the process pool's workers (0: one per core)")
    parser.add_argument("--images", type=int, default=0, help="first N test photos (0: all)")
    parser.add_argument("--output", help="Markdown file whose section to rewrite")
    args = parser.parse_args()

    import logging

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    from keras_frcnn.beam import pipeline_options
    from keras_frcnn.beam.detection import detect_on_beam
    from keras_frcnn.beam.proposals import run_proposals_pipeline
    from keras_frcnn.configs import load_config_file
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.detection.run import detect_images
    from keras_frcnn.evaluation.run import detector_config
    from keras_frcnn.export import export_workdir
    from keras_frcnn.proposals.selective_search import compute_selective_search
    from keras_frcnn.workdirs import load_inference_model

    config = load_config_file(CONFIG)
    config.dataset.root, config.model.weights = args.data, args.weights
    records = load_dataset(config.dataset, config.dataset.test_split).records
    paths = [r.image_path for r in records[:args.images or None]]
    mode = config.proposals.mode
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for path in paths:  # the photos in the file cache for every run alike
            Path(path).read_bytes()
        seconds, _ = timed(compute_selective_search, paths, tmp / "pool", mode,
                           args.workers or None, progress=False)
        reference = outputs(tmp / "pool")
        rows.append(("proposals", "process pool (bin/proposals.py)",
                     args.workers or "one per core", seconds))
        for label, options, workers in (("Beam, DirectRunner in one process", IN_MEMORY, 1),
                                        ("Beam, DirectRunner multi_processing", TWO_PROCESSES,
                                         2)):
            cache = tmp / f"beam_{workers}"
            seconds, counts = timed(run_proposals_pipeline, pipeline_options(options), paths,
                                    cache, tmp / f"dead_{workers}.txt", mode)
            if counts["computed"] != len(paths) or outputs(cache) != reference:
                raise SystemExit(f"{label}: the cache differs from the process pool's "
                                 f"({counts})")
            rows.append(("proposals", label, workers, seconds))
            print(rows[-1], flush=True)

        config.proposals.cache_dir = str(tmp / "pool")  # warm: detection alone is timed
        untrained_workdir(config, tmp / "workdir")
        export_workdir(config, tmp / "workdir", export_dir=tmp / "export" / "1", verify=False)
        model = load_inference_model(tmp / "workdir")
        detect_images(model, paths[:2], list(config.dataset.classes), detector_config(config),
                      config.proposals, tmp / "warm_up", progress=False)
        seconds, run = timed(detect_images, model, paths, list(config.dataset.classes),
                             detector_config(config), config.proposals, tmp / "detect",
                             progress=False, max_image_pixels=config.dataset.max_image_pixels)
        rows.append(("detection", "bin/detect.py (detect_images)", 1, seconds))
        print(rows[-1], flush=True)
        expected = run.found
        differences = []
        for label, options, workers in (("Beam, DirectRunner in one process", IN_MEMORY, 1),
                                        ("Beam, DirectRunner multi_processing", TWO_PROCESSES,
                                         2)):
            out = tmp / f"beam_detect_{workers}"
            seconds, _ = timed(detect_on_beam, pipeline_options(options), config,
                               tmp / "export" / "1", out, images=paths)
            found = {entry["image"]: entry["detections"] for entry in
                     map(json.loads, (out / "detections.jsonl").read_text().splitlines())}
            differences.append(compare(expected, found))
            rows.append(("detection", label, workers, seconds))
            print(rows[-1], flush=True)
        kept = sum(len(v) for v in expected.values())
        score_gap = max(d[0] for d in differences)
        box_gap = max(d[1] for d in differences)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    lines = ["## Beam pipelines on one machine", "",
             f"Machine: {report.machine_description()}. Run {stamp}. The {len(paths)} kangaroo "
             f"test photos; selective search in {mode} mode into an empty cache per run (each "
             "Beam cache equal to the process pool's, byte for byte), then detection with the "
             "cache warm by configs/kangaroo.py's model untrained, with its flip test "
             f"({kept} detections at 0.5 from bin/detect.py; Beam's the same ones, scores within "
             f"{max(score_gap, 5e-5):.0e} and boxes within {box_gap:.2f} px, leaving out any "
             "within 1e-3 of the threshold: the export resizes with TensorFlow, the Detector "
             "with OpenCV). bin/detect.py is timed after a warm-up, without its model load; "
             "Beam's times include its "
             "start-up: worker processes, and each loading TensorFlow and the SavedModel "
             "(`python benchmarks/beam_benchmark.py --output docs/benchmarks.md`).", "",
             "| stage | how | workers | seconds | images/s | against one machine's tool |",
             "|---|---|---:|---:|---:|---:|"]
    base = {}
    for stage, label, workers, seconds in rows:
        base.setdefault(stage, seconds)
        lines.append(f"| {stage} | {label} | {workers} | {seconds:.1f} | "
                     f"{len(paths) / seconds:.2f} | {base[stage] / seconds:.2f}x |")
    lines += ["", "On one machine Beam adds start-up and hand-over costs to the same work; "
              "what it buys is the same pipeline on many machines (docs/scale.md), where the "
              "process pool stops at one."]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
