"""Proposals for a whole dataset, as ``config.proposals`` describes them: all at once
(``proposals_for_dataset``) or image by image while the caller works on the images
already handed out (``ProposalStream``: selective search runs ahead in worker
processes, the other methods are read at once). Both give the same boxes."""

import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from keras_frcnn.data.records import DatasetError, handle_error
from keras_frcnn.files import is_url
from keras_frcnn.proposals import dense, mat, postprocess, selective_search

METHODS = ("selective_search", "dense", "mat", "demo_mat")


def default_cache_dir():
    from keras_frcnn.data.demo import default_cache_dir as cache_root

    return cache_root() / "proposals"


def proposals_for_dataset(dataset, proposals_config, progress=True, split="", on_error="raise"):
    """{image_id: [n, 4] boxes} after post-processing (unique, min size, top-k).

    ``on_error="skip"``: an image selective search cannot decode is logged and left
    out of the result (the caller skips it); otherwise its DatasetError is raised.

    methods: "selective_search" (OpenCV, ``mode`` fast|quality, cached; run on images
    downscaled to ``selective_search.MAX_SIZE`` on the longest side; images above
    ``dataset.max_image_pixels`` are refused),
    "dense" (paper section 5.5), "mat" (the release's dataset file
    ``mat_file``, where "{split}" becomes ``split``), "demo_mat" (per-image
    ``<id>_boxes.mat`` in ``mat_dir``).
    """
    cfg = proposals_config
    records = dataset.records
    check_add_dense(cfg)
    if cfg.method == "selective_search":
        paths, cache, mode, workers = _selective_search_arguments(dataset, cfg)
        raw = selective_search.compute_selective_search(paths, cache, mode, workers, progress,
                                                        max_pixels=dataset.max_image_pixels,
                                                        on_error=on_error,
                                                        orient=dataset.exif_orientation)
    elif cfg.method == "dense":
        raw = [dense.dense_boxes(r.width, r.height) for r in records]
    elif cfg.method == "mat":
        mat_file = cfg.mat_file.replace("{split}", split)
        by_id = {}
        for path in mat_file.split("+"):  # one file per joined dataset (VOC 07+12)
            by_id.update(mat.load_dataset_boxes(path, [r.image_id for r in records]
                                                if cfg.get("mat_has_no_ids") else None))
        missing = [r.image_id for r in records if r.image_id not in by_id]
        if missing:
            raise DatasetError(f"{mat_file}: no boxes for images {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''}")
        raw = [by_id[r.image_id] for r in records]
    elif cfg.method == "demo_mat":
        raw = [mat.load_demo_boxes(Path(cfg.mat_dir) / f"{r.image_id}_boxes.mat") for r in records]
    else:
        raise ValueError(f"proposals.method must be one of {METHODS}, got {cfg.method!r}")
    return {r.image_id: postprocess_proposals(cfg, r, boxes) for r, boxes in zip(records, raw)
            if boxes is not None}


def check_add_dense(cfg):
    add = cfg.get("add_dense", 0)
    if isinstance(add, bool) or not isinstance(add, int) or add < -1:
        raise ValueError(f"proposals.add_dense={add!r}: give a number of dense boxes to add "
                         "per image, 0 for none or -1 for all")
    if add and cfg.method == "dense":
        raise ValueError("proposals.add_dense adds dense boxes to another method's; with "
                         "proposals.method=dense every dense box is used already: set one")


def postprocess_proposals(cfg, record, boxes):
    """The [n, 4] proposals of one image after the filters of ``cfg`` (a ``proposals``
    config section), as ``proposals_for_dataset`` and ``ProposalStream`` apply them:
    ``boxes``, raw from any source, are clipped to the image (``record.width``,
    ``record.height``; any object with those two attributes will do), non-finite
    boxes, duplicates (``cfg.unique``, default True) and boxes under ``cfg.min_size``
    pixels wide or high are dropped, and the first ``cfg.top_k`` are kept (0: all),
    in their order (postprocess.postprocess). For selective search the minimum size is
    at least ``cfg.selective_search_min_size`` where the config sets it (R-CNN's
    20-pixel filter).

    ``cfg.add_dense`` > 0 then appends that many dense boxes drawn at random from
    the image's dense set (-1: all of them), as the paper's section 5.5 adds dense
    boxes to selective search; the draw is seeded by the record's ``image_id``, so an
    image gets the same boxes in every run."""
    top_k = cfg.top_k if cfg.top_k > 0 else None
    min_size = cfg.min_size
    if cfg.method == "selective_search":
        # The release's proposals come from R-CNN's selective_search_boxes.m, which drops
        # boxes under minBoxWidth = 20 pixels wide or high before the release's own filter.
        min_size = max(min_size, cfg.get("selective_search_min_size", 0))
    kept = postprocess.postprocess(boxes, record.width, record.height, min_size, top_k,
                                   cfg.get("unique", True))
    add = int(cfg.get("add_dense", 0))
    if add == 0:
        return kept
    return np.concatenate([kept, random_dense_boxes(record, add)])


def random_dense_boxes(record, count):
    """``count`` boxes of the record's dense set (dense.dense_boxes) drawn without
    replacement, seeded by its image_id, in dense order (all of them for -1 or a count
    above their number)."""
    boxes = dense.dense_boxes(record.width, record.height)
    if count < 0 or count >= len(boxes):
        return boxes
    seed = zlib.crc32(str(getattr(record, "image_id", "")).encode())
    chosen = np.random.default_rng(seed).choice(len(boxes), count, replace=False)
    return boxes[np.sort(chosen)]


def _selective_search_arguments(dataset, cfg):
    """(image paths, cache folder, mode, workers) of ``cfg``'s selective search."""
    return ([r.image_path for r in dataset.records], proposal_cache_dir(cfg), cfg.mode,
            cfg.get("workers") or None)


def proposal_cache_dir(cfg):
    """The proposal cache root of a ``proposals`` config section: ``cache_dir`` (a local
    folder or a URL, keras_frcnn.files), or the default under the user's cache."""
    cache_dir = cfg.get("cache_dir") or default_cache_dir()
    return cache_dir if is_url(cache_dir) else Path(cache_dir)


class ProposalStream(Mapping):
    """{image_id: [n, 4] proposals} of a dataset, each computed by the time it is asked
    for: the same boxes as ``proposals_for_dataset``, but selective search runs in
    worker processes a few images ahead of the caller (SelectiveSearchStream) instead
    of for every image first. Iterating ``pairs()`` gives (record, proposals) in record
    order; the mapping side serves ``Detector.detect_dataset``, whose loading threads
    ask for the images about in order. Other methods are read at construction.

    Construction refuses missing and oversized images, as ``proposals_for_dataset``
    does, and starts the workers. A worker's DatasetError (an image it cannot decode)
    is raised whenever that image is asked for, and the other images go on; any other
    failure of the stream is raised for that image and every later one. Use it as a
    context manager (or call ``close``) so that the workers stop when the caller
    leaves early.
    """

    def __init__(self, dataset, proposals_config, progress=True, split=""):
        from keras_frcnn.proposals.selective_search import SelectiveSearchStream

        check_add_dense(proposals_config)
        self._config = proposals_config
        self._records = dataset.records
        self._position = {}  # image_id -> its record's position (the first, if repeated)
        for k, record in enumerate(self._records):
            self._position.setdefault(record.image_id, k)
        self._ready = {}  # record position -> proposals (or its DatasetError), until handed out
        self._taken = 0  # records whose boxes came out of the stream
        self._lock = threading.Lock()  # detect_dataset asks from several threads
        self._error = None
        self._stream = None
        self.skipped = []  # messages of the images pairs() left out
        if proposals_config.method == "selective_search":
            paths, cache, mode, workers = _selective_search_arguments(dataset, proposals_config)
            self._stream = SelectiveSearchStream(paths, cache, mode, workers, progress,
                                                 max_pixels=dataset.max_image_pixels,
                                                 orient=dataset.exif_orientation)
        else:  # files or arithmetic: nothing to overlap
            by_id = proposals_for_dataset(dataset, proposals_config, progress, split)
            self._ready = {k: by_id[r.image_id] for k, r in enumerate(self._records)}
            self._taken = len(self._records)

    def _at(self, position):
        """The proposals of the record at ``position``, taking the stream up to it."""
        with self._lock:
            while position not in self._ready:
                if self._error is not None:
                    raise self._error
                if position < self._taken:
                    raise KeyError(f"{self._records[position].image_id}: its proposals were "
                                   "handed out by pairs()")
                try:
                    boxes = next(self._stream)
                except StopIteration:
                    raise ValueError("the proposal stream was closed") from None
                except DatasetError as err:  # this image's own: the stream goes on
                    boxes = err
                except Exception as err:  # the stream is closed: every later image fails
                    self._error = err
                    raise
                if not isinstance(boxes, DatasetError):
                    boxes = postprocess_proposals(self._config, self._records[self._taken], boxes)
                self._ready[self._taken] = boxes
                self._taken += 1
            result = self._ready[position]
        if isinstance(result, DatasetError):
            raise result
        return result

    def __getitem__(self, image_id):
        return self._at(self._position[image_id])

    def pairs(self, on_error="raise"):
        """(record, proposals) of every image in record order, each dropped from here
        once handed out (a folder of photos is not held twice). An image whose
        proposals failed with a DatasetError is raised, or with ``on_error="skip"``
        logged and left out (and its message appended to ``skipped``)."""
        for position, record in enumerate(self._records):
            try:
                boxes = self._at(position)
            except DatasetError as err:
                handle_error(err, on_error)
                self.skipped.append(str(err))
                continue
            finally:
                with self._lock:
                    self._ready.pop(position, None)
            yield record, boxes

    def __contains__(self, image_id):
        return image_id in self._position

    def __iter__(self):
        return iter(self._position)

    def __len__(self):
        return len(self._position)

    def close(self):
        """Stops the selective-search workers (what they finished is cached). Under the
        lock: detect_dataset's loading threads may be inside the stream."""
        with self._lock:
            if self._stream is not None:
                self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def first_images(config, split, count):
    """[(record, [n, 4] proposals)] of the first ``count`` images of ``split`` of
    ``config``'s dataset (proposals computed or read for those images only)."""
    import dataclasses

    from keras_frcnn.data.sources import load_dataset

    from keras_frcnn.configs import split_sections

    dataset_config, proposals_config = split_sections(config, split)
    dataset = load_dataset(dataset_config, split)
    dataset = dataclasses.replace(dataset, records=tuple(dataset.records[:count]))
    proposals = proposals_for_dataset(dataset, proposals_config, False, split=split)
    return [(record, proposals[record.image_id]) for record in dataset.records]


def summarize(proposals, seconds):
    counts = [len(b) for b in proposals.values()]
    return (f"{len(counts)} images, {sum(counts) / max(len(counts), 1):.0f} proposals per image "
            f"(min {min(counts, default=0)}, max {max(counts, default=0)}), {seconds:.1f} s")


def timed_proposals(dataset, proposals_config, progress=True, split=""):
    start = time.perf_counter()
    result = proposals_for_dataset(dataset, proposals_config, progress, split)
    return result, time.perf_counter() - start
