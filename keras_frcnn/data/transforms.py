"""Image transforms of training and testing: scale, flip, preprocessing, padding.

Scale (the release): resize so the shorter side is the target size unless the
longer side would exceed ``max_size``, in which case the longer side is
``max_size``; bilinear (cv2.INTER_LINEAR). Multi-scale training draws the
target size per image from a list.
"""

import cv2
import numpy as np

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
    if scale == 1.0:
        return image
    return cv2.resize(image, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)


def preprocess(image_bgr, mode):
    """uint8 BGR -> float32 network input.

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
