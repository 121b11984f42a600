"""The embedded demo dataset: synthetic shapes on cluttered backgrounds.

Generated deterministically from a seed on first use into a cache folder, in
PASCAL VOC devkit layout (Annotations/, JPEGImages/, ImageSets/Main/), so the
demo exercises the VOC code path. Five classes that differ by *shape only*:
every object is filled with a random colour far from the background under it,
so colour cannot tell them apart; "disc" and "ring" differ only by the hole. Backgrounds are a colour gradient with noise, line segments
and dots. Objects may overlap, but a new object is only placed where it leaves
every earlier object at least MIN_VISIBLE of its area, and each box is the
tight bounding box of the object's *visible* pixels.

Each image is drawn from its own generator seeded with (seed, split, index),
so any image can be regenerated alone and the set does not depend on order.
"""

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from keras_frcnn.data.records import ImageRecord
from keras_frcnn.data.voc import load_voc, write_voc_xml
from keras_frcnn.files import (atomic_write, is_file, is_url, join, make_dirs, make_temp_dir,
                               parent)

DEMO_CLASSES = ("disc", "ring", "square", "triangle", "cross")
DEFAULT_SPLITS = (("train", 400), ("val", 60), ("test", 120))
GENERATOR_VERSION = 4  # bump when the drawing changes: new cache folder
MIN_VISIBLE = 0.75
MIN_SIZE, MAX_SIZE = 32, 72  # object extent in pixels


def default_cache_dir():
    """$KERAS_FRCNN_CACHE, else ~/.cache/keras_frcnn."""
    return Path(os.environ.get("KERAS_FRCNN_CACHE", Path.home() / ".cache" / "keras_frcnn"))


def _shape_mask(label, size, angle, centre, shape):
    """Boolean mask of one object (no anti-aliasing, so boxes are exact)."""
    mask = np.zeros(shape, np.uint8)
    cx, cy = centre
    radius = size / 2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def polygon(points):
        points = points @ rotation.T + [cx, cy]
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)

    name = DEMO_CLASSES[label - 1]
    if name in ("disc", "ring"):
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1, cv2.LINE_8)
        if name == "ring":
            hole = int(round(radius * 0.55))
            cv2.circle(mask, (int(round(cx)), int(round(cy))), hole, 0, -1, cv2.LINE_8)
    elif name == "square":
        half = radius * 0.72
        polygon(np.array([[-half, -half], [half, -half], [half, half], [-half, half]]))
    elif name == "triangle":
        t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        polygon(np.stack([np.cos(t), np.sin(t)], axis=1) * radius)
    else:  # cross
        arm, half = radius * 0.3, radius
        polygon(np.array([[-half, -arm], [half, -arm], [half, arm], [-half, arm]]))
        polygon(np.array([[-arm, -half], [arm, -half], [arm, half], [-arm, half]]))
    return mask.astype(bool)


def _colour(rng):
    return rng.uniform(0, 255, size=3)


def _fill_colour(rng, background_mean):
    """A random colour at least 80 (RGB distance) from the background it covers."""
    while True:
        colour = _colour(rng)
        if np.linalg.norm(colour - background_mean) > 80:
            return colour


def _background(rng, height, width):
    yy, xx = np.mgrid[:height, :width] / max(height, width)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(theta) + yy * np.sin(theta))[..., None]
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    image = _colour(rng) * (1 - ramp) + _colour(rng) * ramp
    image = image + rng.normal(0, 10, size=image.shape)
    canvas = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    for _ in range(rng.integers(3, 9)):  # clutter: segments
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.line(canvas, p1, p2, tuple(int(v) for v in _colour(rng)), 1)
    for _ in range(rng.integers(5, 16)):  # clutter: dots
        centre = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.circle(canvas, centre, int(rng.integers(1, 3)), tuple(int(v) for v in _colour(rng)), -1)
    return canvas.astype(np.float64)


def render_image(rng, width, height, min_objects=2, max_objects=6, max_tries=40):
    """Draws one image. Returns (image uint8 [H, W, 3], boxes [n, 4], labels [n], masks [n, H, W]).

    masks are the visible pixels of each object; boxes are their tight bounds.
    """
    image = _background(rng, height, width)
    owner = np.full((height, width), -1, np.int32)
    labels, full_areas = [], []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        for _ in range(max_tries):
            label = int(rng.integers(1, len(DEMO_CLASSES) + 1))
            size = rng.uniform(MIN_SIZE, MAX_SIZE)
            margin = size / 2 + 1
            centre = rng.uniform([margin, margin], [width - margin, height - margin])
            mask = _shape_mask(label, size, rng.uniform(0, 2 * np.pi), centre, (height, width))
            trial = np.where(mask, len(labels), owner)
            visible = [np.count_nonzero(trial == k) / full_areas[k] for k in range(len(labels))]
            if mask.any() and all(v >= MIN_VISIBLE for v in visible):
                image[mask] = _fill_colour(rng, image[mask].mean(axis=0))
                owner = trial
                labels.append(label)
                full_areas.append(np.count_nonzero(mask))
                break
    image = np.clip(image + rng.normal(0, 4, size=image.shape), 0, 255).astype(np.uint8)
    masks = np.stack([owner == k for k in range(len(labels))]) if labels else \
        np.zeros((0, height, width), bool)
    boxes = np.array([_tight_box(m) for m in masks], np.float32).reshape(-1, 4)
    return image, boxes, np.array(labels, np.int32), masks


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


def image_rng(seed, split_index, index):
    """The generator of one image: independent of every other image."""
    return np.random.default_rng([seed, split_index, index])


def _write_split(root, split_index, split, count, seed):
    ids = []
    for index in range(count):
        rng = image_rng(seed, split_index, index)
        width, height = int(rng.integers(176, 257)), int(rng.integers(144, 209))
        image, boxes, labels, _ = render_image(rng, width, height)
        image_id = f"{split}_{index:05d}"
        image_path = root / "JPEGImages" / f"{image_id}.jpg"
        Image.fromarray(image).save(image_path, quality=95)
        record = ImageRecord.create(image_id, image_path, width, height, boxes, labels)
        write_voc_xml(root / "Annotations" / f"{image_id}.xml", record, DEMO_CLASSES)
        ids.append(image_id)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def demo_root(cache_dir=None, seed=0, splits=DEFAULT_SPLITS):
    """The demo dataset's VOC folder, generated on first use.

    Generation goes to a temporary folder renamed into place when complete, so
    an interrupted run leaves no half-written dataset behind.
    """
    if cache_dir is not None and is_url(str(cache_dir)):
        return _remote_demo_root(str(cache_dir), seed, splits)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache_dir / "datasets" / _folder_name(seed, splits)
    if (root / "DONE").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(root.parent, root.name + ".tmp-")
    try:
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        for split_index, (split, count) in enumerate(splits):
            _write_split(tmp, split_index, split, count, seed)
        (tmp / "DONE").write_text("complete\n")
        try:
            tmp.rename(root)
        except OSError:  # another process finished first, or a stale partial folder
            if not (root / "DONE").is_file():
                shutil.rmtree(root, ignore_errors=True)
                tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _folder_name(seed, splits):
    sizes = "-".join(f"{name}{count}" for name, count in splits)
    return f"demo-v{GENERATOR_VERSION}-seed{seed}-{sizes}"


def _remote_demo_root(cache_dir, seed, splits):
    """demo_root under a URL (gs://, ram://: keras_frcnn.files): generated in a local
    temporary folder and uploaded file by file, its DONE marker last, so a reader never
    takes a half-uploaded dataset for a complete one."""
    root = join(cache_dir, "datasets", _folder_name(seed, splits))
    if is_file(join(root, "DONE")):
        return root
    with tempfile.TemporaryDirectory() as tmp:
        local = demo_root(tmp, seed, splits)
        for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != "DONE"):
            target = join(root, *path.relative_to(local).parts)
            make_dirs(parent(target))
            atomic_write(target, path.read_bytes())
        atomic_write(join(root, "DONE"), (local / "DONE").read_bytes())
    return root


def load_demo(split, cache_dir=None, seed=0, splits=DEFAULT_SPLITS):
    """A split ("train", "val" or "test") of the demo dataset as a Dataset."""
    names = [name for name, _ in splits]
    if split not in names:
        raise ValueError(f"demo split must be one of {names}, got {split!r}")
    return load_voc(demo_root(cache_dir, seed, splits), split, DEMO_CLASSES)
