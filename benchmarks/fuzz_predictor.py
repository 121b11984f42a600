"""Fuzzing targets of the Python entry points: the Predictor and the serving client.

benchmarks/fuzz.py runs them like its own targets (cases seeded by (--seed, target, i)
alone, a few hundred to a child process, crashes and hangs detected by the parent);
this module holds what is particular to them:

  predictor       keras_frcnn.Predictor of a tiny training workdir (pixel limit
                  MAX_IMAGE_PIXELS) called with hostile images (arrays of odd dtypes,
                  ranks, channels and sizes, RGB or BGR; files that are damaged, empty,
                  text, a folder, missing or above the limit) and hostile proposals
                  (fuzz.boxes: NaN / inverted / outside / huge boxes, up to 6000, in
                  FORMS: arrays, lists, or shapes and types to refuse; None for
                  selective search on small images), then Prediction.save, draw,
                  to_list or above with odd thresholds.
  serving_client  keras_frcnn.serving.make_request with hostile images and proposals;
                  a request it returns goes through the stand-in server of
                  tests/test_serving.py (the same tiny model exported with
                  max_proposals MAX_PROPOSALS), and the reply through parse_response.

A result is sanity-checked (finite boxes inside the image, scores in [0, 1], classes
1..K named consistently, lengths, at most K detections per proposal; the request's
inputs as given); a request whose proposals are not [n, 4] float32, and one above
MAX_PROPOSALS that is not refused with an error naming the limit, are odd too.
"""

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

import fuzz

CLASSES = ("cat", "dog")
MODEL_NAME = "frcnn"
SCALE, MAX_SIZE = 96, 128  # the test scale and longest side of both targets' model
MAX_IMAGE_PIXELS = 2_000_000  # the predictor's dataset.max_image_pixels: cases go past it
MAX_PROPOSALS = 3000  # the serving export's limit: cases go past it (up to 6000)
SEARCH_SIDE = 64  # longest side of an image whose proposals selective search computes
IMAGE_DTYPES = [(80, "uint8"), (5, "float32"), (3, "float64"), (4, "int16"), (4, "bool"),
                (4, "object")]
# (weight, layout): [H, W, 3] images, and grey, one-channel, RGBA, scalar, 1-D and batched.
LAYOUTS = [(80, "rgb"), (6, "grey"), (4, "one_channel"), (4, "rgba"), (2, "scalar"),
           (2, "flat"), (2, "batch")]
# Arrays as they come: a view with negative strides, or read-only (np.asarray of a
# Pillow image is).
MEMORY = [(80, "contiguous"), (10, "mirrored view"), (10, "read-only")]
SIZES = [(45, "small"), (20, "medium"), (8, "thin"), (5, "zero"), (3, "1x1"),
         (6, "wide_thin"), (7, "at_limit"), (6, "above_limit")]
# How the [n, 4] boxes are handed over: as they should be, in a shape or type that must
# be refused (ODD_FORMS), or None (computed by the Predictor, refused by the client).
FORMS = [(50, "float32"), (10, "float64"), (5, "int32"), (3, "int64"), (10, "list"),
         (4, "rows5"), (4, "transposed"), (3, "flat"), (3, "rank3"), (3, "strings"),
         (2, "text"), (3, "none")]
ODD_FORMS = ("rows5", "transposed", "flat", "rank3", "strings", "text")
FILE_KINDS = [(20, "png"), (18, "jpg"), (8, "bmp"), (8, "pam"), (10, "truncated"),
              (6, "undecodable_jpeg"), (5, "empty"), (5, "text"), (4, "directory"),
              (4, "missing"), (5, "above_limit_header"), (3, "above_limit"),
              (4, "at_limit")]
DECODABLE = ("png", "jpg", "bmp", "pam", "at_limit")  # formats written whole
# Files that must be refused. A truncated JPEG is not: Pillow decodes what is there.
BROKEN = ("undecodable_jpeg", "empty", "text", "directory", "missing", "above_limit_header",
          "above_limit")
METHODS = [(20, "none"), (35, "save"), (15, "draw"), (15, "to_list"), (15, "above")]
SUFFIXES = [".jpg", ".png", ".txt", "", ".bmp"]
THRESHOLDS = [np.nan, np.inf, -np.inf, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 1e30, -1e30,
              np.float32(np.nan)]


def image_size(rng, kind):
    """(height, width) of a SIZES kind: ``at_limit`` has at most MAX_IMAGE_PIXELS pixels,
    ``above_limit`` one row more; ``wide_thin`` is 1-3 rows of up to the limit."""
    if kind in ("at_limit", "above_limit"):
        width = int(rng.integers(1415, 4000))
        return MAX_IMAGE_PIXELS // width + (kind == "above_limit"), width
    return {"small": lambda: tuple(int(v) for v in rng.integers(2, SEARCH_SIDE + 1, 2)),
            "medium": lambda: tuple(int(v) for v in rng.integers(SEARCH_SIDE + 1, 400, 2)),
            "thin": lambda: tuple(int(v) for v in rng.permutation(
                [rng.integers(1, 4), rng.integers(20, 600)])),
            "zero": lambda: tuple(int(v) for v in rng.choice([(0, 0), (0, 40), (40, 0)])),
            "1x1": lambda: (1, 1),
            "wide_thin": lambda: tuple(int(v) for v in rng.permutation(
                [rng.integers(1, 4), rng.integers(600, MAX_IMAGE_PIXELS // 3)]))}[kind]()


def hostile_image(rng):
    """An image as a caller might pass it: {"image": array, "image_dtype", "layout",
    "size" (a SIZES kind), "memory" (MEMORY)}."""
    size = fuzz.pick(rng, SIZES)
    height, width = image_size(rng, size)
    pixels = (rng.integers(0, 256, (height, width, 3), np.uint8) if rng.random() < 0.9
              else np.full((height, width, 3), rng.choice([0, 255]), np.uint8))
    layout = fuzz.pick(rng, LAYOUTS)
    image = {"rgb": pixels, "grey": pixels[..., 0], "one_channel": pixels[..., :1],
             "rgba": np.concatenate([pixels, pixels[..., :1]], axis=2),
             "scalar": pixels[:1, :1, 0].reshape(()) if pixels.size else np.uint8(7),
             "flat": pixels.ravel(), "batch": pixels[None]}[layout]
    dtype = fuzz.pick(rng, IMAGE_DTYPES)
    if dtype == "float32" and rng.random() < 0.5:  # as scaled by 1/255
        image = image / np.float32(255)
    image = np.asarray(image).astype(dtype)
    memory = fuzz.pick(rng, MEMORY)
    if memory == "mirrored view" and image.ndim >= 2:
        image = image[:, ::-1]
    elif memory == "read-only":
        image.flags.writeable = False
    return {"image": image, "image_dtype": dtype, "layout": layout, "size": size,
            "memory": memory}


def hostile_proposals(rng, width, height):
    """(boxes [n, 4] float64 or None, form): fuzz.boxes of up to 6000 proposals."""
    count = int(rng.choice([0, rng.integers(1, 61), rng.integers(61, 600),
                            rng.integers(600, MAX_PROPOSALS + 1),
                            rng.integers(MAX_PROPOSALS + 1, 6001)], p=[.08, .6, .2, .06, .06]))
    return fuzz.boxes(rng, count, max(width, 1), max(height, 1)), fuzz.pick(rng, FORMS)


def shaped(boxes, form):
    """[n, 4] ``boxes`` as the case hands them over (FORMS)."""
    if form in ("int32", "int64"):  # a NaN or out-of-range cast to int is undefined
        info = np.iinfo(form)
        return np.clip(np.nan_to_num(boxes), info.min, info.max).astype(form)
    rows5 = np.concatenate([np.zeros((len(boxes), 1)), boxes], axis=1)
    return {"float32": lambda: boxes.astype(np.float32), "float64": lambda: boxes,
            "list": boxes.tolist, "rows5": lambda: rows5.astype(np.float32),
            "transposed": lambda: boxes.T.astype(np.float32),
            "flat": lambda: boxes.ravel().astype(np.float32),
            "rank3": lambda: boxes[None].astype(np.float32), "strings": lambda: boxes.astype(str),
            "text": lambda: " ".join(map(str, boxes.ravel())), "none": lambda: None}[form]()


def predictor_case(seed, index):
    """Case ``index``: an image array or file, proposals, rgb, and a Prediction method."""
    rng = np.random.default_rng([seed, fuzz.TARGETS["predictor"], index])
    case = {"file_kind": fuzz.pick(rng, FILE_KINDS) if rng.random() < 0.3 else None}
    if case["file_kind"]:
        height, width = (image_size(rng, "at_limit") if case["file_kind"] == "at_limit"
                         else image_size(rng, rng.choice(["small", "medium", "thin", "1x1"])))
        channels = int(rng.choice([1, 3, 4], p=[.15, .7, .15]))
        if case["file_kind"] in ("jpg", "truncated", "at_limit"):
            channels = min(channels, 3)  # JPEG has no alpha
        case["image"] = rng.integers(0, 256, (height, width, channels), np.uint8)
        case["as_path"] = bool(rng.random() < 0.5)  # a pathlib.Path, else a str
        case["cut"] = float(rng.uniform(0.1, 0.95))  # share of a truncated file kept
    else:
        case.update(hostile_image(rng))
        height, width = case["image"].shape[:2] if case["image"].ndim >= 2 else (1, 1)
    case["proposals"], case["proposals_form"] = hostile_proposals(rng, width, height)
    # Selective search (proposals None) on small images only, and on more of those.
    small = 1 <= min(height, width) and max(height, width) <= SEARCH_SIDE
    if small and rng.random() < 0.15:
        case["proposals_form"] = "none"
    elif case["proposals_form"] == "none" and not small:
        case["proposals_form"] = "float32"
    case["rgb"] = bool(rng.random() < 0.8)
    case["method"] = fuzz.pick(rng, METHODS)
    case["threshold"] = THRESHOLDS[rng.integers(len(THRESHOLDS))]
    case["suffix"] = SUFFIXES[rng.integers(len(SUFFIXES))]
    return case


def serving_client_case(seed, index):
    """Case ``index``: an image array and proposals for make_request."""
    rng = np.random.default_rng([seed, fuzz.TARGETS["serving_client"], index])
    case = hostile_image(rng)
    height, width = case["image"].shape[:2] if case["image"].ndim >= 2 else (1, 1)
    case["proposals"], case["proposals_form"] = hostile_proposals(rng, width, height)
    return case


# ---- child side ---------------------------------------------------------------------------

def png_header(width, height):
    """A PNG whose header says ``width`` x ``height`` but which holds a few bytes of pixels:
    refused from its header, or not at all."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                              2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def write_image(case, folder):
    """The path of the case's image file, written into ``folder`` (FILE_KINDS)."""
    import cv2

    kind, pixels = case["file_kind"], case["image"]
    path = folder / ("image" + {"bmp": ".bmp", "pam": ".pam", "png": ".png"}.get(kind, ".jpg"))
    encoded = cv2.imencode(path.suffix, pixels)[1].tobytes() if kind in DECODABLE else b""
    if kind == "truncated":
        encoded = cv2.imencode(".jpg", pixels)[1].tobytes()
        encoded = encoded[:max(1, int(len(encoded) * case["cut"]))]
    elif kind == "undecodable_jpeg":  # as tests/detection/test_overlapped_proposals.py
        encoded = cv2.imencode(".jpg", pixels)[1].tobytes()
        encoded = encoded[:encoded.index(b"\xff\xda")]  # cut at the start of scan
    elif kind == "text":
        encoded = b"this is not an image\n"
    elif kind == "above_limit_header":
        path = path.with_suffix(".png")
        encoded = png_header(MAX_IMAGE_PIXELS // 1000 + 1, 1000)
    elif kind == "above_limit":
        path = path.with_suffix(".png")
        encoded = cv2.imencode(".png", np.zeros((1000, MAX_IMAGE_PIXELS // 1000 + 1),
                                                np.uint8))[1].tobytes()
    if kind == "directory":
        path.mkdir()
    elif kind != "missing":
        path.write_bytes(encoded)
    return path if case["as_path"] else str(path)


def fresh(folder):
    """Makes ``folder`` empty (creating it): a case leaves nothing for the next one."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()


def expected_bgr(case):
    """The BGR uint8 image the Predictor should see for an array case, or None (refused)."""
    image = case["image"]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        return None
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] not in (3, 4):
        return None
    return image[..., :3][..., ::-1] if case["rgb"] else image[..., :3]


def refused(case):
    """Whether the case's proposals must be refused: an ODD_FORMS shape or type, except
    two that are not odd: a flat array of no values (an empty set, as as_proposals
    says) and four boxes transposed (an [n, 4] array too)."""
    form, count = case["proposals_form"], len(case["proposals"])
    return form in ODD_FORMS and (form, count) not in (("flat", 0), ("transposed", 4))


def detection_oddity(boxes, scores, classes, names, height, width, proposals):
    """What is wrong with detections of a ``height`` x ``width`` image, or None."""
    count = len(scores)
    if {len(boxes), len(classes), len(names)} != {count} or np.shape(boxes) != (count, 4):
        return (f"{count} scores but boxes {np.shape(boxes)}, {len(classes)} classes, "
                f"{len(names)} names")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        return "non-finite boxes or scores"
    if ((scores < 0) | (scores > 1)).any() or not set(np.asarray(classes).tolist()) <= {1, 2}:
        return "score outside [0, 1] or class outside 1..2"
    if list(names) != [CLASSES[int(k) - 1] for k in classes]:
        return f"names {list(names)[:5]} for classes {list(classes)[:5]}"
    if count and ((boxes < 0).any() or (boxes[:, [0, 2]] > width - 1).any()
                  or (boxes[:, [1, 3]] > height - 1).any()):
        return (f"a box outside the {height}x{width} image: "
                f"{boxes.min(0).tolist()} .. {boxes.max(0).tolist()}")
    if proposals is not None and count > len(CLASSES) * len(proposals):
        return f"{count} detections of {len(proposals)} proposals"
    return None


def method_oddity(prediction, case, done):
    """What is wrong with what the case's Prediction method returned, or None."""
    import cv2

    kept = int((prediction.scores >= case["threshold"]).sum())
    if case["method"] == "above" and (len(done) != kept or not (done.scores >= case[
            "threshold"]).all()):
        return f"above({case['threshold']}) kept {len(done)} of {kept}"
    if case["method"] == "to_list" and (len(done) != kept or any(
            d["class"] not in CLASSES or not 0 <= d["score"] <= 1 for d in done)):
        return f"to_list({case['threshold']}) listed {len(done)} of {kept}: {done[:2]}"
    picture = cv2.imread(str(done), cv2.IMREAD_COLOR) if case["method"] == "save" else done
    if case["method"] in ("save", "draw") and (
            picture is None or picture.shape != prediction.image_bgr.shape):
        return (f"{case['method']}({case['threshold']}) gave "
                f"{None if picture is None else picture.shape} for an image "
                f"{prediction.image_bgr.shape}")
    return None


def predictor_runner(args):
    from keras_frcnn import Predictor

    predictor = Predictor.from_workdir(Path(args.export_dir) / "predictor")
    folder = Path(args.export_dir) / "scratch"  # the case's files; a child runs at a time

    def error(message):
        # Messages name the files: without the temporary folder's path, one cause is one
        # message in every run.
        return {"verdict": "error", "errors": {fuzz.SINGLE: message.replace(str(folder),
                                                                            "scratch")}}

    def call_method(prediction, case):
        if case["method"] == "save":
            path = folder / f"saved{case['suffix']}"
            prediction.save(path, case["threshold"])
            return path
        return getattr(prediction, case["method"])(case["threshold"])

    def run(index):
        case = predictor_case(args.seed, index)
        fresh(folder)
        image = write_image(case, folder) if case["file_kind"] else case["image"]
        proposals = shaped(case["proposals"], case["proposals_form"])
        kind, prediction = fuzz.outcome(lambda: predictor(image, proposals, rgb=case["rgb"]))
        if kind == "error":
            return error(prediction)
        bgr = prediction.image_bgr
        odd = detection_oddity(prediction.boxes, prediction.scores, prediction.classes,
                               prediction.names, *bgr.shape[:2], proposals)
        if case["file_kind"] in BROKEN:
            odd = odd or f"detections for a file that is {case['file_kind']}"
        elif case["file_kind"] and bgr.shape != case["image"].shape[:2] + (3,):
            odd = odd or f"read as {bgr.shape} from a file of {case['image'].shape}"
        elif not case["file_kind"] and not np.array_equal(bgr, expected_bgr(case)):
            odd = odd or f"read as {bgr.shape} {bgr.dtype} from an array {case['image'].shape}"
        if refused(case):
            odd = odd or f"detections for proposals given as {case['proposals_form']}"
        if case["method"] != "none" and not odd:
            kind, done = fuzz.outcome(lambda: call_method(prediction, case))
            if kind == "error":
                return error(done)
            odd = method_oddity(prediction, case, done)
        return {"verdict": "result", "errors": {}, "odd": odd}

    return run


def serving_client_runner(args):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from keras_frcnn.serving import make_request, parse_response

    signatures = tf.saved_model.load(str(Path(args.export_dir) / "serving")).signatures

    def serve_request(request):
        """tests/test_serving.py's StandInPredictionService.Predict, without gRPC."""
        signature = signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = signature(**inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return parse_response(response)

    def run(index):
        case = serving_client_case(args.seed, index)
        proposals = shaped(case["proposals"], case["proposals_form"])
        kind, request = fuzz.outcome(lambda: make_request(case["image"], proposals,
                                                          MODEL_NAME))
        if kind == "error":
            return {"verdict": "error", "errors": {fuzz.SINGLE: request}}
        odd = request_oddity(request, case, proposals)
        kind, out = fuzz.outcome(lambda: serve_request(request))
        count = len(case["proposals"])
        if kind == "error":
            at_limit = "at most" in out and str(MAX_PROPOSALS) in out
            if at_limit != (count > MAX_PROPOSALS):
                odd = odd or f"{count} proposals, limit {MAX_PROPOSALS}: {out[:200]}"
            return {"verdict": "error", "errors": {fuzz.SINGLE: out}, "odd": odd}
        if count > MAX_PROPOSALS:
            odd = odd or f"detections for {count} proposals, above the limit {MAX_PROPOSALS}"
        if out["num_detections"] != len(out["detection_scores"]):
            odd = odd or (f"num_detections {out['num_detections']} for "
                          f"{len(out['detection_scores'])} scores")
        odd = odd or detection_oddity(out["detection_boxes"], out["detection_scores"],
                                      out["detection_classes"], out["detection_class_names"],
                                      *case["image"].shape[:2], case["proposals"])
        return {"verdict": "result", "errors": {}, "odd": odd}

    return run


def request_oddity(request, case, proposals):
    """What is wrong with a request make_request returned, or None: its inputs must be
    the case's image and proposals, as given (uint8 [H, W, 3], float32 [n, 4])."""
    import tensorflow as tf

    sent = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    if refused(case) or proposals is None:
        return (f"a request with proposals {sent['proposals'].dtype} "
                f"{sent['proposals'].shape}, given as {case['proposals_form']}")
    image = case["image"]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return f"a request for an image {image.dtype} {image.shape}"
    given = np.asarray(proposals, np.float32).reshape(-1, 4)  # an empty list: no rows
    if not (np.array_equal(sent["image"], image) and sent["proposals"].dtype == np.float32
            and sent["proposals"].tobytes() == given.tobytes()
            and sent["proposals"].shape == given.shape):
        return (f"sent image {sent['image'].shape}, proposals {sent['proposals'].dtype} "
                f"{sent['proposals'].shape}: not what was given")
    return None


def prepare(export_dir, seed):
    """The tiny model of tests/test_predictor.py (scores spread) as a training workdir
    (``predictor/``) and exported for serving (``serving/``), where missing."""
    import keras

    from keras_frcnn.detection import PostprocessConfig
    from keras_frcnn.export import export_saved_model
    from keras_frcnn.model.fast_rcnn import FastRCNN
    from keras_frcnn.predictor import experiment_config

    keras.utils.set_random_seed(seed)
    model = FastRCNN(num_classes=3, backbone="small", dropout=0.0)
    kernel, bias = model.get_layer("cls_score").get_weights()
    model.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    work = Path(export_dir) / "predictor"
    if not work.is_dir():
        work.mkdir(parents=True)
        model.save(work / "model.keras")
        config = experiment_config({
            "dataset": {"classes": CLASSES, "max_image_pixels": MAX_IMAGE_PIXELS},
            "pipeline": {"preprocessing": "tf"}, "model": {"backbone": "small"},
            "test": {"scales": (SCALE,), "max_size": MAX_SIZE, "mode": "default",
                     "score_threshold": 0.0},
            "proposals": {"cache_dir": str(Path(export_dir) / "proposal_cache"), "workers": 1}})
        (work / "config.json").write_text(config.to_json_best_effort())
        (work / "classes.json").write_text(json.dumps(CLASSES))
    if not (Path(export_dir) / "serving").is_dir():
        export_saved_model(model, CLASSES, Path(export_dir) / "serving", scales=(SCALE,),
                           max_size=MAX_SIZE, preprocessing="tf",
                           postprocess=PostprocessConfig(mode="default", score_threshold=0.0),
                           max_proposals=MAX_PROPOSALS)
