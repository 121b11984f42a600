"""Selective search with OpenCV (``cv2.ximgproc.segmentation``), cached on disk.

Each image's proposals are cached as ``<cache>/<method key>/<image digest>.npz``:
the method key hashes the mode, the parameters and the OpenCV version, the
image digest hashes the file's bytes, so a changed image or setting is never
served stale results. Entries are written to a temporary name and renamed, so
an interrupted run leaves only complete entries and the next run resumes where
it stopped. Images are processed in worker processes (one OpenCV thread each;
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

from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import DatasetError
from keras_frcnn.files import atomic_write

logger = logging.getLogger("keras_frcnn.proposals")
MODES = ("fast", "quality")


def selective_search(image_bgr, mode="fast"):
    """Selective search proposals of one image: [n, 4] float32 0-based (x1, y1, x2, y2),
    in OpenCV's ranking order."""
    if mode not in MODES:
        raise ValueError(f"selective search mode must be one of {MODES}, got {mode!r}")
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image_bgr)
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # x, y, w, h
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)


def method_key(mode):
    """Digest of everything besides the image that determines the output."""
    settings = {"method": "opencv_selective_search", "mode": mode, "opencv": cv2.__version__}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def image_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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


def _compute_one(path, mode):
    return selective_search(read_image_bgr(path), mode)


def compute_selective_search(image_paths, cache_dir, mode="fast", workers=None, progress=True):
    """Selective search for many images, cached; returns a list of [n, 4] arrays.

    Args:
      image_paths: image files.
      cache_dir: root of the proposal cache.
      mode: "fast" or "quality" (OpenCV's two strategies).
      workers: processes (default: all cores); 0 computes in this process.
      progress: show a tqdm progress bar.
    """
    if mode not in MODES:
        raise ValueError(f"selective search mode must be one of {MODES}, got {mode!r}")
    cache = ProposalCache(Path(cache_dir) / method_key(mode))
    paths = [Path(p) for p in image_paths]
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: image not found")
    digests = [image_digest(p) for p in paths]
    results = [cache.load(d) for d in digests]
    todo = [k for k, r in enumerate(results) if r is None]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"selective search ({mode})", unit="image")
    workers = os.cpu_count() if workers is None else workers
    try:
        if workers == 0 or len(todo) <= 1:
            for k in todo:
                results[k] = _finish(cache, digests[k], _compute_one(paths[k], mode), bar)
        else:
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=_worker_context(), initializer=_worker_init)
            try:
                futures = {pool.submit(_compute_one, paths[k], mode): k for k in todo}
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
                    results[k] = _finish(cache, digests[k], boxes, bar)
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
