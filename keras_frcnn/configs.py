"""Shared defaults of the experiment configs in configs/ (ml_collections).

Every key has a one-line comment with its meaning and unit. Experiment files
start from ``base_config()`` and change what differs; absl flags override any
key (``--config.sampling.fg_fraction=0.5``) and unknown keys are an error.
"""

import importlib.util
from pathlib import Path

import ml_collections


def split_sections(config, split):
    """(dataset, proposals) sections for ``split``: the test split reads
    ``dataset.test_root`` and ``proposals.test_mat_file`` where they are set
    (VOC 07+12 trains on two devkit years and tests on VOC 2007 alone), and COCO's
    ``dataset.test_annotations`` and ``test_images``, which it must have: a COCO
    instances file is one split, and ``dataset.annotations`` is the training one."""
    dataset, proposals = config.dataset, config.proposals
    if dataset.kind == "coco" and split not in (dataset.train_split, dataset.test_split):
        raise ValueError(f"COCO split {split!r}: an instances file is one split, and this "
                         f"config names two, {dataset.train_split!r} (dataset.annotations) and "
                         f"{dataset.test_split!r} (dataset.test_annotations); give one of them")
    if split == dataset.test_split and dataset.kind == "coco" and split != dataset.train_split:
        test = dataset.get("test_annotations", "")
        if not test or Path(test).resolve() == Path(dataset.annotations).resolve():
            raise ValueError(
                f"COCO's test split {split!r} needs its own instances file: "
                f"dataset.test_annotations is {test or 'empty'!r}, and dataset.annotations "
                f"({dataset.annotations}) holds the training images, which a test would "
                "score; set --config.dataset.test_annotations (e.g. "
                "instances_minival2014.json) and --config.dataset.test_images")
        dataset = ml_collections.ConfigDict(dataset.to_dict())
        dataset.annotations = config.dataset.test_annotations
        dataset.images = config.dataset.get("test_images", "") or config.dataset.images
    if split == dataset.test_split:
        if dataset.get("test_root"):
            dataset = ml_collections.ConfigDict(dataset.to_dict())
            dataset.root = config.dataset.test_root
        if proposals.get("test_mat_file"):
            proposals = ml_collections.ConfigDict(proposals.to_dict())
            proposals.mat_file = config.proposals.test_mat_file
    return dataset, proposals


def parse_ranks(text):
    """config.model.svd's "fc6:1024,fc7:256" -> {"fc6": 1024, "fc7": 256}; "" -> {}."""
    ranks = {}
    for item in (part.strip() for part in str(text or "").split(",")):
        if not item:
            continue
        name, _, rank = item.partition(":")
        try:
            ranks[name.strip()] = int(rank)
        except ValueError:
            raise ValueError(f"bad layer rank {item!r}: write layer:rank pairs separated by "
                             "commas, e.g. fc6:1024,fc7:256") from None
    return ranks


def format_ranks(ranks):
    return ",".join(f"{name}:{rank}" for name, rank in ranks.items())


def load_config_file(path):
    """``get_config()`` of an experiment config file (configs/*.py)."""
    spec = importlib.util.spec_from_file_location("config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def base_config():
    config = ml_collections.ConfigDict()

    config.dataset = ml_collections.ConfigDict()
    config.dataset.kind = "demo"  # demo | voc | voc_folder | coco | images
    config.dataset.root = ""  # voc: VOCdevkit/VOC2007; voc_folder: folder with annots/ images/
    config.dataset.annotations = ""  # voc_folder: XML folder; coco: instances JSON
    config.dataset.images = ""  # voc_folder / coco: image folder
    config.dataset.classes = ()  # object class names; empty: the dataset's own list
    config.dataset.train_split = "train"  # split used for training
    config.dataset.test_split = "test"  # split used for evaluation
    config.dataset.test_root = ""  # voc: devkit folder(s) of the test split ("": root), VOC 07+12
    config.dataset.test_annotations = ""  # coco: instances JSON of the test split (required)
    config.dataset.test_images = ""  # coco: image folder of the test split ("": images)
    config.dataset.train_fraction = 0.8  # voc_folder: share of sorted files in "trainval"
    config.dataset.val_fraction = 0.0  # voc_folder: last share of "trainval" held out as "val"
    config.dataset.val_fold = 0  # voc_folder: which val share, counted from the end (0: last)
    config.dataset.train_subset = 1.0  # share of the training split used (a fixed random subset; paper 5.3)
    config.dataset.use_difficult = True  # train on VOC "difficult" objects too (the release loads all)
    config.dataset.on_error = ""  # bad records: raise | skip (warn); "": raise, bin/detect.py skips
    config.dataset.max_image_pixels = 50_000_000  # refuse larger images before decoding (0: no limit)
    # Turn photos as their EXIF orientation tag says (OpenCV's default since 3.1); False: the
    # stored pixels, as the release's OpenCV 2.4 decoded them, and as VOC's and COCO's boxes
    # are drawn on them.
    config.dataset.exif_orientation = True
    config.dataset.seed = 0  # demo: generator seed
    config.dataset.demo_sizes = (400, 60, 120)  # demo: images in train, val, test
    config.dataset.cache_dir = ""  # demo: cache root (default $KERAS_FRCNN_CACHE or ~/.cache)

    config.proposals = ml_collections.ConfigDict()
    config.proposals.method = "selective_search"  # selective_search | dense | mat | demo_mat
    config.proposals.mode = "fast"  # selective search strategy: fast | quality
    config.proposals.cache_dir = ""  # selective search cache (default <cache root>/proposals)
    config.proposals.workers = 0  # selective search processes (0: one per core)
    config.proposals.mat_file = ""  # mat: the release's <dataset>.mat; "{split}" is replaced
    config.proposals.test_mat_file = ""  # mat: the test split's file(s) ("": mat_file), VOC 07+12
    config.proposals.mat_has_no_ids = False  # mat: file lacks 'images'; use split order
    config.proposals.mat_dir = ""  # demo_mat: folder of <id>_boxes.mat
    config.proposals.min_size = 2  # drop proposals narrower or lower than this (pixels, +1 widths)
    config.proposals.unique = True  # drop duplicate proposals (the release keeps .mat boxes as they are)
    config.proposals.selective_search_min_size = 20  # R-CNN's minBoxWidth (docs/data.md)
    config.proposals.top_k = 2000  # keep the first k proposals per image (0: all); for computed ones
    config.proposals.add_dense = 0  # add this many random dense boxes per image (-1: all; paper 5.5)

    config.sampling = ml_collections.ConfigDict()
    config.sampling.images_per_batch = 2  # N images per minibatch
    config.sampling.rois_per_batch = 128  # R RoIs per minibatch (R / N per image)
    config.sampling.fg_fraction = 0.25  # share of foreground RoIs
    config.sampling.fg_threshold = 0.5  # IoU at or above: foreground
    config.sampling.bg_threshold_hi = 0.5  # IoU below: background ...
    config.sampling.bg_threshold_lo = 0.1  # ... and at or above this
    config.sampling.far_bg_fraction = 0.0  # share of background from IoU [0, lo) (not in the paper)

    config.pipeline = ml_collections.ConfigDict()
    config.pipeline.scales = (600,)  # shortest-side targets (one drawn per image)
    config.pipeline.max_size = 1000  # cap on the longest side (pixels)
    config.pipeline.flip = True  # horizontal flip with p = 0.5
    config.pipeline.preprocessing = "caffe"  # caffe (BGR - means) | tf ([-1, 1] RGB) | none
    config.pipeline.seed = 0  # order, flips, scales and sampling
    config.pipeline.distort_colors = False  # SSD's photometric distortions (not in the paper)
    config.pipeline.crop_probability = 0.0  # random crop before scaling (not in the paper)
    config.pipeline.crop_min_scale = 0.5  # crop sides drawn from [min_scale, 1] of the image's
    config.pipeline.target_normalization = "per_class"  # per_class (release) | fixed

    config.model = ml_collections.ConfigDict()
    config.model.backbone = "vgg16"  # vgg16 | vgg_cnn_m_1024 | caffenet | mobilenet_v2 | small
    config.model.weights = ""  # backbone weights: "" (random) | imagenet | path of a weights file
    config.model.frozen = ml_collections.FieldReference(None, field_type=tuple)  # layer-name prefixes; None: the backbone's default
    config.model.freeze_backbone = False  # train the fc layers only (paper Table 5)
    config.model.train_only = ()  # names of the only layers trained (stage-wise, Table 6); (): all unfrozen
    config.model.dropout = 0.5  # after fc6 and fc7 (head imagenet_blocks: before the siblings)
    config.model.fc_units = ml_collections.FieldReference(None, field_type=tuple)  # (fc6, fc7) widths; None: the backbone's
    config.model.head = "fc"  # per-RoI layers: fc (fc6/fc7) | imagenet_blocks (mobilenet_v2's blocks 13-16)
    config.model.roi_pool = ""  # RoI pooling: "" (custom op if built) | custom_op | composite
    config.model.svd = ""  # truncated-SVD layers "fc6:1024,fc7:256" (set by bin/compress.py)
    config.model.require_weights = False  # True: refuse to train from random backbone weights
    # TensorFlow's default: float32 convolutions and matrix products run in TF32 (10-bit
    # mantissa) on Ampere and newer GPUs; False: full float32, as Caffe computed (numerics.py).
    config.model.tf32 = True

    config.train = ml_collections.ConfigDict()
    config.train.steps = 40000  # SGD iterations (minibatches)
    config.train.seed = 0  # initial weights and dropout (keras.utils.set_random_seed); -1: unseeded
    config.train.base_lr = 0.001  # learning rate before the step
    config.train.step_fraction = 0.75  # lr x 0.1 from this share of the run (30k of 40k)
    config.train.step_size = 0  # if > 0: lr x 0.1 every step_size steps instead (07++12: 40k)
    config.train.momentum = 0.9  # SGD momentum
    config.train.weight_decay = 0.0005  # L2 on kernels (not biases)
    config.train.bias_lr_mult = 2.0  # learning-rate multiplier of biases
    config.train.loss_lambda = 1.0  # weight of the box loss (0: classification only)
    config.train.checkpoint_every = 2000  # steps between checkpoints
    config.train.keep_checkpoints = 3  # checkpoints kept in <workdir>/checkpoints
    config.train.log_every = 20  # steps between TensorBoard and log lines
    config.train.distribute = ""  # "" (one device) | mirrored (GPUs) | multi_worker (TF_CONFIG)
    config.train.devices = ()  # mirrored: device names (default: all GPUs, else the CPU)
    config.train.precision = "float32"  # float32 | mixed_float16 | mixed_bfloat16

    config.test = ml_collections.ConfigDict()
    config.test.scales = (600,)  # test scales: one (single-scale) or an image pyramid
    config.test.max_size = 1000  # cap on the longest side at test time
    config.test.mode = "frcnn"  # post-processing: frcnn (the release) | default
    config.test.nms_threshold = 0.3  # per-class NMS: suppress IoU >= this (the release's nms)
    config.test.soft_nms_sigma = 0.0  # > 0: Gaussian Soft-NMS instead (not in the paper)
    config.test.score_threshold = 0.05  # mode default: keep scores above this
    config.test.deduplicate = True  # compute RoIs sharing feature cells once (exact)
    config.test.score_empty_rois = False  # True: RoIs beyond the feature map keep a score (release)
    config.test.flip = False  # also test the mirrored image, average the two (not in the paper)
    config.test.bbox_reg = True  # decode bbox_pred; False: the proposals are the boxes (Table 6)
    # The network's dtype at test time and in the export: float32 (the release's) |
    # bfloat16 (CPUs with AVX512_BF16/AMX) | float16 (GPUs); docs/benchmarks.md.
    config.test.precision = "float32"
    config.test.metric = "voc"  # voc | coco | both
    config.test.iou_threshold = 0.5  # VOC: a match needs IoU above this (devkit_ge: at least)
    config.test.use_07_metric = False  # VOC: 11-point AP (VOC2007) instead of the area
    config.test.devkit_ge = False  # VOC: the MATLAB devkit's rules (IoU >= threshold, 0:0.1:1)
    config.test.picture_images = 6  # images drawn into detections.png by evaluate
    config.test.picture_threshold = 0.5  # score threshold of drawn detections

    config.export = ml_collections.ConfigDict()
    config.export.max_proposals = 20000  # proposals one serving request may carry (0: no limit)
    return config


def voc07_config(backbone, weights="imagenet", multiscale=False):
    """The paper's VOC 2007 setting as the release runs it (docs/fidelity.md): trainval ->
    test, every box of the release's selective-search files, difficult objects trained
    on, 40k iterations with lr 0.001 -> 0.0001 at 30k, 2 x 64 RoIs, scored as the MATLAB
    devkit scores (11-point AP, a match at IoU >= 0.5)."""
    config = base_config()
    config.dataset.kind = "voc"
    config.dataset.root = "data/VOCdevkit/VOC2007"
    config.dataset.train_split = "trainval"
    config.dataset.test_split = "test"
    config.dataset.train_subset = 1.0  # share of the training split used (a fixed random subset; paper 5.3)
    config.dataset.use_difficult = True  # paper 4.3: all but the "07 \ diff" row train on them
    config.proposals.method = "mat"
    config.proposals.mat_file = "data/selective_search_data/voc_2007_{split}.mat"
    config.proposals.top_k = 0  # pascal_voc.py uses every box of the .mat file
    config.proposals.unique = False  # ... without removing duplicates
    config.proposals.min_size = 1  # ... or small boxes (1 drops only x2 < x1; files have none)
    config.model.backbone = backbone
    config.model.weights = weights
    # The paper fine-tunes from ImageNet (section 2.2): random weights cannot give its tables.
    config.model.require_weights = True
    config.model.tf32 = False  # Caffe computed in full float32 (docs/fidelity.md)
    config.dataset.exif_orientation = False  # the release's cv2.imread ignored it (row 46)
    config.train.step_size = 30000  # solver.prototxt: lr x 0.1 every 30k, however long the run
    config.test.score_empty_rois = True  # the release scores every RoI (fidelity row 33)
    config.test.mode = "frcnn"  # test.py as published with the paper (docs/fidelity.md)
    config.test.use_07_metric = True  # the paper's VOC 2007 numbers: 11-point AP
    config.test.devkit_ge = True  # the MATLAB devkit matches at IoU >= 0.5
    if multiscale:  # paper section 5.2, models S and M: trained and tested on 5 scales
        config.pipeline.scales = (480, 576, 688, 864, 1200)
        config.pipeline.max_size = 2000
        config.test.scales = config.pipeline.scales
        config.test.max_size = 2000
    return config
