"""Caffe's ``.caffemodel`` files read without Caffe, and converted to this package.

A ``.caffemodel`` is a binary protocol buffer: a ``NetParameter`` whose layers carry
their weights as ``BlobProto``s. ``SCHEMA`` writes down the part of Caffe's
caffe.proto (BVLC Caffe, and rbgirshick/caffe-fast-rcnn which the release builds) that
holds weights, with caffe.proto's own field numbers; it is loaded into the protobuf
runtime at import, so nothing is compiled and Caffe is never needed. Three layer
formats are read: ``layer`` (LayerParameter, field 100: every model saved by a Caffe of
2015 or later, the release's among them), ``layers`` (V1LayerParameter, field 2) and the
V0 ``layer`` nested in a V1 one. A blob's shape is its ``shape`` or else the old
num/channels/height/width.

Two kinds of model convert (bin/convert_caffemodel.py, docs/voc07.md):

* ImageNet models (the release's ``data/imagenet_models/{CaffeNet,VGG_CNN_M_1024,
  VGG16}.v2.caffemodel``) -> a backbone ``.npz`` (model/weights_files.py ``load_npz``):
  every conv layer and fc6/fc7, which the paper configs load as ``model.weights``. fc8,
  the ImageNet classifier, is the only layer left out, by name.
* The release's trained detectors (``{caffenet,vgg_cnn_m_1024,vgg16}_fast_rcnn_iter_40000
  .caffemodel``, and ``tools/compress_net.py``'s ``..._svd_fc6_1024_fc7_256``) -> a
  FastRCNN with the same outputs. The release's ``bbox_pred`` has 4(K+1) outputs, a box
  for the background too that its loss never trains and its test never reads; ours has
  4K, so the background's four rows are dropped. Its ``snapshot()`` saved ``bbox_pred``
  with the targets' normalisation folded in (raw deltas), which is what a workdir's
  model.keras holds too, so no statistics are applied again: the workdir's
  target_stats.json is the identity (means 0, stds 1). SVD layers map as ``fc6_L`` ->
  ``fc6_L`` (no bias) and ``fc6_U`` -> ``fc6`` (FastRCNN ``factorized``).

Layouts (model/weights_files.py ``caffe_to_keras``): conv [out, in/groups, kh, kw] ->
[kh, kw, in/groups, out]; fc [out, in] -> [in, out]; the rows of the layer after pool5
(fc6, or fc6_L) reordered from Caffe's (c, h, w) flattening to ours (h, w, c). Every
layer with weights is mapped by name and its shapes are checked against the backbone;
one missing, of the wrong shape or left over is an error naming it.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from keras_frcnn.files import file_digest
from keras_frcnn.model.weights_files import check_finite

# caffe.proto's messages, only the fields that locate weights: (name, number, type,
# repeated). Field numbers are caffe.proto's; V1LayerParameter's LayerType enum is read
# as its integer (the same varint on the wire).
SCHEMA = {
    "BlobShape": (("dim", 1, "int64", True),),
    "BlobProto": (("num", 1, "int32", False), ("channels", 2, "int32", False),
                  ("height", 3, "int32", False), ("width", 4, "int32", False),
                  ("data", 5, "float", True), ("diff", 6, "float", True),
                  ("shape", 7, "BlobShape", False), ("double_data", 8, "double", True),
                  ("double_diff", 9, "double", True)),
    "V0LayerParameter": (("name", 1, "string", False), ("type", 2, "string", False),
                         ("blobs", 50, "BlobProto", True)),
    "V1LayerParameter": (("layer", 1, "V0LayerParameter", False),
                         ("bottom", 2, "string", True), ("top", 3, "string", True),
                         ("name", 4, "string", False), ("type", 5, "int32", False),
                         ("blobs", 6, "BlobProto", True)),
    "LayerParameter": (("name", 1, "string", False), ("type", 2, "string", False),
                       ("bottom", 3, "string", True), ("top", 4, "string", True),
                       ("blobs", 7, "BlobProto", True)),
    "NetParameter": (("name", 1, "string", False), ("layers", 2, "V1LayerParameter", True),
                     ("layer", 100, "LayerParameter", True)),
}
# V1LayerParameter.LayerType values of layers that can hold weights, for messages.
V1_TYPES = {4: "Convolution", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU",
            6: "Dropout", 20: "Softmax", 39: "Deconvolution", 5: "Data"}

_SCALARS = {
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}


# A packed repeated float is one length-delimited record of little-endian floats, the
# wire form of bytes: read as bytes, a 100-million-value blob (VGG16's fc6) becomes an
# array at once, where reading it value by value takes tens of seconds. A blob written
# unpacked (one record per value) leaves these empty and is read as floats instead.
RAW = {"data", "diff", "double_data", "double_diff"}


def _messages(raw=False):
    """{message name: generated class} of SCHEMA, in a pool of its own; ``raw``: with
    BlobProto's values as bytes (RAW)."""
    file = descriptor_pb2.FileDescriptorProto(
        name=f"keras_frcnn_caffe_subset{'_raw' if raw else ''}.proto", package="caffe",
        syntax="proto2")
    for message, fields in SCHEMA.items():
        proto = file.message_type.add(name=message)
        for name, number, kind, repeated in fields:
            if raw and message == "BlobProto" and name in RAW:
                kind = "bytes"
            field = proto.field.add(name=name, number=number, label=(
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL))
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
                if repeated and kind not in ("string", "bytes"):
                    field.options.packed = True  # as caffe.proto declares them
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".caffe.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in SCHEMA}


MESSAGES = _messages()
RAW_MESSAGES = _messages(raw=True)


@dataclasses.dataclass
class Layer:
    """A layer of a caffemodel that has weights: its name, type and blobs (float32
    arrays of the blob's shape)."""
    name: str
    type: str
    blobs: list


def _shape(blob):
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)  # the old 4-D header


def _raw_values(blob, where):
    """A blob's values from its packed records (RAW_MESSAGES); None if it has none."""
    for records, dtype in ((blob.data, "<f4"), (blob.double_data, "<f8")):
        if len(records):
            raw = b"".join(records)
            if len(raw) % np.dtype(dtype).itemsize:
                raise ValueError(f"{where}: a packed record of {len(raw)} bytes is not whole "
                                 f"{np.dtype(dtype).itemsize}-byte values; the file is damaged "
                                 "or truncated: get it again")
            return np.frombuffer(raw, dtype)
    return None


def _typed_values(blob):
    """A blob's values read one by one (MESSAGES): for values written unpacked."""
    if len(blob.data):
        return np.fromiter(blob.data, np.float32, count=len(blob.data))
    return np.fromiter(blob.double_data, np.float64, count=len(blob.double_data))


def _layer_list(net):
    """[(name, type, blobs)] of the layers of ``net``, whatever their format."""
    layers = [(layer.name, layer.type, layer.blobs) for layer in net.layer]
    for layer in net.layers:
        if layer.HasField("layer"):  # V0, nested in V1
            layers.append((layer.layer.name, layer.layer.type, layer.layer.blobs))
        else:
            layers.append((layer.name, V1_TYPES.get(layer.type, f"type {layer.type}"),
                           layer.blobs))
    return layers


def read_caffemodel(path):
    """The layers with weights of the ``.caffemodel`` at ``path``, in file order."""
    path = Path(path)
    data = path.read_bytes()
    net = RAW_MESSAGES["NetParameter"]()
    try:
        net.ParseFromString(data)
    except DecodeError as err:
        raise ValueError(f"{path}: not a Caffe model, or a truncated one ({err}); give "
                         "the binary .caffemodel (not its .prototxt), downloaded whole") from None
    layers = _layer_list(net)
    unpacked = any(_raw_values(blob, path) is None and int(np.prod(_shape(blob))) > 0
                   for _, _, blobs in layers for blob in blobs)
    if unpacked:  # values written one record each: read the file again as floats
        net = MESSAGES["NetParameter"]()
        net.ParseFromString(data)
        layers = _layer_list(net)
    found, seen = [], set()
    for name, kind, blobs in layers:
        if not len(blobs):
            continue
        if name in seen:
            raise ValueError(f"{path}: two layers named {name!r} hold weights; which one "
                             "is meant cannot be told")
        seen.add(name)
        arrays = []
        for i, blob in enumerate(blobs):
            where = f"{path}: layer {name!r} blob {i}"
            values = _typed_values(blob) if unpacked else _raw_values(blob, where)
            shape, size = _shape(blob), 0 if values is None else values.size
            if min(shape, default=0) < 0 or int(np.prod(shape)) != size:
                raise ValueError(f"{where} of shape {shape} holds {size} values; the file is "
                                 "damaged or truncated: get it again")
            with np.errstate(over="ignore"):  # a double beyond float32 becomes inf: refused
                values = values.astype(np.float32).reshape(shape)
            check_finite(values, where)
            arrays.append(values)
        found.append(Layer(name, kind, arrays))
    if not found:
        raise ValueError(f"{path}: no layer holds weights (a Caffe model file, but of a net "
                         "with no learned layers, or a solver state); give a trained "
                         ".caffemodel")
    return found


def write_caffemodel(path, layers, layer_format="layer", name="net", legacy_shapes=False):
    """Writes ``layers`` ([Layer]) as a ``.caffemodel``: ``layer_format`` "layer"
    (LayerParameter), "layers" (V1LayerParameter) or "v0" (V0 inside V1). With
    ``legacy_shapes`` each blob's shape goes into num/channels/height/width (padded
    with leading 1s, as Caffe wrote fc blobs) instead of ``shape``. Used by the tests,
    and to write small models by hand."""
    net = MESSAGES["NetParameter"](name=name)
    types = {v: k for k, v in V1_TYPES.items()}
    for layer in layers:
        if layer_format == "layer":
            proto = net.layer.add(name=layer.name, type=layer.type)
            blobs = proto.blobs
        elif layer_format == "layers":
            if layer.type not in types:
                raise ValueError(f"layer {layer.name!r}: V1 layers have no type "
                                 f"{layer.type!r}; use one of {sorted(types)}")
            proto = net.layers.add(name=layer.name, type=types[layer.type])
            blobs = proto.blobs
        elif layer_format == "v0":
            proto = net.layers.add()
            proto.layer.name, proto.layer.type = layer.name, layer.type.lower()
            blobs = proto.layer.blobs
        else:
            raise ValueError(f"layer_format must be 'layer', 'layers' or 'v0', got "
                             f"{layer_format!r}")
        for array in layer.blobs:
            array = np.asarray(array, np.float32)
            blob = blobs.add()
            if legacy_shapes:
                if array.ndim > 4:
                    raise ValueError(f"{layer.name}: a {array.ndim}-D blob has no 4-D header")
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.reshape(-1).tolist())
    Path(path).write_bytes(net.SerializeToString())


# ---------------------------------------------------------------------------------------
# Conversion


def caffe_conv_names(backbone):
    """Caffe names of ``backbone``'s conv layers, with the Keras layer each becomes."""
    from keras_frcnn.model.backbones import PROTOTXT

    return {re.sub(r"^block(\d)_conv(\d)$", r"conv\1_\2", layer.name): layer
            for layer in PROTOTXT[backbone] if layer.kind == "conv"}


def detect_backbone(layers, path="the model"):
    """The backbone (vgg16, vgg_cnn_m_1024 or caffenet) whose conv layers ``layers``
    has, told by names and conv1's kernel."""
    names = {layer.name: layer for layer in layers}
    if "conv1_1" in names:
        return "vgg16"
    if "conv1" in names and names["conv1"].blobs[0].ndim == 4:
        kernel = names["conv1"].blobs[0].shape[-1]
        found = {11: "caffenet", 7: "vgg_cnn_m_1024"}.get(kernel)
        if found:
            return found
        raise ValueError(f"{path}: conv1 has {kernel}x{kernel} kernels; CaffeNet's are 11x11 "
                         "and VGG_CNN_M_1024's 7x7: not a model of the paper's three nets")
    raise ValueError(f"{path}: no conv1_1 (VGG16) or conv1 (CaffeNet, VGG_CNN_M_1024) layer; "
                     f"its layers with weights are {[layer.name for layer in layers]}")


def _weight_and_bias(layer, path, bias=True, fc=True):
    want = 2 if bias else 1
    if len(layer.blobs) != want:
        raise ValueError(f"{path}: layer {layer.name!r} has {len(layer.blobs)} blobs, not "
                         f"{want} ({'weight and bias' if bias else 'a weight, no bias'})")
    weight = layer.blobs[0]
    if fc and weight.ndim == 4 and weight.shape[:2] == (1, 1):
        weight = weight[0, 0]  # an old 4-D header: fc weights as 1 x 1 x out x in
    values = [weight]
    if bias:
        values.append(layer.blobs[1].reshape(-1))
    return values


def _check(path, name, value, shape):
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{path}: layer {name!r} has a blob of shape {tuple(value.shape)}, "
                         f"the model needs {tuple(shape)}")


def _conv_arrays(by_name, backbone, path):
    """{Keras name/kernel|bias: array} of the backbone's convs, shapes checked."""
    arrays, channels = {}, 3
    for caffe_name, spec in caffe_conv_names(backbone).items():
        if caffe_name not in by_name:
            raise ValueError(f"{path}: layer {caffe_name!r} is missing; a {backbone} model "
                             f"has conv layers {list(caffe_conv_names(backbone))}")
        weight, bias = _weight_and_bias(by_name[caffe_name], path, fc=False)
        _check(path, caffe_name, weight,
               (spec.filters, channels // spec.groups, spec.kernel, spec.kernel))
        _check(path, caffe_name, bias, (spec.filters,))
        arrays[f"{spec.name}/kernel"] = weight.transpose(2, 3, 1, 0)
        arrays[f"{spec.name}/bias"] = bias
        channels = spec.filters
    return arrays, channels


def _pool5_rows(weight, channels, pooled_size, path, name):
    """An fc weight [out, C*P*P] over Caffe's (c, h, w) flattening of pool5 -> the
    kernel [P*P*C, out] over ours (h, w, c)."""
    out, inputs = weight.shape
    if inputs != channels * pooled_size * pooled_size:
        raise ValueError(f"{path}: layer {name!r} has {inputs} inputs, not pool5's "
                         f"{channels} x {pooled_size} x {pooled_size}")
    return (weight.reshape(out, channels, pooled_size, pooled_size)
            .transpose(2, 3, 1, 0).reshape(inputs, out))


def _fc(by_name, name, path, inputs=None):
    weight, bias = _weight_and_bias(by_name[name], path)
    if inputs is not None and weight.shape[1] != inputs:
        raise ValueError(f"{path}: layer {name!r} has {weight.shape[1]} inputs, the layer "
                         f"before it {inputs} outputs")
    _check(path, f"{name} (bias)", bias, (weight.shape[0],))
    return weight, bias


def _leftover(by_name, used, path, backbone, allowed=()):
    extra = [name for name in by_name if name not in used and name not in allowed]
    if extra:
        layer = by_name[extra[0]]
        raise ValueError(f"{path}: layer {layer.name!r} ({layer.type}) is not part of a "
                         f"{backbone} model and was not converted; the model holds "
                         f"{list(by_name)}")


def imagenet_arrays(layers, backbone=None, path="the model"):
    """(arrays of a backbone ``.npz``, backbone): every conv layer and fc6/fc7 of an
    ImageNet caffemodel's ``layers``; fc8 (the ImageNet classifier) is left out."""
    from keras_frcnn.model.backbones import SPECS

    backbone = backbone or detect_backbone(layers, path)
    by_name = {layer.name: layer for layer in layers}
    arrays, channels = _conv_arrays(by_name, backbone, path)
    missing = [name for name in ("fc6", "fc7") if name not in by_name]
    if missing:
        raise ValueError(f"{path}: layer {missing[0]!r} is missing; an ImageNet {backbone} "
                         "model has fc6 and fc7 after its conv layers")
    pooled = SPECS[backbone].pooled_size
    w6, b6 = _fc(by_name, "fc6", path)
    w7, b7 = _fc(by_name, "fc7", path, inputs=w6.shape[0])
    arrays.update({"fc6/kernel": _pool5_rows(w6, channels, pooled, path, "fc6"),
                   "fc6/bias": b6, "fc7/kernel": w7.T, "fc7/bias": b7})
    _leftover(by_name, set(caffe_conv_names(backbone)) | {"fc6", "fc7"}, path, backbone,
              allowed=("fc8",))
    return {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}, backbone


def fast_rcnn_model(layers, class_names, backbone=None, path="the model"):
    """(FastRCNN, report) from a trained Fast R-CNN caffemodel's ``layers``: the
    backbone's convs, fc6/fc7 (or their SVD factors fc6_L/fc6_U, fc7_L/fc7_U),
    cls_score [K+1] and bbox_pred [4(K+1)], the background's four box rows dropped."""
    from keras_frcnn.model.backbones import SPECS
    from keras_frcnn.model.fast_rcnn import FastRCNN

    backbone = backbone or detect_backbone(layers, path)
    by_name = {layer.name: layer for layer in layers}
    arrays, channels = _conv_arrays(by_name, backbone, path)
    pooled = SPECS[backbone].pooled_size
    used = set(caffe_conv_names(backbone))
    fc, factorized, inputs = {}, {}, channels * pooled * pooled
    for name in ("fc6", "fc7"):
        if f"{name}_L" in by_name or f"{name}_U" in by_name:
            for part in ("L", "U"):
                if f"{name}_{part}" not in by_name:
                    raise ValueError(f"{path}: layer '{name}_{part}' is missing; an SVD-"
                                     f"compressed {name} has {name}_L and {name}_U")
            (low,) = _weight_and_bias(by_name[f"{name}_L"], path, bias=False)
            if low.shape[1] != inputs:
                raise ValueError(f"{path}: layer '{name}_L' has {low.shape[1]} inputs, the "
                                 f"layer before it {inputs} outputs")
            up, bias = _fc(by_name, f"{name}_U", path, inputs=low.shape[0])
            fc[f"{name}_L"] = [(_pool5_rows(low, channels, pooled, path, f"{name}_L")
                                if name == "fc6" else low.T)]
            fc[name] = [up.T, bias]
            factorized[name] = low.shape[0]
            used |= {f"{name}_L", f"{name}_U"}
            inputs = up.shape[0]
        elif name in by_name:
            weight, bias = _fc(by_name, name, path, inputs=inputs)
            fc[name] = [(_pool5_rows(weight, channels, pooled, path, name)
                         if name == "fc6" else weight.T), bias]
            used.add(name)
            inputs = weight.shape[0]
        else:
            raise ValueError(f"{path}: layer {name!r} is missing (nor {name}_L/{name}_U of "
                             "an SVD-compressed model)")
    for name in ("cls_score", "bbox_pred"):
        if name not in by_name:
            raise ValueError(f"{path}: layer {name!r} is missing: not a trained Fast R-CNN "
                             "model (an ImageNet model converts to a backbone .npz instead)")
    score_w, score_b = _fc(by_name, "cls_score", path, inputs=inputs)
    box_w, box_b = _fc(by_name, "bbox_pred", path, inputs=inputs)
    num_classes = score_w.shape[0]
    if box_w.shape[0] != 4 * num_classes:
        raise ValueError(f"{path}: bbox_pred has {box_w.shape[0]} outputs, not 4 x the "
                         f"{num_classes} of cls_score (the release predicts a box for the "
                         "background too)")
    class_names = tuple(class_names)
    if len(class_names) != num_classes - 1:
        raise ValueError(f"{path}: cls_score scores {num_classes - 1} object classes and "
                         f"background, but {len(class_names)} class names were given; pass "
                         "the model's classes in its order with --classes")
    used |= {"cls_score", "bbox_pred"}
    _leftover(by_name, used, path, backbone)
    widths = (fc["fc6"][0].shape[1], fc["fc7"][0].shape[1])
    model = FastRCNN(num_classes, backbone=backbone, fc_units=widths,
                     factorized=factorized or None, class_names=class_names,
                     preprocessing=SPECS[backbone].preprocessing)
    features = model.get_layer(f"{backbone}_features")
    for spec in caffe_conv_names(backbone).values():
        features.get_layer(spec.name).set_weights(
            [arrays[f"{spec.name}/kernel"], arrays[f"{spec.name}/bias"]])
    for name, values in fc.items():
        model.get_layer(name).set_weights([np.ascontiguousarray(v, np.float32)
                                           for v in values])
    model.get_layer("cls_score").set_weights([score_w.T, score_b])
    # Rows 0-3 are the background's box, which the release's loss never trains.
    model.get_layer("bbox_pred").set_weights([box_w[4:].T, box_b[4:]])
    report = {"backbone": backbone, "num_classes": num_classes, "fc_units": list(widths),
              "svd": dict(factorized), "layers": sorted(used),
              "dropped": "bbox_pred rows 0-3 (the background's box)"}
    return model, report


def write_npz(path, arrays):
    """Writes a backbone ``.npz`` whole or not at all (files.atomic_write); an existing
    file is refused, not replaced."""
    import io

    from keras_frcnn.files import atomic_write

    if Path(path).exists():
        raise ValueError(f"{path} exists; give a new path with --output, or remove it")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def write_workdir(model, report, config, workdir, source):
    """A workdir that bin/evaluate.py and bin/detect.py take as it is: model.keras,
    classes.json, config.json (``config`` with the model's widths and SVD ranks),
    target_stats.json (the identity: the release saved raw deltas) and convert.json
    (the source file, its SHA-256 and what was mapped)."""
    from keras_frcnn.configs import format_ranks
    from keras_frcnn.files import make_temp_dir
    from keras_frcnn.workdirs import save_model

    workdir = Path(workdir)
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        what = "a file" if not workdir.is_dir() else "a folder that is not empty"
        raise ValueError(f"{workdir} is {what}; a converted model gets a workdir of its own: "
                         "give a new path with --output, or remove that one")
    config = config.copy_and_resolve_references()
    num_classes = report["num_classes"]
    with config.unlocked():
        config.model.backbone = report["backbone"]
        config.model.fc_units = tuple(report["fc_units"])
        config.model.svd = format_ranks(report["svd"]) if report["svd"] else ""
        config.model.weights = ""
    workdir.parent.mkdir(parents=True, exist_ok=True)
    # Written whole beside it, then renamed into place: a failure leaves no half workdir.
    building = make_temp_dir(workdir.parent, f".{workdir.name}.")
    try:
        (building / "classes.json").write_text(
            json.dumps(list(model.get_config()["class_names"])))
        (building / "target_stats.json").write_text(json.dumps(
            {"means": np.zeros((num_classes, 4)).tolist(),
             "stds": np.ones((num_classes, 4)).tolist()}))
        (building / "config.json").write_text(
            json.dumps(json.loads(config.to_json_best_effort()), indent=2))
        save_model(model, building / "model.keras")
        (building / "convert.json").write_text(json.dumps(
            {**report, "source": str(source), "sha256": file_digest(source),
             "target_stats": "identity: the release saved bbox_pred with its targets' "
                             "normalisation folded in"}, indent=2) + "\n")
        if workdir.exists():
            workdir.rmdir()  # empty (checked above)
        building.rename(workdir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return workdir
