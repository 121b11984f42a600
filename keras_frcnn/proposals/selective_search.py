"""Selective search with OpenCV (``cv2.ximgproc.segmentation``), cached on disk.

Boxes are (x1, y1, x2, y2), 0-based inclusive pixels of the image as decoded
(keras_frcnn/boxes.py). The search runs on a copy whose longest side is at most
``MAX_SIZE`` pixels (its memory grows with the pixel count, 100-190 bytes a
pixel, and its time faster: docs/data.md), and its boxes are scaled back to the
image; large JPEGs are decoded at reduced size directly (data/images.py).

Each image's proposals are cached as ``<cache>/<method key>/<image digest>.npz``:
the method key hashes the mode, the size cap when the image exceeds it, and the
OpenCV version, the image digest hashes the file's bytes, so a changed image or
setting is never served stale results. Entries are written to a temporary name
and renamed, so an interrupted run leaves only complete entries and the next run
resumes where it stopped. Images are processed in worker processes (one OpenCV thread each;
forked, or spawned when TensorFlow is loaded) with a progress bar: all at once
(``compute_selective_search``), or a few images ahead of a consumer that takes them
in order (``SelectiveSearchStream``, so that detection runs while the next images'
proposals are computed).

OpenCV ranks the boxes with a random factor drawn from the C library's ``rand()``,
whose state is shared by the whole process: without a reset, an image's box order
(and so what a ``top_k`` cut keeps) would depend on how many searches its process
ran before it, i.e. on which worker took it. The state is reset before every search,
so an image's boxes are the same whichever process computes them, in whatever order
(what a fresh process gives for it first); the two ways of running agree exactly.
Within a process, searches take turns (a lock around the reset and the search), so
threads sharing a Predictor get the boxes a lone call gets.

Workers never outlive the process that started them: each watches its parent and
exits when it is gone, however it ended (SIGKILL and the OOM killer included), so no
search goes on for nobody (proposals/workers.py).
"""

import collections
import concurrent.futures
import ctypes
import hashlib
import io
import json
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from keras_frcnn.data.images import (check_image_pixels, downscale, image_size,
                                     read_image_bgr_within)
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError, handle_error
from keras_frcnn.files import (atomic_write, file_digest, in_memory, is_file, is_url, join,
                               make_dirs, read_bytes)
from keras_frcnn.proposals.workers import start_pool, worker_result

logger = logging.getLogger("keras_frcnn.proposals")
MODES = ("fast", "quality")
# Longest side (pixels) selective search runs at. Above VOC's 500 (its results are
# unchanged) and equal to the detector's default cap on the longest side: finer detail
# than the network sees buys nothing, and 2000 px would take 7x the time (docs/data.md).
MAX_SIZE = 1000


def selective_search(image_bgr, mode="fast", max_size=MAX_SIZE):
    """Selective search proposals of one image: [n, 4] float32 0-based (x1, y1, x2, y2)
    in the image's coordinates, in OpenCV's ranking order; computed on a copy downscaled
    to ``max_size`` on the longest side if the image is larger."""
    _check_arguments(mode, max_size)
    small = downscale(image_bgr, max_size)
    return scale_boxes(_search(small, mode), (small.shape[1], small.shape[0]),
                       (image_bgr.shape[1], image_bgr.shape[0]))


def scale_boxes(boxes, from_size, to_size):
    """[n, 4] boxes of an image of ``from_size`` (width, height) in the coordinates of
    the same image at ``to_size``: each becomes the smallest whole-pixel box covering
    the same area (pixel x spans [x, x + 1)), within the image. Float32."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if tuple(from_size) == tuple(to_size):
        return boxes.astype(np.float32)
    scale = np.array(to_size, np.float64) / np.array(from_size, np.float64)  # x, y
    # 1e-6: products such as 250 x 2.4 land a hair off the whole number they are.
    low = np.floor(boxes[:, :2] * scale + 1e-6)
    high = np.ceil((boxes[:, 2:] + 1) * scale - 1e-6) - 1
    limit = np.array(to_size, np.float64) - 1
    return np.concatenate([np.clip(low, 0, limit), np.clip(high, 0, limit)],
                          axis=1).astype(np.float32)


def _check_arguments(mode, max_size):
    if mode not in MODES:
        raise ValueError(f"selective search mode must be one of {MODES}, got {mode!r}")
    if max_size < 1:
        raise ValueError(f"selective search max_size must be a positive number of pixels, "
                         f"got {max_size}")


def _c_srand():
    """The C library's ``srand`` (shared with OpenCV), or None where ctypes cannot reach
    it (Windows, whose C runtime keeps the state per thread: no reset there)."""
    try:
        return ctypes.CDLL(None).srand
    except (OSError, TypeError, AttributeError):
        return None


_SRAND = _c_srand()
# rand()'s state is the process's: a search in another thread between this one's reset
# and its ranking would draw from the same sequence and change both images' box order.
_SEARCH_LOCK = threading.Lock()


def _search(image_bgr, mode):
    """OpenCV's selective search of the image as given, its ranking reproducible (header)."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image_bgr)
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    with _SEARCH_LOCK:
        if _SRAND is not None:
            _SRAND(1)  # rand()'s state at process start (C standard)
        rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # x, y, w, h
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)


def method_key(mode, max_size=None, orient=True):
    """Digest of everything besides the image that determines the output: the mode,
    OpenCV's version, the C rand() seed each search starts from (boxes cached before it
    was reset depended on what their worker had searched before), for images it
    downscales only, ``max_size``, and, when the EXIF orientation is ignored
    (``orient=False``), that."""
    settings = {"method": "opencv_selective_search", "mode": mode, "opencv": cv2.__version__,
                "rand_seed": 1}
    if max_size is not None:
        settings["max_size"] = int(max_size)
    if not orient:
        settings["exif_orientation"] = False
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


image_digest = file_digest  # a proposal cache entry's name: its image's SHA-256


class ProposalCache:
    """One folder of ``.npz`` files, one per image digest: a local folder, or a URL
    read and written through tf.io.gfile (keras_frcnn.files)."""

    def __init__(self, directory):
        self.directory = directory if is_url(directory) else Path(directory)

    def path(self, digest):
        return join(self.directory, f"{digest}.npz")

    def load(self, digest):
        """The cached boxes, or None (missing or unreadable entries are recomputed)."""
        path = self.path(digest)
        if not is_file(path):
            return None
        try:
            with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as data:
                return data["boxes"].astype(np.float32)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("recomputing unreadable proposal cache entry %s: %s", path, err)
            return None

    def save(self, digest, boxes):
        """Writes atomically (keras_frcnn.files.atomic_write)."""
        make_dirs(self.directory)
        atomic_write(self.path(digest), entry_bytes(boxes))


def entry_bytes(boxes):
    """The bytes of a cache entry of ``boxes``: an ``.npz`` of one float32 array named
    "boxes" (the same boxes always give the same bytes)."""
    buffer = io.BytesIO()
    np.savez(buffer, boxes=np.asarray(boxes, np.float32))
    return buffer.getvalue()


def cache_for(cache_dir, mode, size, max_size=MAX_SIZE, orient=True):
    """The ProposalCache of an image of ``size`` (width, height; None if its header
    could not be read, keyed as downscaled, which is right whichever it turns out to
    be) under ``cache_dir``."""
    fits = size is not None and max(size) <= max_size
    return ProposalCache(join(cache_dir, method_key(mode, None if fits else max_size, orient)))


def search_into_cache(path, cache_dir, mode="fast", max_size=MAX_SIZE,
                      max_pixels=MAX_IMAGE_PIXELS, orient=True, data=None):
    """Selective search of one image into the cache, as ``compute_selective_search``
    writes it (same key, same bytes): ("cached", boxes) if its entry was there already
    (nothing computed), else ("computed", boxes). ``data``: the file's bytes (read here
    if not given; they are hashed for the entry's name and decoded from, so the file is
    read once). DatasetError naming the image if it is missing, too large or
    undecodable. The unit of work of the Beam pipelines (keras_frcnn/beam/)."""
    _check_arguments(mode, max_size)
    if data is None:
        data = read_image_file(path)
    size = image_size(path, orient, data=data)
    if size is not None:
        check_image_pixels(path, *size, max_pixels)
    cache = cache_for(cache_dir, mode, size, max_size, orient)
    digest = hashlib.sha256(data).hexdigest()
    boxes = cache.load(digest)
    if boxes is not None:
        return "cached", boxes
    boxes = _compute_one(path, mode, max_size, max_pixels, orient, data)
    cache.save(digest, boxes)
    return "computed", boxes


def read_image_file(path):
    """The bytes of an image file (local or a URL); DatasetError naming it if it is
    missing or cannot be read."""
    try:
        return read_bytes(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read it ({err.strerror or err})") from None


def _compute_one(path, mode, max_size, max_pixels, orient=True, data=None):
    image, full_size = read_image_bgr_within(path, max_size, max_pixels, orient, data)
    return scale_boxes(_search(image, mode), (image.shape[1], image.shape[0]), full_size)


def _plan(image_paths, cache_dir, mode, max_size, max_pixels, orient=True):
    """(paths, caches, digests, cached boxes or None per image), after refusing missing
    images and images above ``max_pixels`` (DatasetError) before anything is computed."""
    _check_arguments(mode, max_size)
    paths = [p if is_url(p) else Path(p) for p in image_paths]
    sizes = []
    for path in paths:
        if not is_file(path):
            raise DatasetError(f"{path}: image not found")
        sizes.append(image_size(path, orient))
        if sizes[-1] is not None:
            check_image_pixels(path, *sizes[-1], max_pixels)
    caches = [cache_for(cache_dir, mode, size, max_size, orient) for size in sizes]
    digests = [image_digest(p) for p in paths]
    return paths, caches, digests, [cache.load(d) for cache, d in zip(caches, digests)]


def _workers(workers, paths):
    """The worker processes to use: ``workers`` (None: all cores), or 0 where an image is
    in TensorFlow's in-memory file system (``ram://``), which only this process sees."""
    if any(in_memory(p) for p in paths):
        return 0
    return os.cpu_count() if workers is None else workers


def _progress_bar(progress, count, mode):
    if not (progress and count):
        return None
    from keras_frcnn.progress import progress_bar

    return progress_bar(count, f"selective search ({mode})", "image")


def compute_selective_search(image_paths, cache_dir, mode="fast", workers=None, progress=True,
                             max_size=MAX_SIZE, max_pixels=MAX_IMAGE_PIXELS, on_error="raise",
                             orient=True):
    """Selective search for many images, cached; returns a list of [n, 4] arrays in
    each image's own coordinates (None for an image skipped under ``on_error``).

    Args:
      image_paths: image files.
      cache_dir: root of the proposal cache.
      mode: "fast" or "quality" (OpenCV's two strategies).
      workers: processes (default: all cores); 0 computes in this process, as do images
        on ``ram://`` (TensorFlow's in-memory file system is the process's own).
      progress: show a progress bar (log lines off a terminal: keras_frcnn.progress).
      max_size: longest side (pixels) the search runs at; larger images are downscaled.
      max_pixels: images with more pixels are refused (DatasetError) before anything
        is decoded or computed; 0: no limit (config.dataset.max_image_pixels).
      on_error: "skip" logs an image that cannot be decoded and leaves it None;
        "raise" (or "") raises its DatasetError.
      orient: decode photos turned by their EXIF orientation (False: the stored pixels,
        config.dataset.exif_orientation; cached apart).
    """
    paths, caches, digests, results = _plan(image_paths, cache_dir, mode, max_size, max_pixels,
                                            orient)
    todo = [k for k, r in enumerate(results) if r is None]
    bar = _progress_bar(progress, len(todo), mode)
    workers = _workers(workers, paths)
    try:
        if workers == 0 or len(todo) <= 1:
            for k in todo:
                try:
                    boxes = _compute_one(paths[k], mode, max_size, max_pixels, orient)
                except DatasetError as err:
                    _skip(err, on_error, bar)
                    continue
                results[k] = _finish(caches[k], digests[k], boxes, bar)
        else:
            pool = start_pool(workers)
            try:
                futures = {pool.submit(_compute_one, paths[k], mode, max_size, max_pixels,
                                       orient): k for k in todo}
                for future in concurrent.futures.as_completed(futures):
                    k = futures[future]
                    try:
                        boxes = worker_result(future)
                    except DatasetError as err:
                        _skip(err, on_error, bar)
                        continue
                    results[k] = _finish(caches[k], digests[k], boxes, bar)
            finally:
                # On an error, do not wait for the images still queued (they
                # are computed again on the next run; finished ones are cached).
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return results


class SelectiveSearchStream:
    """Selective search for many images, handed out in order while worker processes
    compute the images ahead: iterating yields each image's [n, 4] boxes, the same
    arrays ``compute_selective_search`` returns, so a consumer (the detector) works on
    one image while the next ones are searched.

    Checks and cache look-ups happen at construction, as in
    ``compute_selective_search`` (missing and oversized images are refused before
    anything runs), and the workers start then. Cached images need no worker; a
    computed image is written to the cache when it is handed out. At most ``ahead``
    images (default: twice the workers) are queued or running, which bounds the
    boxes held when the consumer is the slower side. A worker's DatasetError (an
    undecodable image) is raised when its image's turn comes, and iterating again
    goes on with the next image; any other error stops the stream.
    Use it as a context manager, or call ``close``: leaving early cancels the
    queued images and waits for the running ones, whose boxes are cached.

    Args: as ``compute_selective_search``; ``workers`` 0 (or a single image to
    compute) searches in this process when the image is asked for.
    """

    def __init__(self, image_paths, cache_dir, mode="fast", workers=None, progress=True,
                 max_size=MAX_SIZE, max_pixels=MAX_IMAGE_PIXELS, ahead=None, orient=True):
        self._paths, self._caches, self._digests, self._cached = _plan(
            image_paths, cache_dir, mode, max_size, max_pixels, orient)
        self._args = (mode, max_size, max_pixels, orient)
        self._todo = collections.deque(k for k, r in enumerate(self._cached) if r is None)
        workers = _workers(workers, self._paths)
        if ahead is not None and ahead < 1:
            raise ValueError(f"ahead must be at least 1 image, got {ahead}")
        self._ahead = ahead or 2 * max(workers, 1)
        self._bar = _progress_bar(progress, len(self._todo), mode)
        self._pool = start_pool(workers) if workers and len(self._todo) > 1 else None
        self._running = collections.deque()  # (image index, future), in image order
        self._next = 0
        self._closed = False
        try:
            self._submit()
        except BaseException:  # nobody will close a stream that was never returned
            self.close()
            raise

    def __iter__(self):
        return self

    def __next__(self):
        k = self._next
        if k >= len(self._paths) or self._closed:
            self.close()
            raise StopIteration
        self._next += 1
        boxes, self._cached[k] = self._cached[k], None  # handed out: not held here
        if boxes is not None:
            return boxes
        try:
            if self._pool is None:
                boxes = _compute_one(self._paths[k], *self._args)
            else:
                _, future = self._running.popleft()  # submitted in image order: image k
                self._submit()  # keep the workers busy while this image is finished
                boxes = worker_result(future)
        except DatasetError:  # this image's fault (undecodable): the next ones go on
            if self._bar is not None:
                self._bar.update(1)
            raise
        except BaseException:
            self.close()
            raise
        return _finish(self._caches[k], self._digests[k], boxes, self._bar)

    def _submit(self):
        while self._pool is not None and self._todo and len(self._running) < self._ahead:
            k = self._todo.popleft()
            self._running.append((k, self._pool.submit(_compute_one, self._paths[k],
                                                       *self._args)))

    def close(self):
        """Stops the workers: queued images are dropped, the running ones finished, and
        every image computed but not handed out is cached for the next run. A closed
        stream hands out nothing more."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for k, future in self._running:
            if not future.cancelled() and future.exception() is None:
                self._caches[k].save(self._digests[k], future.result())
        self._running.clear()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _skip(error, on_error, bar):
    """An image's DatasetError: raised, or with on_error "skip" logged as a warning."""
    handle_error(error, on_error)
    if bar is not None:
        bar.update(1)


def _finish(cache, digest, boxes, bar):
    cache.save(digest, boxes)
    if bar is not None:
        bar.update(1)
    return boxes
