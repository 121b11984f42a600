"""Multi-task versus classification-only training on the demo set (paper Table 6).

Trains the demo config twice, identical except for the weight of the box loss:
lambda = 1 (multi-task) and lambda = 0 (classification only), and evaluates both
on the demo test split, (a) as trained, with box regression at test time where
the model has it, and (b) both without box regression (proposals scored as
they are), the comparison of the paper's Table 6 that isolates the effect of
multi-task training on classification.

    python benchmarks/multitask_benchmark.py --output docs/benchmarks.md
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import report
from keras_frcnn.configs import load_config_file
from keras_frcnn.evaluation.run import evaluate
from keras_frcnn.training import train
from keras_frcnn.workdirs import load_inference_model

SECTION = "multitask_benchmark"


def demo_config(loss_lambda, steps):
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "demo.py")
    config.train.loss_lambda = loss_lambda
    if steps:
        config.train.steps = steps
    config.test.picture_images = 0
    return config


def without_regression(workdir):
    """A copy of the workdir's model whose bbox_pred emits zero deltas."""
    model = load_inference_model(workdir)
    layer = model.get_layer("bbox_pred")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    path = Path(workdir) / "no_regression.keras"
    model.save(path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="override train.steps")
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--output", help="Markdown file whose section to rewrite")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="multitask-"))
    rows = []
    for loss_lambda in (1.0, 0.0):
        config = demo_config(loss_lambda, args.steps)
        workdir = root / f"lambda{loss_lambda:g}"
        start = time.perf_counter()
        train(config, workdir, progress=False)
        seconds = time.perf_counter() - start
        as_trained = evaluate(config, workdir, progress=False)["mAP"]
        plain = evaluate(config, workdir, model_path=without_regression(workdir),
                         output_dir=workdir / "eval_no_regression", progress=False)["mAP"]
        print(f"lambda {loss_lambda:g}: {seconds:.0f} s, mAP {as_trained:.3f}, "
              f"without regression {plain:.3f}", flush=True)
        rows.append((loss_lambda, config.train.steps, seconds, as_trained, plain))
    lines = ["## Multi-task versus classification-only training", "",
             f"Machine: {report.machine_description()}. The demo config trained from the "
             "same seed with lambda = 1 and lambda = 0, VOC mAP@0.5 (area) on the demo test "
             "split (`python benchmarks/multitask_benchmark.py --output docs/benchmarks.md`).",
             "", "| lambda | steps | training (s) | mAP as trained | mAP, no box regression |",
             "|---:|---:|---:|---:|---:|"]
    for loss_lambda, steps, seconds, as_trained, plain in rows:
        regression = "" if loss_lambda else " (none learned)"
        lines.append(f"| {loss_lambda:g} | {steps} | {seconds:.0f} | {100 * as_trained:.1f}"
                     f"{regression} | {100 * plain:.1f} |")
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
