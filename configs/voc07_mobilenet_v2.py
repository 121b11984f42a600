"""PASCAL VOC 2007: MobileNetV2 cut at stride 16, for CPU users (not in the paper).

    python bin/train.py --config=configs/voc07_mobilenet_v2.py --workdir=workdirs/voc07_mobilenet_v2 \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("mobilenet_v2", weights="imagenet", multiscale=False)
    config.pipeline.preprocessing = "tf"
    return config
