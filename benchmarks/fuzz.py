"""Fuzzing: seeded hostile inputs to roi_pool, an exported SavedModel, the Predictor
and the serving client.

Four targets, each a stream of cases numbered 0, 1, 2, ...; case i of a target is
generated from numpy's generator seeded with (--seed, target, i) alone, so any
case can be rerun by itself:

  roi_pool     features, RoIs, pooled_size and spatial_scale (zero-sized dims,
               NaN/inf/huge/inverted RoIs, bad batch indices, odd scales and
               pooled sizes, wrong dtypes and ranks, NaN/inf features, float16,
               bfloat16, float64), eager or inside a tf.function with unknown
               shapes. Both implementations run the forward pass and the
               gradient; where both return, outputs and gradients must be equal
               bit for bit (the upstream gradient holds small integers, so the
               sums at shared argmax cells are exact in any order); one
               returning where the other raises is a disagreement.
  saved_model  the serving signature of a tiny model exported twice, with the
               composite and with the custom op (odd image sizes, wrong dtypes
               and ranks, empty / outside / inverted / NaN / huge proposal sets,
               up to 6000 proposals); both exports are cross-checked the same way,
               and returned detections are checked for sanity (finite, inside the
               image, scores in [0, 1], consistent lengths, inputs of the declared
               shapes): "odd" if not.
  predictor, serving_client
               keras_frcnn.Predictor and keras_frcnn.serving's client (through a
               stand-in server): hostile image arrays and files, proposals and
               Prediction methods; fuzz_predictor.py says what and what is odd.

Cases run in a child process (a few hundred per child), which reports its peak
resident memory. A case that kills its child (a segfault, an abort, the OOM killer)
is a crash, one that outlasts --case_timeout a hang; either is recorded with the
child's last stderr lines and the next case starts in a fresh child. A clean
exception is an error (type and examples recorded). Not run by CI. --output gets the
counts, findings and peak memory, --details the errors by type and message.

    python benchmarks/fuzz.py --seed 0 --json fuzz.json --output docs/benchmarks.md \
        --details docs/robustness.md
    python benchmarks/fuzz.py --seed 0 --target roi_pool --case 17   # one case, in-process
"""

import argparse
import collections
import json
import os
import queue
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

# The target's part of each case's seed.
TARGETS = {"roi_pool": 1, "saved_model": 2, "predictor": 3, "serving_client": 4}
IMPLEMENTATIONS = ("custom_op", "composite")  # the twins of roi_pool and saved_model
# The other targets run one implementation: their errors count under this name.
SINGLE = "single"
CLEAN = {"InvalidArgumentError", "ValueError", "TypeError"}
# The Predictor also reads files: DatasetError (a ValueError) names a bad one.
EXPECTED_ERRORS = {"roi_pool": CLEAN, "saved_model": CLEAN, "serving_client": CLEAN,
                   "predictor": CLEAN | {"DatasetError", "FileNotFoundError"}}
# Where the models a target needs are written under --export_dir.
MODELS = {"saved_model": "composite", "predictor": "predictor", "serving_client": "serving"}
DEFAULT_CASES = {"roi_pool": 2000, "saved_model": 500, "predictor": 600, "serving_client": 400}
WHAT = {"roi_pool": "`roi_pool`", "saved_model": "an exported SavedModel",
        "predictor": "the `Predictor`", "serving_client": "the serving client"}
SECTION = "fuzz"  # --output: counts and findings
DETAILS = "fuzz_errors"  # --details: the errors by type and message
DETAILS_HEADING = "Errors of the last fuzzing run"
DETAILS_ANCHOR = "errors-of-the-last-fuzzing-run"  # the heading's GitHub slug
# TensorFlow's start-up lines, left out of a dead child's stderr tail.
STARTUP_CHATTER = re.compile(
    r"[IW]\d{4} |E\d{4} .*cuInit|WARNING: All log messages|To enable the following")
NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
F32_MAX = float(np.finfo(np.float32).max)
SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 5e-45, 1e-30, 3e7, -3e7, 1e30, -1e30, F32_MAX,
           2.0**24, 2.0**24 - 1, 1e300]
GOOD_SCALES = [1.0, 0.5, 0.25, 1 / 16, 0.3, 3.0]
ODD_SCALES = [0.0, -0.0, -1.0, -1 / 16, 1e30, 1e39, 1e-40, 1e-50, 1e-7, 2.0**24, np.nan,
              np.inf, -np.inf, "0.5", None, np.float32(0.0625), True]
ODD_POOLED = [0, -1, (0, 3), (3, 0), (2,), (2, 2, 2), 2.0, (2.0, 3.0), np.int64(3), "7",
              None, (7, 2.5), True, 64, 200, (1, 300)]
# Shares of box kinds (plain, inverted, one point, far outside, huge, SPECIAL values): one
# hostile value fails a whole call, so most sets keep to one kind of hostility.
FLAVOURS = [(35, [1, 0, 0, 0, 0, 0]), (35, [.55, .15, .1, .2, 0, 0]), (10, [.8, 0, 0, 0, .2, 0]),
            (10, [.9, 0, 0, 0, 0, .1]), (10, [.5, .1, .1, .1, .1, .1])]
# Each entry: (weight, dtype name); numpy holds no bfloat16, so cases carry names.
FEATURE_DTYPES = [(60, "float32"), (15, "float64"), (10, "float16"), (5, "bfloat16"),
                  (2, "int32"), (2, "uint8"), (2, "bool"), (2, "complex64"), (2, "string")]
ROI_DTYPES = [(80, "float32"), (8, "float64"), (4, "float16"), (3, "int32"), (1, "int64"),
              (1, "uint8"), (1, "bool"), (1, "complex64"), (1, "string")]
IMAGE_DTYPES = [(90, "uint8"), (3, "float32"), (2, "int32"), (2, "uint16"), (2, "int8"),
                (1, "float64")]
PROPOSAL_DTYPES = [(90, "float32"), (4, "float64"), (2, "float16"), (2, "int32"), (2, "int64")]


def pick(rng, weighted):
    weights = np.array([w for w, _ in weighted], float)
    return weighted[rng.choice(len(weighted), p=weights / weights.sum())][1]


def boxes(rng, count, width, height):
    """[count, 4] (x1, y1, x2, y2) around a width x height image, of one FLAVOUR: some
    of them inverted, one point, far outside, huge, or with SPECIAL values."""
    flavour = pick(rng, FLAVOURS)
    x = np.sort(rng.uniform(-0.1, 1.1, (count, 2)), axis=1) * width
    y = np.sort(rng.uniform(-0.1, 1.1, (count, 2)), axis=1) * height
    out = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    if rng.random() < 0.3:  # half-pixel ties, the rounding edge of the op
        out = np.round(out * 2) / 2
    kinds = rng.choice(6, count, p=flavour)
    out[kinds == 1] = out[kinds == 1][:, [2, 3, 0, 1]]  # inverted
    out[kinds == 2, 2:] = out[kinds == 2, :2]  # one point
    out[kinds == 3] += rng.choice([-3, 3], (int((kinds == 3).sum()), 1)) * max(width, height)
    out[kinds == 4] *= 10.0 ** rng.integers(3, 38, (int((kinds == 4).sum()), 1))
    special = (kinds == 5)[:, None] & (rng.random((count, 4)) < 0.5)
    out[special] = rng.choice(SPECIAL, int(special.sum()))
    return out


def bins(pooled_size):
    """Bins per RoI that a pooled_size would give (1 where roi_pool will refuse it)."""
    try:
        count = float(np.prod(np.broadcast_to(np.asarray(pooled_size, float), 2)))
    except (TypeError, ValueError):
        return 1.0
    return count if count >= 1 else 1.0  # also NaN, from None


def resized(rng, values, shapes):
    """``values`` reshaped (repeated or cut) to one of ``shapes``: a wrong rank."""
    return np.resize(values, shapes[rng.integers(len(shapes))])


def roi_pool_case(seed, index):
    """Case ``index``: numpy values plus the dtype names they are cast to."""
    rng = np.random.default_rng([seed, TARGETS["roi_pool"], index])
    dims = [int(rng.choice([0, 1, 2, 3, 4], p=[.1, .45, .25, .1, .1])),
            *(int(rng.choice([0, 1, rng.integers(2, 13), rng.integers(13, 80)],
                             p=[.07, .1, .73, .1])) for _ in range(2)),
            int(rng.choice([0, 1, 2, 3, 6], p=[.07, .4, .23, .2, .1]))]
    if rng.random() < 0.06:
        dims = [int(d) for d in rng.integers(0, 5, rng.choice([0, 1, 2, 3, 5]))]
    kind = rng.choice(["normal", "ties", "nan_inf", "huge"], p=[.4, .35, .15, .1])
    values = {"normal": lambda s: rng.normal(size=s),
              "ties": lambda s: rng.integers(-3, 4, s).astype(float),
              "nan_inf": lambda s: np.where(rng.random(s) < 0.3, rng.choice(
                  [np.nan, np.inf, -np.inf], s), rng.normal(size=s)),
              "huge": lambda s: rng.choice([1e38, -1e38, 7e4, -7e4, 0.0], s)}[kind](dims)
    scale = (rng.choice(GOOD_SCALES) if rng.random() < 0.9
             else ODD_SCALES[rng.integers(len(ODD_SCALES))])
    pooled = (int(rng.integers(1, 8)) if rng.random() < 0.9
              else ODD_POOLED[rng.integers(len(ODD_POOLED))])
    num_rois = int(rng.choice([0, rng.integers(1, 9), rng.integers(9, 65),
                               rng.integers(200, 2000)], p=[.1, .6, .25, .05]))
    # At most 2e6 output values (memory, and integer gradient sums stay exact).
    num_rois = int(min(num_rois, 2e6 // (bins(pooled) * max(dims[-1] if dims else 1, 1))))
    num_images = dims[0] if len(dims) == 4 else 1
    # Boxes in image pixels of a plausible size, also for extreme scales: 1/scale pixels
    # per cell would make every box of a 1e-40 scale infinite, and hide the scale itself.
    usable = float(np.clip(scale, 1 / 64, 64)) if isinstance(scale, float) and scale > 0 else 1.0
    image_w, image_h = ((dims[2], dims[1]) if len(dims) == 4 else (8, 8))
    corners = boxes(rng, num_rois, max(image_w, 1) / usable, max(image_h, 1) / usable)
    batch = rng.integers(0, max(num_images, 1), num_rois).astype(float)
    bad = rng.random(num_rois) < (0.2 if rng.random() < 0.2 else 0.0)
    batch[bad] = rng.choice([num_images, -1, -0.5, 0.5, num_images - 0.5, num_images - 1e-3,
                             -0.999, np.nan, np.inf, -np.inf, 1e9, 2.0**31, -2.0**31, 1e30],
                            int(bad.sum()))
    rois = np.concatenate([batch[:, None], corners], axis=1)
    if rng.random() < 0.05:
        rois = resized(rng, rois, [(num_rois, 4), (num_rois, 6), (5,), (num_rois, 5, 1), (),
                                   (0, 0)])
    return {"features": values, "features_dtype": pick(rng, FEATURE_DTYPES), "value_kind": kind,
            "rois": rois, "rois_dtype": pick(rng, ROI_DTYPES), "pooled_size": pooled,
            "spatial_scale": scale,
            "mode": rng.choice(["eager", "graph", "graph_unknown_rank"], p=[.75, .17, .08])}


def saved_model_case(seed, index):
    """Case ``index``: an image and proposals (values, dtype names, rank changes)."""
    rng = np.random.default_rng([seed, TARGETS["saved_model"], index])
    size = rng.choice(["1x1", "wide", "tall", "zero", "small", "medium", "large"],
                      p=[.05, .08, .08, .04, .55, .18, .02])
    height, width = {
        "1x1": (1, 1), "wide": (int(rng.integers(1, 4)), int(rng.integers(500, 4000))),
        "tall": (int(rng.integers(500, 4000)), int(rng.integers(1, 4))),
        "zero": tuple(int(v) for v in rng.choice([(0, 0), (0, 50), (50, 0)])),
        "small": tuple(int(v) for v in rng.integers(2, 65, 2)),
        "medium": tuple(int(v) for v in rng.integers(65, 400, 2)), "large": (600, 1000)}[size]
    image = (rng.integers(0, 256, (height, width, 3)) if rng.random() < 0.9
             else np.full((height, width, 3), rng.choice([0, 255])))
    count = int(rng.choice([0, rng.integers(1, 61), rng.integers(61, 600),
                            rng.integers(2000, 6001)], p=[.1, .6, .25, .05]))
    proposals = boxes(rng, count, max(width, 1), max(height, 1))
    if rng.random() < 0.05:
        image = resized(rng, image, [(height, width), (1, height, width, 3), (height, width, 1),
                                     (height, width, 4), ()])
    if rng.random() < 0.05:
        proposals = resized(rng, proposals, [(count,), (count, 5), (4,), (count, 4, 1), ()])
    return {"image": image.astype(float), "image_dtype": pick(rng, IMAGE_DTYPES),
            "size_kind": size, "proposals": proposals,
            "proposals_dtype": pick(rng, PROPOSAL_DTYPES)}


def functions(target):
    """(case generator, runner) of ``target``. fuzz_predictor imports this module for its
    helpers, so it is imported here, when first needed, and never at the top."""
    import fuzz_predictor

    return {"roi_pool": (roi_pool_case, roi_pool_runner),
            "saved_model": (saved_model_case, saved_model_runner),
            "predictor": (fuzz_predictor.predictor_case, fuzz_predictor.predictor_runner),
            "serving_client": (fuzz_predictor.serving_client_case,
                               fuzz_predictor.serving_client_runner)}[target]


def describe(case):
    """One line; arrays of up to 25 values in full (enough for a reproducer)."""
    parts = []
    for key, value in case.items():
        if isinstance(value, np.ndarray):
            shown = value.tolist() if value.size <= 25 else f"<{value.size} values>"
            value = f"shape {value.shape} {shown}"
        parts.append(f"{key}={value!r}" if not isinstance(value, str) else f"{key}={value}")
    return ", ".join(parts)


# ---- child side: runs cases, imports TensorFlow -------------------------------------------

def tensor(values, dtype):
    """``values`` (float64) as a tensor of dtype name ``dtype``."""
    import tensorflow as tf

    if dtype == "string":
        return tf.strings.as_string(tf.constant(values, tf.float64))
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)  # a NaN or out-of-range cast to int is undefined: clip first
        values = np.clip(np.nan_to_num(values), info.min, info.max)
    return tf.cast(tf.constant(values, tf.float64), dtype)


def outcome(fn):
    """("result", value) or ("error", "Type: first line of the message")."""
    try:
        return "result", fn()
    except Exception as err:  # noqa: BLE001 - every clean exception is a fuzzing outcome
        # The last line that says something: TensorFlow wraps it in node names and traces.
        kind = type(err).__name__
        lines = [re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]( name:\s*\S*)?$|^" + kind + ": ",
                        "", line.strip()) for line in str(err).splitlines()]
        lines = [line for line in lines if line and not line.startswith(NOISE)]
        return "error", f"{kind}: {lines[-1][:500] if lines else ''}"


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "OSU":
        return a.shape == b.shape and np.array_equal(a, b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def roi_pool_runner(args):
    import tensorflow as tf

    from keras_frcnn import roi_pool

    def upstream(out):
        # Small integers: every sum of them is exact, so gradients compare bit for bit.
        steps = tf.range(tf.size(out)) * 5 % 7 - 3
        return tf.reshape(tf.cast(steps, out.dtype), tf.shape(out))

    def forward_backward(features, rois, case, implementation):
        with tf.GradientTape() as tape:
            if features.dtype.is_floating:
                tape.watch(features)
            out = roi_pool(features, rois, case["pooled_size"], case["spatial_scale"],
                           implementation=implementation)
        return out, tape.gradient(out, features, output_gradients=upstream(out))

    def run(index):
        case = roi_pool_case(args.seed, index)
        features = tensor(case["features"], case["features_dtype"])
        rois = tensor(case["rois"], case["rois_dtype"])
        results = {}
        for implementation in IMPLEMENTATIONS:
            if case["mode"] != "eager":  # unknown sizes, and for one mode unknown ranks
                known = case["mode"] == "graph"
                fn = tf.function(lambda f, r: forward_backward(f, r, case, implementation),
                                 input_signature=[
                                     tf.TensorSpec([None] * f.ndim if known else None, f.dtype)
                                     for f in (features, rois)])
                results[implementation] = outcome(
                    lambda: [None if t is None else t.numpy() for t in fn(features, rois)])
            else:
                results[implementation] = outcome(
                    lambda: [None if t is None else t.numpy()
                             for t in forward_backward(features, rois, case, implementation)])
        return compare(results, ("output", "gradient"))

    return run


def compare(results, names):
    """The reply for one case: verdict and why, from {name: outcome} of the twins."""
    (first, (kind_a, value_a)), (second, (kind_b, value_b)) = results.items()
    errors = {k: v[1] for k, v in results.items() if v[0] == "error"}
    reply = {"verdict": kind_a, "errors": errors}
    if kind_a != kind_b:
        return {**reply, "verdict": "disagreement",
                "reason": f"{first} gives {kind_a}, {second} gives {kind_b}"}
    if kind_a == "result":
        for name, a, b in zip(names, value_a, value_b):
            if (a is None) != (b is None) or (a is not None and not same_bits(a, b)):
                return {**reply, "verdict": "disagreement", "reason": f"{name}s differ"}
    return reply


def saved_model_runner(args):
    import tensorflow as tf

    from keras_frcnn.export import OUTPUTS
    from keras_frcnn.ops import loader

    loader.load()  # registers KerasFrcnn>RoiPool for the custom_op export
    signatures = {name: tf.saved_model.load(os.path.join(args.export_dir, name))
                  .signatures["serving_default"] for name in IMPLEMENTATIONS}

    def run(index):
        case = saved_model_case(args.seed, index)
        image = tensor(case["image"], case["image_dtype"])
        proposals = tensor(case["proposals"], case["proposals_dtype"])
        results = {name: outcome(lambda: [sign(image=image, proposals=proposals)[k].numpy()
                                          for k in OUTPUTS])
                   for name, sign in signatures.items()}
        reply = compare(results, OUTPUTS)
        if reply["verdict"] == "result":
            reply["odd"] = oddity(dict(zip(OUTPUTS, results["composite"][1])), image.shape,
                                  proposals.shape)
        return reply

    return run


def oddity(out, image_shape, proposals_shape):
    """What is wrong with the detections of a successful call, or None."""
    if len(image_shape) != 3 or image_shape[2] != 3 or len(proposals_shape) != 2 \
            or proposals_shape[1] != 4:
        return f"detections for an image {image_shape} and proposals {proposals_shape}"
    count = int(out["num_detections"])
    lengths = {len(out[k]) for k in ("detection_boxes", "detection_scores", "detection_classes",
                                     "detection_class_names")}
    if lengths != {count}:
        return f"num_detections {count}, outputs of lengths {sorted(lengths)}"
    box, score = out["detection_boxes"], out["detection_scores"]
    if not (np.isfinite(box).all() and np.isfinite(score).all()):
        return "non-finite boxes or scores"
    if ((score < 0) | (score > 1)).any() or not set(out["detection_classes"]) <= {1, 2}:
        return "score outside [0, 1] or class outside 1..2"
    height, width = image_shape[0], image_shape[1]
    if count and ((box < 0).any() or (box[:, [0, 2]] > width - 1).any()
                  or (box[:, [1, 3]] > height - 1).any()):
        return (f"a box outside the {height}x{width} image: "
                f"{box.min(0).tolist()} .. {box.max(0).tolist()}")
    return None


def export_models(export_dir, seed):
    """The tiny model of tests/test_export.py, exported with both RoI poolings."""
    import keras

    from keras_frcnn.detection import PostprocessConfig
    from keras_frcnn.export import export_saved_model
    from keras_frcnn.model.fast_rcnn import FastRCNN

    keras.utils.set_random_seed(seed)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    for layer, factor in (("cls_score", 200.0), ("bbox_pred", 100.0)):  # spread the outputs
        kernel, bias = model.get_layer(layer).get_weights()
        model.get_layer(layer).set_weights([kernel * factor, bias])
    for roi_pool in IMPLEMENTATIONS:  # a two-level pyramid, and a max_size that bites
        export_saved_model(model, ["cat", "dog"], os.path.join(export_dir, roi_pool),
                           scales=(48, 80), max_size=200, preprocessing="tf",
                           postprocess=PostprocessConfig(mode="default", score_threshold=0.0),
                           roi_pool=roi_pool)


def build(args):
    """Writes the models that --target (or every target) needs and --export_dir lacks."""
    import fuzz_predictor

    targets = [args.target] if args.target else list(TARGETS)
    missing = {t for t in targets
               if t in MODELS and not os.path.isdir(os.path.join(args.export_dir, MODELS[t]))}
    if "saved_model" in missing:
        export_models(args.export_dir, args.seed)
    if missing & {"predictor", "serving_client"}:
        fuzz_predictor.prepare(args.export_dir, args.seed)


def peak_mb():
    """This process's resident-set high-water mark (VmHWM), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def serve(args):
    """Child: answers each case index read from stdin with one JSON line."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from TensorFlow must not garble the replies
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    run = functions(args.worker)[1](args)
    channel.write(json.dumps({"machine": report.machine_description()}) + "\n")
    channel.flush()
    for line in sys.stdin:
        index = int(line)
        try:
            reply = run(index)
        except Exception:  # noqa: BLE001 - a bug of this script, not of the code under test
            reply = {"verdict": "harness failure", "errors": {}, "reason": traceback.format_exc()}
        channel.write(json.dumps({"case": index, **reply, "peak_mb": peak_mb()}) + "\n")
        channel.flush()


# ---- parent side: no TensorFlow here, so a case can only kill a child ----------------------

class Worker:
    """A child process running the cases of one target."""

    def __init__(self, target, args):
        self.log = tempfile.TemporaryFile("w+")
        command = [sys.executable, os.path.abspath(__file__), f"--worker={target}",
                   f"--seed={args.seed}", f"--threads={args.threads}",
                   f"--export_dir={args.export_dir}"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True,
                                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, index, timeout):
        """The reply dict, None if the child died, "timeout" if it hung."""
        try:
            self.process.stdin.write(f"{index}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None
        return self.receive(timeout)

    def receive(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        return json.loads(line) if line else None

    def stop(self):
        """Ends the child; returns its exit status and last stderr lines."""
        if self.process.poll() is None:
            self.process.stdin.close()  # the child's loop ends, and so does the child
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.seek(0)
        lines = [line.rstrip() for line in self.log.read().splitlines()
                 if line.strip() and not STARTUP_CHATTER.match(line)]
        self.log.close()
        status = self.process.returncode
        if status < 0:
            status = signal.Signals(-status).name
        return status, lines[-8:]


class Tally:
    """Counts and examples of one target."""

    def __init__(self, target, seed):
        self.target, self.seed = target, seed
        self.counts = collections.Counter()
        # (type, message stem) -> {implementation or export: count}, and a first example.
        self.errors = collections.defaultdict(collections.Counter)
        self.examples = {}
        self.findings = []  # crashes, hangs, disagreements, odd results, unexpected errors
        self.seconds = 0.0
        self.machine = None  # as the child describes it
        self.peak_mb = 0.0  # the most resident memory a child held

    def add(self, index, reply):
        self.counts[reply["verdict"] + "s"] += 1
        self.peak_mb = max(self.peak_mb, reply["peak_mb"])
        for name, error in reply["errors"].items():
            kind, message = error.split(": ", 1)
            key = kind, stem(message)
            self.errors[key][name] += 1
            self.examples.setdefault(key, (index, message))
            if kind not in EXPECTED_ERRORS[self.target]:
                self.finding("unexpected error", index, f"{name}: {error}")
        kinds = sorted({error.split(":", 1)[0] for error in reply["errors"].values()})
        if len(reply["errors"]) == 2 and len(kinds) == 2:  # both raised, not a disagreement
            self.finding("error types differ", index, " / ".join(
                f"{name} {error.split(':', 1)[0]}" for name, error in reply["errors"].items()))
        if reply["verdict"] in ("disagreement", "harness failure"):
            self.finding(reply["verdict"], index, f"{reply['reason']}; errors {reply['errors']}")
        if reply.get("odd"):
            self.counts["odd results"] += 1
            self.finding("odd result", index, reply["odd"])

    def finding(self, kind, index, detail):
        self.findings.append({"kind": kind, "case": index, "detail": detail,
                              "inputs": describe(functions(self.target)[0](self.seed,
                                                                           index))})


def stem(message):
    """A message without its numbers and values, to group errors by cause."""
    if message.startswith("assertion failed"):  # tf.debugging.Assert brackets every part
        message = message.replace("[", "").replace("]", "")
    message = re.sub(r"\(.*?\)|\[.*?\]|\{.*?\}", "(.)", message)
    message = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?|-?\b(nan|inf)\b", "#", message)
    return re.sub(r"#( #)+", "#...", message)[:100]


def fuzz(target, count, args):
    tally, worker, served = Tally(target, args.seed), None, 0
    start = time.perf_counter()
    for index in range(count):
        if worker is None:
            worker, served = Worker(target, args), 0
            hello = worker.receive(args.startup_timeout)
            if not isinstance(hello, dict):
                status, tail = worker.stop()
                raise RuntimeError(f"the {target} child did not start (exit {status}):\n"
                                   + "\n".join(tail))
            tally.machine = hello["machine"]
        reply = worker.ask(index, args.case_timeout)
        if isinstance(reply, dict):
            tally.add(index, reply)
            served += 1
            if served == args.cases_per_child:  # fresh children keep memory in check
                worker.stop()
                worker = None
            continue
        if reply == "timeout":
            worker.process.kill()
        status, tail = worker.stop()
        worker = None
        kind = "hang" if reply == "timeout" else "crash"
        tally.counts[{"hang": "hangs", "crash": "crashes"}[kind]] += 1
        tally.finding(kind, index, f"exit status {status}; stderr: " + " | ".join(tail))
        print(f"{target} case {index}: {kind} (exit status {status})", flush=True)
    if worker is not None:
        worker.stop()
    tally.seconds = time.perf_counter() - start
    return tally


ERROR_ROWS = 15  # per target in the Markdown; the JSON has them all
COLUMNS = ("results", "errors", "disagreements", "crashes", "hangs", "odd results",
           "harness failures")


def markdown(tallies, args, command, seconds, details=None):
    """The --output section: counts per target and findings. ``details``: the relative
    link to the page holding error_markdown's section, or None if it is not written."""
    machine = next(iter(tallies.values())).machine
    what = [WHAT[target] for target in tallies]
    what = ", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0]
    lines = ["## Fuzzing", "", f"`{command}` (seed {args.seed}), {seconds / 60:.1f} minutes "
             f"on {machine}: seeded hostile inputs to {what} "
             "(neither CI nor `run_all.py` runs this).", "",
             "| target | cases | " + " | ".join(COLUMNS) + " | minutes |",
             "|---|" + "---:|" * (len(COLUMNS) + 2)]
    for target, tally in tallies.items():
        cases = sum(tally.counts[c] for c in COLUMNS if c != "odd results")  # odd: results too
        lines.append(f"| {target} | {cases} | " + " | ".join(
            str(tally.counts[c]) for c in COLUMNS) + f" | {tally.seconds / 60:.1f} |")
    lines += ["", "Peak memory of a child (its resident-set high-water mark, VmHWM): " + ", ".join(
        f"{target} {tally.peak_mb:.0f} MB" for target, tally in tallies.items()) + "."]
    groups = collections.defaultdict(list)  # one line per distinct finding
    for target, tally in tallies.items():
        for f in tally.findings:
            groups[target, f["kind"], f["detail"]].append(f["case"])
    where = (f"[{os.path.basename(details)}]({details}#{DETAILS_ANCHOR})" if details
             else "printed (no `--details` file) and in `--json`")
    lines += ["", f"Errors by type and message: {where}. "
              f"Findings: {sum(map(len, groups.values())) or 'none'}"
              + (" (rerun one with `--target=T --case=I`):" if groups else ".")]
    for (target, kind, detail), cases in groups.items():
        shown = ", ".join(map(str, cases[:8])) + (", ..." if len(cases) > 8 else "")
        lines.append(f"- {target}, {kind}, {len(cases)} case(s) ({shown}): {detail[:300]}")
    return lines


def error_markdown(tallies, args, command, summary=None):
    """The --details section: the errors by type and message, the most common first.
    ``summary``: the relative link to the page holding markdown's section, or None."""
    run = f"`{command}` (seed {args.seed})"
    if summary:
        run = f"{run}; counts and findings: [{os.path.basename(summary)}]({summary}#fuzzing)"
    # A column per implementation or export that raised, and one for the targets that
    # run one (SINGLE); a target's cells stay empty in the columns it does not run.
    names = {target: {n for counts in tally.errors.values() for n in counts}
             for target, tally in tallies.items()}
    columns = [n for n in (*IMPLEMENTATIONS, SINGLE) if any(n in ns for ns in names.values())]
    lines = [f"### {DETAILS_HEADING}", "",
             f"{run}. Errors by type and message (numbers and bracketed values as `#` and "
             "`(.)`; the count is of cases, for each implementation or export, or under "
             f"`{SINGLE}` for the targets that run one):", "",
             "| target | type | message | " + " | ".join(columns) + " | first case |",
             "|---|---|---|" + "---:|" * len(columns) + "---:|"]
    for target, tally in tallies.items():
        common = sorted(tally.errors.items(), key=lambda item: -sum(item[1].values()))
        for (kind, message), counts in common[:ERROR_ROWS]:
            lines.append(f"| {target} | {kind} | {message.replace('|', '/')} | "
                         + " | ".join(str(counts[n]) if n in names[target] else ""
                                      for n in columns)
                         + f" | {tally.examples[kind, message][0]} |")
        if len(common) > ERROR_ROWS:
            lines.append(f"| {target} | | {len(common) - ERROR_ROWS} rarer messages (--json) "
                         "|" + " |" * (len(columns) + 1))
    return lines


def link(target, page):
    """``target``'s path relative to the folder of ``page``, as a Markdown link needs it."""
    return os.path.relpath(target, os.path.dirname(page) or ".") if target and page else None


def reproduce(args):
    """Runs one case in this process and prints its inputs and the reply."""
    case, runner = functions(args.target)
    print(describe(case(args.seed, args.case)))
    build(args)
    print(json.dumps(runner(args)(args.case), indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    for target, count in DEFAULT_CASES.items():
        parser.add_argument(f"--{target}_cases", type=int, default=count)
    parser.add_argument("--cases", type=int, help="cases of each target run (instead of the "
                        "--TARGET_cases)")
    parser.add_argument("--target", choices=sorted(TARGETS), help="only this target")
    parser.add_argument("--case", type=int, help="run this case of --target in this process")
    parser.add_argument("--cases_per_child", type=int, default=250)
    parser.add_argument("--case_timeout", type=float, default=300, help="seconds: a hang")
    parser.add_argument("--startup_timeout", type=float, default=600, help="seconds")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    parser.add_argument("--export_dir", help="where the SavedModels go (default: a temporary "
                        "folder); reused if it holds them")
    parser.add_argument("--json", help="write counts, examples and findings here")
    parser.add_argument("--output", help="Markdown file whose fuzzing section (counts and "
                        "findings) to rewrite")
    parser.add_argument("--details", help="Markdown file whose section of errors by type and "
                        "message to rewrite")
    parser.add_argument("--worker", choices=[*TARGETS, "export"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "export":
        return build(args)
    if args.worker:
        return serve(args)
    with tempfile.TemporaryDirectory(prefix="fuzz_export") as tmp:
        args.export_dir = args.export_dir or tmp
        if args.case is not None:
            if not args.target:
                parser.error("--case needs --target")
            return reproduce(args)
        counts = {target: args.cases or getattr(args, f"{target}_cases") for target in TARGETS}
        targets = [args.target] if args.target else list(TARGETS)
        command = "python benchmarks/fuzz.py " + shlex.join(sys.argv[1:])
        start = time.perf_counter()
        if any(t in MODELS and not os.path.isdir(os.path.join(args.export_dir, MODELS[t]))
               for t in targets):
            # In a child too: the parent never imports TensorFlow.
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker=export",
                                   f"--seed={args.seed}", f"--export_dir={args.export_dir}",
                                   *([f"--target={args.target}"] if args.target else [])],
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"exporting the fuzzed models failed:\n{done.stderr[-3000:]}")
        tallies = {target: fuzz(target, counts[target], args) for target in targets}
        seconds = time.perf_counter() - start
    report.publish(SECTION, markdown(tallies, args, command, seconds,
                                     link(args.details, args.output)), args.output)
    report.publish(DETAILS, error_markdown(tallies, args, command,
                                           link(args.output, args.details)), args.details)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": args.seed, "command": command, "seconds": seconds,
                       "targets": {t: {"counts": dict(x.counts), "seconds": x.seconds,
                                       "peak_mb": x.peak_mb,
                                       "errors": [{"type": k, "stem": m, "counts": c,
                                                   "example": x.examples[k, m]}
                                                  for (k, m), c in x.errors.items()],
                                       "findings": x.findings} for t, x in tallies.items()}},
                      f, indent=2)
    return None


if __name__ == "__main__":
    main()
