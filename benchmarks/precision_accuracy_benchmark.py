"""mAP of trained models evaluated in float32, bfloat16 and float16 (test.precision).

Each workdir's model is evaluated on its config's test split (its config.json: the
settings it was trained and tested with) once per precision, proposals first, in
this one process, and the table gives each mAP and its difference from float32
(issue 46's bar: within 0.3 mAP). float16 runs emulated on a CPU without float16
arithmetic: slower, the same numbers a GPU computes in float16 to rounding.

    python benchmarks/precision_accuracy_benchmark.py --output docs/benchmarks.md \
        --workdirs=workdirs/demo,workdirs/kangaroo,workdirs/kangaroo_seed1
"""

import argparse
import tempfile
import time
from pathlib import Path

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

from keras_frcnn.evaluation.run import evaluate
from keras_frcnn.precision import PRECISIONS, unsupported_reason
from keras_frcnn.predictor import experiment_config

SECTION = "precision_accuracy_benchmark"
BAR = 0.3  # mAP points


def evaluate_in(workdir, name, folder):
    config = experiment_config(Path(workdir) / "config.json")
    with config.unlocked():
        config.test.precision = name
        config.test.picture_images = 0
    start = time.perf_counter()
    metrics = evaluate(config, workdir, output_dir=folder, progress=False, overlap=False)
    if metrics["precision"] != name:  # cannot happen after main's check; never mislabel
        raise SystemExit(f"{workdir}: evaluated in {metrics['precision']}, not {name}")
    return {"mAP": 100.0 * float(metrics["mAP"]), "seconds": time.perf_counter() - start,
            "network": metrics["timing"]["network_seconds_per_image"],
            "images": metrics["timing"]["images"], "kind": config.dataset.kind,
            "backbone": config.model.backbone, "head": config.model.get("head", "fc")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", required=True, help="comma-separated training workdirs")
    parser.add_argument("--labels", help="comma-separated names for the table (default: the "
                        "workdirs' names)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--output", default=None, help="Markdown file to update")
    args = parser.parse_args()
    workdirs = args.workdirs.split(",")
    labels = args.labels.split(",") if args.labels else [Path(w).name for w in workdirs]
    if len(labels) != len(workdirs):
        parser.error(f"{len(labels)} labels for {len(workdirs)} workdirs")
    missing = [w for w in workdirs if not (Path(w) / "model.keras").is_file()]
    if missing:
        parser.error(f"no trained model in {missing}: train them first (bin/train.py; "
                     "run_all.py's kangaroo benchmark trains workdirs/kangaroo*)")
    names = args.precisions.split(",")
    unknown = sorted(set(names) - set(PRECISIONS))
    if unknown or names[0] != "float32":
        parser.error(f"--precisions: float32 first, then any of {list(PRECISIONS[1:])}; "
                     f"got {names}")
    if "bfloat16" in names and unsupported_reason("bfloat16"):
        parser.error(f"bfloat16: {unsupported_reason('bfloat16')}; the Detector would run "
                     "in float32 (drop it from --precisions)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, workdir in zip(labels, workdirs):
            results = {name: evaluate_in(workdir, name, Path(tmp) / label / name)
                       for name in names}
            rows.append((label, results))
            print(label, {n: round(r["mAP"], 2) for n, r in results.items()}, flush=True)
    lines = ["## Reduced precision: accuracy of trained models", "",
             f"Machine: {report.machine_description()}.", "",
             "Each model evaluated on its test split with its own config.json, once per "
             "precision (`python benchmarks/precision_accuracy_benchmark.py "
             "--workdirs=... --output docs/benchmarks.md`); the bar is "
             f"{BAR} mAP points from float32. Network time: the Detector's seconds per test "
             "image (these images' sizes and proposals, not the floor table's shape).", "",
             "| model | backbone | images | " + " | ".join(f"{n} mAP" for n in names)
             + " | largest difference | " + " | ".join(f"{n} network s" for n in names) + " |",
             "|---|---|---:|" + "---:|" * (2 * len(names) + 1)]
    worst = 0.0
    for label, results in rows:
        base = results["float32"]
        diff = max(abs(r["mAP"] - base["mAP"]) for r in results.values())
        worst = max(worst, diff)
        lines.append(f"| {label} | {base['backbone']} ({base['head']}) | {base['images']} | "
                     + " | ".join(f"{r['mAP']:.2f}" for r in results.values())
                     + f" | {diff:.2f} | "
                     + " | ".join(f"{r['network']:.3f}" for r in results.values()) + " |")
    verdict = "every model within" if worst <= BAR else "NOT every model within"
    lines += ["", f"Largest difference from float32: {worst:.2f} mAP points ({verdict} "
              f"{BAR})."]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
