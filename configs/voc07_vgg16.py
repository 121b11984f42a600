"""PASCAL VOC 2007: VGG16 (model L), ImageNet initialisation: the paper's 66.9 mAP (VOC07 test).

    python bin/train.py --config=configs/voc07_vgg16.py --workdir=workdirs/voc07_vgg16 \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("vgg16", weights="imagenet", multiscale=False)
    return config
