"""MS COCO, VGG16 from ImageNet, proposals computed with selective search (cached).

    python bin/train.py --config=configs/coco_vgg16.py --workdir=workdirs/coco_vgg16 \
        --config.dataset.annotations=data/coco/annotations/instances_train2014.json \
        --config.dataset.images=data/coco/train2014

The release ships no COCO selective-search files; the schedule follows the
paper's practice for larger sets (lr x 0.1 every 40% of the run).
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("vgg16")
    config.dataset.kind = "coco"
    config.dataset.root = ""
    config.dataset.annotations = "data/coco/annotations/instances_train2014.json"
    config.dataset.images = "data/coco/train2014"
    config.proposals.method = "selective_search"
    config.train.steps = 240000
    config.train.step_size = 100000
    config.dataset.test_split = "val"  # point dataset.annotations at the val JSON to evaluate
    config.test.metric = "coco"
    config.test.use_07_metric = False
    config.test.mode = "default"
    return config
