"""``FastRCNN``: the detector network with the paper's training step.

Graph (paper section 2): images -> backbone -> RoIPooling (replaces the last
max pool) -> flatten -> fc6 -> dropout -> fc7 -> dropout -> cls_score (K + 1)
with softmax, and bbox_pred (4K deltas), both initialised as the release
(N(0, 0.01) and N(0, 0.001), zero biases). Inputs {"images", "rois"}; outputs
{"cls_score", "cls_prob", "bbox_pred"}. With ``head="imagenet_blocks"``
(MobileNetV2) the ImageNet blocks after the pooling point replace flatten, fc6
and fc7: 8x8 RoIs -> block_13 ... Conv_1 -> global average pooling -> dropout
-> the two siblings (paper section 2.2 for a network without fc layers).

Training (the release's SGD semantics, applied in ``train_step``): the loss of
model/losses.py; L2 weight decay ``weight_decay`` on kernels only (the
gradient gets ``weight_decay * w``, as Caffe); biases get ``bias_lr_mult``
times the learning rate (their gradient is scaled, identical for plain or
momentum SGD) and no decay; frozen layers are not trainable.

Truncated SVD (paper section 3.1, keras_frcnn/compress.py): ``factorized``
maps Dense layer names to ranks t; such a layer becomes a bias-free
``<name>_L`` with t units followed by ``<name>`` with the original units,
bias and activation (no non-linearity between), so code that looks layers
up by name (cls_score, bbox_pred, fc6) keeps working.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_frcnn.layers import RoIPooling
from keras_frcnn.model.backbones import HEADS, SPECS, build_backbone_and_head, freeze
from keras_frcnn.model.folding import fold_batchnorm_layers
from keras_frcnn.model.losses import fast_rcnn_losses


FACTORIZABLE = ("fc6", "fc7", "cls_score", "bbox_pred")
SIBLINGS = ("cls_score", "bbox_pred")
# What an inference copy may compute in (keras_frcnn/precision.py, test.precision);
# training has its own mixed policies (training.PRECISIONS).
PRECISIONS = ("float32", "bfloat16", "float16")


@contextlib.contextmanager
def dtype_policy(precision):
    """Keras's global dtype policy ``precision`` while layers are made, then the previous
    one: a pure policy ("bfloat16": weights and compute in it) or a mixed one; None
    leaves the policy as it is."""
    if precision is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def factorizable(head):
    """The Dense layers truncated SVD can factor under ``head``: fc6, fc7 and the two
    siblings, or the siblings alone after MobileNetV2's ImageNet blocks (convolutions)."""
    return FACTORIZABLE if head == "fc" else SIBLINGS


def step_schedule(base_lr, total_steps, step_fraction=0.75, gamma=0.1, step_size=0):
    """Caffe's "step" policy: lr = base_lr * gamma ** floor(step / step_size).

    step_size 0 scales the release's VOC07 schedule (30k of 40k) to the run:
    step_fraction * total_steps. Steps count from 0 as Caffe's, so with 40k
    steps step 29999 uses base_lr and step 30000 base_lr * gamma (Keras keeps a
    value while step <= boundary, hence the - 1).
    """
    step_size = step_size or max(1, int(round(total_steps * step_fraction)))
    boundaries = list(range(step_size, total_steps, step_size)) or [step_size]
    values = [base_lr * gamma ** k for k in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay([b - 1 for b in boundaries], values)


def is_bias(variable):
    return variable.path.endswith("bias") or variable.path.endswith("beta")


def is_decayed(variable):
    """Weight decay applies to kernels (conv, depthwise, dense), not biases or BN scales."""
    return variable.path.endswith("kernel")


@keras.saving.register_keras_serializable(package="keras_frcnn")
class FastRCNN(keras.Model):
    """Fast R-CNN with a custom train_step (see the module docstring).

    Args:
      num_classes: K + 1 (object classes and background).
      backbone: a name of model/backbones.py.
      backbone_weights: None, "imagenet" or a weights file for the backbone.
      frozen: layer-name prefixes to freeze; None: the backbone's default
        (paper section 4.5); () trains everything. ``freeze_backbone=True``
        trains the fc layers only (paper Table 5).
      loss_lambda: weight of the box loss (0: classification only).
      weight_decay: L2 on kernels (0.0005).
      bias_lr_mult: learning-rate multiplier of biases (2).
      dropout: rate after fc6 and fc7 (0.5), or before the siblings with head
        "imagenet_blocks".
      fc_units: (fc6, fc7) widths; None: the backbone's (4096/4096 for VGG16,
        1024/1024 for MobileNetV2, model/backbones.py).
      head: "fc" (fc6/fc7, the paper's) or, for mobilenet_v2, "imagenet_blocks":
        the ImageNet blocks after the pooling point run per RoI, then global
        average pooling and dropout before the siblings (model/backbones.py).
      roi_pool_implementation: "custom_op", "composite" or None.
      factorized: {layer name: rank} of truncated-SVD layers (fc6, fc7,
        cls_score, bbox_pred; the siblings only with head "imagenet_blocks");
        None or {}: none.
      train_only: names of the only layers that train (every other layer frozen,
        BatchNorm in inference mode); None or (): as ``frozen`` says. The paper's
        stage-wise training (Table 6) trains ("bbox_pred",) of a model trained
        with lambda = 0.
      svm_scores: cls_prob emits cls_score unchanged instead of its softmax: the
        model scores with one-vs-rest SVMs installed in cls_score (model/svms.py;
        the release's cfg.TEST.SVM, paper Table 8).
      precision: None (the global Keras policy: float32, or training's mixed
        policy), or "float32" | "bfloat16" | "float16" for an inference copy
        (keras_frcnn/precision.py): every layer computes in that dtype with its
        weights stored in it, but cls_score, bbox_pred and the softmax, which
        stay float32.
      fold_batchnorm: each BatchNormalization after a convolution is folded
        into it (model/folding.py; inference copies only: the layers are gone,
        so such a model cannot train its BatchNormalization).
      class_names: the K object class names, recorded (not used by the network) so
        that a saved model says what its outputs are; None: not recorded.
      preprocessing: the input preprocessing the weights were trained for
        (data/transforms.py), recorded likewise; None: not recorded.
      A saved model's config holds these with the architecture; workdirs.py
      ``check_model_config`` refuses an experiment config that contradicts them.
    """

    def __init__(self, num_classes, backbone="small", backbone_weights=None, frozen=None,
                 freeze_backbone=False, loss_lambda=1.0, weight_decay=5e-4, bias_lr_mult=2.0,
                 dropout=0.5, fc_units=None, roi_pool_implementation=None, factorized=None,
                 head="fc", class_names=None, preprocessing=None, train_only=None,
                 svm_scores=False, precision=None, fold_batchnorm=False, **kwargs):
        if precision not in PRECISIONS + (None,):
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got "
                             f"{precision!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes counts background too and must be >= 2, got {num_classes}")
        if class_names is not None:
            class_names = tuple(str(name) for name in class_names)
            if len(class_names) != num_classes - 1:
                raise ValueError(f"{len(class_names)} class names for {num_classes - 1} object "
                                 f"classes (num_classes={num_classes} counts background)")
        if fc_units is not None:
            fc_units = tuple(int(u) for u in fc_units)
            if len(fc_units) != 2 or min(fc_units) < 1:
                raise ValueError(f"fc_units must be two positive widths (fc6, fc7) or None for "
                                 f"the backbone's, got {fc_units}")
            imagenet_widths = SPECS["vgg16"].fc_units
            if backbone == "vgg16" and backbone_weights == "imagenet" and fc_units != imagenet_widths:
                raise ValueError(f"fc_units {fc_units}: VGG16's ImageNet fc6/fc7 are "
                                 f"{imagenet_widths} wide and initialise ours; keep that "
                                 f"width (fc_units=None), or shrink a trained model with "
                                 f"truncated SVD (bin/compress.py)")
        if head not in HEADS:
            raise ValueError(f"model head must be one of {sorted(HEADS)}, got {head!r}")
        if fc_units is not None and head != "fc":
            raise ValueError(f"fc_units {fc_units}: head {head!r} has no fc6/fc7; leave "
                             f"fc_units unset (None) or use head 'fc'")
        factorized = {str(k): int(v) for k, v in (factorized or {}).items()}
        unknown = sorted(set(factorized) - set(factorizable(head)))
        if unknown:
            raise ValueError(f"factorized: no Dense layer named {unknown} under head {head!r} "
                             f"(choose from {list(factorizable(head))})")

        # A reduced precision computes every layer in it, with weights stored in it, but
        # the two siblings and the softmax, which stay float32 (docs/benchmarks.md).
        outputs_dtype = "float32" if precision not in (None, "float32") else None

        def dense(units, name, activation=None, stddev=None, dtype=None):
            init = ("glorot_uniform" if stddev is None
                    else keras.initializers.RandomNormal(0.0, stddev))
            layer = keras.layers.Dense(units, activation=activation, name=name,
                                       kernel_initializer=init, dtype=dtype)
            if name not in factorized:
                return layer
            first = keras.layers.Dense(factorized[name], use_bias=False, name=f"{name}_L",
                                       dtype=dtype)
            return lambda x: layer(first(x))
        with dtype_policy(precision):
            features_model, head_model, spec, fc_init = build_backbone_and_head(
                backbone, backbone_weights, head)
            if fold_batchnorm:  # an inference copy's (model/folding.py)
                features_model = fold_batchnorm_layers(features_model)
                head_model = head_model and fold_batchnorm_layers(head_model)
            prefixes = spec.frozen_prefixes if frozen is None else frozen
            frozen_layers = freeze(features_model, prefixes)
            if head_model is not None:  # the head's ImageNet layers follow the backbone's rules
                frozen_layers += freeze(head_model, prefixes)
            if freeze_backbone:
                features_model.trainable = False
            images = keras.Input((None, None, 3), name="images")
            rois = keras.Input((5,), name="rois")
            pooled = RoIPooling(spec.pooled_size, 1.0 / spec.stride, roi_pool_implementation,
                                name="roi_pool")([features_model(images), rois])
            if head_model is None:
                x = keras.layers.Flatten(name="flatten")(pooled)
                widths = spec.fc_units if fc_units is None else fc_units
                # Each Dropout made before its Dense: both draw seeds when made, and this
                # order keeps a train.seed's initial weights (docs/model.md).
                drop6 = keras.layers.Dropout(dropout, name="drop6")
                x = drop6(dense(widths[0], "fc6", "relu")(x))
                drop7 = keras.layers.Dropout(dropout, name="drop7")
                x = drop7(dense(widths[1], "fc7", "relu")(x))
            else:
                x = keras.layers.GlobalAveragePooling2D(name="head_pool")(head_model(pooled))
                x = keras.layers.Dropout(dropout, name="drop_head")(x)
            cls_score = dense(num_classes, "cls_score", stddev=0.01, dtype=outputs_dtype)(x)
            bbox_pred = dense(4 * (num_classes - 1), "bbox_pred", stddev=0.001,
                              dtype=outputs_dtype)(x)
            cls_prob = (keras.layers.Activation("linear", name="cls_prob", dtype=outputs_dtype)
                        if svm_scores else
                        keras.layers.Softmax(name="cls_prob", dtype=outputs_dtype))(cls_score)
            super().__init__(inputs={"images": images, "rois": rois},
                             outputs={"cls_score": cls_score, "cls_prob": cls_prob,
                                      "bbox_pred": bbox_pred},
                             name=kwargs.pop("name", "fast_rcnn"), **kwargs)
        for name, weights in (fc_init or {}).items():
            if name not in factorized:
                self.get_layer(name).set_weights(weights)
        train_only = tuple(str(name) for name in train_only or ())
        if train_only:
            names = [layer.name for layer in self.layers]
            unknown = sorted(set(train_only) - set(names))
            if unknown:
                raise ValueError(f"train_only names no layer {unknown}: the model's layers "
                                 f"with weights are {[l.name for l in self.layers if l.weights]}")
            for layer in self.layers:
                if layer.name not in train_only and layer.weights:
                    layer.trainable = False
                    frozen_layers.append(layer.name)
        self.spec = spec
        self.frozen_layers = tuple(frozen_layers)
        self._config = dict(num_classes=num_classes, backbone=backbone, frozen=frozen,
                            freeze_backbone=freeze_backbone, loss_lambda=loss_lambda,
                            weight_decay=weight_decay, bias_lr_mult=bias_lr_mult,
                            dropout=dropout, fc_units=fc_units,
                            roi_pool_implementation=roi_pool_implementation,
                            factorized=factorized, head=head, class_names=class_names,
                            preprocessing=preprocessing, train_only=train_only or None,
                            svm_scores=bool(svm_scores))
        if precision is not None:  # only an inference copy has these (precision.py)
            self._config["precision"] = precision
        if fold_batchnorm:
            self._config["fold_batchnorm"] = True
        self.loss_lambda = loss_lambda
        self.weight_decay = weight_decay
        self.bias_lr_mult = bias_lr_mult
        self._trackers = {name: keras.metrics.Mean(name=name) for name in
                          ("loss", "cls_loss", "bbox_loss", "accuracy", "fg_accuracy")}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def get_config(self):
        # backbone_weights are not recorded: a saved model carries its weights.
        return {**self._config, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compute_losses(self, outputs, targets):
        return fast_rcnn_losses(outputs["cls_score"], outputs["bbox_pred"], targets["labels"],
                                targets["bbox_targets"], targets["bbox_weights"],
                                targets["sample_weights"], self.loss_lambda)

    def _update_metrics(self, losses, outputs, targets):
        weights = tf.cast(targets["sample_weights"], tf.float32)
        labels = tf.cast(targets["labels"], tf.int32)
        correct = tf.cast(tf.equal(tf.argmax(outputs["cls_score"], axis=1, output_type=tf.int32),
                                   labels), tf.float32)
        fg = weights * tf.cast(labels > 0, tf.float32)
        for name in ("loss", "cls_loss", "bbox_loss"):
            self._trackers[name].update_state(losses[name])
        self._trackers["accuracy"].update_state(correct, sample_weight=weights)
        self._trackers["fg_accuracy"].update_state(correct, sample_weight=fg)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def adjusted_gradients(self, gradients, variables, decay_scale=1.0):
        """The release's SGD details: decay on kernels, x bias_lr_mult on biases.

        ``decay_scale`` multiplies the decay term as the loss was multiplied
        (1 / replicas, times the loss scale under mixed_float16), so that the
        all-reduced, unscaled gradient carries exactly ``weight_decay * w``.
        """
        adjusted = []
        for gradient, variable in zip(gradients, variables):
            if gradient is None:
                adjusted.append(None)
            elif is_bias(variable):
                adjusted.append(gradient * self.bias_lr_mult)
            elif is_decayed(variable) and self.weight_decay:
                decay = tf.cast(self.weight_decay * decay_scale, gradient.dtype)
                adjusted.append(gradient + decay * tf.cast(variable.value, gradient.dtype))
            else:
                adjusted.append(gradient)
        return adjusted

    def train_step(self, data):
        """One SGD step on this replica's minibatch.

        An inference copy (``precision`` or ``fold_batchnorm`` set) cannot train: its
        BatchNormalization is gone and its weights are rounded.

        Under tf.distribute each replica's loss is divided by the number of
        replicas, since the optimiser sums gradients over replicas: equal
        replica batches then give the gradient of the global batch's loss.
        Under mixed_float16 the loss is scaled (LossScaleOptimizer, which
        model.compile installs) and the optimiser unscales the gradients.
        """
        if "precision" in self._config or "fold_batchnorm" in self._config:
            raise ValueError("this FastRCNN is an inference copy (precision.precision_copy: "
                             "rounded weights, BatchNormalization folded); train the model "
                             "it was copied from")
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            losses = self.compute_losses(outputs, targets)
            scaled_loss = self.optimizer.scale_loss(losses["loss"] / replicas)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        decay_scale = self.optimizer.scale_loss(tf.constant(1.0 / replicas))
        self.optimizer.apply(self.adjusted_gradients(gradients, variables, decay_scale),
                             variables)
        return self._update_metrics(losses, outputs, targets)

    def test_step(self, data):
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(inputs, training=False)
        return self._update_metrics(self.compute_losses(outputs, targets), outputs, targets)


def sgd(learning_rate, momentum=0.9):
    """The release's optimiser: SGD with momentum (Caffe's update, v = m v - lr g)."""
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def fold_target_stats(bbox_pred_weights, stats, num_classes, inverse=False):
    """bbox_pred [kernel, bias] that emit raw deltas from a layer trained on
    normalised ones: raw = normalised * std + mean, per class (rows 1..K of stats).
    ``inverse=True`` undoes it (raw-delta weights back to normalised ones)."""
    kernel, bias = bbox_pred_weights
    stds = np.asarray(stats.stds, np.float64)[1:num_classes].reshape(-1)
    means = np.asarray(stats.means, np.float64)[1:num_classes].reshape(-1)
    if inverse:
        return [(kernel / stds).astype(kernel.dtype), ((bias - means) / stds).astype(bias.dtype)]
    return [(kernel * stds).astype(kernel.dtype), (bias * stds + means).astype(bias.dtype)]
