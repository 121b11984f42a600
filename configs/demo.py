"""The embedded demo: synthetic shapes, selective-search proposals computed on first use.

    python bin/proposals.py --config=configs/demo.py --split=train
(Model and training sections arrive with the training program.)
"""

from keras_frcnn.configs import base_config


def get_config():
    config = base_config()
    config.dataset.kind = "demo"
    config.pipeline.scales = (240,)  # demo images are about 200 x 180 pixels
    config.pipeline.max_size = 400
    config.pipeline.preprocessing = "tf"
    return config
