"""The dataset-level cap of post-processing mode "frcnn": a per-class score threshold
over the candidates of the whole set (not of each image), and its boundary."""

import cv2
import keras
import numpy as np
import pytest

from keras_frcnn.data.records import Dataset, ImageRecord
from keras_frcnn.detection import Detector, DetectorConfig, PostprocessConfig
from keras_frcnn.detection.postprocess import Detections, apply_set_cap, set_cap_thresholds
from keras_frcnn.model.fast_rcnn import FastRCNN


def test_exactly_cap_candidates_are_all_kept():
    """Catches ``len(scores) >= cap`` for ``> cap``: with exactly factor * images
    candidates there is nothing to cap (threshold -inf), and the lowest one stays."""
    # Factor 2, 2 images: cap 4. Class 1 has 4 candidates (0.9, 0.2 / 0.7, 0.4).
    pre = [np.array([[0.1, 0.9], [0.8, 0.2]], np.float32),
           np.array([[0.3, 0.7], [0.6, 0.4]], np.float32)]
    assert set_cap_thresholds(pre, 2, factor=2).tolist() == [-np.inf, -np.inf]
    dets = {"a": Detections(np.zeros((2, 4), np.float32), np.array([0.9, 0.2], np.float32),
                            np.array([1, 1], np.int32)),
            "b": Detections(np.zeros((2, 4), np.float32), np.array([0.7, 0.4], np.float32),
                            np.array([1, 1], np.int32))}
    capped = apply_set_cap(dets, pre, factor=2)
    assert capped["a"].scores.tolist() == pytest.approx([0.9, 0.2])
    assert capped["b"].scores.tolist() == pytest.approx([0.7, 0.4])
    # A third image with one candidate, 0.5, at factor 1: cap 3 of 5 candidates, so the
    # threshold is the 3rd best, 0.5, and only 0.9 and 0.7 are above it.
    pre.append(np.array([[0.5, 0.5]], np.float32))
    assert set_cap_thresholds(pre, 3, factor=1).tolist() == [-np.inf, pytest.approx(0.5)]


# Two 64 x 64 images, one bright and one dark, and ten 24 x 24 proposals on distinct
# feature cells (stride 8). The model's class 1 logit is c (f . d - m), class 2's its
# negative, where f is the RoI's fc7 vector, d = mean fc7 of the bright image's RoIs minus
# the dark one's, and m the midpoint between the two images: class 1 scores every RoI of
# the bright image above every RoI of the dark one, class 2 the other way round.
PROPOSALS = np.array([[8 * i, 8 * j, 8 * i + 23, 8 * j + 23] for i in range(5) for j in range(2)],
                     np.float32)
DETECTOR = dict(scales=(64,), max_size=64, preprocessing="tf")


def images():
    rng = np.random.default_rng(0)
    return {"dark": rng.integers(0, 96, (64, 64, 3), np.uint8),
            "bright": rng.integers(160, 256, (64, 64, 3), np.uint8)}


@pytest.fixture(scope="module")
def brightness_model():
    keras.utils.set_random_seed(0)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    detector = Detector(model, DetectorConfig(**DETECTOR))
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)

    def features(image):
        batch, rois, inverse = detector.prepare(image, PROPOSALS)
        return fc7({"images": batch, "rois": rois}).numpy()[inverse]

    bright, dark = features(images()["bright"]), features(images()["dark"])
    d = bright.mean(0) - dark.mean(0)
    assert (bright @ d).min() > (dark @ d).max()  # the two images' RoIs separate along d
    m = ((bright @ d).min() + (dark @ d).max()) / 2
    c = 3.0 / ((bright @ d).mean() - m)  # logits about +-3 on average
    kernel = np.stack([np.zeros_like(d), c * d, -c * d], axis=1).astype(np.float32)
    bias = np.array([0.0, -c * m, c * m], np.float32)
    model.get_layer("cls_score").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("set_cap")
    records = []
    for name, image in images().items():  # the dark image first
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), image)
        records.append(ImageRecord.create(name, str(path), 64, 64))
    return Dataset("two", ("up", "down"), tuple(records)), {r.image_id: PROPOSALS
                                                            for r in records}


def counts(model, dataset, factor):
    """{image: (class-1 detections, class-2 detections)} of detect_dataset in mode frcnn
    with all 10 RoIs as candidates and no suppression (NMS at 1.5 > any IoU)."""
    post = PostprocessConfig(mode="frcnn", max_per_class=10, max_per_set_factor=factor,
                             nms_threshold=1.5)
    results, _ = Detector(model, DetectorConfig(postprocess=post, **DETECTOR)).detect_dataset(
        *dataset, progress=False)
    return {image_id: (int(np.sum(d.classes == 1)), int(np.sum(d.classes == 2)))
            for image_id, d in results.items()}


def test_one_image_s_high_scores_push_the_set_cap_onto_another(brightness_model, dataset):
    """Catches a cap computed per image (or with 1 image for the set): each class's
    threshold is the (factor x 2 images)-th best of the 20 candidate scores of the set.

    Without a cap (factor 100: 200 > 20) every image keeps its 10 RoIs in both classes.
    Factor 3, cap 6: class 1's threshold is the bright image's 6th best score; the bright
    image keeps the 5 above it and the dark image, whose scores are all lower, none
    (a per-image cap of 3 would keep its best 2). Class 2 the other way round.
    Factor 8, cap 16: the threshold is the dark image's 6th best: the bright image keeps
    all 10 (a per-image cap of 8 would keep 7), the dark one 5.
    """
    assert counts(brightness_model, dataset, 100) == {"dark": (10, 10), "bright": (10, 10)}
    assert counts(brightness_model, dataset, 3) == {"dark": (0, 5), "bright": (5, 0)}
    assert counts(brightness_model, dataset, 8) == {"dark": (5, 10), "bright": (10, 5)}
