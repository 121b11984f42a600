"""SavedModel export for TensorFlow Serving.

The exported graph does the whole of detection for one image:

  inputs   image      uint8 [H, W, 3], RGB (as tf.io.decode_image / PIL give it)
           proposals  float32 [R, 4], (x1, y1, x2, y2) 0-based inclusive image pixels
  outputs  detection_boxes    float32 [n, 4] same convention as the proposals
           detection_scores   float32 [n]
           detection_classes  int32 [n], 1..K
           detection_class_names  string [n]
           num_detections     int32 []

Inside the graph, the Detector's own functions (detection/graph.py; what a user
evaluates is, op for op, what they serve): clipping the proposals to the image
(below), the test scale(s) (shortest side ``scales``, longest capped at
``max_size``; several scales build the paper's image pyramid and send each RoI to
the scale where its area is closest to 224^2), the backbone's preprocessing, the
grouping of RoIs that pool the same feature cells (``deduplicate``), RoI pooling,
fc layers, softmax, per-class box decoding with the release's widths
(``x2 - x1 + EPS``, boxes.py), clipping, the optional mirrored-image test
(``flip``), and per-class NMS as detection/postprocess.py (mode "default" unless
asked otherwise: the dataset-level cap of mode "frcnn" has no meaning for one
image). No ``py_function``.

Proposals (decision, the Detector's): each is clipped to the image and dropped
when a coordinate is not finite or nothing of it is left (inverted, x2 < x1, or
wholly outside), before scoring, and the rest sorted by their coordinates
(graph.usable_proposals); none left gives zero detections, not an error. Serving
clients are not trusted to send selective-search boxes (docs/serving.md,
"Proposals a client may send"), nor to send few: a request above
``max_proposals`` is refused (docs/serving.md, "Bounded requests").

RoI pooling: ``roi_pool="composite"`` (default) is the pure-TensorFlow twin,
bit-identical to the op, so a stock ``tensorflow_model_server`` loads the
model; ``"custom_op"`` records our inference op (``KerasFrcnn>RoiPoolInference``), faster, for
servers built with it (docs/serving.md).

Precision (config.test.precision, precision.py): the network inside computes in
float32, bfloat16 or float16, the interface above is the same in each, and softmax,
decoding and NMS are float32 in each. The export computes in the precision asked for
even where the exporting machine lacks it (the server decides), and records it in
``assets.extra/keras_frcnn.json``.

The one difference from the Detector is the input: the graph takes an RGB uint8
image (as tf.io.decode_image and PIL give it) and reverses its channels to the BGR
that the shared functions, and OpenCV's decoder in the Detector, use.
"""

import json
import logging
import numbers
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_frcnn.configs import split_sections
from keras_frcnn.data.transforms import PREPROCESSING
from keras_frcnn.detection import graph
from keras_frcnn.detection.postprocess import PostprocessConfig, postprocess_detections
from keras_frcnn.files import (atomic_write, in_memory, is_dir, is_file, is_url, join, list_dir,
                               make_dirs, make_temp_dir, read_bytes, read_json)
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.precision import (check_precision, overflow_message, precision_copy,
                                   unsupported_reason)

logger = logging.getLogger("keras_frcnn.export")

SIGNATURE = "serving_default"
# Default of config.export.max_proposals: a request with more is refused (InvalidArgument)
# before any work. Ten times the release's 2000 selective-search boxes; peak memory at the
# limit in docs/serving.md, "Bounded requests".
MAX_PROPOSALS = 20000
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "detection_class_names",
           "num_detections")
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
OUR_OP_PREFIX = "KerasFrcnn>"


class ExportError(RuntimeError):
    """The exported SavedModel failed a check."""


def with_roi_pool(model, implementation):
    """A copy of a FastRCNN whose RoI pooling uses ``implementation``."""
    config = model.get_config()
    if config.get("roi_pool_implementation") == implementation:
        return model
    copy = FastRCNN.from_config({**config, "roi_pool_implementation": implementation})
    copy.set_weights(model.get_weights())
    return copy


class DetectionModule(tf.Module):
    """The serving graph: ``module.detect(image, proposals)`` -> dict of OUTPUTS.

    ``max_proposals``: requests with more proposals are refused before any work (0: no
    limit); ``roi_batch``: RoIs pooled and run through the head at a time
    (graph.make_network), which bounds the memory of a request at the limit.
    """

    def __init__(self, model, classes, scales=(600,), max_size=1000, preprocessing="caffe",
                 postprocess=PostprocessConfig(mode="default"), score_empty_rois=False,
                 flip=False, bbox_reg=True, deduplicate=True, max_proposals=MAX_PROPOSALS,
                 roi_batch=graph.ROI_BATCH):
        super().__init__(name="keras_frcnn_detector")
        if isinstance(max_proposals, bool) or not isinstance(max_proposals, numbers.Integral) \
                or max_proposals < 0:
            raise ValueError(f"max_proposals must be a whole number of proposals (0: no "
                             f"limit), got {max_proposals!r}")
        self.max_proposals = int(max_proposals)
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, "
                             f"got {preprocessing!r}")
        if not scales:
            raise ValueError("scales is empty: give at least one test scale")
        self.model = model
        self.num_classes = int(model.get_layer("cls_score").units)
        if len(classes) != self.num_classes - 1:
            raise ValueError(f"the model has {self.num_classes - 1} object classes but "
                             f"{len(classes)} class names were given")
        self.class_names = tf.constant(["__background__", *classes])
        self.scales = tuple(float(s) for s in scales)
        self.max_size = float(max_size)
        self.preprocessing = preprocessing
        self.postprocess = postprocess
        self.score_empty_rois = score_empty_rois
        self.flip = bool(flip)
        self.bbox_reg = bool(bbox_reg)
        # RoI pooling's spatial scale groups the RoIs on the same cells; None: no grouping.
        self.dedup_scale = (float(model.get_layer("roi_pool").spatial_scale) if deduplicate
                            else None)
        self._network = graph.make_network(model, score_empty_rois, roi_batch)
        # What the network computes in (precision.precision_copy); a reduced precision
        # can overflow (float16 past 65504), which must fail the request, not give NaNs.
        self.precision = model.get_config().get("precision") or "float32"
        self.detect = tf.function(self._detect, input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None, 4], tf.float32, name="proposals")])

    def __call__(self, image, proposals):
        """{output: numpy array} (strings as str) of one RGB uint8 image and its proposals."""
        out = self.detect(tf.constant(image, tf.uint8), tf.constant(proposals, tf.float32))
        return {k: v.numpy().astype(str) if v.dtype == tf.string else v.numpy()
                for k, v in out.items()}

    def _inputs(self, image, proposals):
        """(images [S, H, W, 3], rois [u, 5], inverse) of one RGB image and its clipped
        proposals, as Detector.prepare."""
        return graph.network_inputs(image[..., ::-1], proposals, self.scales, self.max_size,
                                    self.preprocessing, self.flip, self.dedup_scale)

    def _checked(self, image, proposals):
        """The inputs, once checked. A loaded signature does not enforce its declared
        shapes: [R, 5] proposals would read as their first four columns, and a request
        of another rank would fail deep inside with "slice index -1 of dimension 0 out
        of bounds". The ranks are checked first, on the shape vectors' lengths (a rank
        op would be folded to the declared rank), then the sizes, then the number of
        proposals against ``max_proposals``, before any work that grows with it."""
        image_shape, proposals_shape = tf.shape(image), tf.shape(proposals)
        image_rank, proposals_rank = _run_time_length(image_shape), _run_time_length(
            proposals_shape)
        checks = [tf.debugging.Assert(tf.equal(image_rank, 3), [
            "image must be [H, W, 3] uint8 RGB; got shape", image_shape]),
            tf.debugging.Assert(tf.equal(proposals_rank, 2), [
                "proposals must be [R, 4] float32 (x1, y1, x2, y2); got shape",
                proposals_shape])]
        with tf.control_dependencies(checks):
            last = image_rank - 1  # a valid index once the rank is checked
            checks = [tf.debugging.Assert(tf.equal(image_shape[last], 3), [
                "image must be [H, W, 3] uint8 RGB; got shape", image_shape]),
                tf.debugging.Assert(tf.equal(proposals_shape[1], 4), [
                    "proposals must be [R, 4] float32 (x1, y1, x2, y2); got shape",
                    proposals_shape])]
        if self.max_proposals:
            with tf.control_dependencies(checks):
                checks.append(tf.debugging.Assert(
                    proposals_shape[0] <= self.max_proposals,
                    ["a request may carry at most", self.max_proposals,
                     "proposals (this export's export.max_proposals) and this one has",
                     proposals_shape[0], "; send them in several requests, or export again "
                     "with a larger --config.export.max_proposals"]))
        with tf.control_dependencies(checks):
            return tf.identity(image), tf.identity(proposals)

    def _detect(self, image, proposals):
        image, proposals = self._checked(image, proposals)
        height = tf.cast(tf.shape(image)[0], tf.float64)
        width = tf.cast(tf.shape(image)[1], tf.float64)
        proposals = graph.usable_proposals(proposals, width, height)
        images, rois, inverse = self._inputs(image, proposals)
        scores, deltas = self._network(images, rois)
        if self.precision != "float32":
            message = overflow_message(self.precision, "export it")
            scores = tf.debugging.assert_all_finite(scores, message)
            deltas = tf.debugging.assert_all_finite(deltas, message)
        scores = tf.gather(tf.cast(scores, tf.float32), inverse)
        deltas = tf.gather(deltas, inverse)
        boxes, scores = graph.detection_outputs(proposals, scores, deltas, width, height,
                                                self.flip, self.bbox_reg)
        boxes, scores, classes = postprocess_detections(tf.cast(boxes, tf.float32), scores,
                                                        self.num_classes, self.postprocess)
        classes = tf.cast(classes, tf.int32)
        return {"detection_boxes": boxes, "detection_scores": scores,
                "detection_classes": classes,
                "detection_class_names": tf.gather(self.class_names, classes),
                "num_detections": tf.shape(scores)[0]}


def _run_time_length(vector):
    """The length of a 1-D tensor, computed when the graph runs. tf.size and tf.shape of
    a tensor whose length the trace knows are constants, and Grappler folds a Size op
    too; a loaded signature may still be fed a tensor of another rank."""
    return tf.shape(tf.boolean_mask(vector, tf.greater_equal(vector, 0)))[0]


def export_saved_model(model, classes, export_dir, scales=(600,), max_size=1000,
                       preprocessing="caffe", postprocess=PostprocessConfig(mode="default"),
                       roi_pool="composite", score_empty_rois=False, flip=False,
                       bbox_reg=True, deduplicate=True, max_proposals=MAX_PROPOSALS,
                       roi_batch=graph.ROI_BATCH, precision="float32"):
    """Writes a SavedModel of ``model`` (a FastRCNN emitting raw deltas) to
    ``export_dir`` (a temporary directory renamed into place); returns the module.
    Requests with more than ``max_proposals`` proposals are refused (0: no limit);
    RoIs go through pooling and the head ``roi_batch`` at a time (DetectionModule).
    ``precision``: what the network computes in (precision.py); the signature's
    inputs and outputs are the same in every precision."""
    if roi_pool not in ("composite", "custom_op"):
        raise ValueError(f"roi_pool must be 'composite' or 'custom_op', got {roi_pool!r}")
    check_precision(precision, "precision")
    url = is_url(str(export_dir))
    export_dir = str(export_dir) if url else Path(export_dir)
    if is_dir(export_dir) or is_file(export_dir):
        raise ValueError(f"{export_dir} exists; TF Serving expects one new numbered directory "
                         "per version (e.g. exports/demo/2): choose a new one")
    module = DetectionModule(with_roi_pool(precision_copy(model, precision), roi_pool), classes,
                             scales, max_size, preprocessing, postprocess, score_empty_rois,
                             flip, bbox_reg, deduplicate, max_proposals, roi_batch)
    settings = json.dumps(
        {"classes": list(classes), "scales": list(scales), "max_size": max_size,
         "preprocessing": preprocessing, "roi_pool": roi_pool,
         "score_empty_rois": score_empty_rois, "flip": flip, "bbox_reg": bbox_reg,
         "deduplicate": deduplicate, "max_proposals": module.max_proposals,
         "precision": precision,
         "postprocess": postprocess.__dict__}, indent=2) + "\n"
    if url:
        # An object store has no folder rename: the version is written in place, and a
        # failed export removes what it wrote. Point TF Serving at it once this returns.
        try:
            tf.saved_model.save(module, export_dir, signatures={SIGNATURE: module.detect})
            make_dirs(join(export_dir, "assets.extra"))
            atomic_write(join(export_dir, "assets.extra", "keras_frcnn.json"), settings)
        except BaseException:
            if tf.io.gfile.exists(export_dir):
                tf.io.gfile.rmtree(export_dir)
            raise
        return module
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(export_dir.parent, export_dir.name + ".tmp")
    try:
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.detect})
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / "keras_frcnn.json").write_text(settings)
        tmp.rename(export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return module


def graph_ops(export_dir):
    """Set of op types in a SavedModel's graph and its function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(read_bytes(join(export_dir, "saved_model.pb")))
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def check_graph(export_dir, roi_pool="composite"):
    """ExportError if the graph has a Python-function op, or (composite) our op."""
    ops = graph_ops(export_dir)
    python = sorted(ops & PYTHON_OPS)
    if python:
        raise ExportError(f"{export_dir}: the graph contains Python-function ops {python}; "
                          "TF Serving cannot run them")
    ours = sorted(op for op in ops if op.startswith(OUR_OP_PREFIX))
    if roi_pool == "composite" and ours:
        raise ExportError(f"{export_dir}: the graph contains {ours}, which a stock TF Serving "
                          "binary does not have")
    if roi_pool == "custom_op" and not ours:
        raise ExportError(f"{export_dir}: exported with roi_pool=custom_op but the graph has "
                          "no KerasFrcnn> op")
    return ops


_FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf
for library in sys.argv[3:]:
    tf.load_library(library)
inputs = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(image=tf.constant(inputs["image"]), proposals=tf.constant(inputs["proposals"]))
np.savez(sys.argv[2] + ".out.npz", **{k: v.numpy().astype(str) if v.dtype == tf.string
                                      else v.numpy() for k, v in out.items()})
assert "keras_frcnn" not in sys.modules
"""


def run_in_fresh_process(export_dir, image, proposals, op_libraries=()):
    """Outputs of the SavedModel's serving signature computed by a new Python process
    that imports only TensorFlow (and loads ``op_libraries``, for custom_op exports)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inputs.npz"
        np.savez(path, image=np.asarray(image, np.uint8),
                 proposals=np.asarray(proposals, np.float32))
        done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(export_dir), str(path),
                               *map(str, op_libraries)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ExportError(f"a fresh TensorFlow process could not run {export_dir}:\n"
                              f"{done.stderr[-3000:]}")
        with np.load(str(path) + ".out.npz") as out:
            return {k: out[k] for k in out.files}


def verify_export(module, export_dir, image, proposals, roi_pool="composite"):
    """Checks the graph (check_graph), then that a fresh TensorFlow-only process gives
    the in-process module's detections on ``image`` (RGB uint8) and ``proposals``.
    Returns the in-process outputs; raises ExportError on any difference."""
    if in_memory(export_dir):
        raise ExportError(f"{export_dir}: TensorFlow's in-memory file system is this "
                          "process's own, so a fresh process cannot load the export to "
                          "verify it; export with --noverify")
    check_graph(export_dir, roi_pool)
    expected = module(image, proposals)
    libraries = ()
    if roi_pool == "custom_op":
        from keras_frcnn.ops import loader

        loader.load()
        libraries = (loader.CPU_LIBRARY,)
    actual = run_in_fresh_process(export_dir, image, proposals, libraries)
    for name in OUTPUTS:
        if not np.array_equal(np.asarray(expected[name]), np.asarray(actual[name])):
            raise ExportError(f"{export_dir}: {name} differs between the in-process model and "
                              "the SavedModel loaded in a fresh process")
    return expected


def saved_model_cli_show(export_dir):
    """`saved_model_cli show` of the serving signature (its text)."""
    done = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli",
                           "show", "--dir", str(export_dir), "--tag_set", "serve",
                           "--signature_def", SIGNATURE], capture_output=True, text=True)
    if done.returncode != 0:
        raise ExportError(f"saved_model_cli show failed on {export_dir}:\n{done.stderr[-2000:]}")
    return done.stdout


def next_version_dir(root):
    """<root>/<1 + the largest numbered version in root> (TF Serving's layout)."""
    root = str(root) if is_url(str(root)) else Path(root)
    names = list_dir(root) if is_dir(root) else []
    versions = [int(n) for n in names if n.isdigit() and is_dir(join(root, n))]
    return join(root, str(max(versions, default=0) + 1))


def _classes(config, workdir, model_path):
    for folder in (workdir, Path(model_path).parent if model_path else None):
        if folder is not None and (Path(folder) / "classes.json").is_file():
            return read_json(Path(folder) / "classes.json", "delete it to take the class "
                             "names from the config's dataset", expect=list)
    from keras_frcnn.data.sources import load_dataset

    split = config.dataset.test_split
    return list(load_dataset(split_sections(config, split)[0], split).classes)


def verification_inputs(config):
    """(RGB image, proposals) of the first test image of the config's dataset."""
    from keras_frcnn.data.images import read_image_bgr
    from keras_frcnn.proposals.sources import first_images

    images = first_images(config, config.dataset.test_split, 1)
    if not images:
        raise ValueError(f"{config.dataset.kind} dataset: no test image to verify the export "
                         "with; pass --noverify")
    record, proposals = images[0]
    image = read_image_bgr(record.image_path, config.dataset.max_image_pixels,
                           config.dataset.get("exif_orientation", True))
    return image[..., ::-1].copy(), proposals


def export_workdir(config, workdir=None, model_path=None, export_dir=None, roi_pool="composite",
                   mode="default", verify=True):
    """bin/export.py: exports the model of a workdir (or a .keras file) with the
    config's test settings, then (``verify``) checks it. Returns {"module",
    "verified", "signature"}."""
    from keras_frcnn.workdirs import check_model_config, load_inference_model

    t = config.test
    model = load_inference_model(model_path or workdir)
    classes = _classes(config, workdir, model_path)
    check_model_config(model, config, classes, model_path or workdir)
    postprocess = PostprocessConfig.from_test_config(t, mode=mode)
    # The export computes in the precision asked for, whatever this machine has: the
    # server that runs it decides (docs/serving.md). Here it may only be emulated.
    precision = check_precision(t.get("precision", "float32"))
    reason = unsupported_reason(precision)
    if reason:
        logger.warning("test.precision=%s: %s; the export computes in %s all the same (for "
                       "a server that has it), and its verification here is slow", precision,
                       reason, precision)
    module = export_saved_model(model, classes, export_dir,
                                tuple(t.scales), t.max_size, config.pipeline.preprocessing,
                                postprocess, roi_pool, t.score_empty_rois, t.flip,
                                t.get("bbox_reg", True), t.get("deduplicate", True),
                                config.get("export", {}).get("max_proposals", MAX_PROPOSALS),
                                precision=precision)
    result = {"module": module, "verified": None, "signature": None}
    if verify:
        image, proposals = verification_inputs(config)
        if module.max_proposals:  # the export's own limit (a small one is legitimate)
            proposals = proposals[:module.max_proposals]
        outputs = verify_export(module, export_dir, image, proposals, roi_pool)
        ops = "no Python-function op" + ("" if roi_pool == "custom_op" else ", no keras_frcnn op")
        result["verified"] = (f"{ops}; a TensorFlow-only process gives the same "
                              f"{int(outputs['num_detections'])} detections on the first test "
                              "image")
        result["signature"] = saved_model_cli_show(export_dir)
    return result


__all__ = ["DetectionModule", "ExportError", "OUTPUTS", "check_graph", "export_saved_model",
           "export_workdir", "next_version_dir", "run_in_fresh_process", "saved_model_cli_show",
           "verify_export", "with_roi_pool"]
