"""The embedded demo: synthetic shapes, selective-search proposals computed on first use.

    python bin/train.py --config=configs/demo.py --workdir=workdirs/demo
    python bin/proposals.py --config=configs/demo.py --split=train

A small stride-8 backbone trained from scratch on the CPU.
"""

from keras_frcnn.configs import base_config


def get_config():
    config = base_config()
    config.dataset.kind = "demo"
    config.pipeline.scales = (200,)  # demo images are 176-256 x 144-208 pixels: about 1:1
    config.pipeline.max_size = 340
    config.pipeline.preprocessing = "tf"
    config.model.backbone = "small"
    config.model.dropout = 0.25
    config.train.steps = 3000
    config.train.base_lr = 0.02  # BatchNorm backbone from scratch: 20x the release's 0.001
    config.train.checkpoint_every = 500
    config.test.scales = config.pipeline.scales
    config.test.max_size = config.pipeline.max_size
    return config
