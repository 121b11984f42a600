"""Proposals computed while the network runs (issue 34): the same proposals, detections,
files and cache entries as computing every image's proposals first, and the same errors."""

import json
import multiprocessing

import keras
import numpy as np
import pytest

from keras_frcnn.configs import base_config
from keras_frcnn.data.folder import load_images
from keras_frcnn.data.records import DatasetError
from keras_frcnn.detection import Detector, DetectorConfig
from keras_frcnn.detection.run import detect_images
from keras_frcnn.model.fast_rcnn import FastRCNN
from keras_frcnn.proposals import selective_search
from keras_frcnn.proposals.sources import ProposalStream, proposals_for_dataset

DETECTOR = DetectorConfig(scales=(96,), max_size=128, preprocessing="tf")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    keras_model = FastRCNN(num_classes=2, backbone="small", dropout=0.0)
    # Class scores spread (x 200), so that images have detections and no near-ties.
    kernel, bias = keras_model.get_layer("cls_score").get_weights()
    keras_model.get_layer("cls_score").set_weights([kernel * 200.0, bias])
    return keras_model


def textured_images(folder, count=5):
    """PNGs of coloured squares on grey (selective search finds boxes in them)."""
    from PIL import Image

    paths = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = np.full((96, 128, 3), 40, np.uint8)
        for _ in range(5):
            x, y = rng.integers(0, 100), rng.integers(0, 70)
            image[y:y + 24, x:x + 24] = rng.integers(0, 255, 3)
        paths.append(folder / f"im{seed}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def undecodable_image(path):
    """A file whose header reads (so listing the images accepts it) but whose pixels do
    not: a PNG of IHDR, an empty eXIf chunk (so that reading its EXIF orientation needs
    no pixel data) and IEND, without image data. OpenCV refuses it and Pillow's decoding
    of damaged files cannot load it either, with Pillow 12 and 13 alike (a JPEG cut at
    the start of its scan, used before, has a header only Pillow 13 reads); so the first
    worker to decode it fails, whatever the file is named."""
    import zlib

    from PIL import Image

    def chunk(kind, body):
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path, format="PNG")
    data = path.read_bytes()
    start = data.index(b"IDAT") - 4  # the chunk's length field
    length = int.from_bytes(data[start:start + 4], "big")
    empty_exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00"  # no IFD entries
    path.write_bytes(data[:start] + chunk(b"eXIf", empty_exif)
                     + data[start + 12 + length:])  # IDAT's length, type, data, CRC dropped
    return path


def proposals_config(cache_dir, workers=2):
    config = base_config().proposals
    config.cache_dir, config.workers = str(cache_dir), workers
    config.selective_search_min_size = 0  # the squares are 24 pixels: keep small boxes too
    return config


def cached_boxes(cache_dir):
    """{entry path under the cache: boxes} (an .npz file's bytes hold its write time)."""
    entries = {}
    for path in sorted(cache_dir.rglob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            entries[str(path.relative_to(cache_dir))] = data["boxes"]
    return entries


def written_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_detect_images_overlapped_writes_what_the_sequential_path_writes(model, tmp_path,
                                                                         monkeypatch):
    paths = textured_images(tmp_path)
    runs = {}
    for overlap in (False, True):
        name = "overlapped" if overlap else "sequential"
        runs[name] = detect_images(model, paths, ["thing"], DETECTOR,
                                   proposals_config(tmp_path / name / "cache"),
                                   tmp_path / name / "out", score_threshold=0.0,
                                   progress=False, overlap=overlap).found
    assert list(runs["overlapped"]) == [str(p) for p in paths]  # the images' order
    assert runs["overlapped"] == runs["sequential"]
    assert sum(len(rows) for rows in runs["sequential"].values()) > 0
    files = written_files(tmp_path / "sequential" / "out")
    assert sorted(files) == ["detections.json"] + [f"im{k}.detections.jpg" for k in range(5)]
    assert written_files(tmp_path / "overlapped" / "out") == files
    # The proposals each path computed went into the cache under the same names.
    entries = cached_boxes(tmp_path / "sequential" / "cache")
    overlapped = cached_boxes(tmp_path / "overlapped" / "cache")
    assert len(entries) == 5 and list(overlapped) == list(entries)
    for name, boxes in entries.items():
        np.testing.assert_array_equal(overlapped[name], boxes)
    assert not list((tmp_path / "overlapped" / "cache").rglob("*.tmp"))

    # A second run finds every image in the cache: no worker starts, nothing is rewritten.
    stamps = [p.stat().st_mtime_ns for p in (tmp_path / "overlapped" / "cache").rglob("*.npz")]

    def no_workers(workers):
        raise AssertionError("a worker pool was started for cached images")

    monkeypatch.setattr(selective_search, "start_pool", no_workers)
    again = detect_images(model, paths, ["thing"], DETECTOR,
                          proposals_config(tmp_path / "overlapped" / "cache"),
                          tmp_path / "again", score_threshold=0.0, progress=False).found
    assert again == runs["sequential"]
    assert [p.stat().st_mtime_ns
            for p in (tmp_path / "overlapped" / "cache").rglob("*.npz")] == stamps
    assert written_files(tmp_path / "again") == files


def test_detect_dataset_takes_a_proposal_stream(model, tmp_path):
    dataset = load_images(textured_images(tmp_path, 4), ("thing",))
    detector = Detector(model, DETECTOR)
    expected, _ = detector.detect_dataset(
        dataset, proposals_for_dataset(dataset, proposals_config(tmp_path / "first"), False),
        progress=False)
    with ProposalStream(dataset, proposals_config(tmp_path / "streamed"), False) as stream:
        results, _ = detector.detect_dataset(dataset, stream, progress=False)
    assert list(results) == list(expected)
    for image_id, dets in expected.items():
        assert len(dets.scores) > 0
        np.testing.assert_array_equal(results[image_id].boxes, dets.boxes)
        np.testing.assert_array_equal(results[image_id].scores, dets.scores)
        np.testing.assert_array_equal(results[image_id].classes, dets.classes)


def test_other_methods_stream_the_boxes_proposals_for_dataset_gives(tmp_path):
    dataset = load_images(textured_images(tmp_path, 2))
    config = proposals_config(tmp_path / "cache")
    config.method = "dense"
    expected = proposals_for_dataset(dataset, config, False)
    with ProposalStream(dataset, config, False) as stream:
        pairs = list(stream.pairs())
    assert [record.image_id for record, _ in pairs] == ["im0", "im1"]
    for record, boxes in pairs:
        np.testing.assert_array_equal(boxes, expected[record.image_id])
    assert not (tmp_path / "cache").exists()


def test_a_worker_error_is_the_same_one_line_dataset_error(model, tmp_path):
    paths = textured_images(tmp_path, 4)
    paths.insert(2, undecodable_image(tmp_path / "broken.jpg"))
    messages = []
    for overlap in (False, True):
        with pytest.raises(DatasetError) as raised:
            detect_images(model, paths, ["thing"], DETECTOR,
                          proposals_config(tmp_path / f"cache_{overlap}"),
                          tmp_path / f"out_{overlap}", progress=False, overlap=overlap,
                          on_error="raise")
        messages.append(str(raised.value))
    assert messages[0] == messages[1] == f"{paths[2]}: missing or not a decodable image"
    # What was done before the error is listed (issue 42): the overlapped run had
    # detected the two images before the broken one.
    done = json.loads((tmp_path / "out_True" / "detections.json").read_text())
    assert list(done) == [str(p) for p in paths[:2]]
    # The images before it were handed out, hence cached for the next run.
    assert len(cached_boxes(tmp_path / "cache_True")) >= 2

    # Through detect_dataset (bin/evaluate.py), whose loading threads ask for proposals.
    dataset = load_images(paths, ("thing",))
    with pytest.raises(DatasetError) as raised:
        with ProposalStream(dataset, proposals_config(tmp_path / "cache_dataset"), False) as s:
            Detector(model, DETECTOR).detect_dataset(dataset, s, progress=False)
    assert str(raised.value) == messages[0]
    assert not multiprocessing.active_children()  # the failed streams stopped their workers


def test_an_images_boxes_do_not_depend_on_what_its_process_searched_before(tmp_path):
    # OpenCV ranks the boxes with the C library's process-wide rand(); it is reset before
    # every search (selective_search.py), so which worker takes an image does not matter.
    first, second = textured_images(tmp_path, 2)
    (after_another,) = selective_search.compute_selective_search(
        [first, second], tmp_path / "a", workers=0, progress=False)[1:]
    (alone,) = selective_search.compute_selective_search([second], tmp_path / "b", workers=0,
                                                         progress=False)
    np.testing.assert_array_equal(after_another, alone)


def test_without_the_rand_reset_the_order_would_depend_on_the_process(tmp_path, monkeypatch):
    """The control of the test above: it can fail."""
    monkeypatch.setattr(selective_search, "_SRAND", None)
    first, second = textured_images(tmp_path, 2)
    (after_another,) = selective_search.compute_selective_search(
        [first, second], tmp_path / "a", workers=0, progress=False)[1:]
    (alone,) = selective_search.compute_selective_search([second], tmp_path / "b", workers=0,
                                                         progress=False)
    assert not np.array_equal(after_another, alone)


def test_a_stream_left_early_stops_its_workers_and_caches_what_they_finished(tmp_path):
    paths = textured_images(tmp_path, 5)
    stream = selective_search.SelectiveSearchStream(paths, tmp_path / "cache", workers=2,
                                                    progress=False, ahead=2)
    with stream:
        next(stream)
    # The first image was handed out and the second was running when the stream closed:
    # both are cached. The third was just queued (it may have started); the last two
    # were never submitted (at most two images ahead).
    cached = {name.split("/")[-1][:-len(".npz")] for name in cached_boxes(tmp_path / "cache")}
    digests = [selective_search.image_digest(p) for p in paths]
    assert set(digests[:2]) <= cached <= set(digests[:3])
    with pytest.raises(StopIteration):  # closed: it hands out nothing more
        next(stream)
    assert len(cached_boxes(tmp_path / "cache")) == len(cached)
    assert not multiprocessing.active_children()  # no worker outlives the stream
