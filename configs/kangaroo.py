"""The kangaroo photos (VOC XML in annots/, JPEGs in images/), split 80/20 by file name.

    python bin/proposals.py --config=configs/kangaroo.py \
        --config.dataset.root=../shared/data/kangaroo --split=train
"""

from keras_frcnn.configs import base_config


def get_config():
    config = base_config()
    config.dataset.kind = "voc_folder"
    config.dataset.root = "../shared/data/kangaroo"
    config.dataset.annotations = ""  # default: <root>/annots
    config.dataset.images = ""  # default: <root>/images
    config.dataset.classes = ("kangaroo",)
    config.dataset.train_fraction = 0.8
    config.pipeline.preprocessing = "tf"
    return config
