"""The embedded demo: synthetic shapes, selective-search proposals computed on first use.

    python bin/train.py --config=configs/demo.py --workdir=workdirs/demo
    python bin/proposals.py --config=configs/demo.py --split=train

A small stride-8 backbone trained from scratch on the CPU.
"""

from keras_frcnn.configs import base_config


def get_config():
    config = base_config()
    config.dataset.kind = "demo"
    config.pipeline.scales = (240,)  # demo images are about 200 x 180 pixels
    config.pipeline.max_size = 400
    config.pipeline.preprocessing = "tf"
    config.model.backbone = "small"
    config.model.dropout = 0.25
    config.train.steps = 3000
    config.train.base_lr = 0.01
    config.train.checkpoint_every = 500
    return config
