"""Image transforms of training: scale, flip, crop, colour, preprocessing, padding.

At test time the Detector and the exported graph scale, preprocess and pad with the
TensorFlow functions of detection/graph.py (one implementation for both), which follow
image_scale and preprocess here; tests/detection/test_graph.py holds them together.

Scale (the release): resize so the shorter side is the target size unless the
longer side would exceed ``max_size``, in which case the longer side is
``max_size``; bilinear (cv2.INTER_LINEAR) of the float32 image, as the release
resizes after converting to float and subtracting its means (blob.py
``prep_im_for_blob``; bilinear weights sum to 1, so the means commute with it).
Multi-scale training draws the target size per image from a list.
"""

import cv2
import numpy as np

from keras_frcnn import boxes as box_ops

# The release's PIXEL_MEANS (BGR), subtracted from BGR images for the Caffe-trained nets.
PIXEL_MEANS_BGR = np.array([102.9801, 115.9465, 122.7717], np.float32)
PREPROCESSING = ("caffe", "tf", "none")


def image_scale(height, width, target_size, max_size):
    """The resize factor for an image of ``height`` x ``width``."""
    scale = float(target_size) / min(height, width)
    if round(scale * max(height, width)) > max_size:
        scale = float(max_size) / max(height, width)
    return scale


def resize(image, scale):
    """The image resized by ``scale`` (float32; unchanged at scale 1)."""
    if scale == 1.0:
        return image
    return cv2.resize(np.asarray(image, np.float32), None, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_LINEAR)


def random_crop_window(width, height, gt_boxes, rng, min_scale, max_tries=50):
    """A crop of a ``width`` x ``height`` image that cuts no object through its centre:
    (x1, y1, x2, y2), 0-based inclusive, or None when ``max_tries`` draws all fail.

    Each try draws the crop's width and height as fractions U(min_scale, 1) of the image's
    (rounded, at least 1 pixel) and its corner uniformly over the positions that fit. A try
    is accepted when every ground-truth box that overlaps the crop has its centre inside
    it (so it keeps at least half its width and height, or the crop's whole width or
    height) and, if the image has objects, at least one of them does.
    """
    for _ in range(max_tries):
        w = max(1, int(round(rng.uniform(min_scale, 1.0) * width)))
        h = max(1, int(round(rng.uniform(min_scale, 1.0) * height)))
        x1, y1 = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
        window = (x1, y1, x1 + w - 1, y1 + h - 1)
        touches, inside = box_ops.in_window(gt_boxes, window)
        if np.all(inside | ~touches) and (inside.any() or not len(inside)):
            return window
    return None


def distort_colors(image_bgr, rng):
    """SSD's photometric distortions (Liu et al., ECCV 2016; not in Fast R-CNN), uint8 BGR in
    and out: brightness + U(-32, 32), contrast x U(0.5, 1.5), saturation x U(0.5, 1.5) and
    hue + U(-18, 18) degrees, each applied with p = 0.5, contrast before or after the two
    HSV steps with p = 0.5, the image clipped to [0, 255] after each step.

    ``rng`` (numpy Generator) is advanced by the same nine draws whatever is applied.
    """
    apply = rng.random(4) < 0.5
    brightness, contrast = rng.uniform(-32.0, 32.0), rng.uniform(0.5, 1.5)
    saturation, hue = rng.uniform(0.5, 1.5), rng.uniform(-18.0, 18.0)
    contrast_first = rng.random() < 0.5
    image = image_bgr.astype(np.float32)
    if apply[0]:
        image = np.clip(image + brightness, 0.0, 255.0)
    if apply[1] and contrast_first:
        image = np.clip(image * contrast, 0.0, 255.0)
    if apply[2] or apply[3]:
        hsv = cv2.cvtColor(image / 255.0, cv2.COLOR_BGR2HSV)  # H in [0, 360), S, V in [0, 1]
        if apply[2]:
            hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
        if apply[3]:
            hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
        image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0, 0.0, 255.0)
    if apply[1] and not contrast_first:
        image = np.clip(image * contrast, 0.0, 255.0)
    return np.rint(image).astype(np.uint8)


def preprocess(image_bgr, mode):
    """BGR in [0, 255] (uint8, or float32 after a resize) -> float32 network input.

    "caffe": BGR minus the release's pixel means (VGG16, CaffeNet, VGG_CNN_M_1024);
    "tf": RGB scaled to [-1, 1] (MobileNetV2 and other keras.applications "tf" nets);
    "none": RGB float in [0, 255].
    """
    if mode == "caffe":
        return image_bgr.astype(np.float32) - PIXEL_MEANS_BGR
    rgb = image_bgr[..., ::-1].astype(np.float32)
    if mode == "tf":
        return rgb / 127.5 - 1.0
    if mode == "none":
        return rgb
    raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {mode!r}")


def pad_images(images):
    """Zero-pads [H_i, W_i, 3] images (after preprocessing) to a [N, H, W, 3] batch."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    batch = np.zeros((len(images), height, width, 3), np.float32)
    for k, im in enumerate(images):
        batch[k, :im.shape[0], :im.shape[1]] = im
    return batch
