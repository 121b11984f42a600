"""MS COCO, VGG16 from ImageNet, proposals computed with selective search (cached).

    python bin/train.py --config=configs/coco_vgg16.py --workdir=workdirs/coco_vgg16 \
        --config.dataset.annotations=data/coco/annotations/instances_train2014.json \
        --config.dataset.images=data/coco/train2014

The release's COCO run (its last commits, docs/fidelity.md row 42): 240k iterations
with one learning-rate drop at 160k (models/VGG16/coco/solver.prototxt), no dropout
(drop6 and drop7 commented out of its COCO train.prototxt), at most 100 detections
per image. The release ships no COCO proposals: ours are computed with selective search.
"""

from keras_frcnn.configs import voc07_config


def get_config():
    config = voc07_config("vgg16")
    config.dataset.kind = "coco"
    config.dataset.root = ""
    config.dataset.annotations = "data/coco/annotations/instances_train2014.json"
    config.dataset.images = "data/coco/train2014"
    config.proposals.method = "selective_search"
    config.proposals.top_k = 2000  # computed proposals: the base filters, not the .mat rules
    config.proposals.unique = True
    config.proposals.min_size = 2
    config.model.dropout = 0.0  # the release's COCO prototxt has no dropout
    config.train.steps = 240000
    config.train.step_size = 160000  # one drop, at 160k (the release's COCO solver)
    config.dataset.test_split = "val"  # point dataset.annotations at the val JSON to evaluate
    config.test.metric = "coco"
    config.test.use_07_metric = False
    config.test.devkit_ge = False
    config.test.mode = "default"
    return config
