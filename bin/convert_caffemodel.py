"""Converts a Caffe .caffemodel into this package's weights, without Caffe.

    # ImageNet models (the release's data/imagenet_models/*.v2.caffemodel) -> a backbone
    # .npz that the paper configs load as --config.model.weights:
    python bin/convert_caffemodel.py --caffemodel=VGG_CNN_M_1024.v2.caffemodel \
        --output=weights/vgg_cnn_m_1024.npz
    # The release's trained detectors (also its SVD-compressed ones) -> a workdir that
    # bin/evaluate.py and bin/detect.py take as it is:
    python bin/convert_caffemodel.py \
        --caffemodel=output/default/voc_2007_trainval/vgg16_fast_rcnn_iter_40000.caffemodel \
        --output=workdirs/release_vgg16
    python bin/evaluate.py --config=configs/voc07_vgg16.py --workdir=workdirs/release_vgg16

The kind is told from the layers (cls_score and bbox_pred: a trained detector), the
backbone from the conv layers (conv1_1: VGG16; conv1 of 11x11: CaffeNet, 7x7:
VGG_CNN_M_1024). A trained model's workdir records --config (default the backbone's
configs/voc07_*.py) with the model's fc widths and SVD ranks, and the class names
(--classes, default the 20 VOC classes in the release's order). docs/voc07.md.
"""

import json
import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

_CAFFEMODEL = flags.DEFINE_string("caffemodel", None, "the .caffemodel to convert")
_OUTPUT = flags.DEFINE_string("output", None, "an ImageNet model's .npz, or a trained "
                              "model's new workdir")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "a trained model's experiment config, recorded in its workdir "
    "(default configs/voc07_<backbone>.py)", lock_config=True)
_CLASSES = flags.DEFINE_string(
    "classes", "voc", "a trained model's object classes in its cls_score order, without "
    "the background: 'voc' (the release's 20), a comma-separated list, or a classes.json "
    "(a JSON list) or text file (one name a line)")


def class_names(value):
    """--classes as a tuple of names."""
    from keras_frcnn.data.voc import VOC_CLASSES

    if value == "voc":
        return VOC_CLASSES
    path = Path(value)
    if path.suffix in (".json", ".txt"):
        if not path.is_file():
            raise ValueError(f"--classes={value}: no such file")
        if path.suffix == ".txt":
            return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        try:
            names = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"--classes={value}: not JSON ({err})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"--classes={value}: must hold a JSON list of class names, as a "
                             "workdir's classes.json does")
        return tuple(names)
    return tuple(name.strip() for name in value.split(",") if name.strip())


def main(argv):
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn import caffemodel
    from keras_frcnn.configs import load_config_file

    source = Path(_CAFFEMODEL.value)
    try:
        if not source.is_file():
            raise ValueError(f"--caffemodel={source}: no such file")
        layers = caffemodel.read_caffemodel(source)
        names = {layer.name for layer in layers}
        if not {"cls_score", "bbox_pred"} & names:
            output = Path(_OUTPUT.value)
            if output.suffix != ".npz":
                raise ValueError(f"--output={output}: an ImageNet model converts to a "
                                 "backbone weights file; give a path ending in .npz")
            arrays, backbone = caffemodel.imagenet_arrays(layers, path=source)
            caffemodel.write_npz(output, arrays)
            print(f"{backbone} ImageNet weights ({len(arrays) // 2} layers, fc8 left out) in "
                  f"{output}: train with --config.model.weights={output}")
            return
        if Path(_OUTPUT.value).suffix == ".npz":
            raise ValueError(f"--output={_OUTPUT.value}: a trained detector converts to a "
                             "workdir (a folder), not a weights .npz; give a folder path")
        model, report = caffemodel.fast_rcnn_model(layers, class_names(_CLASSES.value),
                                                   path=source)
        config = _CONFIG.value or load_config_file(
            str(CONFIGS / f"voc07_{report['backbone']}.py"))
        workdir = caffemodel.write_workdir(model, report, config, _OUTPUT.value, source)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    svd = ", ".join(f"{k} rank {v}" for k, v in report["svd"].items()) or "no SVD"
    print(f"{report['backbone']} Fast R-CNN, {report['num_classes'] - 1} classes, fc "
          f"{report['fc_units'][0]}/{report['fc_units'][1]}, {svd}: workdir {workdir} "
          "(bin/evaluate.py and bin/detect.py take it with its config)")


def run():
    """Entry point of the console script frcnn-convert-caffemodel."""
    cli.run(main, required=("caffemodel", "output"))


if __name__ == "__main__":
    run()
