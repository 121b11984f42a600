"""Post-hoc one-vs-rest linear SVMs on a trained FastRCNN's features (paper Table 8).

The paper (section 5.4): "we implemented post-hoc SVM training with hard negative
mining in Fast R-CNN. We use the same training algorithm and hyper-parameters as in
R-CNN." R-CNN's recipe (Girshick et al., CVPR 2014, and its rcnn_train.m), as the release's
own Python port runs it on a Fast R-CNN (tools/train_svms.py, read in the copy
rbgirshick/py-faster-rcnn keeps; docs/fidelity.md row 41), with its constants:

- features: the penultimate layer (fc7, the input of cls_score) of the training
  images, not their mirrors (the release's experiments/cfgs/svm.yml turns
  TRAIN.USE_FLIPPED off: R-CNN did not flip, and flipping did not help), scaled by
  one factor so that their mean L2 norm is 20 over (up to) 100 images;
- positives: the ground-truth boxes of the class; negatives: every roidb row (ground
  truth of other classes and proposals) whose overlap with the class is below 0.3,
  where, as the release's roidb records it, a row overlaps only the class of the
  ground-truth box it overlaps most. This departs from R-CNN, whose rcnn_train.m keeps
  every row's overlap with every class: a proposal at 0.6 with a dog and 0.4 with a cat
  is a cat negative here and in the release, and no cat negative in R-CNN;
- one pass over the images: a negative is "hard" when the current SVM scores it
  above -1.0001 (every negative, while the SVM is still zero); after more than 2000
  new hard negatives the class's SVM is retrained and negatives it scores below
  -1.1 are evicted; one final retraining at the end (the constants are the Python
  port's, which the release ran: R-CNN's rcnn_train.m evicts below -1.2 and also
  retrains after the first image, with every negative below 0.3 overlap);
- the SVM: L2-regularised hinge loss (liblinear's dual solver, here scikit-learn's
  LinearSVC), C = 0.001, positives weighted 2, a bias feature of 10.

Features are taken at the first test scale (``scale``, ``max_size``); the release's
im_detect uses every test scale, which differs only for a multi-scale config.

The result is the same network with the SVM weights in cls_score (background's
column zero) and ``svm_scores=True``: cls_prob passes the raw margins on, as the
release's cfg.TEST.SVM scores with cls_score instead of the softmax.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.boxes import flip_horizontally
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.roidb import build_roidb
from keras_frcnn.detection import graph
from keras_frcnn.model.fast_rcnn import FastRCNN

logger = logging.getLogger("keras_frcnn.svms")

TARGET_NORM = 20.0  # R-CNN's mean feature norm after scaling
NORM_IMAGES = 100  # images the norm is measured on
HARD_THRESHOLD = -1.0001  # a negative scored above this is hard
NEGATIVE_IOU = 0.3  # overlap with the class below this: a negative
EVICT_THRESHOLD = -1.1  # after retraining, negatives scored below this are dropped
RETRAIN_AFTER = 2000  # new hard negatives that trigger a retraining
C = 0.001
POSITIVE_WEIGHT = 2.0
BIAS_FEATURE = 10.0  # LinearSVC intercept_scaling (liblinear's -B)


class FeatureExtractor:
    """Penultimate features (the input of cls_score) of a FastRCNN for one image's
    boxes, at one test scale."""

    def __init__(self, model, scale, max_size, preprocessing, roi_batch=graph.ROI_BATCH):
        features = model.get_layer("roi_pool").input[0]
        backbone = keras.Model(model.input["images"], features)
        head = keras.Model([features, model.input["rois"]],
                           model.get_layer("cls_score").input)
        self.dim = int(head.output.shape[-1])
        self.scale, self.max_size, self.preprocessing = scale, max_size, preprocessing
        self.roi_batch = roi_batch
        self._backbone = tf.function(lambda images: backbone(images, training=False),
                                     input_signature=[tf.TensorSpec([None, None, None, 3])])
        self._head = tf.function(lambda fm, rois: head([fm, rois], training=False),
                                 input_signature=[tf.TensorSpec(features.shape),
                                                  tf.TensorSpec([None, 5])])

    def __call__(self, image_bgr, boxes):
        """[n, d] float32 features of ``boxes`` [n, 4] (inside the image)."""
        if len(boxes) == 0:
            return np.zeros((0, self.dim), np.float32)
        images, rois, inverse = graph.network_inputs(
            image_bgr, np.asarray(boxes, np.float32), (self.scale,), self.max_size,
            self.preprocessing)
        feature_map = self._backbone(images)
        parts = [self._head(feature_map, rois[k:k + self.roi_batch]).numpy()
                 for k in range(0, int(rois.shape[0]), self.roi_batch)]
        return np.concatenate(parts)[inverse.numpy()]


class ClassSVM:
    """The SVM of one class with its positive and negative caches."""

    def __init__(self, name, positives, seed):
        from sklearn.svm import LinearSVC

        self.name = name
        self.positives = positives
        self.negatives = np.zeros((0, positives.shape[1]), np.float32)
        self.weights = np.zeros(positives.shape[1], np.float64)
        self.bias = 0.0
        self.added = 0
        self.retrainings = 0
        self._svm = LinearSVC(C=C, class_weight={1: POSITIVE_WEIGHT, -1: 1.0},
                              intercept_scaling=BIAS_FEATURE, penalty="l2", loss="hinge",
                              dual=True, random_state=seed)

    def scores(self, features):
        return features @ self.weights + self.bias

    def add_negatives(self, features):
        self.negatives = np.concatenate([self.negatives, features])
        self.added += len(features)
        if self.added > RETRAIN_AFTER:
            self.retrain()

    def retrain(self):
        if not len(self.positives) or not len(self.negatives):
            return
        x = np.concatenate([self.positives, self.negatives]).astype(np.float64)
        y = np.concatenate([np.ones(len(self.positives)), -np.ones(len(self.negatives))])
        self._svm.fit(x, y)
        self.weights = self._svm.coef_[0].astype(np.float64)
        self.bias = float(self._svm.intercept_[0])
        self.added = 0
        self.retrainings += 1
        kept = self.scores(self.negatives) >= EVICT_THRESHOLD
        if kept.any():  # as the release: when every negative is easy, all stay
            self.negatives = self.negatives[kept]
        logger.info("SVM %s: %d positives, %d negatives kept after retraining %d",
                    self.name, len(self.positives), len(self.negatives), self.retrainings)


def _training_views(entry, flip, orient=True):
    """(image_bgr, boxes) of a roidb entry, and of its mirror with ``flip``."""
    image = read_image_bgr(entry.record.image_path, orient=orient)
    yield image, entry.boxes
    if flip:
        yield image[:, ::-1], flip_horizontally(entry.boxes, entry.record.width)


def train_svms(model, dataset, proposals, scale, max_size, preprocessing, flip=False,
               use_difficult=True, seed=0):
    """(svm_model, report): ``model`` (an inference FastRCNN) with one-vs-rest SVMs trained
    on ``dataset``'s images and ``proposals`` as the module docstring describes, and
    {"feature_scale", "classes": {name: {"positives", "negatives", "retrainings"}}}."""
    if "cls_score" in (model.get_config().get("factorized") or {}):
        raise ValueError("cls_score is factored by truncated SVD: train the SVMs on the "
                         "uncompressed model, then compress it")
    roidb = build_roidb(dataset, proposals, use_difficult)
    extract = FeatureExtractor(model, scale, max_size, preprocessing)
    num_classes = dataset.num_classes
    rng = np.random.default_rng(seed)

    picked = rng.choice(len(roidb), min(NORM_IMAGES, len(roidb)), replace=False)
    views = (next(_training_views(roidb[k], False, dataset.exif_orientation)) for k in picked)
    norms = [np.linalg.norm(extract(*view), axis=1) for view in views]
    norms = np.concatenate(norms)
    feature_scale = TARGET_NORM / float(np.mean(norms)) if np.mean(norms) > 0 else 1.0

    positives = {k: [] for k in range(1, num_classes)}
    for entry in roidb:
        for image, boxes in _training_views(entry, flip, dataset.exif_orientation):
            gt = entry.gt_classes > 0
            if gt.any():
                features = extract(image, boxes[gt]) * feature_scale
                for k in range(1, num_classes):
                    positives[k].append(features[entry.gt_classes[gt] == k])
    dim = extract.dim
    svms = {k: ClassSVM(dataset.classes[k - 1],
                        np.concatenate(positives[k]) if positives[k]
                        else np.zeros((0, dim), np.float32), seed)
            for k in range(1, num_classes)}
    for entry in roidb:
        for image, boxes in _training_views(entry, flip, dataset.exif_orientation):
            features = extract(image, boxes) * feature_scale
            for k, svm in svms.items():
                overlap = np.where(entry.max_classes == k, entry.max_overlaps, 0.0)
                hard = (svm.scores(features) > HARD_THRESHOLD) & (overlap < NEGATIVE_IOU)
                if hard.any():
                    svm.add_negatives(features[hard])
    for svm in svms.values():
        svm.retrain()

    config = model.get_config()
    config.update(svm_scores=True)
    scored = FastRCNN.from_config(config)
    scored.set_weights(model.get_weights())
    layer = scored.get_layer("cls_score")
    kernel, bias = (np.zeros_like(w) for w in layer.get_weights())
    for k, svm in svms.items():  # score = w . (scale * x) + b
        kernel[:, k] = svm.weights * feature_scale
        bias[k] = svm.bias
    layer.set_weights([kernel, bias])
    report = {"feature_scale": feature_scale,
              "classes": {svm.name: {"positives": int(len(svm.positives)),
                                     "negatives": int(len(svm.negatives)),
                                     "retrainings": svm.retrainings}
                          for svm in svms.values()}}
    return scored, report
