"""PASCAL VOC 2007 + 2012 trainval -> VOC 2007 test, VGG16 (paper Table 1, "07+12": 70.0 mAP).

    python bin/train.py --config=configs/voc0712_vgg16.py --workdir=workdirs/voc0712_vgg16
    python bin/evaluate.py --config=configs/voc0712_vgg16.py --workdir=workdirs/voc0712_vgg16

Trains on both devkit years (16,551 images, three times the 5,011 of VOC07 trainval)
and tests on VOC 2007 test alone (dataset.test_root, proposals.test_mat_file: point
them elsewhere together with dataset.root and proposals.mat_file). The
schedule is the paper's for this set (section 5.3): 60k iterations instead of 40k, on the
release's solver, whose learning rate drops 10x at 30k. (The 100k / 40k schedule of
section 5.3 belongs to 07++12, which adds VOC07 test, for the VOC 2010/2012 tables.)
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("vgg16")  # model L from ImageNet: Table 1's 07+12 row (docs/voc07.md)
    # VOC07 trainval + VOC12 trainval (paper 5.3, 16,551 images); "+" joins devkit roots.
    config.dataset.root = "data/VOCdevkit/VOC2007+data/VOCdevkit/VOC2012"
    config.dataset.test_root = "data/VOCdevkit/VOC2007"  # Table 1's 07+12 is tested on VOC07
    # The release's selective-search files of both years (boxes matched to images by id).
    config.proposals.mat_file = ("data/selective_search_data/voc_2007_{split}.mat+"
                                 "data/selective_search_data/voc_2012_{split}.mat")
    # Tested on VOC07 test (Table 1), so that split's release boxes, as dataset.test_root.
    config.proposals.test_mat_file = "data/selective_search_data/voc_2007_test.mat"
    config.train.steps = 60000  # paper 5.3: "60k mini-batch iterations instead of 40k"
    config.train.step_size = 30000  # the release's solver.prototxt stepsize (docs/fidelity.md)
    return config
