"""Dense boxes over scale, position and aspect ratio (paper section 5.5).

The paper compares selective search with "densely generated boxes (over
scale, position, and aspect ratio)", about 45k per image. Here: square sizes
on a geometric ladder, each stretched to several aspect ratios (height /
width), slid over the image with a stride proportional to the box's shorter
side; boxes that do not fit are not generated, and every (size, ratio) that
fits at all is placed flush with the right and bottom edges too.
"""

import numpy as np

DEFAULT_SCALES = tuple(int(round(32 * 2 ** (k / 2))) for k in range(11))  # 32 .. 1024
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)
DEFAULT_STRIDE_FRACTION = 0.175  # about 45k boxes on a 500x375 VOC image, as the paper


def _positions(extent, size, stride):
    last = extent - size
    if last < 0:
        return np.zeros(0)
    return np.unique(np.append(np.arange(0, last + 1, stride), last))


def dense_boxes(width, height, scales=DEFAULT_SCALES, aspect_ratios=DEFAULT_ASPECT_RATIOS,
                stride_fraction=DEFAULT_STRIDE_FRACTION):
    """[n, 4] float32 boxes tiling a ``width`` x ``height`` image."""
    all_boxes = []
    for scale in scales:
        for ratio in aspect_ratios:
            w = int(round(scale / np.sqrt(ratio)))
            h = int(round(scale * np.sqrt(ratio)))
            stride = max(1, int(round(stride_fraction * min(w, h))))
            xs, ys = _positions(width, w, stride), _positions(height, h, stride)
            if len(xs) == 0 or len(ys) == 0:
                continue
            x, y = np.meshgrid(xs, ys)
            x, y = x.ravel(), y.ravel()
            all_boxes.append(np.stack([x, y, x + w - 1, y + h - 1], axis=1))
    if not all_boxes:
        return np.zeros((0, 4), np.float32)
    return np.concatenate(all_boxes).astype(np.float32)
