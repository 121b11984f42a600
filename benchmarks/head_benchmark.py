"""MobileNetV2's per-RoI heads: fc6/fc7 ("fc") against the ImageNet blocks ("imagenet_blocks").

For each head: parameters (whole detector, and the per-RoI part after RoI pooling),
multiply-adds per RoI counted from the layers' shapes (one RoI through the head; a
k x k convolution over an h x w x c_out output from c_in channels costs
h w c_out k^2 c_in / groups, a depthwise one h w c k^2, a Dense layer in x out), and
the network's time per image at test: one 600 x 900 image with 2000 proposals
(the paper's setting), images + RoIs -> class probabilities and deltas in
inference mode, median of --repeats runs after a warm-up, both heads in the same
run. Weights are random (time does not depend on values).

    python benchmarks/head_benchmark.py --output docs/benchmarks.md
"""

import argparse

import report  # first: it picks TensorFlow's CPU kernels before TensorFlow loads

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.detection.graph import make_network
from keras_frcnn.model.fast_rcnn import FastRCNN

SECTION = "head_benchmark"
HEADS = ("fc", "imagenet_blocks")


def per_roi_layers(model):
    """The layers after RoI pooling, in order, with any nested head model unfolded."""
    after = model.layers[[layer.name for layer in model.layers].index("roi_pool") + 1:]
    layers = []
    for layer in after:
        layers += layer.layers[1:] if isinstance(layer, keras.Model) else [layer]
    return layers


def multiply_adds_per_roi(model):
    """{layer name: multiply-adds} of one RoI through the layers after RoI pooling."""
    height, width = model.get_layer("roi_pool").pooled_size
    channels = model.get_layer(f"{model.get_config()['backbone']}_features").output.shape[-1]
    counted = [layer for layer in per_roi_layers(model)
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                     keras.layers.Dense))]
    # (input, output) shapes of one RoI: run it through a nested head model; fc6, fc7 and
    # the siblings are Dense layers on vectors.
    shapes = {layer.name: ((1, layer.kernel.shape[0]), (1, layer.kernel.shape[1]))
              for layer in counted if isinstance(layer, keras.layers.Dense)}
    for sub in model.layers:
        if isinstance(sub, keras.Model) and sub.name.endswith("_head"):
            # The layers' own tensors belong to the ImageNet network the head was cut from
            # (model/backbones.py): probe that graph from the head's first layer's input.
            probe = keras.Model(sub.layers[1].input, {layer.name: [layer.input, layer.output]
                                                      for layer in counted if layer in sub.layers})
            outputs = probe(np.zeros((1, height, width, channels), np.float32))
            shapes.update({name: (a.shape, b.shape) for name, (a, b) in outputs.items()})
    return {layer.name: layer_multiply_adds(layer, *shapes[layer.name]) for layer in counted}


def layer_multiply_adds(layer, input_shape, output_shape):
    """Multiply-adds of a Conv2D, DepthwiseConv2D or Dense layer from its input and output
    shapes (batch first; one item of the batch)."""
    (_, *_, c_in), (_, *spatial, c_out) = input_shape, output_shape
    positions = int(np.prod(spatial)) if spatial else 1
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # one k x k filter per channel
        return positions * c_out * int(np.prod(layer.kernel_size))
    if isinstance(layer, keras.layers.Conv2D):
        return positions * c_out * int(np.prod(layer.kernel_size)) * c_in // layer.groups
    return c_in * c_out


def per_roi_params(model):
    return sum(int(np.prod(w.shape)) for layer in per_roi_layers(model) for w in layer.weights)


def network_seconds(model, height, width, num_rois, repeats):
    """Median seconds of images + RoIs -> (cls_prob, bbox_pred), inference mode."""
    from svd_benchmark import median_seconds, proposals

    rng = np.random.default_rng(1)
    images = tf.constant(rng.uniform(-1, 1, (1, height, width, 3)), tf.float32)
    boxes = proposals(height, width, num_rois)
    rois = tf.constant(np.concatenate([np.zeros((num_rois, 1), np.float32), boxes], axis=1))
    forward = tf.function(make_network(model))

    return median_seconds(lambda: [t.numpy() for t in forward(images, rois)], repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=2000)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None, help="Markdown file to update")
    args = parser.parse_args()

    rows = {}
    for head in HEADS:
        keras.utils.set_random_seed(0)
        model = FastRCNN(num_classes=2, backbone="mobilenet_v2", head=head)
        macs = multiply_adds_per_roi(model)
        rows[head] = {"params": model.count_params(), "per_roi_params": per_roi_params(model),
                      "macs": sum(macs.values()), "detail": macs}
        print(head, rows[head]["params"], rows[head]["macs"], flush=True)
    # Alternate the heads so that a change in the machine's load touches both.
    times = {head: [] for head in HEADS}
    models = {}
    for head in HEADS:
        keras.utils.set_random_seed(0)
        models[head] = FastRCNN(num_classes=2, backbone="mobilenet_v2", head=head)
    for _ in range(2):
        for head in HEADS:
            times[head].append(network_seconds(models[head], args.height, args.width, args.rois,
                                               args.repeats))
    for head in HEADS:
        rows[head]["seconds"] = min(times[head])
        print(head, times[head], flush=True)

    ratio = rows["imagenet_blocks"]["seconds"] / rows["fc"]["seconds"]
    lines = ["## MobileNetV2 heads: fc6/fc7 against the ImageNet blocks", "",
             f"Machine: {report.machine_description()}.", "",
             f"MobileNetV2, one {args.height}x{args.width} image, {args.rois} RoIs, inference "
             f"mode, random weights; time: the lower of two medians of {args.repeats} runs per "
             f"head, heads alternated.", "",
             "| head | parameters (detector) | parameters per RoI head | multiply-adds per RoI "
             "| network s / image |", "|---|---:|---:|---:|---:|"]
    for head in HEADS:
        r = rows[head]
        lines.append(f"| `{head}` | {r['params'] / 1e6:.2f} M | {r['per_roi_params'] / 1e6:.2f} M "
                     f"| {r['macs'] / 1e6:.1f} M | {r['seconds']:.3f} |")
    lines += ["", f"`imagenet_blocks` / `fc` network time: **{ratio:.2f}x** (issue 35's target: at most 1.5x)."]
    text = "\n".join(lines)
    print(text)
    if args.output:
        start, end = report.markers(SECTION)
        report.write_section(args.output, f"{start}\n{text}\n{end}\n", SECTION)


if __name__ == "__main__":
    main()
