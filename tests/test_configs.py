"""Every experiment config loads, and the paper's settings are what the paper says."""

from pathlib import Path

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
                           "test"}
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
    assert config.proposals.top_k == 2000 and config.model.weights == "imagenet"
    multiscale = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_caffenet_multiscale.py")
    assert tuple(multiscale.pipeline.scales) == (480, 576, 688, 864, 1200)
    assert multiscale.pipeline.max_size == 2000
    # Testing: the release's post-processing, the paper's VOC 2007 metric, 5 test scales
    # for the multi-scale models (section 5.2).
    assert (config.test.mode, config.test.nms_threshold, config.test.use_07_metric) == (
        "frcnn", 0.3, True)
    assert tuple(config.test.scales) == (600,) and config.test.max_size == 1000
    assert tuple(multiscale.test.scales) == (480, 576, 688, 864, 1200)


def test_voc_roots_joined_with_plus(tmp_path):
    a = write_voc(tmp_path / "VOC2007", {"000001": (10, 10, [("cat", 0, 1, 1, 5, 5)])})
    b = write_voc(tmp_path / "VOC2012", {"2008_000002": (10, 10, [("dog", 0, 1, 1, 5, 5)])})
    config = load_config_file(Path(__file__).resolve().parents[1] / "configs" / "voc07_vgg16.py")
    config.dataset.root = f"{a}+{b}"
    config.dataset.classes = ("cat", "dog")
    dataset = load_dataset(config.dataset, "trainval")
    assert [r.image_id for r in dataset.records] == ["000001", "2008_000002"]
    assert dataset.name == "VOC2007_trainval+VOC2012_trainval"


def test_test_section_reaches_the_detector():
    from keras_frcnn.evaluate import detector_config

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
    config.test.flip = False
    config.test.scales = (480, 600)
    config.test.soft_nms_sigma = 0.5
    detector = detector_config(config)
    assert detector.flip is False and detector.scales == (480, 600)
    assert detector.postprocess.soft_nms_sigma == 0.5


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
