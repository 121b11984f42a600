"""Peak memory of one serving request by number of proposals (issue 42).

Each case exports a detector (random weights: memory depends on shapes, not values)
and sends one request to the SavedModel in a fresh process that imports TensorFlow
alone (and loads the op library for a custom-op export), as a server would, reporting
its resident-set high-water mark (``VmHWM``) and the request's time. Exports: the
default (composite RoI pooling) and ``--roi_pool=custom_op``, both bounded
(``export.max_proposals`` 20,000; RoI pooling and the head run on 2,048 RoIs at a time),
and, for comparison, the composite export without a limit that pools every RoI in
one pass, as before issue 42 (with the blockwise NMS of after it: the [n, n] NMS of
before took the same 20,000-proposal request to 14 GB). A request above the limit must
be refused before any work.

    python benchmarks/serving_memory.py --output docs/serving.md
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = "serving_memory"
LIMIT = 20000
# (backbone, image height, width): the demo's small network and the paper's VGG16.
BACKBONES = {"small": (600, 800), "vgg16": (600, 1000)}
# The largest request sent to the export without a limit: on a 24 GB machine, VGG16's
# pooled features (25 KB a RoI, several copies) would not fit at 20,000.
UNBOUNDED_MAX = {"small": 20000, "vgg16": 2000}
# (name, roi_pool, max_proposals, roi_batch); None: the library's default.
EXPORTS = (("composite, bounded", "composite", LIMIT, None),
           ("custom op, bounded", "custom_op", LIMIT, None),
           ("composite, one pass, no limit", "composite", 0, 10 ** 9))
SERVE = """
import json, re, sys, time
from pathlib import Path
import numpy as np
import tensorflow as tf
for library in sys.argv[3:]:
    tf.load_library(library)
inputs = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
start = time.perf_counter()
try:
    out = serve(image=tf.constant(inputs["image"]), proposals=tf.constant(inputs["proposals"]))
    result = "%d detections" % int(out["num_detections"])
except tf.errors.InvalidArgumentError as err:
    result = ("refused: above export.max_proposals" if "a request may carry at most" in str(err)
              else "refused: " + str(err).splitlines()[0][:60])
seconds = time.perf_counter() - start
peak = int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
assert "keras_frcnn" not in sys.modules
print(json.dumps({"peak_mb": peak / 1024, "seconds": seconds, "result": result}))
"""


def request(height, width, count, seed=0):
    """An RGB image and ``count`` random proposals of 8 to 300 pixels inside it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    size = rng.uniform(8, 300, (count, 2))
    x1 = rng.uniform(0, width - size[:, 0])
    y1 = rng.uniform(0, height - size[:, 1])
    proposals = np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], axis=1)
    return image, proposals.astype(np.float32)


def export(backbone, roi_pool, max_proposals, roi_batch, folder):
    import keras

    from keras_frcnn.detection import graph
    from keras_frcnn.detection.postprocess import PostprocessConfig
    from keras_frcnn.export import export_saved_model
    from keras_frcnn.model.fast_rcnn import FastRCNN

    keras.utils.set_random_seed(0)
    model = FastRCNN(num_classes=21, backbone=backbone)
    module_args = {"max_proposals": max_proposals, "roi_batch": roi_batch or graph.ROI_BATCH}
    export_saved_model(model, [f"class{k}" for k in range(20)], folder, scales=(600,),
                       max_size=1000, postprocess=PostprocessConfig(mode="default"),
                       roi_pool=roi_pool, **module_args)


def serve(export_dir, image, proposals, roi_pool, folder):
    import numpy as np

    inputs = folder / "inputs.npz"
    np.savez(inputs, image=image, proposals=proposals)
    libraries = []
    if roi_pool == "custom_op":
        from keras_frcnn.ops import loader

        libraries = [str(loader.CPU_LIBRARY)]
    done = subprocess.run([sys.executable, "-c", SERVE, str(export_dir), str(inputs),
                           *libraries], capture_output=True, text=True, check=False)
    if done.returncode:
        return {"peak_mb": float("nan"), "seconds": float("nan"),
                "result": f"process died (exit {done.returncode})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="Markdown file whose section to rewrite")
    parser.add_argument("--backbones", default="small,vgg16")
    parser.add_argument("--counts", default="2000,20000,100000",
                        help="proposals per request")
    args = parser.parse_args()
    import report  # before TensorFlow: the programs' CPU kernels

    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones.split(","):
            height, width = BACKBONES[backbone]
            for name, roi_pool, max_proposals, roi_batch in EXPORTS:
                folder = Path(tmp) / f"{backbone}-{roi_pool}-{max_proposals}"
                start = time.perf_counter()
                export(backbone, roi_pool, max_proposals, roi_batch, folder / "1")
                print(f"{backbone}, {name}: exported in {time.perf_counter() - start:.0f} s",
                      file=sys.stderr)
                for count in counts:
                    if not max_proposals and count > UNBOUNDED_MAX[backbone]:
                        continue
                    image, proposals = request(height, width, count)
                    result = serve(folder / "1", image, proposals, roi_pool, folder)
                    print(f"  {count}: {result}", file=sys.stderr)
                    rows.append((backbone, name, count, result))
    lines = [
        "#### Peak memory of one request",
        "",
        f"Machine: {report.machine_description()}. One request to an exported detector "
        "(21 classes, random weights) in a fresh process importing TensorFlow alone; peak "
        "resident memory (`VmHWM`, the imports and the loaded model included) and the "
        "request's time, the first call's graph preparation included "
        "(`python benchmarks/serving_memory.py --output docs/serving.md`). "
        f"Images {', '.join(f'{b} {h}x{w}' for b, (h, w) in BACKBONES.items())}; random "
        "proposals of 8 to 300 pixels.",
        "",
        "| backbone | export | proposals | peak (MB) | time (s) | result |",
        "|---|---|---:|---:|---:|---|",
    ]
    for backbone, name, count, result in rows:
        lines.append(f"| {backbone} | {name} | {count:,} | {result['peak_mb']:.0f} | "
                     f"{result['seconds']:.1f} | {result['result']} |")
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
