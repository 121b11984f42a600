"""Backbone weights files: the ``.npz`` format of the Caffe nets' converted weights
(``caffe_to_keras`` writes it, ``load_npz`` reads it) and the checks every weights
file passes as it loads (model/backbones.py ``build_backbone``): named float arrays
of the right shapes, and no NaN or infinity, which would train into a model that
scores every box alike. Files are never read with pickle (a pickled object can run
code).
"""

import re
import zipfile

import keras
import numpy as np


def caffe_to_keras(params, pooled_size):
    """Caffe blobs -> the arrays of a weights ``.npz`` (load_npz's format).

    ``params``: {Caffe layer name: (weight, bias)} as pycaffe's
    ``net.params[name][0].data`` and ``[1].data``. Conv weights [out, in/groups,
    kh, kw] become [kh, kw, in/groups, out]; fc weights [out, in] become [in, out],
    and fc6's rows are reordered from Caffe's flattening of pool5 (c, h, w) to
    ours (h, w, c). VGG16's conv{b}_{i} are renamed block{b}_conv{i}.
    """
    arrays = {}
    for name, (weight, bias) in params.items():
        weight = np.asarray(weight)
        if weight.ndim == 4:
            kernel = weight.transpose(2, 3, 1, 0)
        elif name == "fc6":
            out, inputs = weight.shape
            channels = inputs // (pooled_size * pooled_size)
            if channels * pooled_size * pooled_size != inputs:
                raise ValueError(f"fc6 has {inputs} inputs, not channels x {pooled_size} x "
                                 f"{pooled_size}; pass the backbone's pooled_size")
            kernel = (weight.reshape(out, channels, pooled_size, pooled_size)
                      .transpose(2, 3, 1, 0).reshape(inputs, out))
        else:
            kernel = weight.T
        name = re.sub(r"^conv(\d)_(\d)$", r"block\1_conv\2", name)
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, np.asarray(bias).reshape(-1)
    return arrays


def load_npz(model, path, spec):
    """Loads a weights ``.npz`` into the features ``model``; returns fc_init or None.

    The file holds float arrays in Keras layout named "<layer>/kernel" and
    "<layer>/bias": for every Conv2D layer of ``model`` (conv1 ... conv5, or
    VGG16's block1_conv1 ... block5_conv3), kernels [kh, kw, in/groups, out]
    with conv1's input channels in BGR order (the "caffe" preprocessing); and
    optionally for both fc6 and fc7, kernels [in, out], where fc6's rows follow
    our Flatten of the pooled [P, P, C] map: row (h * P + w) * C + c, not
    Caffe's (c * P + h) * P + w (caffe_to_keras converts).
    """
    arrays = _read_npz(path)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    wanted = [f"{layer.name}/{v}" for layer in convs for v in ("kernel", "bias")]
    fc_keys = [f"{n}/{v}" for n in ("fc6", "fc7") for v in ("kernel", "bias")]
    has_fc = any(key in arrays for key in fc_keys)  # fc6 and fc7 come together or not at all
    missing = [key for key in wanted + (fc_keys if has_fc else []) if key not in arrays]
    unknown = sorted(set(arrays) - set(wanted) - set(fc_keys))
    if missing or unknown:
        raise ValueError(f"weights file {path}: missing {missing}, unknown {unknown}; it needs "
                         f"<layer>/kernel and <layer>/bias for {[layer.name for layer in convs]} "
                         f"and, optionally, for both fc6 and fc7")
    for layer in convs:
        values = [arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"]]
        _check_shapes(path, layer.name, values, [tuple(w.shape) for w in layer.weights])
        layer.set_weights(values)
    if not has_fc:
        return None
    fc6, fc7 = ([arrays[f"{n}/kernel"], arrays[f"{n}/bias"]] for n in ("fc6", "fc7"))
    rows = spec.pooled_size ** 2 * model.output.shape[-1]
    _check_shapes(path, "fc6", fc6, [(rows, fc6[0].shape[-1]), (fc6[0].shape[-1],)])
    _check_shapes(path, "fc7", fc7, [(fc6[0].shape[-1], fc7[0].shape[-1]), (fc7[0].shape[-1],)])
    return {"fc6": fc6, "fc7": fc7}


def _read_npz(path):
    """{name: array} of a weights ``.npz``; ValueError naming the file if it is not one
    (never read with pickle: a pickled object can run code) or holds NaN or inf."""
    try:
        file = np.load(path, allow_pickle=False)
        if not isinstance(file, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not named arrays")
        with file:
            arrays = {key: file[key] for key in file.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        # numpy takes what is neither a .npz nor a .npy for a pickle, and says so.
        reason = ("neither a .npz nor a .npy file" if "pickle" in str(err)
                  else str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise ValueError(f"weights file {path}: not a weights .npz ({reason}); it must hold "
                         "named float arrays <layer>/kernel and <layer>/bias "
                         "(model/weights_files.py caffe_to_keras writes them)") from None
    for key, value in arrays.items():
        if value.dtype.kind != "f":
            raise ValueError(f"weights file {path}: {key} holds {value.dtype} values, not "
                             "floats")
        check_finite(value, f"weights file {path}: {key}")
    return arrays


def check_finite(values, name):
    """ValueError naming ``name`` if the float array ``values`` holds NaN or inf: weights
    that are not numbers train into a model that scores every box alike."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite values (NaN or inf) of "
                         f"{values.size}; the file is damaged: get it again")


def check_model_weights_finite(model, source):
    """check_finite for every weight of ``model`` after loading ``source``, naming the
    layer whose weights are not numbers."""
    for layer in model.layers:
        for weight in layer.weights:
            value = keras.ops.convert_to_numpy(weight)
            if value.dtype.kind == "f":
                check_finite(value, f"weights file {source}: layer {layer.name} "
                             f"({weight.name})")


def _check_shapes(path, name, values, shapes):
    for value, shape, part in zip(values, shapes, ("kernel", "bias")):
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"weights file {path}: {name}/{part} has shape {value.shape}, the "
                             f"model needs {tuple(shape)} (Keras layout: conv [kh, kw, in/groups, "
                             f"out], fc [in, out]; caffe_to_keras converts Caffe blobs)")
