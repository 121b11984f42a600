"""mAP of trained models evaluated in float32, bfloat16 and float16 (test.precision).

Each model is evaluated on its config's test split (its workdir's config.json: the
settings it was trained and tested with) once per precision, proposals first, in this
one process, and the table gives each mAP and its difference from float32 (issue 46's
bar: within 0.3 mAP). float16 runs emulated on a CPU without float16 arithmetic:
slower, the same numbers a GPU computes in float16 to rounding.

The models: ``--workdirs`` (training workdirs), and ``--study`` variants of a
finished study (frcnn-study), found through the study's recorded results
(docs/study/results/<experiment>.json: each seed's run folder under
<study_dir>/runs). A study run whose folder is gone is listed as missing, not
evaluated. The section records the command that made it.

    python benchmarks/precision_accuracy_benchmark.py --output docs/benchmarks.md \
        --study_dir=workdirs/study --study=sampling:n2,sampling:n2_as_n8,finetune:default
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

from keras_frcnn.evaluation.run import evaluate
from keras_frcnn.precision import PRECISIONS, unsupported_reason
from keras_frcnn.predictor import experiment_config

SECTION = "precision_accuracy_benchmark"
BAR = 0.3  # mAP points
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "study" / "results"
# The study models run_all.py evaluates: the demo main job's setting (N = 2, 3000 steps),
# N = 2 trained 12000 steps, and configs/kangaroo.py's frozen set (docs/study.md).
STUDY_MODELS = "sampling:n2,sampling:n2_as_n8,finetune:default"


def study_models(study_dir, variants, results=RESULTS):
    """([(label, workdir)], [missing labels]) of ``variants`` ("experiment:variant", ...)
    from the study's recorded results: every seed of each, in seed order."""
    found, missing = [], []
    for item in variants.split(","):
        experiment, _, variant = item.partition(":")
        path = Path(results) / f"{experiment}.json"
        if not path.is_file():
            raise SystemExit(f"--study={item}: no recorded study results {path}")
        rows = [r for r in json.loads(path.read_text())["rows"]
                if r["variant"] == variant and not r["test"]]
        if not rows:
            raise SystemExit(f"--study={item}: {path} has no variant {variant!r}")
        for row in sorted(rows, key=lambda r: r["seed"]):
            label = f"{experiment} {variant} seed {row['seed']}"
            folder = Path(study_dir) / "runs" / row["run"]
            if (folder / "model.keras").is_file():
                found.append((label, str(folder)))
            else:
                missing.append(f"{label} ({folder})")
    return found, missing


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
    parser.add_argument("--workdirs", default="", help="comma-separated training workdirs")
    parser.add_argument("--study_dir", default="workdirs/study")
    parser.add_argument("--study", default="",
                        help=f"comma-separated experiment:variant of the study (e.g. "
                             f"{STUDY_MODELS})")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--output", default=None, help="Markdown file to update")
    args = parser.parse_args()
    names = args.precisions.split(",")
    unknown = sorted(set(names) - set(PRECISIONS))
    if unknown or names[0] != "float32":
        parser.error(f"--precisions: float32 first, then any of {list(PRECISIONS[1:])}; "
                     f"got {names}")
    if "bfloat16" in names and unsupported_reason("bfloat16"):
        print(f"bfloat16: {unsupported_reason('bfloat16')}; the Detector would run in float32, "
              "so nothing is measured here (run it on a CPU with bfloat16, or drop bfloat16 "
              "from --precisions)")
        return
    models = [(Path(w).name, w) for w in args.workdirs.split(",") if w]
    absent = [w for _, w in models if not (Path(w) / "model.keras").is_file()]
    if absent:
        parser.error(f"no trained model in {absent}: train them first (bin/train.py)")
    missing = []
    if args.study:
        found, missing = study_models(args.study_dir, args.study)
        models += found
    if not models:
        print("no model to evaluate: give --workdirs or --study (finished study runs); "
              f"missing: {missing}")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, workdir) in enumerate(models):
            results = {name: evaluate_in(workdir, name, Path(tmp) / str(k) / name)
                       for name in names}
            rows.append((label, results))
            print(label, {n: round(r["mAP"], 2) for n, r in results.items()}, flush=True)
    command = " ".join(["python", "benchmarks/precision_accuracy_benchmark.py",
                        *map(shlex.quote, sys.argv[1:])])
    lines = ["## Reduced precision: accuracy of trained models", "",
             f"Machine: {report.machine_description()}.", "",
             "Each model evaluated on its test split with its own config.json, once per "
             f"precision (`{command}`); the bar is {BAR} mAP points from float32. Network "
             "time: the Detector's seconds per test image (these images' sizes and "
             "proposals, not the floor table's shape).", "",
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
    if missing:
        lines += ["", "Study runs whose model is gone (not evaluated): " + "; ".join(missing)
                  + "."]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
