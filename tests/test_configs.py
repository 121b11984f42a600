"""Every experiment config loads, and the paper's settings are what the paper says."""

from pathlib import Path

import numpy as np
import pytest

from keras_frcnn.configs import base_config, load_config_file
from keras_frcnn.data.sources import load_dataset
from keras_frcnn.model.backbones import SPECS
from tests.data.fixtures import write_voc

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_complete_and_consistent(path):
    config = load_config_file(path)
    assert set(config) == {"dataset", "proposals", "sampling", "pipeline", "model", "train",
                           "test", "export"}
    assert config.test.mode in ("frcnn", "default") and config.test.metric in (
        "voc", "coco", "both")
    assert config.model.backbone in SPECS
    assert config.pipeline.preprocessing == SPECS[config.model.backbone].preprocessing
    assert config.sampling.rois_per_batch % config.sampling.images_per_batch == 0


def test_paper_settings():
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_vgg16.py")
    assert (config.sampling.images_per_batch, config.sampling.rois_per_batch) == (2, 128)
    assert (config.sampling.fg_fraction, config.sampling.fg_threshold) == (0.25, 0.5)
    assert (config.sampling.bg_threshold_lo, config.sampling.bg_threshold_hi) == (0.1, 0.5)
    assert (config.train.steps, config.train.base_lr, config.train.step_fraction) == (40000, 0.001, 0.75)
    assert (config.train.momentum, config.train.weight_decay, config.train.bias_lr_mult) == (0.9, 0.0005, 2.0)
    assert (tuple(config.pipeline.scales), config.pipeline.max_size) == ((600,), 1000)
    assert config.model.weights == "imagenet"
    # The release's data: every box of the .mat files, difficult objects trained on.
    assert (config.proposals.top_k, config.proposals.unique, config.proposals.min_size) == (
        0, False, 1)
    assert config.dataset.use_difficult and base_config().dataset.use_difficult
    multiscale = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_caffenet_multiscale.py")
    assert tuple(multiscale.pipeline.scales) == (480, 576, 688, 864, 1200)
    assert multiscale.pipeline.max_size == 2000
    # Testing: the release's post-processing, the paper's VOC 2007 metric, 5 test scales
    # for the multi-scale models (section 5.2).
    assert (config.test.mode, config.test.nms_threshold, config.test.use_07_metric) == (
        "frcnn", 0.3, True)
    assert config.test.devkit_ge and not base_config().test.devkit_ge  # MATLAB devkit: >= 0.5
    assert tuple(config.test.scales) == (600,) and config.test.max_size == 1000
    assert tuple(multiscale.test.scales) == (480, 576, 688, 864, 1200)
    # As the release computed and ran: full float32 (Caffe had no TF32), ImageNet weights
    # required, the solver's fixed step at 30k, and every RoI scored (fidelity rows).
    for name in ("voc07_vgg16", "voc07_caffenet", "voc07_vgg_cnn_m_1024_multiscale",
                 "voc0712_vgg16", "coco_vgg16"):
        paper = load_config_file(Path(__file__).resolve().parents[1] / "configs" / f"{name}.py")
        assert paper.model.tf32 is False and paper.model.require_weights, name
        assert paper.test.score_empty_rois and not paper.dataset.exif_orientation, name
        assert paper.train.step_size == (160000 if name == "coco_vgg16" else 30000), name
    assert base_config().model.tf32 and not base_config().model.require_weights
    assert base_config().dataset.exif_orientation


def test_voc_roots_joined_with_plus(tmp_path):
    a = write_voc(tmp_path / "VOC2007", {"000001": (10, 10, [("cat", 0, 1, 1, 5, 5)])})
    b = write_voc(tmp_path / "VOC2012", {"2008_000002": (10, 10, [("dog", 0, 1, 1, 5, 5)])})
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_vgg16.py")
    config.dataset.root = f"{a}+{b}"
    config.dataset.classes = ("cat", "dog")
    dataset = load_dataset(config.dataset, "trainval")
    assert [r.image_id for r in dataset.records] == ["000001", "2008_000002"]
    assert dataset.name == "VOC2007_trainval+VOC2012_trainval"


def test_paper_config_keeps_every_box_of_the_release_mat_file(tmp_path):
    # 2,500 boxes with duplicates and a 1-pixel-wide one: pascal_voc.py uses them all.
    import scipy.io

    from keras_frcnn.proposals.sources import proposals_for_dataset

    root = write_voc(tmp_path / "VOC2007", {"000001": (600, 400, [("cat", 0, 1, 1, 50, 50)])},
                     split="test")
    rng = np.random.default_rng(0)
    xy = rng.integers(1, 300, (2500, 2))
    yxyx = np.concatenate([xy, xy + rng.integers(20, 99, (2500, 2))], 1)[:, [1, 0, 3, 2]]
    yxyx[1] = yxyx[0]  # a duplicate
    yxyx[2] = [5, 7, 60, 7]  # x1 == x2 (1-based): one pixel wide
    cells = np.empty((1,), object)
    cells[0] = yxyx.astype(np.uint16)
    images = np.empty((1,), object)
    images[0] = "000001"
    scipy.io.savemat(tmp_path / "voc_2007_test.mat", {"boxes": cells, "images": images})
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_vgg16.py")
    config.dataset.root = str(root)
    config.dataset.classes = ("cat",)
    config.proposals.mat_file = str(tmp_path / "voc_2007_{split}.mat")
    dataset = load_dataset(config.dataset, "test")
    boxes = proposals_for_dataset(dataset, config.proposals, False, split="test")["000001"]
    np.testing.assert_array_equal(boxes, yxyx[:, [1, 0, 3, 2]] - 1)
    # The base config's filters (computed selective search): unique, 2 pixels, top 2000.
    filtered = base_config().proposals
    filtered.method, filtered.mat_file = "mat", config.proposals.mat_file
    assert len(proposals_for_dataset(dataset, filtered, False, split="test")["000001"]) == 2000


def test_voc0712_trains_on_both_years_and_tests_on_voc2007(tmp_path, monkeypatch):
    # As shipped (paths relative to the working directory), no override needed.
    from keras_frcnn.configs import split_sections

    monkeypatch.chdir(tmp_path)
    write_voc("data/VOCdevkit/VOC2007", {"000001": (10, 10, [("cat", 0, 1, 1, 5, 5)])})
    write_voc("data/VOCdevkit/VOC2007", {"000002": (10, 10, [("cat", 0, 1, 1, 5, 5)])},
              split="test")
    write_voc("data/VOCdevkit/VOC2012", {"2008_000003": (10, 10, [("dog", 0, 1, 1, 5, 5)])})
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" /
                              "voc0712_vgg16.py")
    train_dataset, train_proposals = split_sections(config, config.dataset.train_split)
    assert [r.image_id for r in load_dataset(train_dataset, "trainval").records] == [
        "000001", "2008_000003"]
    assert train_proposals.mat_file == config.proposals.mat_file
    test_dataset, test_proposals = split_sections(config, config.dataset.test_split)
    assert [r.image_id for r in load_dataset(test_dataset, "test").records] == ["000002"]
    assert test_proposals.mat_file == "data/selective_search_data/voc_2007_test.mat"
    assert config.dataset.root.endswith("VOC2012")  # the config itself is not changed
    # bin/evaluate.py's library call, as shipped, scores VOC 2007 test (re-scoring saved
    # detections: no network needed); one detection on the one cat: AP 1.
    from keras_frcnn.detection.postprocess import Detections
    from keras_frcnn.evaluation.run import evaluate
    from keras_frcnn.evaluation import save_detections

    save_detections({"000002": Detections(np.array([[0, 0, 4, 4]], np.float32),
                                          np.array([0.9], np.float32),
                                          np.array([8], np.int32))}, tmp_path / "dets.npz")
    config.test.picture_images = 0
    metrics = evaluate(config, output_dir=tmp_path / "eval", rescore=str(tmp_path / "dets.npz"),
                       progress=False)
    assert metrics["dataset"] == "VOC2007_test" and metrics["images"] == 1
    assert metrics["AP"]["cat"] == 1.0


def test_voc0712_schedule():
    # Paper 5.3: 07+12 trains 60k iterations instead of 40k; the release's solver drops the
    # rate 10x at 30k. (100k with a drop every 40k is 07++12, the VOC 2010/2012 set.)
    from keras_frcnn.model.fast_rcnn import step_schedule

    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc0712_vgg16.py")
    assert (config.train.steps, config.train.step_size) == (60000, 30000)
    t = config.train
    schedule = step_schedule(t.base_lr, t.steps, t.step_fraction, step_size=t.step_size)
    assert [float(schedule(s)) for s in (0, 29999, 30000, 59999)] == pytest.approx(
        [0.001, 0.001, 0.0001, 0.0001])
    coco = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "coco_vgg16.py")
    assert (coco.train.steps, coco.train.step_size, coco.model.dropout) == (240000, 160000, 0.0)
    assert (coco.proposals.top_k, coco.proposals.unique) == (2000, True)


def test_test_section_reaches_the_detector():
    from keras_frcnn.evaluation.run import detector_config

    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "kangaroo.py")
    detector = detector_config(config)
    assert detector.postprocess.nms_threshold == 0.5 and detector.preprocessing == "tf"
    assert detector.flip is True  # chosen on a validation split (configs/kangaroo.py)
    assert detector_config(base_config()).flip is False  # the paper's test by default
    assert detector.postprocess.soft_nms_sigma == 0.3  # chosen on validation folds
    assert detector_config(base_config()).postprocess.soft_nms_sigma == 0.0  # the paper's NMS
    assert detector.postprocess.mode == "default"  # no set cap (configs/kangaroo.py)
    assert detector.postprocess.score_threshold == 0.001
    assert detector_config(base_config()).postprocess.mode == "frcnn"  # the release's
    assert detector.bbox_reg is True and detector_config(base_config()).bbox_reg is True
    config.test.flip = False
    config.test.scales = (480, 600)
    config.test.soft_nms_sigma = 0.5
    config.test.bbox_reg = False  # paper Table 6: the proposals are the boxes
    detector = detector_config(config)
    assert detector.flip is False and detector.scales == (480, 600)
    assert detector.postprocess.soft_nms_sigma == 0.5
    assert detector.bbox_reg is False


def test_postprocessing_is_read_from_the_test_section_with_an_optional_mode():
    from keras_frcnn.detection import PostprocessConfig

    test = base_config().test
    test.nms_threshold, test.score_threshold, test.soft_nms_sigma = 0.4, 0.01, 0.2
    post = PostprocessConfig.from_test_config(test)
    assert (post.mode, post.nms_threshold, post.score_threshold, post.soft_nms_sigma) == (
        "frcnn", 0.4, 0.01, 0.2)
    assert PostprocessConfig.from_test_config(test, mode="default").mode == "default"
    test.soft_nms_sigma = -1.0
    with pytest.raises(ValueError, match="soft_nms_sigma must be >= 0"):
        PostprocessConfig.from_test_config(test)


def test_voc_folder_splits_with_a_validation_share(tmp_path):
    root = tmp_path / "photos"
    ids = [f"{i:05d}" for i in range(1, 11)]
    write_voc(root, {i: (10, 10, [("kangaroo", 0, 1, 1, 5, 5)]) for i in ids})
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "kangaroo.py")
    config.dataset.annotations, config.dataset.images = str(root / "Annotations"), str(
        root / "JPEGImages")

    def split(name):
        return [r.image_id for r in load_dataset(config.dataset, name).records]

    # 10 files, 0.8: the first 8 train (and are trainval), the last 2 test.
    assert split("train") == split("trainval") == ids[:8] and split("test") == ids[8:]
    with pytest.raises(ValueError, match="val_fraction"):
        split("val")
    config.dataset.val_fraction = 0.25  # 2 of the 8: the last two training files
    assert split("train") == ids[:6] and split("val") == ids[6:8]
    assert split("trainval") == ids[:8] and split("test") == ids[8:]
    config.dataset.val_fold = 1  # the two files before those: a second fold
    assert split("train") == ids[:4] + ids[6:8] and split("val") == ids[4:6]
    assert split("test") == ids[8:]
    config.dataset.val_fold = 4  # 8 training files hold only 4 shares of 2
    with pytest.raises(ValueError, match=r"val_fold must be in \[0, 4\)"):
        split("val")
    config.dataset.val_fold = 0
    config.dataset.val_fraction = 1.0
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        split("train")


def test_kangaroo_paths_lie_in_the_repository_s_ignored_data_folder():
    # A clean clone has no ../shared: the photos and weights go under data/, which git
    # ignores (docs/kangaroo.md), and the config reads them from there by default.
    import subprocess

    root = Path(__file__).resolve().parents[1]
    config = load_config_file(root / "configs" / "kangaroo.py")
    assert config.dataset.root == "data/kangaroo"
    assert config.model.weights == "data/weights/mobilenet_v2_1.0_224_from_coral_quant.weights.h5"
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("data/kangaroo/images/00001.jpg", config.model.weights):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0, path
    for path in ("keras_frcnn/data/roidb.py", "tests/data/fixtures.py"):  # /data/ only
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 1, path


def test_kangaroo_config_builds_from_imagenet_or_a_weights_file(tmp_path, monkeypatch):
    # "imagenet" reaches keras.applications (which downloads Keras' weights: replaced
    # here by a recorder, no network), a file path is loaded into the same network.
    import keras

    from keras_frcnn import training

    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "kangaroo.py")
    real = keras.applications.MobileNetV2
    asked = []

    def recorder(**kwargs):
        asked.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(keras.applications, "MobileNetV2", recorder)
    config.model.weights = "imagenet"
    training.build_model(config, num_classes=2)
    assert asked == ["imagenet"]

    monkeypatch.setattr(keras.applications, "MobileNetV2", real)
    reference = real(include_top=False, weights=None)
    conv1 = reference.get_layer("Conv1")
    conv1.kernel.assign(np.full(conv1.kernel.shape, 0.25, np.float32))
    reference.save_weights(tmp_path / "mobilenet_v2.weights.h5")
    config.model.weights = str(tmp_path / "mobilenet_v2.weights.h5")
    model = training.build_model(config, num_classes=2)
    loaded = model.get_layer("mobilenet_v2_features").get_layer("Conv1").kernel.numpy()
    np.testing.assert_array_equal(loaded, np.full(conv1.kernel.shape, 0.25, np.float32))


def test_coco_test_split_needs_its_own_instances_file(tmp_path):
    # A COCO instances file is one split: testing on dataset.annotations would score the
    # training images (coco_vgg16.py names the release's minival file for its test split).
    from keras_frcnn.configs import split_sections

    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "coco_vgg16.py")
    dataset, _ = split_sections(config, "val")
    assert dataset.annotations.endswith("instances_minival2014.json")
    assert dataset.images.endswith("val2014")
    train, _ = split_sections(config, "train")
    assert train.annotations.endswith("instances_train2014.json")
    with pytest.raises(ValueError, match="COCO split 'test': an instances file is one split"):
        split_sections(config, "test")
    config.dataset.test_annotations = ""
    with pytest.raises(ValueError, match="COCO's test split 'val' needs its own instances file"):
        split_sections(config, "val")
    config.dataset.test_annotations = "./" + config.dataset.annotations  # the same file
    with pytest.raises(ValueError, match="holds the training images"):
        split_sections(config, "val")
