"""Real photos: MobileNetV2 from ImageNet weights trained on the kangaroo set on this CPU.

Trains configs/kangaroo.py with bin/train.py (unless the workdir already holds
a trained model and --retrain is not given), then evaluates the held-out 20 %
with VOC AP@0.5 (area and the VOC07 11-point metric; the area metric again with
the horizontal-flip test, test.flip, switched the other way from the config) and
reports the training time (wall time of the training loop, read back from the
workdir's TensorBoard log, so a finished workdir reports its own run), and the
test-time seconds per image: selective search computed afresh (a temporary
cache), the network (Detector: resize, forward, decoding, NMS) and the whole
evaluation.

With --seeds=0,1,2 it trains and evaluates one run per train.seed (seed s other than
the first in <workdir>_seed<s>) and reports each and their mean: on 57 test objects
one run's AP moves by several points with the initial weights alone.

--data and --weights default to configs/kangaroo.py's data/ paths, where
docs/kangaroo.md puts the photos and the weights (or pass other places):

    python benchmarks/kangaroo_benchmark.py --data data/kangaroo \\
        --weights data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5 \\
        --workdir workdirs/kangaroo --seeds 0,1,2 --output docs/benchmarks.md
"""

import argparse
import glob
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report

SECTION = "kangaroo_benchmark"
REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/kangaroo.py"
# configs/kangaroo.py's defaults (docs/kangaroo.md says how to fill them).
SHARED_DATA = "data/kangaroo"
SHARED_WEIGHTS = "data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5"
PATH_FLAGS = ("--config.dataset.root=", "--config.model.weights=")


def training_seconds(workdir):
    """(first logged step, last logged step, seconds between them) from the TensorBoard log."""
    import tensorflow as tf

    wall = {}
    for path in sorted(glob.glob(str(Path(workdir) / "logs" / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            if event.step and event.summary.value:
                wall.setdefault(event.step, event.wall_time)
    if len(wall) < 2:
        raise SystemExit(f"{workdir}/logs: no training log to time (train it with --retrain)")
    first, last = min(wall), max(wall)
    return first, last, wall[last] - wall[first]


def fresh_proposal_seconds(config, split):
    """Selective-search seconds per image of a split, computed afresh (empty cache)."""
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.proposals.selective_search import compute_selective_search

    dataset = load_dataset(config.dataset, split)
    paths = [r.image_path for r in dataset.records]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        compute_selective_search(paths, cache, mode=config.proposals.mode, progress=False)
        return (time.perf_counter() - start) / len(paths)


def seed_workdir(workdir, seed, first_seed):
    return Path(workdir) if seed == first_seed else Path(f"{workdir}_seed{seed}")


def train_command(workdir, data, weights, seed):
    command = [sys.executable, "bin/train.py", f"--config={CONFIG}", f"--workdir={workdir}",
               f"--config.dataset.root={data}", f"--config.model.weights={weights}"]
    return command + ([f"--config.train.seed={seed}"] if seed != 0 else [])


def paths_sentence(defaults, data, weights):
    """What the report says about the paths its commands leave to the config."""
    root, default_weights = defaults.dataset.root, defaults.model.weights
    sentence = (f"The commands read the photos from `{root}` and the weights from "
                f"`{default_weights}`, the config's defaults (docs/kangaroo.md says how to "
                "fetch both)")
    if (data, weights) == (root, default_weights):
        return sentence + "."
    return (sentence + f"; this run read `{data}` and `{weights}` "
            "(`--config.dataset.root`, `--config.model.weights`).")


def check_trained_as_configured(config, workdir):
    """Refuses a workdir trained with settings the report would misdescribe."""
    from keras_frcnn.configs import base_config

    trained = json.loads((workdir / "config.json").read_text())
    defaults = base_config()  # keys added after the workdir was trained
    for section, key in (("train", "steps"), ("train", "seed"), ("pipeline", "scales"),
                         ("model", "frozen"), ("model", "fc_units"), ("model", "backbone"),
                         ("model", "head"), ("model", "dropout"), ("train", "base_lr"),
                         ("sampling", "bg_threshold_lo"), ("sampling", "far_bg_fraction"),
                         ("sampling", "images_per_batch"), ("sampling", "rois_per_batch"),
                         ("proposals", "selective_search_min_size")):
        ours, theirs = config[section][key], trained[section].get(key, defaults[section][key])
        if (list(ours) if isinstance(ours, tuple) else ours) != theirs:
            raise SystemExit(f"{workdir} was trained with {section}.{key}={theirs}, "
                             f"{CONFIG} says {ours}: the report would describe another run; "
                             "retrain (--retrain on an empty workdir) or pick the workdir")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=SHARED_DATA,
                        help="kangaroo folder (annots/, images/); default: our machines' copy")
    parser.add_argument("--weights", default=SHARED_WEIGHTS,
                        help="MobileNetV2 ImageNet weights file, or imagenet (keras.applications); "
                             "default: our machines' copy")
    parser.add_argument("--workdir", default="workdirs/kangaroo",
                        help="the first seed's workdir; seed s > first trains <workdir>_seed<s>")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated train.seed values: one run per seed, and their mean")
    parser.add_argument("--retrain", action="store_true", help="train even if a model exists")
    parser.add_argument("--output", help="Markdown file whose kangaroo section to rewrite")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds={args.seeds!r}: give integers separated by commas, e.g. 0,1,2")

    from keras_frcnn.configs import load_config_file
    from keras_frcnn.evaluation.run import evaluate

    runs = []
    for seed in seeds:
        workdir = seed_workdir(args.workdir, seed, seeds[0])
        if args.retrain or not (workdir / "model.keras").is_file():
            if args.retrain and workdir.exists():
                raise SystemExit(f"{workdir} exists: remove it first to retrain from scratch")
            subprocess.run(train_command(workdir, args.data, args.weights, seed), cwd=REPO,
                           check=True)
        config = load_config_file(REPO / CONFIG)
        config.dataset.root = args.data
        config.train.seed = seed
        check_trained_as_configured(config, workdir)
        start = time.perf_counter()
        area = evaluate(config, workdir, progress=False)
        eval_seconds = (time.perf_counter() - start) / area["images"]
        config.test.use_07_metric = True
        voc07 = evaluate(config, workdir, rescore=str(Path(area["output_dir"]) / "detections.npz"),
                         output_dir=Path(area["output_dir"]) / "voc07", progress=False)
        config.test.use_07_metric = False
        config.test.flip = not config.test.flip
        other = evaluate(config, workdir, progress=False,
                         output_dir=Path(area["output_dir"]) / f"flip_{config.test.flip}")
        config.test.flip = not config.test.flip
        hard = None
        if config.test.soft_nms_sigma:  # the same model with NMS at test.nms_threshold
            config.test.soft_nms_sigma = 0.0
            hard = evaluate(config, workdir, progress=False,
                            output_dir=Path(area["output_dir"]) / "nms")
        print(f"seed {seed}", area["table"], voc07["table"], other["table"], sep="\n",
              flush=True)
        runs.append((seed, workdir, area, voc07, other, hard, eval_seconds,
                     training_seconds(workdir)))

    config = load_config_file(REPO / CONFIG)
    config.dataset.root = args.data
    steps = config.train.steps
    images_per_batch = config.sampling.images_per_batch
    proposal_seconds = fresh_proposal_seconds(config, config.dataset.test_split)
    images = runs[0][2]["images"]
    rows = []
    other_flip = not config.test.flip
    soft = config.test.soft_nms_sigma
    for seed, workdir, area, voc07, other, hard, eval_seconds, (first, last, seconds) in runs:
        rows.append(
            f"| {seed} | **{100 * area['mAP']:.1f}** | {100 * voc07['mAP']:.1f} | "
            f"{100 * other['mAP']:.1f} ({other['timing']['network_seconds_per_image']:.3f} s) | "
            + (f"{100 * hard['mAP']:.1f} | " if soft else "") +
            f"{seconds / 60:.0f} min (steps {first}-{last}) | {seconds / (last - first):.2f} | "
            f"{proposal_seconds:.2f} | {area['timing']['network_seconds_per_image']:.3f} | "
            f"{eval_seconds:.3f} |")
    if len(runs) > 1:
        means = [100 * sum(r[column]["mAP"] for r in runs) / len(runs)
                 for column in ((2, 3, 4, 5) if soft else (2, 3, 4))]
        rows.append(f"| mean of {len(runs)} | **{means[0]:.1f}** | **{means[1]:.1f}** | "
                    + " | ".join(f"{m:.1f}" for m in means[2:]) + " | | | | | |")
    # The report's commands read the config's default paths, where docs/kangaroo.md puts
    # the photos and weights; a sentence below names the ones this run read.
    commands = [f"python bin/proposals.py --config={CONFIG} --split={split}"
                for split in ("train", "test")]
    for seed, workdir, *_ in runs:
        evaluate_command = ["python", "bin/evaluate.py", f"--config={CONFIG}",
                            f"--workdir={workdir}"]
        train = train_command(workdir, args.data, args.weights, seed)[1:]
        commands += [" ".join(["python"] + [a for a in train if not a.startswith(PATH_FLAGS)]),
                     " ".join(evaluate_command),
                     " ".join(evaluate_command + ["--config.test.use_07_metric=True"]),
                     " ".join(evaluate_command + [f"--config.test.flip={other_flip}"])]
        if soft:
            commands.append(" ".join(evaluate_command + ["--config.test.soft_nms_sigma=0"]))
    background = f"[{config.sampling.bg_threshold_lo}, {config.sampling.bg_threshold_hi})"
    if config.sampling.far_bg_fraction:
        background += (f", {100 * config.sampling.far_bg_fraction:.0f} % of them from "
                       f"[0, {config.sampling.bg_threshold_lo})")
    lines = [
        "## Kangaroo photos (MobileNetV2 from ImageNet weights)", "",
        f"Machine: {report.machine_description()}. `{CONFIG}`: 164 photos, one class, the "
        f"first 80 % of the sorted names for training ({images} held-out test "
        "photos), MobileNetV2 initialised from "
        f"`{args.weights}` (docs/kangaroo.md), per-RoI "
        + ("ImageNet blocks 13-16 (`model.head=imagenet_blocks`), "
           if config.model.get("head", "fc") == "imagenet_blocks" else "fc6/fc7 from random, ")
        + "our "
        f"selective search ({config.proposals.mode} mode, boxes under "
        f"{config.proposals.selective_search_min_size} px dropped), {steps} SGD steps of "
        f"{images_per_batch} images x {config.sampling.rois_per_batch // images_per_batch} "
        f"RoIs, background RoIs at IoU {background}, training scales "
        f"{tuple(config.pipeline.scales)} (longest side at most {config.pipeline.max_size}), "
        f"flips, test scale {tuple(config.test.scales)}"
        f"{' with the mirrored image averaged in (test.flip)' if config.test.flip else ''}, "
        + (f"Soft-NMS (sigma {soft}), " if soft else
           f"NMS at IoU {config.test.nms_threshold}, ") +
        (f"post-processing mode `default` (scores above {config.test.score_threshold}, at "
         "most 100 detections per image); " if config.test.mode == "default" else
         "post-processing mode `frcnn` (the release's: top 100 per class, set cap); ") +
        f"frozen: {', '.join(config.model.frozen or ()) or 'nothing'}. One training run per "
        f"seed (`train.seed`: initial weights and dropout; the data stream is the same).", "",
        "```", *commands, "```", "",
        paths_sentence(load_config_file(REPO / CONFIG), args.data, args.weights), "",
        f"| seed | AP@0.5 (area) | AP@0.5 (VOC07 11-point) | area with `test.flip={other_flip}` "
        "(network s/image) | "
        + (f"area with NMS at IoU {config.test.nms_threshold} instead of Soft-NMS | " if soft
           else "") +
        "training | s/step | selective search s/image | network s/image | "
        "evaluation s/image |",
        "|---:|---:|---:|---:|" + ("---:|" if soft else "") + "---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Training time: wall time of the training loop between the first and last logged "
        "steps, from each workdir's TensorBoard log; the whole run adds model building and the "
        "first trace (under a minute). Evaluation s/image covers reading, resizing, the "
        "network and NMS with cached proposals; selective search is timed once, afresh. "
        f"The `test.flip={other_flip}` column re-evaluates the same model "
        f"{'with' if other_flip else 'without'} the mirrored image averaged in (`test.flip`, "
        "docs/evaluation.md; not in the paper)."
        + (f" The NMS column re-evaluates it with NMS at IoU {config.test.nms_threshold} "
           f"(`test.nms_threshold`) in place of Soft-NMS (`test.soft_nms_sigma`, "
           "docs/evaluation.md; not in the paper)." if soft else ""),
    ]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
