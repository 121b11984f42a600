"""Datasets named by a config section (``config.dataset``, see configs/)."""

import dataclasses
from pathlib import Path

from keras_frcnn.data import coco, demo, folder, voc
from keras_frcnn.data.records import MAX_IMAGE_PIXELS, DatasetError
from keras_frcnn.files import is_dir, is_url, join, name, parent

KINDS = ("demo", "voc", "voc_folder", "coco", "images")


def _location(path):
    """A config's folder: a URL as it is (keras_frcnn.files), a local path as a Path."""
    return path if is_url(path) else Path(path)


def load_dataset(dataset_config, split):
    """The Dataset for ``split`` as ``dataset_config`` describes it.

    kinds: "demo" (the embedded synthetic set), "voc" (devkit year folder in
    ``root``, or several joined with "+"), "voc_folder" (``annotations`` + ``images`` folders, by default
    ``root``/annots and ``root``/images; the split is
    the sorted file list cut at ``train_fraction``: "trainval" before, "test"
    after; "trainval" holds a "val" share ``val_fraction`` (default 0), the
    last one or, for ``val_fold`` k, the k-th such block counted from the end, and
    "train" is the rest of it), "coco" (``annotations`` JSON + ``images``), "images" (``root``, no
    annotations).
    """
    cfg = dataset_config
    classes = tuple(cfg.classes) if cfg.get("classes") else None
    kind = cfg.kind
    max_pixels = cfg.get("max_image_pixels", MAX_IMAGE_PIXELS)
    orient = cfg.get("exif_orientation", True)
    if kind == "demo":
        splits = tuple(zip(("train", "val", "test"), (int(n) for n in cfg.demo_sizes)))
        return dataclasses.replace(
            demo.load_demo(split, cfg.get("cache_dir") or None, cfg.get("seed", 0), splits),
            max_image_pixels=max_pixels, exif_orientation=orient)
    if kind == "voc":  # several devkit years joined with "+" (VOC 07+12)
        parts = [voc.load_voc(root, split, classes or voc.VOC_CLASSES, cfg.on_error, max_pixels,
                              orient) for root in cfg.root.split("+")]
        records = tuple(r for part in parts for r in part.records)
        skipped = [m for part in parts for m in part.metadata.get("skipped", ())]
        return dataclasses.replace(parts[0], name="+".join(p.name for p in parts),
                                   records=records, metadata={"skipped": skipped})
    if kind == "voc_folder":
        annotations = _location(cfg.annotations or join(_location(cfg.root), "annots"))
        images = _location(cfg.images or join(_location(cfg.root), "images"))
        ids = voc.xml_ids(annotations) if is_dir(annotations) else []
        if not ids:
            raise DatasetError(f"{annotations}: no .xml annotations (set dataset.root, or "
                               "dataset.annotations and dataset.images)")
        cut = int(round(len(ids) * cfg.train_fraction))
        val_fraction = cfg.get("val_fraction", 0.0)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(cut * val_fraction))
        fold = cfg.get("val_fold", 0)
        folds = cut // n_val if n_val else 1
        if not 0 <= fold < folds:
            raise ValueError(f"dataset.val_fold must be in [0, {folds}) for {cut} training files "
                             f"and val_fraction {val_fraction}, got {fold}")
        val_stop = cut - fold * n_val  # fold 0: the last share, fold 1: the share before it
        val_ids = ids[val_stop - n_val:val_stop]
        parts = {"train": ids[:val_stop - n_val] + ids[val_stop:cut], "val": val_ids,
                 "trainval": ids[:cut], "test": ids[cut:], "all": ids}
        if split not in parts:
            raise ValueError(f"voc_folder splits are {sorted(parts)}, got {split!r}")
        if split == "val" and not parts["val"]:
            raise DatasetError(f"{annotations}: the val split is empty; hold out a share of "
                               "the training files with dataset.val_fraction (e.g. 0.2)")
        return voc.load_voc_folder(annotations, images, classes or voc.VOC_CLASSES, parts[split],
                                   f"{name(parent(annotations))}_{split}", cfg.on_error,
                                   max_pixels, orient)
    if kind == "coco":
        return coco.load_coco(cfg.annotations, cfg.images, on_error=cfg.on_error,
                              max_image_pixels=max_pixels, exif_orientation=orient)
    if kind == "images":
        return folder.load_images(cfg.root, classes or (), on_error=cfg.on_error,
                                  max_image_pixels=max_pixels, exif_orientation=orient)
    raise ValueError(f"dataset.kind must be one of {KINDS}, got {kind!r}")
