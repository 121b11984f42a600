"""PASCAL VOC 2007: VGG16 (model L), ImageNet initialisation: the paper's 66.9 mAP (VOC07 test).

    python bin/train.py --config=configs/voc07_vgg16.py --workdir=workdirs/voc07_vgg16 \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    # Model L from ImageNet (paper 2.2; keras.applications' VGG16), single scale 600 only:
    # the paper trains L at one scale (section 5.2). The rest: docs/voc07.md.
    config = voc07_config("vgg16", weights="imagenet", multiscale=False)
    return config
