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
    # The release's VOC settings (docs/fidelity.md) with the changes of its COCO commits (row
    # 42): experiments/scripts/coco_vgg16.sh trains VGG16 from ImageNet (VGG16.v2.caffemodel).
    config = voc07_config("vgg16")
    config.dataset.kind = "coco"  # the instances JSON reader (docs/data.md)
    config.dataset.root = ""  # no devkit root: COCO is found by its annotations and images
    # coco_vgg16.sh trains on coco_2014_train: its instances file ...
    config.dataset.annotations = "data/coco/annotations/instances_train2014.json"
    config.dataset.images = "data/coco/train2014"  # ... and its images
    config.dataset.train_split = "train"  # the name of that split (voc07_config's is trainval)
    config.proposals.method = "selective_search"  # the release's COCO proposals do not ship
    config.proposals.top_k = 2000  # the release's coco.py keeps the top 2000 (row 42)
    config.proposals.unique = True  # ... and drops duplicates, as coco.py (after its top 2000)
    # coco.py filters its proposals by no size (its _validate_boxes only asserts x2 >= x1), so
    # neither the base filter nor R-CNN's 20-pixel one (a VOC-era selective-search setting)
    # applies: 1 drops only inverted boxes, as for the VOC .mat files.
    config.proposals.min_size = 1
    config.proposals.selective_search_min_size = 0
    config.model.dropout = 0.0  # the release's COCO prototxt has no dropout
    config.train.steps = 240000  # coco_vgg16.sh: --iters 240000 (row 42)
    config.train.step_size = 160000  # one drop, at 160k (the release's COCO solver)
    # coco_vgg16.sh tests on coco_2014_minival, 5000 images of val2014 (the release's
    # data/coco/annotations/instances_minival2014.json).
    config.dataset.test_split = "val"
    config.dataset.test_annotations = "data/coco/annotations/instances_minival2014.json"
    config.dataset.test_images = "data/coco/val2014"
    config.test.metric = "coco"  # COCOeval's AP, as the release's coco.py and paper 5.6
    config.test.use_07_metric = False  # undo voc07_config's VOC 2007 11-point AP
    config.test.devkit_ge = False  # ... and its MATLAB devkit match rule (VOC only)
    config.test.mode = "default"  # the last test.py, with the COCO commits (fidelity note 4)
    return config
