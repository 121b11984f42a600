"""One entry point for Python users: a trained detector applied to an image.

    from keras_frcnn import Predictor
    predictor = Predictor.from_workdir("workdirs/demo")
    predictor("photo.jpg").save("photo.detections.jpg")

``Predictor`` puts together what bin/detect.py does for one image: the inference
model, the class names, the test settings of the experiment config (scales,
flip test, post-processing), the proposals (computed as the config's
``proposals`` section says and cached, unless given) and the picture. For an
image file its detections are those of ``bin/detect.py`` on that file, number
for number (tests/test_predictor.py).
"""

import dataclasses
import hashlib
import json
import types
from pathlib import Path

import cv2
import ml_collections
import numpy as np

from keras_frcnn.boxes import as_proposals
from keras_frcnn.configs import base_config, load_config_file
from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.files import read_json


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The detections of one image, best first.

    boxes [n, 4] float (0-based x1, y1, x2, y2 in the image's pixels), scores [n],
    classes [n] (1..K, 0 is background), names [n] (the class names); ``image_bgr``
    is the image they were found in (for ``draw``).
    """
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    names: tuple
    image_bgr: np.ndarray = dataclasses.field(repr=False)

    def __len__(self):
        return len(self.scores)

    def above(self, score_threshold):
        """The detections scoring at least ``score_threshold``."""
        keep = self.scores >= score_threshold
        return dataclasses.replace(self, boxes=self.boxes[keep], scores=self.scores[keep],
                                   classes=self.classes[keep],
                                   names=tuple(np.asarray(self.names, object)[keep]))

    def to_list(self, score_threshold=0.5):
        """[{"class", "score", "box"}] at or above the threshold, rounded as
        bin/detect.py's detections.json (score to 4 decimals, box to 1)."""
        kept = self.above(score_threshold)
        return [{"class": name, "score": round(float(s), 4),
                 "box": [round(float(v), 1) for v in b]}
                for b, s, name in zip(kept.boxes, kept.scores, kept.names)]

    def draw(self, score_threshold=0.5):
        """The image (RGB uint8) with the detections at or above the threshold drawn."""
        from keras_frcnn.detection import Detections
        from keras_frcnn.detection.draw import draw_detections

        class_names = {int(k): n for k, n in zip(self.classes, self.names)}
        names = [class_names.get(k, "") for k in range(1, max(class_names, default=0) + 1)]
        dets = Detections(self.boxes, self.scores, self.classes)
        return draw_detections(self.image_bgr, dets, names, score_threshold)[..., ::-1].copy()

    def save(self, path, score_threshold=0.5):
        """Writes ``draw(score_threshold)`` to an image file (format from its suffix)."""
        from keras_frcnn.files import atomic_write

        suffix = Path(path).suffix or ".png"
        try:
            ok, data = cv2.imencode(suffix, self.draw(score_threshold)[..., ::-1])
        except cv2.error:  # a suffix OpenCV has no encoder for
            ok = False
        if not ok:
            raise ValueError(f"{path}: cannot write a {suffix!r} image; use .jpg or .png")
        atomic_write(path, data.tobytes())


def experiment_config(config):
    """A full experiment config from a ConfigDict, a config file path or a dict (e.g.
    a workdir's config.json): keys it lacks keep base_config()'s defaults."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        if path.suffix == ".json":
            config = read_json(path, "train again to write it, or pass the configs/*.py file")
        else:
            return load_config_file(path)
    if isinstance(config, ml_collections.ConfigDict):
        config = config.to_dict()
    full = base_config()

    def merge(node, values):
        for key, value in values.items():
            if key in node and isinstance(node[key], ml_collections.ConfigDict):
                merge(node[key], value)
            else:  # JSON has lists where the configs have tuples
                node[key] = tuple(value) if isinstance(value, list) else value
    merge(full, config)
    return full


class Predictor:
    """A trained detector for single images (in the spirit of detectron2's DefaultPredictor).

    Args:
      model: a FastRCNN inference model (workdirs.load_inference_model).
      class_names: the K object class names, in model order.
      config: the experiment config (ConfigDict, configs/*.py path, or config.json
        path or dict): its ``test`` section, ``pipeline.preprocessing``,
        ``proposals`` and ``dataset.max_image_pixels`` apply (the pixel limit to image
        files, which it refuses from their header before decoding; an array is
        already in memory, and detection and selective search work on downscaled
        copies of it).
    """

    def __init__(self, model, class_names, config):
        from keras_frcnn.detection import Detector
        from keras_frcnn.evaluation.run import detector_config
        from keras_frcnn.workdirs import check_model_config

        self.config = experiment_config(config)
        self.class_names = tuple(class_names)
        check_model_config(model, self.config, self.class_names)
        self.detector = Detector(model, detector_config(self.config))
        if len(self.class_names) != self.detector.num_classes - 1:
            raise ValueError(f"{len(self.class_names)} class names given for a model with "
                             f"{self.detector.num_classes - 1} object classes")

    @classmethod
    def from_workdir(cls, workdir, config=None):
        """The model, classes and config (config.json, unless ``config`` is given) of a
        training workdir."""
        from keras_frcnn.workdirs import REWRITE, load_inference_model

        workdir = Path(workdir)
        if workdir.is_file():
            raise ValueError(f"{workdir} is a file; from_workdir takes a training workdir "
                             "(a folder). For a .keras file use Predictor.from_model(path, "
                             "config, class_names)")
        if not workdir.is_dir():
            raise FileNotFoundError(f"{workdir}: no such workdir (the folder bin/train.py "
                                    "trained in, holding model.keras and classes.json)")
        if not (workdir / "classes.json").is_file():
            raise FileNotFoundError(f"{workdir}/classes.json: not found; {workdir} is not a "
                                    "training workdir, or its training has not started (run "
                                    "bin/train.py in it)")
        names = read_json(workdir / "classes.json", REWRITE, expect=list)
        if config is None:
            config = workdir / "config.json"
            if not config.is_file():
                raise FileNotFoundError(f"{config}: not found; pass config= (configs/*.py)")
        return cls(load_inference_model(workdir), names, config)

    @classmethod
    def from_model(cls, path, config, class_names):
        """A saved ``.keras`` model with the config it is to be used with."""
        from keras_frcnn.workdirs import load_inference_model

        return cls(load_inference_model(path), class_names, config)

    def __call__(self, image, proposals=None, rgb=True):
        """The Prediction of one image.

        ``image``: an image file, or an [H, W, 3] uint8 array (RGB, as Pillow and
        matplotlib give it; ``rgb=False`` for OpenCV's BGR). ``proposals``: [n, 4]
        0-based (x1, y1, x2, y2) boxes, or None to compute them as the config says
        (selective search, cached by the image's content).
        """
        path = None
        if isinstance(image, (str, Path)):
            path = Path(image)
            image_bgr = read_image_bgr(path, self.config.dataset.max_image_pixels,
                                       self.config.dataset.get("exif_orientation", True))
        else:
            image_bgr = _as_bgr(image, rgb)
        if proposals is None:
            proposals = self.proposals(image_bgr, path)
        dets = self.detector.detect(image_bgr, as_proposals(proposals))
        names = tuple(self.class_names[int(k) - 1] for k in dets.classes)
        return Prediction(dets.boxes, dets.scores, dets.classes, names, image_bgr)

    def proposals(self, image_bgr, path=None):
        """[n, 4] proposals of an image as the config's ``proposals`` section makes them
        (filters included): from its file as bin/detect.py does, or from the array."""
        from keras_frcnn.data.folder import load_images
        from keras_frcnn.proposals import dense, selective_search
        from keras_frcnn.files import join
        from keras_frcnn.proposals.sources import (postprocess_proposals, proposal_cache_dir,
                                                   proposals_for_dataset)

        cfg = self.config.proposals
        if path is not None:
            dataset = load_images([path], self.class_names,
                                  max_image_pixels=self.config.dataset.max_image_pixels,
                                  exif_orientation=self.config.dataset.get("exif_orientation",
                                                                           True))
            return proposals_for_dataset(dataset, cfg, progress=False)[dataset.records[0].image_id]
        height, width = image_bgr.shape[:2]
        record = types.SimpleNamespace(width=width, height=height)
        if cfg.method == "dense":
            return postprocess_proposals(cfg, record, dense.dense_boxes(width, height))
        if cfg.method != "selective_search":
            raise ValueError(f"proposals.method {cfg.method!r} reads boxes by file name: pass "
                             f"the image's path, or proposals=")
        max_size = selective_search.MAX_SIZE
        cache = selective_search.ProposalCache(join(
            proposal_cache_dir(cfg), selective_search.method_key(
                cfg.mode, None if max(height, width) <= max_size else max_size)))
        digest = hashlib.sha256(json.dumps(image_bgr.shape).encode()
                                + np.ascontiguousarray(image_bgr).tobytes()).hexdigest()
        boxes = cache.load(f"array-{digest}")
        if boxes is None:
            boxes = selective_search.selective_search(image_bgr, cfg.mode, max_size)
            cache.save(f"array-{digest}", boxes)
        return postprocess_proposals(cfg, record, boxes)


def _as_bgr(image, rgb):
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"image must be an image file or an [H, W, 3] uint8 array, got "
                         f"{image.dtype} {image.shape}; convert with np.asarray(PIL image)")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image is empty ({image.shape[0]}x{image.shape[1]})")
    image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1] if rgb else image)
