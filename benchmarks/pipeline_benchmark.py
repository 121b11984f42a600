"""Input pipeline throughput: minibatches per second from tf.data alone.

For each dataset (the embedded demo set; the kangaroo photos when data/kangaroo, the
config's default (docs/kangaroo.md), or our machines' ../shared/data/kangaroo is
present) the training split is loaded, its
selective-search proposals computed or read from the cache, the RoI database
built, and the pipeline timed with its defaults (parallel map) and with one
image at a time, in the same process. A training step must take longer than
a minibatch takes here for the model, not the data, to be the bottleneck.

    python benchmarks/pipeline_benchmark.py --output docs/benchmarks.md
"""

import argparse
import time
from pathlib import Path

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import tensorflow as tf

from keras_frcnn.configs import base_config
from keras_frcnn.data.pipeline import PipelineConfig, training_dataset
from keras_frcnn.data.roidb import build_roidb, target_stats
from keras_frcnn.data.sampling import SamplingConfig
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.proposals.sources import proposals_for_dataset

SECTION = "pipeline_benchmark"
# configs/kangaroo.py's default folder, then the copy on our own machines.
KANGAROO_FOLDERS = (Path(__file__).resolve().parents[1] / "data" / "kangaroo",
                    Path(__file__).resolve().parents[2] / "shared" / "data" / "kangaroo")


def dataset_configs():
    demo = base_config()
    demo.dataset.kind = "demo"
    demo.pipeline.scales, demo.pipeline.max_size, demo.pipeline.preprocessing = (240,), 400, "tf"
    configs = {"demo (train, 400 images, ~210x180 px, scale 240)": demo}
    found = [folder for folder in KANGAROO_FOLDERS if folder.is_dir()]
    if found:
        kangaroo = base_config()
        kangaroo.dataset.kind, kangaroo.dataset.root = "voc_folder", str(found[0])
        kangaroo.dataset.classes = ("kangaroo",)
        configs["kangaroo (train, 131 photos, scale 600 / max 1000)"] = kangaroo
    return configs


def batches_per_second(dataset, batches):
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: tracing, thread pools, file cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def measure(config, batches):
    dataset = load_dataset(config.dataset, "train")
    proposals = proposals_for_dataset(dataset, config.proposals, progress=True)
    roidb = build_roidb(dataset, proposals, config.dataset.use_difficult)
    stats = target_stats(roidb, dataset.num_classes)
    sampling = SamplingConfig(**config.sampling)
    pipeline = PipelineConfig(scales=tuple(config.pipeline.scales),
                              max_size=config.pipeline.max_size,
                              preprocessing=config.pipeline.preprocessing)
    return {name: batches_per_second(training_dataset(roidb, stats, sampling, pipeline,
                                                      parallel_calls=calls), batches)
            for name, calls in (("parallel", tf.data.AUTOTUNE), ("serial", 1))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--output", help="Markdown file whose pipeline section to rewrite")
    args = parser.parse_args()
    lines = ["## Input pipeline", "",
             f"Machine: {report.machine_description()}. Minibatches of 2 images x 64 RoIs, "
             f"{args.batches} after 3 warm-up batches, the pipeline alone "
             "(`python benchmarks/pipeline_benchmark.py --output docs/benchmarks.md`).", "",
             "| dataset | parallel (batches/s) | one image at a time (batches/s) | speed-up |",
             "|---|---:|---:|---:|"]
    for name, config in dataset_configs().items():
        rates = measure(config, args.batches)
        print(f"{name}: {rates}", flush=True)
        lines.append(f"| {name} | {rates['parallel']:.1f} | {rates['serial']:.1f} | "
                     f"{rates['parallel'] / rates['serial']:.2f}x |")
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
