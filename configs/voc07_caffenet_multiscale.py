"""PASCAL VOC 2007: model S trained and tested at five scales (paper section 5.2).

    python bin/train.py --config=configs/voc07_caffenet_multiscale.py --workdir=workdirs/voc07_caffenet_multiscale \
        --config.dataset.root=data/VOCdevkit/VOC2007
"""

from keras_frcnn.configs import voc07_config


def get_config():
    # Model S with the five-scale pyramid of section 5.2 (Table 7); weights "" since no
    # ImageNet weights ship with us: convert the release's (docs/voc07.md) and pass them.
    config = voc07_config("caffenet", weights="", multiscale=True)
    return config
