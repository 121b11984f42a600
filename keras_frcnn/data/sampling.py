"""Hierarchical sampling of RoIs (paper section 2.3; the release's _sample_rois).

A minibatch holds N images and R RoIs, R / N from each image: up to
``fg_fraction`` of them foreground (max IoU >= fg_threshold) and the rest
background (max IoU in [bg_threshold_lo, bg_threshold_hi)), each drawn
without replacement. Ground-truth boxes are candidates like any proposal
(IoU 1 with themselves).

Not in the paper: ``far_bg_fraction`` > 0 draws that share of the background
rows from IoU [0, bg_threshold_lo), regions away from every object, and the rest
from the paper's interval; when one pool runs short the other fills in. Setting
``bg_threshold_lo`` to 0 instead mixes the two pools in the proportion the
proposals happen to have, which on photos with few, large objects is mostly far
background (docs/data.md).

Static shapes: when an image has too few candidates (the release then
returns a shorter minibatch), the remaining rows are *padding*: a 1-pixel box
at the origin with label 0, zero regression weight and zero sample weight, so
they contribute nothing to either loss term; the losses are normalised by the
number of real RoIs (the sum of sample weights), not by R.
"""

import dataclasses
import logging

import numpy as np

from keras_frcnn.boxes import flip_horizontally
from keras_frcnn.data.records import DatasetError

logger = logging.getLogger("keras_frcnn.data")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Release defaults: 2 images x 64 RoIs, 25 % foreground, bg IoU in [0.1, 0.5)."""

    images_per_batch: int = 2
    rois_per_batch: int = 128
    fg_fraction: float = 0.25
    fg_threshold: float = 0.5
    bg_threshold_hi: float = 0.5
    bg_threshold_lo: float = 0.1
    far_bg_fraction: float = 0.0

    def __post_init__(self):
        if self.images_per_batch < 1 or self.rois_per_batch % self.images_per_batch:
            raise ValueError(f"rois_per_batch ({self.rois_per_batch}) must be a positive "
                             f"multiple of images_per_batch ({self.images_per_batch})")
        if not 0 <= self.fg_fraction <= 1:
            raise ValueError(f"fg_fraction must be in [0, 1], got {self.fg_fraction}")
        if not self.bg_threshold_lo <= self.bg_threshold_hi <= self.fg_threshold:
            raise ValueError("need bg_threshold_lo <= bg_threshold_hi <= fg_threshold, got "
                             f"{self.bg_threshold_lo}, {self.bg_threshold_hi}, {self.fg_threshold}")
        if not 0 <= self.far_bg_fraction <= 1:
            raise ValueError(f"far_bg_fraction must be in [0, 1], got {self.far_bg_fraction}")

    @property
    def rois_per_image(self):
        return self.rois_per_batch // self.images_per_batch


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSample:
    """The RoIs drawn from one image, padded to rois_per_image rows."""

    rois: np.ndarray  # [P, 4] float32, image pixels (before scaling)
    labels: np.ndarray  # [P] int32, 0 = background (and padding)
    targets: np.ndarray  # [P, 4] float32, normalised, for the label's class
    target_weights: np.ndarray  # [P] float32: 1 for foreground rows
    sample_weights: np.ndarray  # [P] float32: 1 for real rows, 0 for padding
    num_fg: int
    num_bg: int


def _candidates(entry, config):
    """(foreground, background, far background) rows of a RoidbEntry under ``config``;
    far background (IoU below bg_threshold_lo) only when far_bg_fraction > 0."""
    overlaps = entry.max_overlaps
    fg = np.flatnonzero(overlaps >= config.fg_threshold)
    bg = np.flatnonzero((overlaps < config.bg_threshold_hi) & (overlaps >= config.bg_threshold_lo))
    far = np.flatnonzero(overlaps < config.bg_threshold_lo)
    return fg, bg, far if config.far_bg_fraction > 0 else far[:0]


def trainable_entries(roidb, config):
    """The entries with at least one foreground or background candidate (the release's
    filter_roidb). An image with no objects has neither when ``bg_threshold_lo`` > 0
    (every proposal has IoU 0) and ``far_bg_fraction`` is 0, so it is dropped, with a log
    line; all dropped is an error.
    """
    kept = [entry for entry in roidb if any(map(len, _candidates(entry, config)))]
    if len(kept) < len(roidb):
        logger.info("%d of %d training images have no foreground or background RoI "
                    "(e.g. no objects, bg_threshold_lo %.2f): left out of training",
                    len(roidb) - len(kept), len(roidb), config.bg_threshold_lo)
    if not kept:
        raise DatasetError(f"none of the {len(roidb)} training images has a foreground or "
                           "background RoI: check the annotations and proposals, or lower "
                           "sampling.bg_threshold_lo to 0 (or set sampling.far_bg_fraction) "
                           "to train on images without objects")
    return kept


def sample_rois(entry, rng, config, stats, flipped=False):
    """Draws one image's RoIs from a RoidbEntry.

    Args:
      entry: RoidbEntry.
      rng: numpy Generator (the only source of randomness).
      config: SamplingConfig.
      stats: TargetStats used to normalise the targets.
      flipped: the image is mirrored: RoIs are flipped and tx negated.
    """
    per_image = config.rois_per_image
    fg_candidates, bg_candidates, far_candidates = _candidates(entry, config)
    num_fg = min(int(round(config.fg_fraction * per_image)), len(fg_candidates))
    wanted = per_image - num_fg
    num_far = min(int(round(config.far_bg_fraction * wanted)), len(far_candidates))
    num_near = min(wanted - num_far, len(bg_candidates))
    num_far = min(wanted - num_near, len(far_candidates))  # far rows fill a short near pool
    fg = rng.choice(fg_candidates, num_fg, replace=False)
    near = rng.choice(bg_candidates, num_near, replace=False)
    far = rng.choice(far_candidates, num_far, replace=False)
    keep = np.concatenate([fg, near, far]).astype(np.int64)
    num_bg = num_near + num_far
    num_pad = per_image - len(keep)

    rois = entry.boxes[keep]
    if flipped:
        rois = flip_horizontally(rois, entry.record.width)
    labels = entry.max_classes[keep].copy()
    labels[num_fg:] = 0
    raw = entry.targets[keep].astype(np.float64)
    if flipped:
        raw[:, 0] = -raw[:, 0]
    targets = np.where((labels > 0)[:, None], stats.normalize(raw, labels), 0).astype(np.float32)

    def pad(array, value=0):
        shape = (num_pad,) + array.shape[1:]
        return np.concatenate([array, np.full(shape, value, array.dtype)])

    return ImageSample(
        rois=pad(rois.astype(np.float32)),
        labels=pad(labels.astype(np.int32)),
        targets=pad(targets),
        target_weights=pad((labels > 0).astype(np.float32)),
        sample_weights=pad(np.ones(len(keep), np.float32)),
        num_fg=num_fg,
        num_bg=num_bg,
    )
