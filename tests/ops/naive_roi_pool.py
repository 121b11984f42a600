"""Naive numpy RoI max pooling, written independently of the package.

It follows DESIGN.md section 3 literally, one RoI and one bin at a time:
coordinates scaled in float32 and rounded half away from zero (in float64,
where |x| + 0.5 is exact for every float32), bin edges in the feature dtype,
and numpy's argmax (first occurrence, NaN first) over the row-major window.
"""

import math

import numpy as np


def c_round(x):
    """C round() of a float32 value: half away from zero."""
    x = float(x)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def roi_windows(roi, spatial_scale, pooled_height, pooled_width, height, width, dtype):
    """Yields (ph, pw, h_start, h_end, w_start, w_end) of every bin of one RoI."""
    scale = np.float32(spatial_scale)
    xs, ys, xe, ye = (c_round(np.float32(v) * scale) for v in roi[1:])
    roi_w = max(xe - xs + 1, 1)
    roi_h = max(ye - ys + 1, 1)
    bin_h = dtype(roi_h) / dtype(pooled_height)
    bin_w = dtype(roi_w) / dtype(pooled_width)
    for ph in range(pooled_height):
        h_start = min(max(int(np.floor(dtype(ph) * bin_h)) + ys, 0), height)
        h_end = min(max(int(np.ceil(dtype(ph + 1) * bin_h)) + ys, 0), height)
        for pw in range(pooled_width):
            w_start = min(max(int(np.floor(dtype(pw) * bin_w)) + xs, 0), width)
            w_end = min(max(int(np.ceil(dtype(pw + 1) * bin_w)) + xs, 0), width)
            yield ph, pw, h_start, h_end, w_start, w_end


def naive_roi_pool(features, rois, pooled_height, pooled_width, spatial_scale):
    """Returns (output, argmax) as numpy arrays [R, PH, PW, C]."""
    features = np.asarray(features)
    rois = np.asarray(rois, np.float32)
    dtype = features.dtype.type
    _, height, width, channels = features.shape
    output = np.zeros((len(rois), pooled_height, pooled_width, channels), features.dtype)
    argmax = np.full(output.shape, -1, np.int32)
    for r, roi in enumerate(rois):
        image = features[int(roi[0])]
        for ph, pw, hs, he, ws, we in roi_windows(roi, spatial_scale, pooled_height,
                                                  pooled_width, height, width, dtype):
            if he <= hs or we <= ws:
                continue
            window = image[hs:he, ws:we].reshape(-1, channels)
            first = np.argmax(window, axis=0)
            output[r, ph, pw] = window[first, np.arange(channels)]
            argmax[r, ph, pw] = (hs + first // (we - ws)) * width + ws + first % (we - ws)
    return output, argmax


def naive_roi_pool_grad(features_shape, rois, argmax, grad):
    """Adds every output gradient to its argmax cell, in RoI/bin order."""
    num_images, height, width, channels = features_shape
    grad_features = np.zeros((num_images, height * width, channels), grad.dtype)
    for r, roi in enumerate(np.asarray(rois, np.float32)):
        b = int(roi[0])
        for idx in np.ndindex(*argmax.shape[1:3]):
            for c in range(channels):
                cell = argmax[(r,) + idx + (c,)]
                if cell >= 0:
                    grad_features[b, cell, c] += grad[(r,) + idx + (c,)]
    return grad_features.reshape(features_shape)
