"""PASCAL VOC 2007: VGG_CNN_M_1024 (model M). Its ImageNet weights: the release's .v2.caffemodel converted by bin/convert_caffemodel.py, passed with --config.model.weights=PATH.npz (docs/voc07.md); the config refuses to train without them.

    python bin/train.py --config=configs/voc07_vgg_cnn_m_1024.py --workdir=workdirs/voc07_vgg_cnn_m_1024 \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    # Model M (paper 4.1) at the paper's single scale 600 (section 5.2); weights "" since no
    # ImageNet weights ship with us: convert the release's (docs/voc07.md) and pass them.
    config = voc07_config("vgg_cnn_m_1024", weights="", multiscale=False)
    return config
