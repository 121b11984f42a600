"""RoIPooling inside your own Keras model: a worked example.

A small stride-4 CNN (not one of Fast R-CNN's backbones) feeds RoIPooling,
then a two-layer head classifies every RoI as background, "square" (a filled
square) or "ring" (a hollow square) on synthetic noisy images. The model is
trained with plain ``model.fit`` on a tf.data pipeline whose elements are whole
batches (2 images + 32 RoIs), evaluated, saved as ``.keras`` and reloaded.

    python docs/examples/roi_pooling_in_your_model.py [--workdir /tmp/roi_example]

Runs in well under a minute on a laptop CPU; tests/layers/test_example.py runs it.
"""

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.layers import RoIPooling

IMAGE_SIZE = 64
STRIDE = 4
IMAGES_PER_BATCH = 2
ROIS_PER_IMAGE = 16
CLASSES = ("background", "square", "ring")


def draw_image(rng):
    """One noisy image with a square and a ring; returns (image, boxes, labels)."""
    image = rng.normal(0.0, 0.25, size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    boxes, labels = [], []
    for label, x0 in ((1, rng.integers(2, 14)), (2, rng.integers(34, 46))):
        size = rng.integers(12, 17)
        y0 = rng.integers(2, IMAGE_SIZE - size - 2)
        x1, y1 = x0 + size - 1, y0 + size - 1  # inclusive corners
        colour = rng.uniform(0.6, 1.0, size=3)
        image[y0:y1 + 1, x0:x1 + 1] += colour
        if label == 2:  # hollow it out: a 3-pixel ring
            image[y0 + 3:y1 - 2, x0 + 3:x1 - 2] -= colour
        boxes.append((x0, y0, x1, y1))
        labels.append(label)
    if rng.random() < 0.5:  # the classes swap sides half the time
        image = image[:, ::-1].copy()
        boxes = [(IMAGE_SIZE - 1 - x1, y0, IMAGE_SIZE - 1 - x0, y1) for x0, y0, x1, y1 in boxes]
    return image, np.array(boxes, np.float32), np.array(labels, np.int32)


def iou(box, boxes):
    """IoU of one box with many, inclusive-pixel (+1) convention."""
    ix = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1
    iy = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def sample_rois(rng, boxes, labels):
    """RoIS_PER_IMAGE RoIs: jittered objects (IoU >= 0.6) and background (IoU < 0.3)."""
    rois, roi_labels = [], []
    while len(rois) < ROIS_PER_IMAGE:
        if len(rois) % 2 == 0:
            k = rng.integers(len(boxes))
            candidate = boxes[k] + rng.normal(0, 1.0, size=4)
        else:
            xy = rng.uniform(0, IMAGE_SIZE - 8, size=2)
            candidate = np.concatenate([xy, xy + rng.uniform(6, 24, size=2)])
        overlaps = iou(candidate, boxes)
        if overlaps.max() >= 0.6:
            rois.append(candidate)
            roi_labels.append(labels[overlaps.argmax()])
        elif overlaps.max() < 0.3:
            rois.append(candidate)
            roi_labels.append(0)
    return np.array(rois, np.float32), np.array(roi_labels, np.int32)


def make_batches(seed, num_batches):
    """A tf.data.Dataset of ((images, rois), labels), one element per batch."""
    rng = np.random.default_rng(seed)
    elements = []
    for _ in range(num_batches):
        images, rois, labels = [], [], []
        for b in range(IMAGES_PER_BATCH):
            image, boxes, box_labels = draw_image(rng)
            image_rois, image_labels = sample_rois(rng, boxes, box_labels)
            images.append(image)
            rois.append(np.concatenate([np.full((len(image_rois), 1), b, np.float32),
                                        image_rois], axis=1))
            labels.append(image_labels)
        elements.append((np.stack(images), np.concatenate(rois), np.concatenate(labels)))
    images, rois, labels = (np.stack(parts) for parts in zip(*elements))
    return tf.data.Dataset.from_tensor_slices(((images, rois), labels))


def build_model():
    """Stride-4 CNN -> RoIPooling(4x4) -> fc -> softmax over CLASSES."""
    images = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    rois = keras.Input(shape=(5,), name="rois")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(images)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    pooled = RoIPooling(pooled_size=4, spatial_scale=1 / STRIDE, name="roi_pool")([x, rois])
    x = keras.layers.Flatten()(pooled)
    x = keras.layers.Dense(64, activation="relu")(x)
    scores = keras.layers.Dense(len(CLASSES), activation="softmax", name="cls_score")(x)
    return keras.Model([images, rois], scores)


def main(workdir, epochs=8, seed=0):
    """Trains, evaluates, saves and reloads; returns a dict of results."""
    keras.utils.set_random_seed(seed)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(make_batches(seed, 40), epochs=epochs, shuffle=False, verbose=0)
    test = make_batches(seed + 1, 10)
    _, accuracy = model.evaluate(test, verbose=0)
    path = Path(workdir) / "roi_classifier.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    (images, rois), _ = next(iter(test))
    same = np.array_equal(model.predict_on_batch([images, rois]),
                          reloaded.predict_on_batch([images, rois]))
    return {"test_accuracy": float(accuracy), "reloaded_predictions_equal": bool(same),
            "saved_model": str(path)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where to save the .keras file")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="roi_example_")
    for key, value in main(workdir).items():
        print(f"{key}: {value}")
