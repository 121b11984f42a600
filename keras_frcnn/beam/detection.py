"""Batch detection as a Beam pipeline: the images of a folder or a split in,
detections out as JSON lines and as a COCO results file
(evaluation/detection_files.py), which ``bin/evaluate.py --detections`` scores.

    image paths -> Spread -> Prepare (decode; proposals from the cache, or selective
        search computed and cached here; or given) -> RunInference(the exported
        SavedModel) -> detections.jsonl, coco_results.json

The network is the SavedModel bin/export.py writes (keras_frcnn/export.py), run by
Beam's RunInference through ``SavedModelHandler``, a model handler of ours: Beam's
stock TensorFlow handler feeds one batched tensor to a single-input model (and
imports tensorflow_hub, which needs Keras 2), while the serving signature takes two
inputs, an image of its own size and its proposals. So each image is one call, as
a TF Serving request is. The export does the Detector's work op for op, with
post-processing mode "default" (per image; the dataset-level cap of mode "frcnn"
has no meaning for one image), so the detections are bin/detect.py's under
``test.mode=default``.

A bad image (missing, too large, undecodable) goes to the dead-letter file, one line
naming it and the reason, with ``on_error="skip"``; with "raise" the pipeline fails
naming it. Outputs may be local or URLs (gs://...; keras_frcnn.files).
"""

import logging

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler, PredictionResult,
                                           RunInference)

from keras_frcnn.beam import (DEAD_LETTER, counter_totals, run_pipeline, to_dead_letter,
                              with_refused, write_lines)
from keras_frcnn.data.records import DatasetError, check_on_error
from keras_frcnn.evaluation.detection_files import coco_rows, detection_line
from keras_frcnn.files import atomic_write, join

_NAMESPACE = "keras_frcnn.detection"
SIGNATURE = "serving_default"  # export.SIGNATURE, without importing TensorFlow here
logger = logging.getLogger("keras_frcnn.beam.detection")


class SavedModelHandler(ModelHandler):
    """RunInference's handler of an exported detection SavedModel: an example is
    (RGB uint8 image [H, W, 3], float32 proposals [R, 4]); its inference is the
    serving signature's outputs as numpy arrays (strings decoded)."""

    def __init__(self, saved_model, op_libraries=()):
        super().__init__()
        self._saved_model = str(saved_model)
        self._libraries = tuple(str(p) for p in op_libraries)  # for roi_pool=custom_op exports

    def load_model(self):
        import tensorflow as tf

        for library in self._libraries:
            tf.load_library(library)
        return tf.saved_model.load(self._saved_model).signatures[SIGNATURE]

    def run_inference(self, batch, model, inference_args=None):
        import tensorflow as tf

        results = []
        for image, proposals in batch:  # one call per image: the signature's shapes
            out = model(image=tf.constant(image, tf.uint8),
                        proposals=tf.constant(proposals, tf.float32))
            results.append(PredictionResult(
                (image.shape, len(proposals)),  # not the pixels: they are done with
                {k: v.numpy().astype(str) if v.dtype == tf.string else v.numpy()
                 for k, v in out.items()}))
        return results

    def get_num_bytes(self, batch):
        return sum(image.nbytes + np.asarray(proposals).nbytes for image, proposals in batch)

    def batch_elements_kwargs(self):
        # Images of different sizes cannot share a call; a batch of a few only amortises
        # Beam's per-batch overhead, and bounds the decoded images held at once.
        return {"min_batch_size": 1, "max_batch_size": 4}


class PrepareImage(beam.DoFn):
    """(image_id, path, proposals or None) in; ((image_id, path), (RGB image, proposals))
    out, or its one-line error on DEAD_LETTER. Proposals None: selective search from
    the cache, computed and cached where missing (``proposals_config``)."""

    def __init__(self, proposals_config, cache_dir, max_pixels, orient, on_error="skip"):
        check_on_error(on_error)
        self._config = proposals_config.to_dict() if hasattr(proposals_config, "to_dict") \
            else dict(proposals_config)
        self._cache_dir = str(cache_dir)
        self._max_pixels = max_pixels
        self._orient = orient
        self._on_error = on_error
        self._dead = beam.metrics.Metrics.counter(_NAMESPACE, DEAD_LETTER)

    def setup(self):
        import cv2
        import ml_collections

        cv2.setNumThreads(1)
        self._cfg = ml_collections.ConfigDict(self._config)

    def process(self, element):
        from keras_frcnn.data.images import read_image_bgr
        from keras_frcnn.data.records import ImageRecord
        from keras_frcnn.proposals.selective_search import read_image_file, search_into_cache
        from keras_frcnn.proposals.sources import postprocess_proposals

        image_id, path, proposals = element
        try:
            data = read_image_file(path)
            image = read_image_bgr(path, self._max_pixels, self._orient, data=data)
            if proposals is None:  # on a cache miss the search decodes its own copy, as
                # compute_selective_search does (a large JPEG at reduced size): same boxes
                _, raw = search_into_cache(path, self._cache_dir, self._cfg.mode,
                                           max_pixels=self._max_pixels, orient=self._orient,
                                           data=data)
                record = ImageRecord.create(image_id, path, image.shape[1], image.shape[0])
                proposals = postprocess_proposals(self._cfg, record, raw)
        except DatasetError as err:
            yield to_dead_letter(err, self._on_error, self._dead)
            return
        yield (image_id, path), (np.ascontiguousarray(image[..., ::-1]),
                                 np.asarray(proposals, np.float32))


class WriteCocoResults(beam.DoFn):
    """The list of every image's (image_id, outputs) in; ``path`` written, whole, once."""

    def __init__(self, path, coco_image_ids, categories):
        self._path, self._images, self._categories = str(path), coco_image_ids, categories

    def process(self, entries):
        import json

        rows = []
        for image_id, out in sorted(entries, key=lambda entry: entry[0]):
            rows += coco_rows(self._images[image_id], out["detection_boxes"],
                              out["detection_scores"], out["detection_classes"],
                              self._categories)
        atomic_write(self._path, json.dumps(rows))
        yield len(rows)


def run_detection_pipeline(options, saved_model, images, output_dir, class_names,
                           proposals_config, cache_dir, coco_image_ids, categories,
                           max_pixels, orient=True, on_error="skip", op_libraries=(),
                           refused=()):
    """Runs batch detection over ``images`` ([(image_id, path, proposals or None)]) with
    Beam ``options``; writes ``output_dir``/detections.jsonl, coco_results.json and
    dead_letter.txt (after ``refused``: the messages of images the reader left out
    already). Returns {"images": detected, "detections": rows in the COCO file,
    "dead_letter": count, ``refused`` included}."""
    check_on_error(on_error)
    pipeline = beam.Pipeline(options=options)
    prepared = (pipeline
                | "Images" >> beam.Create([(str(i), str(p), None if b is None else
                                            np.asarray(b, np.float32)) for i, p, b in images])
                | "Spread" >> beam.Reshuffle()
                | "Prepare" >> beam.ParDo(PrepareImage(
                    proposals_config, cache_dir, max_pixels, orient, on_error)).with_outputs(
                        DEAD_LETTER, main="ready"))
    detected = (prepared.ready
                | "Detect" >> RunInference(KeyedModelHandler(
                    SavedModelHandler(saved_model, op_libraries)))
                | "Outputs" >> beam.MapTuple(lambda key, result: (key, result.inference)))
    write_lines(detected | "Line" >> beam.MapTuple(lambda key, out: detection_line(
        key[0], key[1], out["detection_boxes"], out["detection_scores"],
        out["detection_classes"], class_names)), join(output_dir, "detections.jsonl"),
        "JsonLines")
    counted = (detected
               | "ById" >> beam.MapTuple(lambda key, out: (key[0], out))
               | "All" >> beam.combiners.ToList()
               | "Coco" >> beam.ParDo(WriteCocoResults(join(output_dir, "coco_results.json"),
                                                       coco_image_ids, categories)))
    counted | "CountRows" >> beam.Map(
        lambda n: beam.metrics.Metrics.counter(_NAMESPACE, "rows").inc(n))
    (detected
     | "CountImages" >> beam.Map(lambda _: beam.metrics.Metrics.counter(
         _NAMESPACE, "images").inc()))
    write_lines(with_refused(pipeline, prepared[DEAD_LETTER], refused),
                join(output_dir, "dead_letter.txt"), "DeadLetter")
    totals = counter_totals(run_pipeline(pipeline), _NAMESPACE,
                            ("images", "rows", DEAD_LETTER))
    return {"images": totals["images"], "detections": totals["rows"],
            "dead_letter": totals[DEAD_LETTER] + len(refused)}


def detect_on_beam(options, config, saved_model, output_dir, images=None, split=None,
                   recursive=False):
    """bin/detect.py with Beam options: runs ``run_detection_pipeline`` over ``images``
    (files or folders) or the ``split`` of ``config``'s dataset with the SavedModel
    ``saved_model`` (its classes from the export's assets.extra/keras_frcnn.json);
    returns the program's summary line."""
    import json
    import time

    from keras_frcnn.configs import split_sections
    from keras_frcnn.data.folder import load_images
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.evaluation.detection_files import coco_ids
    from keras_frcnn.files import is_file, make_dirs, read_bytes
    from keras_frcnn.proposals.sources import (check_add_dense, proposal_cache_dir,
                                               proposals_for_dataset)

    settings = join(saved_model, "assets.extra", "keras_frcnn.json")
    if not is_file(settings):
        raise FileNotFoundError(f"{saved_model}: not a SavedModel written by bin/export.py (no "
                                f"{settings}); export the model first")
    try:
        recorded = json.loads(read_bytes(settings))
        classes = list(recorded["classes"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{settings}: not the settings bin/export.py writes ({err!r}); "
                         "export the model again") from None
    # The SavedModel computes in the precision it was exported with (docs/serving.md).
    exported = recorded.get("precision", "float32")
    asked = config.test.get("precision", "float32")
    if asked != exported:
        logger.warning("%s computes in %s (its export's setting), which is what runs on "
                       "Beam, not in this config's test.precision=%s; to run in %s, export "
                       "it again with --config.test.precision=%s", saved_model, exported,
                       asked, asked, asked)
    if split:
        dataset_config, proposals_config = split_sections(config, split)
        dataset = load_dataset(dataset_config, split)
        if list(dataset.classes) != list(classes):
            raise ValueError(f"{saved_model} detects {classes} but {dataset.name} has "
                             f"{list(dataset.classes)}; export the model trained on it")
    else:
        proposals_config = config.proposals
        dataset = load_images(images, tuple(classes), on_error=config.dataset.on_error or "skip",
                              max_image_pixels=config.dataset.max_image_pixels,
                              recursive=recursive,
                              exif_orientation=config.dataset.get("exif_orientation", True))
    check_add_dense(proposals_config)
    if proposals_config.method == "selective_search":
        given = {}  # searched, or read from the cache, in the pipeline
    else:
        given = proposals_for_dataset(dataset, proposals_config, progress=False, split=split or "")
    elements = [(r.image_id, r.image_path, given.get(r.image_id)) for r in dataset.records]
    refused = dataset.metadata.get("skipped", ())  # the reader left them out (on_error=skip)
    image_ids, categories = coco_ids([r.image_id for r in dataset.records],
                                     dataset.metadata.get("category_ids"), len(classes) + 1)
    make_dirs(output_dir)
    start = time.perf_counter()
    counts = run_detection_pipeline(
        options, saved_model, elements, output_dir, list(classes), proposals_config,
        proposal_cache_dir(proposals_config), image_ids, categories,
        dataset.max_image_pixels, dataset.exif_orientation,
        on_error=config.dataset.on_error or "skip", refused=refused)
    seconds = time.perf_counter() - start
    total = len(dataset.records) + len(refused)
    dead = counts["dead_letter"]
    return (f"{dataset.name}: {counts['images']} of {total} images detected on "
            f"Beam in {seconds:.1f} s, {counts['detections']} detections in "
            f"{join(output_dir, 'detections.jsonl')} and coco_results.json; "
            f"{dead} image{'s' * (dead != 1)} in {join(output_dir, 'dead_letter.txt')}")
