"""Proposal filtering shared by every source: clip, unique, small, top-k.

The release's pascal_voc.py uses the boxes of its selective-search .mat files as
they are: the paper configs turn the filters off (``unique=False``, ``min_size``
1, ``top_k`` 0), which leaves those files' boxes untouched (docs/fidelity.md).
"""

import numpy as np

from keras_frcnn.boxes import clip

DEFAULT_MIN_SIZE = 2  # pixels
DEFAULT_TOP_K = 2000


def unique_boxes(boxes):
    """Indices of the first occurrence of every distinct (rounded) box, in order."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    _, first = np.unique(np.round(boxes).astype(np.int64), axis=0, return_index=True)
    return np.sort(first)


def postprocess(boxes, width, height, min_size=DEFAULT_MIN_SIZE, top_k=DEFAULT_TOP_K,
                unique=True):
    """Clips to the image, drops non-finite boxes, duplicates (if ``unique``) and
    boxes under ``min_size`` pixels wide or high (+1 widths: 1 drops only x2 < x1),
    keeps the first ``top_k`` (None: all). Order is preserved: selective search
    ranks its output, so "first" means "best"."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes = clip(boxes[np.all(np.isfinite(boxes), axis=1)], width, height)
    if unique:
        boxes = boxes[unique_boxes(boxes)]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes = boxes[(w >= min_size) & (h >= min_size)]
    return boxes if top_k is None else boxes[:top_k]
