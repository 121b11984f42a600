"""The training input pipeline (tf.data), deterministic given a seed.

Each element is one minibatch of N images and R RoIs:

    ({"images": [N, H, W, 3] float32,    scaled, preprocessed, zero-padded
      "rois":   [R, 5] float32},         (batch_index, x1, y1, x2, y2), scaled pixels
     {"labels": [R] int32,               0 = background
      "bbox_targets": [R, 4] float32,    normalised, for the label's class
      "bbox_weights": [R] float32,       1 on foreground rows
      "sample_weights": [R] float32})    0 on padding rows (see sampling.py)

Order and randomness: epoch e visits the images in the permutation drawn from
(seed, e); the image at position p of epoch e is flipped, scaled, cropped (when
crop_probability > 0) and sampled with a generator seeded by (seed, e, p).
Elements are produced in parallel but in order, so a run is reproducible
regardless of the number of threads.
Under tf.distribute, pass the InputContext (``distribute_datasets_from_function``):
each input pipeline takes every k-th image of the stream and builds batches of
the per-replica size.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_frcnn.data import transforms
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError
from keras_frcnn.data.roidb import crop_entry
from keras_frcnn.data.sampling import SamplingConfig, sample_rois

MULTI_SCALES = (480, 576, 688, 864, 1200)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Release defaults: shortest side 600 (cap 1000), flip with p = 0.5, Caffe means.

    Multi-scale training: scales=MULTI_SCALES, max_size=2000.
    """

    scales: tuple = (600,)
    max_size: int = 1000
    flip: bool = True
    preprocessing: str = "caffe"
    seed: int = 0
    distort_colors: bool = False  # SSD's photometric distortions (not in the paper)
    crop_probability: float = 0.0  # random crop before scaling (not in the paper)
    crop_min_scale: float = 0.5  # crop sides drawn from [min_scale, 1] of the image's
    max_image_pixels: int = MAX_IMAGE_PIXELS  # refuse larger images (config.dataset; 0: none)
    exif_orientation: bool = True  # turn photos by their EXIF tag (config.dataset)

    def __post_init__(self):
        if not 0 <= self.crop_probability <= 1:
            raise ValueError(f"crop_probability must be in [0, 1], got {self.crop_probability}")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"crop_min_scale must be in (0, 1], got {self.crop_min_scale}")


def load_example(entry, rng, sampling, config, stats):
    """One image of a minibatch, in numpy: (image, rois, labels, targets, bbox_w, sample_w)."""
    flipped = bool(config.flip and rng.random() < 0.5)
    target_size = config.scales[rng.integers(len(config.scales))]
    record, window = entry.record, None
    if config.crop_probability > 0 and rng.random() < config.crop_probability:
        window = transforms.random_crop_window(record.width, record.height,
                                               entry.boxes[entry.gt_classes > 0], rng,
                                               config.crop_min_scale)
        if window is not None:
            entry = crop_entry(entry, window)
    sample = sample_rois(entry, rng, sampling, stats, flipped=flipped)
    image = read_image_bgr(record.image_path, config.max_image_pixels, config.exif_orientation)
    if image.shape[:2] != (record.height, record.width):
        # The readers compare each header with its annotation (data/images.py probe_image);
        # this catches records made elsewhere, or a file replaced since it was read.
        raise DatasetError(f"{record.image_path}: image is {image.shape[1]}x{image.shape[0]} "
                           f"but its record says {record.width}x{record.height}; fix the "
                           "annotation's size (or the image) and read the dataset again")
    if window is not None:
        x1, y1, x2, y2 = window
        image = image[y1:y2 + 1, x1:x2 + 1]
    if flipped:
        image = image[:, ::-1]
    if config.distort_colors:  # drawn after the RoIs: the stream without it is unchanged
        image = transforms.distort_colors(image, rng)
    scale = transforms.image_scale(image.shape[0], image.shape[1], target_size, config.max_size)
    image = transforms.preprocess(transforms.resize(np.ascontiguousarray(image), scale),
                                  config.preprocessing)
    return (image, (sample.rois * scale).astype(np.float32), sample.labels, sample.targets,
            sample.target_weights, sample.sample_weights)


def element_seeds(num_images, seed, shard=0, num_shards=1, start=0):
    """Endless (image index, element seed) stream: epoch permutations, sharded,
    beginning at this shard's element ``start`` (to resume a run where it stopped)."""
    per_epoch = len(range(shard, num_images, num_shards))
    epoch, skip = divmod(start, per_epoch)
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(num_images)
        for position in list(range(shard, num_images, num_shards))[skip:]:
            yield int(order[position]), int(np.random.SeedSequence(
                [seed, epoch, position]).generate_state(1)[0])
        epoch, skip = epoch + 1, 0


def training_dataset(roidb, stats, sampling=SamplingConfig(), config=PipelineConfig(),
                     input_context=None, parallel_calls=tf.data.AUTOTUNE, start_batch=0):
    """An endless tf.data.Dataset of minibatches (see the module docstring).

    parallel_calls: images loaded and sampled concurrently (AUTOTUNE by
    default; 1 runs them one at a time, for comparison).
    start_batch: the first minibatch of the stream (a resumed run passes its
    step, and continues with exactly the minibatches it would have seen).
    """
    if config.preprocessing not in transforms.PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {transforms.PREPROCESSING}, "
                         f"got {config.preprocessing!r}")
    shard, num_shards = 0, 1
    images_per_batch = sampling.images_per_batch
    if input_context is not None:
        shard, num_shards = input_context.input_pipeline_id, input_context.num_input_pipelines
        images_per_batch = input_context.get_per_replica_batch_size(images_per_batch)
        sampling = dataclasses.replace(
            sampling, images_per_batch=images_per_batch,
            rois_per_batch=sampling.rois_per_image * images_per_batch)
    per_image = sampling.rois_per_image

    def load(index, element_seed):
        rng = np.random.default_rng(int(element_seed))
        return load_example(roidb[int(index)], rng, sampling, config, stats)

    def load_tf(index, element_seed):
        out = tf.numpy_function(load, [index, element_seed],
                                [tf.float32, tf.float32, tf.int32, tf.float32, tf.float32,
                                 tf.float32], stateful=False)
        shapes = ([None, None, 3], [per_image, 4], [per_image], [per_image, 4], [per_image],
                  [per_image])
        return tuple(tf.ensure_shape(t, s) for t, s in zip(out, shapes))

    def assemble(images, rois, labels, targets, bbox_weights, sample_weights):
        n = tf.shape(rois)[0]
        batch_index = tf.repeat(tf.cast(tf.range(n), tf.float32), per_image)[:, None]
        rois = tf.concat([batch_index, tf.reshape(rois, [-1, 4])], axis=1)
        return ({"images": images, "rois": rois},
                {"labels": tf.reshape(labels, [-1]),
                 "bbox_targets": tf.reshape(targets, [-1, 4]),
                 "bbox_weights": tf.reshape(bbox_weights, [-1]),
                 "sample_weights": tf.reshape(sample_weights, [-1])})

    seeds = tf.data.Dataset.from_generator(
        lambda: element_seeds(len(roidb), config.seed, shard, num_shards,
                              start_batch * images_per_batch),
        output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)))
    dataset = seeds.map(load_tf, num_parallel_calls=parallel_calls, deterministic=True)
    dataset = dataset.padded_batch(images_per_batch, drop_remainder=True)
    dataset = dataset.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
