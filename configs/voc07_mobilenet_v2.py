"""PASCAL VOC 2007: MobileNetV2 cut at stride 16, for CPU users (not in the paper).

    python bin/train.py --config=configs/voc07_mobilenet_v2.py --workdir=workdirs/voc07_mobilenet_v2 \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    # Not in the paper: a stride-16 MobileNetV2 from keras.applications' ImageNet weights for
    # CPU users (docs/model.md), at the paper's default single scale 600 (section 5.2).
    config = voc07_config("mobilenet_v2", weights="imagenet", multiscale=False)
    config.pipeline.preprocessing = "tf"  # what its ImageNet weights expect: [-1, 1] RGB
    return config
