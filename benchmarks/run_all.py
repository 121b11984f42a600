"""Runs the whole benchmark suite in one session and regenerates docs/benchmarks.md.

Each benchmark script rewrites its own section of the Markdown file (between its
markers); the text outside the sections is kept. Run it on an otherwise idle
machine: every figure is a ratio measured within one script, but a busy machine
still moves them. The scripts run one after another, each in its own process:

  roi_pool    the RoI pooling op against the composite and crop-and-resize (its
              floor's parts and threading table go to roi_pooling.md beside --output)
  pipeline    input-pipeline throughput, parallel against one image at a time
  training    hierarchical sampling ratio; custom op against composite per step,
              also at the paper's shapes (VGG16 and MobileNetV2, 2 x 600x1000)
  head        MobileNetV2's fc6/fc7 head against its ImageNet blocks: weights,
              multiply-adds per RoI, network time at 2000 RoIs
  multitask   demo trained with lambda = 1 and 0 (two demo trainings)
  kangaroo    MobileNetV2 from ImageNet weights on the kangaroo photos, one run
              per seed in --kangaroo_seeds and their mean (trains workdirs/kangaroo
              and workdirs/kangaroo_seed<s> where they hold no model: about 35
              minutes each here)
  svd         truncated SVD's timing at the paper's scale (VGG16, 600x1000, 2000
              RoIs), random weights; mAP before and after on trained models is the
              study's svd experiment (frcnn-study --experiments=svd, docs/study.md)
  beam        selective search and batch detection on Beam's DirectRunner (one and
              two workers) against the process pool and bin/detect.py (kangaroo photos)
  precision   the detection network in float32 and bfloat16 against the compute floor
              (FLOPs / a large GEMM's rate), with a per-op profile (VGG16, VGG16 with
              SVD, MobileNetV2); on a CPU without bfloat16 it says so and measures nothing
  precision_accuracy   the study's demo and kangaroo models (frcnn-study's runs in
              workdirs/study, where they are) evaluated in float32, bfloat16 and float16

    python benchmarks/run_all.py                       # everything
    python benchmarks/run_all.py --only roi_pool,svd   # a subset
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(output, data, kangaroo_workdir, kangaroo_seeds="0,1,2",
             weights=None):
    """{name: [argv, ...]} in the order the suite runs them."""
    python = sys.executable

    def bench(name, *args):
        return [python, f"benchmarks/{name}_benchmark.py", *args, f"--output={output}"]

    return {
        "roi_pool": [bench("roi_pool", f"--details={Path(output).with_name('roi_pooling.md')}")],
        "pipeline": [bench("pipeline")],
        "training": [bench("training")],
        "head": [bench("head")],
        "multitask": [bench("multitask")],
        "kangaroo": [bench("kangaroo", f"--data={data}", f"--workdir={kangaroo_workdir}",
                           f"--seeds={kangaroo_seeds}",
                           *([f"--weights={weights}"] if weights else []))],
        "svd": [bench("svd", "--backbones=vgg16,mobilenet_v2,small")],
        "beam": [bench("beam", f"--data={data}", *([f"--weights={weights}"] if weights else []))],
        "precision": [bench("precision")],
        "precision_accuracy": [bench("precision_accuracy", "--study_dir=workdirs/study",
                                     "--study=sampling:n2,sampling:n2_as_n8,finetune:default")],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--data", default="data/kangaroo",
                        help="kangaroo folder; default: configs/kangaroo.py's (docs/kangaroo.md "
                             "says where to get the photos)")
    parser.add_argument("--weights", help="the kangaroo config's MobileNetV2 weights; default: "
                        "kangaroo_benchmark.py's (configs/kangaroo.py's data/ path)")
    parser.add_argument("--kangaroo_workdir", default="workdirs/kangaroo")
    parser.add_argument("--kangaroo_seeds", default="0,1,2",
                        help="train.seed of each kangaroo run (the first in --kangaroo_workdir)")
    parser.add_argument("--only", help="comma-separated subset of the benchmarks above")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    suite = commands(args.output, args.data, args.kangaroo_workdir,
                     args.kangaroo_seeds, args.weights)
    only = args.only.split(",") if args.only else list(suite)
    unknown = sorted(set(only) - set(suite))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {list(suite)}")
    names = [name for name in suite if name in only]  # the suite's order
    spent = {}
    for name in names:
        start = time.perf_counter()
        for argv in suite[name]:
            print("+", " ".join(argv), flush=True)
            if not args.dry_run:
                subprocess.run(argv, cwd=REPO, check=True)
        spent[name] = time.perf_counter() - start
    for name, seconds in spent.items():
        print(f"{name:>10}: {seconds / 60:6.1f} min")


if __name__ == "__main__":
    main()
