"""PASCAL VOC 2007 + 2012 trainval -> VOC 2007 test, VGG16 (paper Table 1, "07+12": 70.0 mAP).

    python bin/train.py --config=configs/voc0712_vgg16.py --workdir=workdirs/voc0712_vgg16

The larger set trains longer; as for the paper's VOC 2012 runs, the learning
rate drops by 10x every 40k of 100k iterations.
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("vgg16")
    config.dataset.root = "data/VOCdevkit/VOC2007+data/VOCdevkit/VOC2012"
    config.proposals.mat_file = ("data/selective_search_data/voc_2007_{split}.mat+"
                                 "data/selective_search_data/voc_2012_{split}.mat")
    config.train.steps = 100000
    config.train.step_size = 40000
    return config
