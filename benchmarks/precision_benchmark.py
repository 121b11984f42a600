"""Detection network time in float32 and bfloat16 against the machine's own compute floor.

For each network (VGG16 at the paper's shape; VGG16 with the paper's truncated SVD;
MobileNetV2 with its ImageNet-block head) and each precision, in one process:

  FLOPs       2 x the multiply-adds of every convolution and Dense layer, counted from
              the layers' shapes: the backbone once over the image, the layers after
              RoI pooling once per RoI (head_benchmark.py's count). RoI pooling does
              no arithmetic; the bytes its windows read are listed beside (in float32,
              which it pools in whatever the precision: ops/roi_pool.py).
  GEMM rate   FLOPs per second of large matrix products in that dtype (4096^3 and
              VGG16's fc6 at 2000 RoIs, GEMMS), TensorFlow's own oneDNN kernel, median
              of --repeats; the faster of the two
  floor       FLOPs / GEMM rate: the time the network would take if every layer ran
              at the rate of the machine's best-tuned kernel
  network     images + RoIs -> class probabilities and deltas as the Detector runs
              them (detection/graph.make_network of precision.precision_copy), one
              --height x --width image, --rois RoIs, median of --repeats after a
              warm-up; "efficiency" is network / floor
  profile     one more run under TensorFlow's profiler: the time of each op, summed
              by kind (convolutions, matrix products, RoI pooling, casts, the rest)

Precisions: float32 (the model as trained), float32 with BatchNormalization folded
into the convolutions (MobileNetV2 only; model/folding.py), and bfloat16, which
folds too. A CPU benchmark: it measures nothing on a machine without bfloat16 arithmetic, and
runs no float16 (emulated on CPUs; its place is a GPU, whose time this profile, which
reads the CPU executor's threads, would not see). Weights are random: time does not
depend on values.

    python benchmarks/precision_benchmark.py --output docs/benchmarks.md
"""

import argparse
import collections
import glob
import tempfile

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf

from head_benchmark import layer_multiply_adds, multiply_adds_per_roi
from roi_pool_floor import window_cells
from svd_benchmark import median_seconds, proposals
from keras_frcnn import precision as precision_lib
from keras_frcnn.compress import compress_model
from keras_frcnn.detection.graph import make_network
from keras_frcnn.model.fast_rcnn import FastRCNN

SECTION = "precision_benchmark"
SVD_RANKS = {"fc6": 1024, "fc7": 256}  # paper section 3.1
NETWORKS = ("vgg16", "vgg16_svd", "mobilenet_v2")
# (label, precision, fold BatchNormalization)
ARMS = {"vgg16": [("float32", "float32", False), ("bfloat16", "bfloat16", True)],
        "mobilenet_v2": [("float32", "float32", False),
                         ("float32, BN folded", "float32", True),
                         ("bfloat16", "bfloat16", True)]}
ARMS["vgg16_svd"] = ARMS["vgg16"]


def build(network):
    keras.utils.set_random_seed(0)
    if network == "mobilenet_v2":
        return FastRCNN(num_classes=21, backbone="mobilenet_v2", head="imagenet_blocks")
    model = FastRCNN(num_classes=21, backbone="vgg16")
    return compress_model(model, SVD_RANKS)[0] if network == "vgg16_svd" else model


def backbone_multiply_adds(model, height, width):
    """(multiply-adds of the backbone's convolutions over one height x width image, the
    shape of its feature map), from one run of the backbone."""
    features = model.get_layer(f"{model.get_config()['backbone']}_features")
    convs = [layer for layer in features.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    probe = keras.Model(features.input, {"features": features.output,
                                         **{layer.name: [layer.input, layer.output]
                                            for layer in convs}})
    shapes = probe(np.zeros((1, height, width, 3), np.float32))
    total = sum(layer_multiply_adds(layer, *(t.shape for t in shapes[layer.name]))
                for layer in convs)
    return int(total), tuple(shapes["features"].shape)


# Matrix products timed for the reference rate: a square one, and VGG16's fc6 over 2000
# RoIs (the largest product of these networks); the floor uses the faster.
GEMMS = ((4096, 4096, 4096), (2000, 25088, 4096))


def gemm_rate(dtype, shape, repeats):
    """FLOPs per second of an (m x k) by (k x n) matrix product in ``dtype``."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.normal(size=(m, k)), tf.float32), dtype)
    b = tf.cast(tf.constant(rng.normal(size=(k, n)), tf.float32), dtype)
    product = tf.function(lambda: tf.linalg.matmul(a, b))
    return 2.0 * m * k * n / median_seconds(lambda: product().numpy(), repeats)


def inputs(height, width, num_rois):
    rng = np.random.default_rng(1)
    images = tf.constant(rng.uniform(-100, 100, (1, height, width, 3)), tf.float32)
    boxes = proposals(height, width, num_rois)
    rois = tf.constant(np.concatenate([np.zeros((num_rois, 1), np.float32), boxes], axis=1))
    return images, rois


KINDS = (("convolution", ("Conv2D", "DepthwiseConv2dNative")),
         ("matrix product", ("MatMul",)),
         ("RoI pooling", ("RoiPool",)),
         ("cast", ("Cast",)),
         ("pad", ("Pad",)))


def kind_of(op_type):
    for kind, keys in KINDS:
        if any(key in op_type for key in keys):
            return kind
    return "other"


def _layer_name(event):
    """The Keras layer of a profiled op: "while/.../fc6_1/Relu:_MklNativeFusedMatMul" -> fc6."""
    parts = event.rsplit(":", 1)[0].split("/")
    name = parts[-2] if len(parts) > 1 else parts[0]
    return name[:-2] if name.endswith("_1") else name


def profile(forward, images, rois):
    """{kind: milliseconds} of one run under TensorFlow's profiler, and the five most
    expensive ops [(name, type, milliseconds)]."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory(prefix="precision_profile_") as folder:
        tf.profiler.experimental.start(folder)
        forward(images, rois)[0].numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    per_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op events
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # "<node name>:<op type>"; the rest (ExecutorState::Process, ParallelFor)
                # are the executor's and the thread pool's own, spanning ops.
                if ":" in name and "::" not in name:
                    per_op[name] += event.duration_ps / 1e9
    kinds = collections.Counter()
    for name, ms in per_op.items():
        kinds[kind_of(name.rsplit(":", 1)[1])] += ms
    top = [(_layer_name(name), name.rsplit(":", 1)[1], ms) for name, ms in per_op.most_common(5)]
    return dict(kinds), top


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=2000)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--output", default=None, help="Markdown file to update")
    args = parser.parse_args()
    networks = args.networks.split(",")
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {list(NETWORKS)}")
    if precision_lib.unsupported_reason("bfloat16"):
        print(f"bfloat16: {precision_lib.unsupported_reason('bfloat16')}; this benchmark "
              "compares it with float32 and measures nothing here")
        return

    gemms = {(dtype, shape): gemm_rate(dtype, shape, args.repeats)
             for dtype in ("float32", "bfloat16") for shape in GEMMS}
    rates = {dtype: max(rate for (d, _), rate in gemms.items() if d == dtype)
             for dtype in ("float32", "bfloat16")}
    print({k: f"{v / 1e9:.0f} GFLOP/s" for k, v in rates.items()}, flush=True)
    images, rois = inputs(args.height, args.width, args.rois)
    rows, profiles = [], {}
    for network in networks:
        model = build(network)
        backbone, (_, feature_h, feature_w, channels) = backbone_multiply_adds(
            model, args.height, args.width)
        head = sum(multiply_adds_per_roi(model).values())
        flops = 2.0 * (backbone + head * args.rois)
        pool = model.get_layer("roi_pool")
        cells = window_cells(rois.numpy(), feature_h, feature_w, pool.pooled_size[0],
                             pool.spatial_scale)
        for label, precision, fold in ARMS[network]:
            copy = precision_lib.precision_copy(model, precision, fold)
            forward = tf.function(make_network(copy))
            seconds = median_seconds(lambda: [t.numpy() for t in forward(images, rois)],
                                     args.repeats)
            floor = flops / rates[precision]
            kinds, top = profile(forward, images, rois)
            profiles[(network, label)] = (kinds, top)
            rows.append({"network": network, "label": label, "flops": flops,
                         "backbone": 2.0 * backbone, "head": 2.0 * head * args.rois,
                         # pooled in float32 in every precision (ops/roi_pool.py)
                         "pool_bytes": cells * channels * 4,
                         "seconds": seconds, "floor": floor})
            print(network, label, f"{seconds:.3f} s, floor {floor:.3f} s", kinds, flush=True)
            del copy, forward
        del model

    base = {r["network"]: r["seconds"] for r in rows if r["label"] == "float32"}
    lines = ["## Reduced precision: detection network against the compute floor", "",
             f"Machine: {report.machine_description()}.", "",
             f"One {args.height}x{args.width} image with {args.rois} random RoIs through "
             "the detection network as the Detector runs it (images + RoIs -> class "
             "probabilities and deltas), random weights, median of "
             f"{args.repeats} runs after a warm-up; all in one process "
             "(`python benchmarks/precision_benchmark.py --output docs/benchmarks.md`). "
             "GEMM rate: matrix products in each dtype in the same process, "
             + "; ".join(f"{dtype} {'x'.join(map(str, shape))} {rate / 1e9:.0f} GFLOP/s"
                         for (dtype, shape), rate in gemms.items())
             + ". Floor: the network's FLOPs (2 x multiply-adds of its convolutions and Dense "
             "layers) at the faster rate of its dtype. Efficiency: network time / floor. The "
             "floor is a reference, not a bound: oneDNN's convolution kernels can beat "
             "TensorFlow's matrix product (efficiency under 1x).", "",
             "| network | precision | GFLOPs (backbone + per-RoI layers) | RoI pooling reads "
             "(float32) "
             "| floor s | network s | efficiency | speed-up over float32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['label']} | {r['flops'] / 1e9:.0f} ({r['backbone'] / 1e9:.0f}"
            f" + {r['head'] / 1e9:.0f}) | {r['pool_bytes'] / 1e6:.0f} MB | {r['floor']:.3f} | "
            f"{r['seconds']:.3f} | {r['seconds'] / r['floor']:.2f}x | "
            f"{base[r['network']] / r['seconds']:.2f}x |")
    lines += ["", "### Where the time goes", "",
              "One profiled run each (TensorFlow's profiler, op times summed; the ops of a "
              "kind run one after another on the two cores, so the sum is the run's time "
              "less the executor's own work):", "",
              "| network | precision | " + " | ".join(k for k, _ in KINDS) + " | other "
              "| the three slowest ops |", "|---|---|" + "---:|" * (len(KINDS) + 1) + "---|"]
    for (network, label), (kinds, top) in profiles.items():
        cells = " | ".join(f"{kinds.get(k, 0.0):.0f}" for k, _ in KINDS)
        slowest = "; ".join(f"{name} ({op.replace('_MklNative', '')}) {ms:.0f}"
                            for name, op, ms in top[:3])
        lines.append(f"| {network} | {label} | {cells} | {kinds.get('other', 0.0):.0f} "
                     f"| {slowest} |")
    lines += ["", "Times in milliseconds."]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
