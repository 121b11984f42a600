"""Proposals for a whole dataset, as ``config.proposals`` describes them."""

import time
from pathlib import Path

from keras_frcnn.data.records import DatasetError
from keras_frcnn.proposals import dense, mat, postprocess, selective_search

METHODS = ("selective_search", "dense", "mat", "demo_mat")


def default_cache_dir():
    from keras_frcnn.data.demo import default_cache_dir as cache_root

    return cache_root() / "proposals"


def proposals_for_dataset(dataset, proposals_config, progress=True, split=""):
    """{image_id: [n, 4] boxes} after post-processing (unique, min size, top-k).

    methods: "selective_search" (OpenCV, ``mode`` fast|quality, cached; run on images
    downscaled to ``selective_search.MAX_SIZE`` on the longest side; images above
    ``dataset.max_image_pixels`` are refused),
    "dense" (paper section 5.5), "mat" (the release's dataset file
    ``mat_file``, where "{split}" becomes ``split``), "demo_mat" (per-image
    ``<id>_boxes.mat`` in ``mat_dir``).
    """
    cfg = proposals_config
    records = dataset.records
    if cfg.method == "selective_search":
        cache = Path(cfg.get("cache_dir") or default_cache_dir())
        raw = selective_search.compute_selective_search(
            [r.image_path for r in records], cache, cfg.mode, cfg.get("workers") or None, progress,
            max_pixels=dataset.max_image_pixels)
    elif cfg.method == "dense":
        raw = [dense.dense_boxes(r.width, r.height) for r in records]
    elif cfg.method == "mat":
        mat_file = cfg.mat_file.replace("{split}", split)
        by_id = {}
        for path in mat_file.split("+"):  # one file per joined dataset (VOC 07+12)
            by_id.update(mat.load_dataset_boxes(path, [r.image_id for r in records]
                                                if cfg.get("mat_has_no_ids") else None))
        missing = [r.image_id for r in records if r.image_id not in by_id]
        if missing:
            raise DatasetError(f"{mat_file}: no boxes for images {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''}")
        raw = [by_id[r.image_id] for r in records]
    elif cfg.method == "demo_mat":
        raw = [mat.load_demo_boxes(Path(cfg.mat_dir) / f"{r.image_id}_boxes.mat") for r in records]
    else:
        raise ValueError(f"proposals.method must be one of {METHODS}, got {cfg.method!r}")
    top_k = cfg.top_k if cfg.top_k > 0 else None
    min_size = cfg.min_size
    if cfg.method == "selective_search":
        # The release's proposals come from R-CNN's selective_search_boxes.m, which drops
        # boxes under minBoxWidth = 20 pixels wide or high before the release's own filter.
        min_size = max(min_size, cfg.get("selective_search_min_size", 0))
    unique = cfg.get("unique", True)
    return {r.image_id: postprocess.postprocess(boxes, r.width, r.height, min_size, top_k, unique)
            for r, boxes in zip(records, raw)}


def first_images(config, split, count):
    """[(record, [n, 4] proposals)] of the first ``count`` images of ``split`` of
    ``config``'s dataset (proposals computed or read for those images only)."""
    import dataclasses

    from keras_frcnn.data.sources import load_dataset

    from keras_frcnn.configs import split_sections

    dataset_config, proposals_config = split_sections(config, split)
    dataset = load_dataset(dataset_config, split)
    dataset = dataclasses.replace(dataset, records=tuple(dataset.records[:count]))
    proposals = proposals_for_dataset(dataset, proposals_config, False, split=split)
    return [(record, proposals[record.image_id]) for record in dataset.records]


def summarize(proposals, seconds):
    counts = [len(b) for b in proposals.values()]
    return (f"{len(counts)} images, {sum(counts) / max(len(counts), 1):.0f} proposals per image "
            f"(min {min(counts, default=0)}, max {max(counts, default=0)}), {seconds:.1f} s")


def timed_proposals(dataset, proposals_config, progress=True, split=""):
    start = time.perf_counter()
    result = proposals_for_dataset(dataset, proposals_config, progress, split)
    return result, time.perf_counter() - start
