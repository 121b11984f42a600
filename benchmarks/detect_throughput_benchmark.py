"""Detection throughput: images per second of bin/detect.py on real photos, proposals not cached.

The kangaroo test photos (configs/kangaroo.py's test split, the last 20 % of the
sorted files) go through ``detect_images``, the work bin/detect.py does after
loading its model (proposals, network with the flip test, pictures,
detections.json), each time with an empty proposal cache: first with every
image's selective search before the network (``overlap=False``, the path
before issue 34), then overlapped (worker processes search the next images
while the network runs on the current one) with each worker count of
--workers, all in this one process after a warm-up on two photos. Each run is
timed from the call to its return; loading the model and starting Python are
left out (a second or two, the same for both). The CPU time of this process
(the network, with TensorFlow's threads) and of the workers (selective search)
is reported too: a run can take no less than their sum divided by the cores,
whatever it overlaps, and "cores busy" says how close to that it came.

The model is configs/kangaroo.py's FastRCNN untrained (MobileNetV2 at its
ImageNet weights, the heads as initialised but for the class scores, spread so
that some proposals score above bin/detect.py's 0.5 and are drawn): the time
does not depend on training. It is saved as a workdir and loaded as
bin/detect.py loads it. Every run must write the same detections.json, the same
pictures and the same proposals into its cache as the first one; the script
stops otherwise.

Run it from the repository root (relative paths are read from there). --data and
--weights default to configs/kangaroo.py's data/ paths, where docs/kangaroo.md puts the
photos and the weights (or pass other places):

    python benchmarks/detect_throughput_benchmark.py --data data/kangaroo \
        --weights data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5
"""

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

SECTION = "detect_throughput_benchmark"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kangaroo.py"
# cls_score's kernel times this: the release's N(0, 0.01) initialisation scores every
# proposal of an untrained head near 1 / (K + 1), so nothing would pass 0.5 and the
# pictures would show no box; x10 puts the best proposals of a photo at 0.7-0.9.
SCORE_SPREAD = 10.0


def untrained_workdir(config, workdir, seed=0):
    """Writes ``config``'s FastRCNN (backbone at its ImageNet weights, heads
    initialised, class scores spread) and classes.json into ``workdir``."""
    import keras

    from keras_frcnn import training, workdirs

    keras.utils.set_random_seed(seed)
    model = training.build_model(config, len(config.dataset.classes) + 1)
    layer = model.get_layer("cls_score")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * SCORE_SPREAD, bias])
    workdir.mkdir(parents=True, exist_ok=True)
    workdirs.save_model(model, workdir / "model.keras")
    (workdir / "classes.json").write_text(json.dumps(list(config.dataset.classes)))


def cpu_seconds():
    """(this process, its finished child processes): CPU seconds, user and system."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_detection(model, paths, config, folder, overlap, workers):
    """(wall seconds, CPU seconds here, CPU seconds of the workers) of one
    detect_images run into ``folder`` (out/ and a fresh cache/). The workers have
    ended when it returns, so their time is counted."""
    from keras_frcnn.detection.run import detect_images
    from keras_frcnn.evaluation.run import detector_config

    proposals = config.proposals.copy_and_resolve_references()
    proposals.cache_dir, proposals.workers = str(folder / "cache"), workers
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    detect_images(model, paths, list(config.dataset.classes), detector_config(config),
                  proposals, folder / "out", progress=False,
                  max_image_pixels=config.dataset.max_image_pixels, overlap=overlap)
    wall = time.perf_counter() - start
    return (wall, *(after - before for after, before in zip(cpu_seconds(), cpu_before)))


def outputs(folder):
    """{relative path: contents} of a run: the detection files as bytes, the cached
    proposals as arrays (an .npz file's bytes hold its write time)."""
    import numpy as np

    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = str(path.relative_to(folder))
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    found[name] = data["boxes"].tobytes()
            else:
                found[name] = path.read_bytes()
    return found


def differences(reference, other):
    """Names of the files that are missing from one run or differ."""
    return sorted(name for name in set(reference) | set(other)
                  if reference.get(name) != other.get(name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/kangaroo",
                        help="kangaroo folder; default: our machines' copy (docs/kangaroo.md)")
    parser.add_argument("--weights",
                        default="data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5",
                        help="MobileNetV2 ImageNet weights file or imagenet; default: our "
                             "machines' copy (docs/kangaroo.md)")
    parser.add_argument("--workers", default="0,1",
                        help="comma-separated config.proposals.workers of the overlapped runs "
                             "(0: one per core, the default)")
    parser.add_argument("--images", type=int, default=0, help="first N test photos (0: all)")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated test.precision of further overlapped runs (one "
                             "worker per core) after the float32 ones; '' for none; default: "
                             "bfloat16 where this machine has it")
    parser.add_argument("--output", help="Markdown file whose section to rewrite")
    args = parser.parse_args()
    from keras_frcnn.precision import check_precision, unsupported_reason

    if args.precisions is None:
        args.precisions = "" if unsupported_reason("bfloat16") else "bfloat16"
        if unsupported_reason("bfloat16"):
            print(f"bfloat16: {unsupported_reason('bfloat16')}; float32 runs only")
    precisions = [p for p in args.precisions.split(",") if p]

    for name in precisions:
        check_precision(name, "--precisions")
        if name == "bfloat16" and unsupported_reason(name):  # the row would be float32's
            raise SystemExit(f"--precisions=bfloat16: {unsupported_reason(name)}; the "
                             "Detector would run in float32 (pass --precisions='')")
    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise SystemExit(f"--workers={args.workers!r}: give integers separated by commas")

    from keras_frcnn.configs import load_config_file
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.workdirs import load_inference_model

    config = load_config_file(CONFIG)
    config.dataset.root = args.data
    config.model.weights = args.weights
    records = load_dataset(config.dataset, config.dataset.test_split).records
    paths = [r.image_path for r in records[:args.images or None]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        untrained_workdir(config, tmp / "workdir")
        model = load_inference_model(tmp / "workdir")  # as bin/detect.py
        # Warm-up: TensorFlow's kernels and thread pools, the photos in the file cache.
        run_detection(model, paths[:2], config, tmp / "warm_up", False, 0)
        for path in paths:
            Path(path).read_bytes()
        runs = [("one after the other (before)", 0,
                 run_detection(model, paths, config, tmp / "sequential", False, 0))]
        print(runs[-1], flush=True)
        reference = outputs(tmp / "sequential")
        for workers in worker_counts:
            folder = tmp / f"overlapped_{workers}"
            runs.append(("overlapped", workers,
                         run_detection(model, paths, config, folder, True, workers)))
            print(runs[-1], flush=True)
            changed = differences(reference, outputs(folder))
            if changed:
                raise SystemExit(f"overlapped with {workers} workers: {len(changed)} files "
                                 f"differ from the sequential run's: {changed[:5]}")
        for name in precisions:  # other numbers: only the proposals must be the same
            config.test.precision = name
            folder = tmp / f"overlapped_{name}"
            runs.append((f"overlapped, {name}", 0,
                         run_detection(model, paths, config, folder, True, 0)))
            print(runs[-1], flush=True)
            changed = [f for f in differences(reference, outputs(folder))
                       if not f.startswith("out/")]
            if changed:
                raise SystemExit(f"{name}: {len(changed)} cached proposal files differ from "
                                 f"the float32 run's: {changed[:5]}")
        config.test.precision = "float32"
        detections = json.loads(reference["out/detections.json"])
    listed = sum(len(rows) for rows in detections.values())
    stamp = time.strftime("%Y-%m-%d %H:%M")
    lines = ["## Detection throughput", "",
             f"Machine: {report.machine_description()}. Run {stamp}. The {len(paths)} kangaroo "
             "test photos through `detect_images` (bin/detect.py without its start-up: "
             "selective search, fast mode, with an empty cache each time; the network with "
             "the flip test; pictures and detections.json), configs/kangaroo.py's model "
             f"untrained ({listed} detections listed at 0.5). Every float32 overlapped run "
             "wrote the same detections.json, pictures and cached proposals as the first, "
             "the other precisions the same proposals; the network computes in float32 "
             "but where the first column names another test.precision "
             "(`python benchmarks/detect_throughput_benchmark.py --output docs/benchmarks.md`).",
             "",
             "| proposals | selective-search workers | seconds | images/s | speed-up | "
             "CPU s per image: network process / workers | cores busy |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    base = runs[0][2][0]
    cores = os.cpu_count()
    for name, workers, (seconds, own, children) in runs:
        shown = f"{workers or cores}" + (" (0: one per core)" if workers == 0 else "")
        lines.append(f"| {name} | {shown} | {seconds:.1f} | {len(paths) / seconds:.2f} | "
                     f"{base / seconds:.2f}x | {own / len(paths):.2f} / "
                     f"{children / len(paths):.2f} | {(own + children) / seconds / cores:.0%} |")
    seconds, own, children = runs[0][2]
    lines += ["", f"Both stages are CPU work: {(own + children) / len(paths):.2f} CPU seconds "
              f"per photo in the sequential (float32) run, so on {cores} cores no float32 "
              f"schedule takes less than {(own + children) / cores / len(paths):.2f} s per "
              f"photo, at most {seconds * cores / (own + children):.2f}x the sequential run's "
              "rate. Overlapping gains what the sequential run left idle (the network's "
              "single-threaded steps, the last images' search); it can gain more only where "
              "the network leaves cores idle (when it runs on a GPU, say; not measured here)."]
    for name, workers, (seconds, own, children) in runs:
        if name.startswith("overlapped, "):  # another precision: its own CPU bound
            lines.append(f"In {name.split(', ')[1]} the network process takes "
                         f"{own / len(paths):.2f} CPU s per photo and the search "
                         f"{children / len(paths):.2f}: at least "
                         f"{(own + children) / cores / len(paths):.2f} s per photo on {cores} "
                         f"cores, {len(paths) * cores / (own + children):.2f} photos/s at most.")
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":  # the spawned selective-search workers import this module
    main()
