"""detection/graph.py against hand-worked values: the pyramid level's +1 areas, the
horizontal flip (x' = W - 1 - x) alone and inside the flip-test average, and the
order of the image-size check before the resize in the traced graph."""

import numpy as np
import pytest
import tensorflow as tf

from keras_frcnn.detection import graph


def test_pyramid_levels_use_plus_one_areas():
    """Catches areas without the +1: factors 1 and 2 are equally far from 224^2 at a
    side s with s^2 = 2 * 224^2 / 5 = 20070.4 (50176 - s^2 = 4 s^2 - 50176), s = 141.67.
    [0, 0, 141, 141] is 142 px wide with +1 widths: 142^2 = 20164, |20164 - 50176| = 30012
    at factor 1 against |80656 - 50176| = 30480 at 2 -> level 0. Without the +1 it is 141
    wide: 19881 -> 30295 at 1 against 29348 at 2 -> level 1. The same box moved: the same
    level. [0, 0, 140, 140] (141 px, 19881 with +1): level 1 either way."""
    proposals = np.array([[0, 0, 141, 141], [10, 20, 151, 161], [0, 0, 140, 140]], np.float32)
    assert graph.pyramid_levels(proposals, [1.0, 2.0]).numpy().tolist() == [0, 0, 1]
    assert graph.pyramid_levels(proposals, [2.0, 1.0]).numpy().tolist() == [1, 1, 0]


def test_flip_horizontally_hand_worked():
    """Catches ``W - x2`` for ``W - x2 - 1`` (and x1/x2 not swapped): in a 10-wide image
    the inclusive columns 1..3 mirror to 6..8, and 0..9 to itself; two classes per row."""
    boxes = tf.constant([[1, 2, 3, 4, 0, 0, 9, 5],
                         [4, 1, 4, 1, 2, 3, 7, 8]], tf.float32)
    flipped = graph.flip_horizontally(boxes, 10.0).numpy()
    np.testing.assert_array_equal(flipped, [[6, 2, 8, 4, 0, 0, 9, 5],
                                            [5, 1, 5, 1, 2, 3, 7, 8]])


def test_flip_test_average_hand_worked():
    """Catches an off-by-one mirror in detection_outputs(flip=True): a mirror and its
    inverse cancel unless clipping comes between them, so a box at an image edge shows it.

    W = 20, H = 10. Proposal A = [0, 1, 5, 4] touches the left edge: mirrored, [14, 1, 19, 4]
    touches the right one; zero deltas decode it to itself, inside the image; mirrored
    back, [0, 1, 5, 4]; mean with the plain pass: [0, 1, 5, 4]. (With W - x: [15, 1, 20, 4],
    clipped to x2 = 19, back to [1, 1, 5, 4], mean [0.5, 1, 5, 4].)
    Proposal B = [2, 1, 7, 4], mirrored [12, 1, 17, 4] (w = 5, cx = 14.5); deltas dx = 0.2
    in the mirrored pass move it by 1: [13, 1, 18, 4], back [1, 1, 6, 4]; the plain pass
    (zero deltas) gives [2, 1, 7, 4]; the mean is [1.5, 1, 6.5, 4]. Scores: pass means.
    """
    proposals = np.array([[0, 1, 5, 4], [2, 1, 7, 4]], np.float32)
    deltas = np.zeros((4, 4), np.float32)  # plain A, plain B, mirrored A, mirrored B
    deltas[3, 0] = 0.2
    scores = tf.constant([[0.2, 0.8], [0.5, 0.5], [0.4, 0.6], [0.1, 0.9]], tf.float32)
    boxes, merged = graph.detection_outputs(proposals, scores, deltas, 20, 10, flip=True)
    np.testing.assert_allclose(boxes.numpy(), [[0, 1, 5, 4], [1.5, 1, 6.5, 4]], atol=1e-9)
    np.testing.assert_allclose(merged.numpy(), [[0.3, 0.7], [0.3, 0.7]], atol=1e-7)


def _ancestors(op):
    """Every op ``op`` depends on, through data and control inputs."""
    seen, todo = set(), [op]
    while todo:
        current = todo.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


@pytest.mark.parametrize("flip", [False, True])
def test_every_resize_waits_for_the_image_size_check(flip):
    """Catches the ``tf.control_dependencies`` block around the size check removed: in a
    graph nothing else orders the Assert before ScaleAndTranslate, and a too-thin image
    would then fail in the resize with an error that names no cause. Deterministic: reads
    the traced graph instead of racing the two ops."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                                  tf.TensorSpec([None, 4], tf.float32)])
    def inputs(image, proposals):
        return graph.network_inputs(image, proposals, (64, 96), 200, "tf", flip)

    ops = inputs.get_concrete_function().graph.get_operations()
    resizes = [op for op in ops if op.type == "ScaleAndTranslate"]
    assert len(resizes) == (4 if flip else 2)
    for resize in resizes:
        assert any(b"image too thin" in _messages(op) for op in _ancestors(resize)
                   if op.type == "Assert"), resize.name


def _messages(assert_op):
    """The string constants an Assert op prints, joined."""
    return b" ".join(tf.make_ndarray(t.op.get_attr("value")).item()
                     for t in assert_op.inputs[1:] if t.op.type == "Const"
                     and t.dtype == tf.string)
