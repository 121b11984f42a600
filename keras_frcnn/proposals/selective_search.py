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
forked, or spawned when TensorFlow is loaded) with a progress bar.
"""

import concurrent.futures
import hashlib
import io
import json
import logging
import multiprocessing
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from keras_frcnn.data.images import (check_image_pixels, downscale, image_size,
                                     read_image_bgr_within)
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError
from keras_frcnn.files import atomic_write

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


def _search(image_bgr, mode):
    """OpenCV's selective search of the image as given."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image_bgr)
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # x, y, w, h
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)


def method_key(mode, max_size=None):
    """Digest of everything besides the image that determines the output. ``max_size``
    is given for images it downscales only: smaller images keep the key they had before
    the cap existed, so their cached boxes stay valid."""
    settings = {"method": "opencv_selective_search", "mode": mode, "opencv": cv2.__version__}
    if max_size is not None:
        settings["max_size"] = int(max_size)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def image_digest(path):
    with open(path, "rb") as file:  # in chunks: an image file can be hundreds of MB
        return hashlib.file_digest(file, "sha256").hexdigest()


class ProposalCache:
    """One folder of ``.npz`` files, one per image digest."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, digest):
        return self.directory / f"{digest}.npz"

    def load(self, digest):
        """The cached boxes, or None (missing or unreadable entries are recomputed)."""
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["boxes"].astype(np.float32)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("recomputing unreadable proposal cache entry %s: %s", path, err)
            return None

    def save(self, digest, boxes):
        """Writes atomically (keras_frcnn.files.atomic_write)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, boxes=np.asarray(boxes, np.float32))
        atomic_write(self.path(digest), buffer.getvalue())


def _worker_context():
    """fork when TensorFlow is not loaded here (fast, no re-import of __main__);
    spawn otherwise, since forking a process with TensorFlow's threads is unsafe."""
    return multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")


def _worker_init():
    cv2.setNumThreads(1)


def _compute_one(path, mode, max_size, max_pixels):
    image, full_size = read_image_bgr_within(path, max_size, max_pixels)
    return scale_boxes(_search(image, mode), (image.shape[1], image.shape[0]), full_size)


def compute_selective_search(image_paths, cache_dir, mode="fast", workers=None, progress=True,
                             max_size=MAX_SIZE, max_pixels=MAX_IMAGE_PIXELS):
    """Selective search for many images, cached; returns a list of [n, 4] arrays in
    each image's own coordinates.

    Args:
      image_paths: image files.
      cache_dir: root of the proposal cache.
      mode: "fast" or "quality" (OpenCV's two strategies).
      workers: processes (default: all cores); 0 computes in this process.
      progress: show a tqdm progress bar.
      max_size: longest side (pixels) the search runs at; larger images are downscaled.
      max_pixels: images with more pixels are refused (DatasetError) before anything
        is decoded or computed; 0: no limit (config.dataset.max_image_pixels).
    """
    _check_arguments(mode, max_size)
    paths = [Path(p) for p in image_paths]
    sizes = []
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: image not found")
        sizes.append(image_size(path))
        if sizes[-1] is not None:
            check_image_pixels(path, *sizes[-1], max_pixels)
    # An unreadable header leaves the size unknown: keyed as downscaled, which is right
    # whichever it turns out to be.
    caches = [ProposalCache(Path(cache_dir) / method_key(
        mode, None if size is not None and max(size) <= max_size else max_size))
        for size in sizes]
    digests = [image_digest(p) for p in paths]
    results = [cache.load(d) for cache, d in zip(caches, digests)]
    todo = [k for k, r in enumerate(results) if r is None]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"selective search ({mode})", unit="image")
    workers = os.cpu_count() if workers is None else workers
    try:
        if workers == 0 or len(todo) <= 1:
            for k in todo:
                results[k] = _finish(caches[k], digests[k],
                                     _compute_one(paths[k], mode, max_size, max_pixels), bar)
        else:
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=_worker_context(), initializer=_worker_init)
            try:
                futures = {pool.submit(_compute_one, paths[k], mode, max_size, max_pixels): k
                           for k in todo}
                for future in concurrent.futures.as_completed(futures):
                    k = futures[future]
                    try:
                        boxes = future.result()
                    except concurrent.futures.process.BrokenProcessPool as err:
                        raise RuntimeError(
                            "selective-search worker processes died. A script that starts "
                            "them after importing TensorFlow must guard its entry point with "
                            "`if __name__ == '__main__':` (they are spawned and re-import "
                            "it); or pass workers=0.") from err
                    results[k] = _finish(caches[k], digests[k], boxes, bar)
            finally:
                # On an error, do not wait for the images still queued (they
                # are computed again on the next run; finished ones are cached).
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return results


def _finish(cache, digest, boxes, bar):
    cache.save(digest, boxes)
    if bar is not None:
        bar.update(1)
    return boxes
