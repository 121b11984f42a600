"""Detection with a trained FastRCNN: scales, forward pass, decoding, clipping, NMS.

The arithmetic is detection/graph.py's, the same TensorFlow functions the exported
SavedModel runs (export.py); this module adds reading images and proposals, the
tf.data pipeline that prepares the next image while the network runs, logging, and
the dataset-level cap of post-processing mode "frcnn", which needs every image.

Single-scale test: the image resized as in training (shortest side ``scales[0]``,
longest capped at ``max_size``). Multi-scale test (paper sections 3 and 5.2): one
image per scale in the batch, and each RoI goes to the scale where its scaled
area is closest to 224^2. RoIs that land on the same feature cells at the same
scale give identical outputs (RoI pooling sees only the rounded cells), so each
such group is computed once and its outputs copied back, as the release does;
the cells are computed with the op's own arithmetic (float32, rounded half away
from zero), so the copy is exact.

Proposals (decision, shared with the serving graph of export.py, which must give
the same detections): each proposal is clipped to the image and dropped when a
coordinate is not finite or when nothing of it is left (inverted, x2 < x1, or
wholly outside), before anything is scored, and the rest are sorted by their
coordinates so that ties of equal scores do not depend on their order
(graph.usable_proposals). Without proposals left the result is zero detections.
The release projects the
proposals unclipped and clips only the output boxes; a proposal far outside then
pools an all-empty grid and is scored from the biases, and an inverted one
decodes to an inverted box. Those are hostile inputs from a serving client, not
selective-search output, so we refuse to score them (docs/model.md, "Which
proposals are scored"). Detections carry no proposal index, so dropping changes
nothing a caller could index.

RoIs the feature map does not reach (decision): the conv map of an image of
width W has about W / stride columns (rounded up or down by the backbone), so a
thin proposal along the right or bottom edge can start at or beyond its last
column or row. RoI pooling then finds
every bin empty and outputs zeros, and the network scores that zero vector from
its biases alone, one constant score for every such RoI (0.52 "kangaroo" for
the kangaroo model, above most true detections). Training never sees them
(their IoU with any object is below the background threshold). We score them
as background, so they produce no detection; ``score_empty_rois=True`` keeps
the release's behaviour.

Horizontal-flip test (``flip=True``; decision, not in the paper or the release,
which test the image as it is): the mirrored image goes through the network in
the same batch with the mirrored proposals, its boxes are mirrored back, and
each proposal's class scores and per-class boxes are the mean of the two
passes (as Detectron's TEST.BBOX_AUG.H_FLIP averages them). Twice the network
work; measured on the kangaroo models in docs/benchmarks.md.

The model must emit raw deltas (a model saved by training.py or loaded with
``load_inference_model``; the target normalisation is folded into bbox_pred).
Deltas are decoded per class onto the proposals in original-image pixels and
clipped to the image; with ``bbox_reg=False`` the proposals themselves are each
class's boxes (the release's TEST.BBOX_REG, used for Table 6). Post-processing is
detection/postprocess.py.

``precision`` (config.test.precision): the network computes in float32, bfloat16 or
float16 (keras_frcnn/precision.py); its scores and deltas come out in float32, and
everything after them is the same in every precision.
"""

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

from keras_frcnn.boxes import as_proposals
from keras_frcnn.data import transforms
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import DatasetError, dataset_error
from keras_frcnn.numerics import apply_tf32
from keras_frcnn.precision import overflow_message, precision_copy, resolve_precision
from keras_frcnn.detection import graph
from keras_frcnn.detection.graph import make_network
from keras_frcnn.detection.postprocess import (Detections, PostprocessConfig, apply_set_cap,
                                               frcnn_candidates, make_postprocess,
                                               set_cap_thresholds, soft_nms_candidates)

logger = logging.getLogger("keras_frcnn.detection")


def dataset_errors(stream):
    """Iterates a tf.data stream; a DatasetError raised while an element was loaded
    comes out as one again (not a TensorFlow error carrying a Python traceback)."""
    iterator = iter(stream)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as err:
            raise dataset_error(err) or err
        yield item


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    scales: tuple = (600,)  # one entry: single-scale test; several: image pyramid
    max_size: int = 1000
    preprocessing: str = "caffe"  # data.transforms.preprocess mode of the backbone
    postprocess: PostprocessConfig = PostprocessConfig()
    deduplicate: bool = True  # compute RoIs sharing feature cells once
    score_empty_rois: bool = False  # True: RoIs beyond the feature map keep their score
    flip: bool = False  # also test the mirrored image and average the two (decision)
    bbox_reg: bool = True  # decode bbox_pred; False: every class's box is the proposal
    tf32: bool = True  # False: full float32 on Ampere+ GPUs, as Caffe (numerics.py)
    precision: str = "float32"  # network dtype: float32 | bfloat16 | float16 (precision.py)


class Detector:
    """Runs a FastRCNN on images and their proposals.

    ``detect(image_bgr, proposals)`` -> Detections for one image;
    ``detect_dataset(dataset, proposals)`` -> ({image_id: Detections}, timing).
    """

    def __init__(self, model, config=DetectorConfig()):
        if config.preprocessing not in transforms.PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {transforms.PREPROCESSING}, "
                             f"got {config.preprocessing!r}")
        if not config.scales:
            raise ValueError("DetectorConfig.scales is empty: give at least one test scale")
        apply_tf32(config.tf32)
        self.model = model
        self.config = config
        # What the network computes in here: config.precision, or float32 where this
        # machine has no bfloat16 arithmetic (said in one line).
        self.precision = resolve_precision(config.precision)
        if self.precision != "float32":
            logger.info("the detection network computes in %s (test.precision)",
                        self.precision)
        self.num_classes = int(model.get_layer("cls_score").units)
        self.spatial_scale = float(model.get_layer("roi_pool").spatial_scale)
        # The model the network runs: ``model`` itself in float32 (precision.py).
        self.network_model = precision_copy(model, self.precision)
        self._forward = tf.function(
            make_network(self.network_model, config.score_empty_rois),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                             tf.TensorSpec([None, 5], tf.float32)])
        self._prepare = tf.function(self._network_inputs, input_signature=[
            tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([None, 4], tf.float32)])
        self._postprocess = make_postprocess(self.num_classes, config.postprocess)

    def _network_inputs(self, image_bgr, proposals):
        c = self.config
        return graph.network_inputs(image_bgr, proposals, c.scales, c.max_size,
                                    c.preprocessing, c.flip,
                                    self.spatial_scale if c.deduplicate else None)

    def check_size(self, height, width, name="image"):
        """DatasetError naming ``name`` if a side of the image scales to 0 pixels at a test
        scale (graph.network_inputs would stop on it with an anonymous assertion)."""
        for target in self.config.scales:
            factor = transforms.image_scale(height, width, target, self.config.max_size)
            if round(height * factor) < 1 or round(width * factor) < 1:
                raise DatasetError(f"{name}: a {width}x{height} image scales to 0 pixels at "
                                   f"test scale {target} (max_size {self.config.max_size}); "
                                   "pad or crop it, or leave it out")

    def usable_proposals(self, proposals, width, height, image_id="image"):
        """[m, 4] float32: the proposals clipped to the ``width`` x ``height`` image,
        without the non-finite, inverted and outside ones, in canonical order
        (graph.usable_proposals); logs how many were dropped, since a proposal source
        that emits them has a bug. ValueError for anything but [n, 4] proposals."""
        proposals = as_proposals(proposals)
        kept = graph.usable_proposals(proposals, width, height)
        _log_dropped(image_id, len(proposals) - int(tf.shape(kept)[0]), len(proposals),
                     width, height)
        return kept.numpy()

    def prepare(self, image_bgr, proposals):
        """Network inputs of one image: (images [V*S, H, W, 3], rois [u, 5], inverse [V*n]),
        V = 2 with ``flip``, else 1 (graph.network_inputs).

        ``proposals`` [n, 4] lie inside the image, as usable_proposals returns them.
        With ``flip`` the batch holds the S mirrored images after the S plain ones,
        and ``inverse`` has 2n entries: the n proposals, then their mirrors.
        """
        images, rois, inverse = self._prepare(
            np.asarray(image_bgr, np.float32),
            as_proposals(proposals))
        return images.numpy(), rois.numpy(), inverse.numpy()

    def _raw(self, images, rois, inverse):
        """(scores, deltas) per proposal; images and rois are arrays or tensors."""
        scores, deltas = self._forward(tf.convert_to_tensor(images), tf.convert_to_tensor(rois))
        scores, deltas = scores.numpy(), deltas.numpy()
        if self.precision != "float32" and not (np.isfinite(scores).all()
                                                and np.isfinite(deltas).all()):
            # float16 tops out at 65504: a network whose activations grow past it (VGG16
            # on Caffe's 0-255 pixels can) gives infinities, then NaN scores.
            raise FloatingPointError(overflow_message(self.precision, "detect"))
        return scores[inverse], deltas[inverse]

    def _outputs(self, proposals, scores, deltas, width, height):
        """(boxes [n, 4K] clipped, scores [n, K + 1]) of the n proposals."""
        boxes, scores = graph.detection_outputs(proposals, tf.convert_to_tensor(scores),
                                                deltas, width, height, self.config.flip,
                                                self.config.bbox_reg)
        return boxes.numpy(), scores.numpy()

    def _finish(self, boxes, scores):
        b, s, c = self._postprocess(tf.constant(boxes, tf.float32), tf.constant(scores))
        return Detections(b.numpy(), s.numpy(), c.numpy().astype(np.int32))

    def warm_up(self):
        """Traces the network and post-processing graphs on a blank 64 x 64 image with one
        RoI, so that timing that follows measures detection, not tracing."""
        scales = len(self.config.scales) * (2 if self.config.flip else 1)
        images = tf.zeros([scales, 64, 64, 3], tf.float32)
        scores, deltas = self._forward(images, tf.constant([[0, 0, 0, 31, 31]], tf.float32))
        self._postprocess(tf.zeros([1, deltas.shape[1]], tf.float32), scores)

    def detect(self, image_bgr, proposals):
        """Detections of one image (BGR uint8) with its proposals ([n, 4], 0-based);
        proposals are clipped to the image first (usable_proposals), and none left
        means no detections."""
        self.check_size(*image_bgr.shape[:2])
        proposals = self.usable_proposals(proposals, image_bgr.shape[1], image_bgr.shape[0])
        if len(proposals) == 0:
            return Detections.empty()
        images, rois, inverse = self.prepare(image_bgr, proposals)
        scores, deltas = self._raw(images, rois, inverse)
        return self._finish(*self._outputs(proposals, scores, deltas, image_bgr.shape[1],
                                           image_bgr.shape[0]))

    def detect_dataset(self, dataset, proposals, progress=True):
        """Detections of every image of ``dataset`` ({image_id: [n, 4] proposals}).

        Images are read and prepared by a parallel tf.data pipeline while the
        network runs. Returns ({image_id: Detections}, timing) where timing
        has seconds per image of the network and post-processing alone, after a
        warm-up that traces their graphs (warm_up).
        """
        records = list(dataset.records)
        missing = [r.image_id for r in records if r.image_id not in proposals]
        if missing:
            raise ValueError(f"no proposals for {len(missing)} images of {dataset.name} "
                             f"(first: {missing[:3]})")

        def read(index):
            record = records[int(index)]
            image = read_image_bgr(record.image_path, dataset.max_image_pixels,
                                   dataset.exif_orientation)
            self.check_size(*image.shape[:2], record.image_path)
            try:
                boxes = as_proposals(proposals[record.image_id],
                                     f"proposals of {record.image_id}")
            except ValueError as err:  # raised in tf.data: comes out as a DatasetError
                raise DatasetError(str(err)) from None
            # The record's size clips the proposals and the output boxes (_outputs).
            return image, boxes, np.array([record.width, record.height], np.float64)

        def load(index):
            image, raw, size = tf.numpy_function(read, [index],
                                                 [tf.uint8, tf.float32, tf.float64],
                                                 stateful=False)
            image = tf.ensure_shape(image, [None, None, 3])
            raw = tf.ensure_shape(raw, [None, 4])
            size = tf.ensure_shape(size, [2])
            boxes = graph.usable_proposals(raw, size[0], size[1])
            images, rois, inverse = self._network_inputs(tf.cast(image, tf.float32), boxes)
            return images, rois, inverse, boxes, tf.shape(raw)[0]

        stream = tf.data.Dataset.range(len(records)).map(
            load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(4)
        bar = None
        if progress:
            from keras_frcnn.progress import progress_bar
            bar = progress_bar(len(records), "detecting", "image")
        results, candidate_scores, pending = {}, [], {}
        self.warm_up()  # tracing is not detection time
        network_seconds = 0.0
        post = self.config.postprocess
        cap = post.mode == "frcnn"
        defer = cap and post.soft_nms_sigma > 0  # Soft-NMS after the set cap (below)
        for record, (images, rois, inverse, boxes, count) in zip(records,
                                                                  dataset_errors(stream)):
            boxes = boxes.numpy()
            _log_dropped(record.image_id, int(count) - len(boxes), int(count), record.width,
                         record.height)
            start = time.perf_counter()
            if len(boxes) == 0:
                logger.warning("%s: no proposals inside the image, no detections",
                               record.image_id)
                results[record.image_id] = Detections.empty()
            else:
                scores, deltas = self._raw(images, rois, inverse.numpy())
                decoded, scores = self._outputs(boxes, scores, deltas, record.width,
                                                record.height)
                if defer:
                    results[record.image_id] = None  # keeps the records' order
                    pending[record.image_id] = frcnn_candidates(decoded, scores,
                                                                post.max_per_class)
                else:
                    results[record.image_id] = self._finish(decoded, scores)
                if cap:  # the per-class candidates of mode frcnn: top max_per_class scores
                    candidate_scores.append(np.sort(scores, axis=0)[-post.max_per_class:])
            network_seconds += time.perf_counter() - start
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if defer and candidate_scores:
            # The release thresholds the candidates, then suppresses. After hard NMS
            # the order does not matter; Soft-NMS lowers scores, so the candidates are
            # thresholded first and the survivors keep their decayed scores.
            start = time.perf_counter()
            thresholds = set_cap_thresholds(candidate_scores, len(results),
                                            post.max_per_set_factor)
            for image_id, candidates in pending.items():
                results[image_id] = soft_nms_candidates(candidates, thresholds,
                                                        post.soft_nms_sigma)
            network_seconds += time.perf_counter() - start
        elif cap:
            results = apply_set_cap(results, candidate_scores, post.max_per_set_factor)
        timing = {"images": len(records),
                  "network_seconds_per_image": network_seconds / max(len(records), 1)}
        return results, timing


def _log_dropped(image_id, dropped, count, width, height):
    if dropped:
        logger.warning("%s: %d of %d proposals dropped (non-finite, x2 < x1 or y2 < y1, or "
                       "outside the %dx%d image)", image_id, dropped, count, width, height)
