"""A numpy forward pass of a Fast R-CNN Caffe net, on Caffe's own blob layouts.

Written from Caffe's layer definitions (conv_layer, pooling_layer, lrn_layer,
inner_product_layer) and the release's RoI pooling, independently of the package:
blobs stay [out, in/groups, kh, kw] and [out, in], maps stay [C, H, W], and pool5 is
flattened in Caffe's (c, h, w) order, so a wrong transpose in the converter shows up
as a different answer. Only the geometry (kernel, stride, pad, groups, LRN constants)
comes from the package's PROTOTXT table, which tests/model/test_backbones.py checks
against the release's prototxts.
"""

import math

import numpy as np

from tests.ops.naive_roi_pool import naive_roi_pool


def conv(x, weight, bias, stride, pad, groups):
    """Caffe's Convolution on x [C, H, W]: output size floor((H + 2p - k) / s) + 1."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out_channels, per_group, kh, kw = weight.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # [C, Ho, Wo, kh, kw]
    step = out_channels // groups
    outs = [np.einsum("chwij,ocij->ohw", windows[g * per_group:(g + 1) * per_group],
                      weight[g * step:(g + 1) * step], optimize=True) for g in range(groups)]
    return np.concatenate(outs) + bias[:, None, None]


def max_pool(x, kernel, stride, pad):
    """Caffe's MAX Pooling: output size ceil((H + 2p - k) / s) + 1, less one where the
    last window would start in the padding; windows clipped to the image."""
    channels, height, width = x.shape

    def size(n):
        out = int(math.ceil((n + 2 * pad - kernel) / stride)) + 1
        if pad and (out - 1) * stride >= n + pad:
            out -= 1
        return out

    out = np.empty((channels, size(height), size(width)), x.dtype)
    for i in range(out.shape[1]):
        hs = i * stride - pad
        he, hs = min(hs + kernel, height), max(hs, 0)
        for j in range(out.shape[2]):
            ws = j * stride - pad
            we, ws = min(ws + kernel, width), max(ws, 0)
            out[:, i, j] = x[:, hs:he, ws:we].max(axis=(1, 2))
    return out


def lrn(x, size, alpha, beta, k):
    """Caffe's LRN across channels: x / (k + alpha / size * sum over the size channels
    centred on c of x^2)^beta."""
    half = (size - 1) // 2
    squares = np.pad(x * x, ((half, half), (0, 0), (0, 0)))
    total = sum(squares[i:i + x.shape[0]] for i in range(size))
    return x / (k + alpha / size * total) ** beta


def features(image_chw, blobs, layers):
    """The conv trunk: ``layers`` the package's PROTOTXT entries, ``blobs`` {Caffe layer
    name: [weight, bias]}."""
    x = image_chw
    for layer in layers:
        if layer.kind == "conv":
            name = layer.name
            if name.startswith("block"):  # VGG16's Keras names back to Caffe's
                name = "conv{}_{}".format(name[5], name[-1])
            weight, bias = blobs[name]
            x = np.maximum(conv(x, weight, bias, layer.stride, layer.pad, layer.groups), 0)
        elif layer.kind == "pool":
            x = max_pool(x, layer.kernel, layer.stride, layer.pad)
        else:
            x = lrn(x, layer.kernel, layer.alpha, layer.beta, layer.k)
    return x


def fast_rcnn_forward(image_chw, rois, blobs, layers, pooled_size, spatial_scale=1 / 16):
    """(cls_prob [R, K+1], bbox_pred [R, 4(K+1)]) of the release's test net: conv
    trunk, RoI pooling, fc6/fc7 (or fc6_L/fc6_U, fc7_L/fc7_U) with ReLU, cls_score with
    softmax, bbox_pred."""
    conv5 = features(image_chw, blobs, layers)
    pooled, _ = naive_roi_pool(conv5.transpose(1, 2, 0)[None], rois, pooled_size,
                               pooled_size, spatial_scale)
    x = pooled.transpose(0, 3, 1, 2).reshape(len(rois), -1)  # Caffe's (c, h, w)
    for name in ("fc6", "fc7"):
        if f"{name}_L" in blobs:
            x = x @ blobs[f"{name}_L"][0].T
            weight, bias = blobs[f"{name}_U"]
        else:
            weight, bias = blobs[name]
        x = np.maximum(x @ weight.T + bias, 0)
    scores = x @ blobs["cls_score"][0].T + blobs["cls_score"][1]
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    boxes = x @ blobs["bbox_pred"][0].T + blobs["bbox_pred"][1]
    return scores / scores.sum(axis=1, keepdims=True), boxes
