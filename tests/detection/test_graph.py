"""detection/graph.py, the arithmetic the Detector and the SavedModel share, against the
numpy definitions in boxes.py and data/transforms.py."""

import numpy as np
import tensorflow as tf

from keras_frcnn import boxes as box_ops
from keras_frcnn.data import transforms
from keras_frcnn.detection import graph


def test_scale_factor_is_image_scale():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4000, (2000, 2))
    sizes[:4] = [[600, 1000], [375, 500], [500, 834], [600, 1001]]  # at the cap's edge
    for target, max_size in ((600, 1000), (480, 2000), (224, 224)):
        got = graph.scale_factor(tf.constant(sizes[:, 0], tf.float64),
                                 tf.constant(sizes[:, 1], tf.float64), float(target),
                                 float(max_size)).numpy()
        expected = [transforms.image_scale(h, w, target, max_size) for h, w in sizes]
        np.testing.assert_array_equal(got, expected)


def test_decoding_and_clipping_are_the_numpy_ones():
    rng = np.random.default_rng(1)
    x1y1 = rng.uniform(-20, 300, (300, 2))
    proposals = np.concatenate([x1y1, x1y1 + rng.uniform(0, 200, (300, 2))], 1).astype(np.float32)
    deltas = rng.normal(0, 0.5, (300, 12)).astype(np.float32)
    deltas[0, 2] = 800.0  # exp overflows to inf: clipped to the border, as numpy does
    scores = rng.uniform(size=(300, 4)).astype(np.float32)
    boxes, same = graph.detection_outputs(proposals, tf.constant(scores), deltas, 320, 240)
    with np.errstate(over="ignore"):
        expected = box_ops.clip(box_ops.decode(proposals, deltas), 320, 240)
    # TensorFlow's exp and numpy's differ in the last float64 bit now and then; the
    # float32 boxes the post-processing sees are the same.
    np.testing.assert_allclose(boxes.numpy(), expected, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(boxes.numpy().astype(np.float32), expected.astype(np.float32))
    np.testing.assert_array_equal(same.numpy(), scores)
    plain, _ = graph.detection_outputs(proposals, tf.constant(scores), deltas, 320, 240,
                                       bbox_reg=False)
    np.testing.assert_array_equal(plain.numpy(),
                                  box_ops.clip(np.tile(proposals.astype(np.float64), 3), 320, 240))


def test_flip_average_mirrors_the_second_pass_back():
    proposals = np.array([[10, 5, 29, 44]], np.float32)
    deltas = np.zeros((2, 4), np.float32)
    scores = tf.constant([[0.2, 0.8], [0.4, 0.6]])
    boxes, merged = graph.detection_outputs(proposals, scores, deltas, 100, 50, flip=True)
    # The mirrored proposal (100 - 29 - 1, ..., 100 - 10 - 1) decodes to itself and is
    # mirrored back: the mean of a box and itself.
    np.testing.assert_allclose(boxes.numpy(), [[10, 5, 29, 44]], atol=1e-9)
    np.testing.assert_allclose(merged.numpy(), [[0.3, 0.7]])


def test_deduplicate_groups_rois_on_the_same_cells():
    rois = np.array([[0, 0, 0, 31, 31],
                     [0, 2, 3, 30, 33],    # same cells at 1/16: (0, 0, 2, 2)
                     [1, 0, 0, 31, 31],    # another image: its own group
                     [0, 8, 0, 31, 31],    # 8/16 = 0.5 rounds away from zero: cell 1
                     [0, 0, 0, 31, 31]], np.float32)
    unique, inverse = graph.deduplicate(tf.constant(rois), 1 / 16)
    assert inverse.numpy().tolist() == [0, 0, 1, 2, 0]
    np.testing.assert_array_equal(unique.numpy(), rois[[0, 2, 3]])
    empty, none = graph.deduplicate(tf.zeros((0, 5)), 1 / 16)
    assert empty.shape == (0, 5) and none.shape == (0,)


def test_test_time_resize_is_within_a_fiftieth_of_a_grey_level_of_opencv_s():
    # Training resizes with OpenCV (transforms.resize), the Detector and the SavedModel
    # with TensorFlow's ScaleAndTranslate mapped by the same factor: the same bilinear
    # sampling, weights computed differently (largest differences seen: 0.013 of a grey
    # level at factor 0.533, 0 at exactly representable factors such as 1.6).
    image = np.random.default_rng(2).integers(0, 256, (375, 500, 3)).astype(np.uint8)
    for target in (200, 300, 525, 600, 800):
        images, _, _ = graph.network_inputs(image, np.zeros((0, 4), np.float32), (target,),
                                            2000, "none")
        factor = transforms.image_scale(375, 500, target, 2000)
        expected = transforms.preprocess(transforms.resize(image, factor), "none")
        assert images.shape[1:] == expected.shape, target
        np.testing.assert_allclose(images.numpy()[0], expected, rtol=0, atol=0.02)


def test_preprocessing_modes_are_the_training_ones():
    image = np.random.default_rng(3).integers(0, 256, (20, 30, 3)).astype(np.float32)
    for mode in transforms.PREPROCESSING:
        np.testing.assert_array_equal(graph.preprocess(tf.constant(image), mode).numpy(),
                                      transforms.preprocess(image, mode))
