"""Selective search as a Beam pipeline: the images of a split in, proposal cache
entries out, the same entries (same keys, same bytes) that
``compute_selective_search`` writes on one machine, so training, evaluation and
detection read them unchanged.

The pipeline is one ParDo over the image paths (reshuffled, so that a runner spreads
them over its workers). Each element reads its image once, hashes and decodes those
bytes, and writes its cache entry atomically as soon as it is computed
(proposals/selective_search.py ``search_into_cache``): an image already cached is
skipped, and an image that fails never costs the others their work, whatever the
runner does with the failure. With ``on_error="skip"`` a bad image (missing, too
large, undecodable) goes to the dead-letter output, one line naming it and the
reason, written to a text file; with ``"raise"`` the pipeline fails naming it.

The cache must be where every worker can write: a local folder for DirectRunner, a
bucket (``gs://...``) for a cluster (keras_frcnn.files).
"""

import apache_beam as beam

from keras_frcnn.beam import (DEAD_LETTER, counter_totals, run_pipeline, to_dead_letter,
                              with_refused, write_lines)
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError, check_on_error
from keras_frcnn.proposals.selective_search import MAX_SIZE, search_into_cache

_NAMESPACE = "keras_frcnn.proposals"
COUNTERS = ("computed", "cached", DEAD_LETTER)


class SearchImage(beam.DoFn):
    """One image path in; its cache entry written (or found); out on the main output
    ``(path, "computed" | "cached")``, or on ``DEAD_LETTER`` its one-line error."""

    def __init__(self, cache_dir, mode="fast", max_size=MAX_SIZE, max_pixels=MAX_IMAGE_PIXELS,
                 orient=True, on_error="skip"):
        check_on_error(on_error)
        self._args = (str(cache_dir), mode, max_size, max_pixels, orient)
        self._on_error = on_error
        self._counters = {name: beam.metrics.Metrics.counter(_NAMESPACE, name)
                          for name in COUNTERS}

    def setup(self):
        import cv2

        cv2.setNumThreads(1)  # the runner runs one search per worker thread or process

    def process(self, path):
        try:
            state, _ = search_into_cache(path, *self._args)
        except DatasetError as err:
            yield to_dead_letter(err, self._on_error, self._counters[DEAD_LETTER])
            return
        self._counters[state].inc()
        yield path, state


def search_images(images, cache_dir, mode="fast", max_size=MAX_SIZE,
                  max_pixels=MAX_IMAGE_PIXELS, orient=True, on_error="skip"):
    """The transform over a PCollection of image paths: returns its tagged outputs,
    ``.done`` ((path, state) per image) and ``.dead_letter`` (lines)."""
    return (images
            | "Spread" >> beam.Reshuffle()
            | "Search" >> beam.ParDo(SearchImage(cache_dir, mode, max_size, max_pixels, orient,
                                                 on_error)).with_outputs(DEAD_LETTER, main="done"))


def run_proposals_pipeline(options, image_paths, cache_dir, dead_letter, mode="fast",
                           max_size=MAX_SIZE, max_pixels=MAX_IMAGE_PIXELS, orient=True,
                           on_error="skip", refused=()):
    """Runs the pipeline over ``image_paths`` with Beam ``options`` (PipelineOptions)
    and waits for it. The dead-letter lines go to the text file ``dead_letter`` (empty
    when every image was fine), after ``refused``: the messages of images the dataset's
    reader left out already (``dataset.metadata["skipped"]``). Returns {"computed",
    "cached", "dead_letter"} counts (``refused`` included)."""
    check_on_error(on_error)
    pipeline = beam.Pipeline(options=options)
    outputs = search_images(pipeline | "Images" >> beam.Create([str(p) for p in image_paths]),
                            cache_dir, mode, max_size, max_pixels, orient, on_error)
    write_lines(with_refused(pipeline, outputs[DEAD_LETTER], refused), dead_letter,
                "DeadLetter")
    counts = counter_totals(run_pipeline(pipeline), _NAMESPACE, COUNTERS)
    return {**counts, DEAD_LETTER: counts[DEAD_LETTER] + len(refused)}
