"""Proposals: release .mat files, filtering, dense boxes, cached selective search."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from keras_frcnn.data.images import read_image_bgr
from keras_frcnn.data.records import DatasetError
from keras_frcnn.proposals import dense, mat, postprocess, selective_search

SHARED_DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "fast_rcnn_demo" / "fast-rcnn"


def test_dataset_mat_converts_yxyx_one_based(tmp_path):
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0] = np.array([[1, 2, 10, 20], [5, 5, 5, 5]], np.uint16)  # (y1, x1, y2, x2) 1-based
    cells[0, 1] = np.zeros((0, 4), np.uint16)
    images = np.empty((2, 1), dtype=object)
    images[0, 0], images[1, 0] = np.array(["000005"]), np.array(["000007"])
    scipy.io.savemat(tmp_path / "voc_2007_test.mat", {"boxes": cells, "images": images})
    boxes = mat.load_dataset_boxes(tmp_path / "voc_2007_test.mat")
    assert list(boxes) == ["000005", "000007"]
    np.testing.assert_array_equal(boxes["000005"], [[1, 0, 19, 9], [4, 4, 4, 4]])
    assert boxes["000007"].shape == (0, 4)
    # Without an 'images' key the ids come from the caller, counts must match.
    scipy.io.savemat(tmp_path / "noids.mat", {"boxes": cells})
    assert list(mat.load_dataset_boxes(tmp_path / "noids.mat", ["a", "b"])) == ["a", "b"]
    with pytest.raises(DatasetError, match="2 box arrays for 3 image ids"):
        mat.load_dataset_boxes(tmp_path / "noids.mat", ["a", "b", "c"])


def test_demo_mat_is_already_zero_based(tmp_path):
    scipy.io.savemat(tmp_path / "x_boxes.mat", {"boxes": np.array([[0, 1, 9, 19]], np.uint16)})
    np.testing.assert_array_equal(mat.load_demo_boxes(tmp_path / "x_boxes.mat"), [[0, 1, 9, 19]])


@pytest.mark.skipif(not SHARED_DEMO.is_dir(), reason="../shared/data/fast_rcnn_demo not present")
def test_release_demo_files():
    from PIL import Image

    for image_id in ("000004", "001551"):
        boxes = mat.load_demo_boxes(SHARED_DEMO / f"{image_id}_boxes.mat")
        width, height = Image.open(SHARED_DEMO / f"{image_id}.jpg").size
        assert len(boxes) > 1000
        assert boxes[:, 0].min() == 0 and boxes[:, 2].max() == width - 1
        assert boxes[:, 3].max() == height - 1 and (boxes[:, 2:] >= boxes[:, :2]).all()


def test_bad_mat_files(tmp_path):
    scipy.io.savemat(tmp_path / "wrong_key.mat", {"rects": np.zeros((3, 4))})
    with pytest.raises(DatasetError, match="no 'boxes' key .*'rects'"):
        mat.load_demo_boxes(tmp_path / "wrong_key.mat")
    scipy.io.savemat(tmp_path / "wrong_shape.mat", {"boxes": np.zeros((3, 5))})
    with pytest.raises(DatasetError, match=r"shape \(3, 5\), expected \[n, 4\]"):
        mat.load_demo_boxes(tmp_path / "wrong_shape.mat")
    (tmp_path / "garbage.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match="garbage.mat"):
        mat.load_demo_boxes(tmp_path / "garbage.mat")
    with pytest.raises(DatasetError, match="not found"):
        mat.load_demo_boxes(tmp_path / "missing.mat")


def test_postprocess_clips_dedups_filters_and_keeps_order():
    boxes = np.array([
        [10, 10, 50, 50],
        [-5, -5, 20, 20],     # clipped to (0, 0, 20, 20)
        [10.2, 9.8, 50, 50],  # duplicate of the first after rounding
        [30, 30, 30.5, 60],   # 1.5 pixels wide: too small
        [0, 0, 20, 20],       # duplicate of the clipped second
        [60, 0, 99, 39],
    ], np.float32)
    out = postprocess.postprocess(boxes, width=100, height=80)
    np.testing.assert_array_equal(out, [[10, 10, 50, 50], [0, 0, 20, 20], [60, 0, 99, 39]])
    assert len(postprocess.postprocess(boxes, 100, 80, top_k=2)) == 2


def test_selective_search_drops_boxes_under_rcnns_20_pixels(tmp_path, monkeypatch):
    # The release's proposals went through R-CNN's selective_search_boxes.m, which drops
    # boxes under 20 px wide or high; the release then filters at min_size 2 only.
    from keras_frcnn.configs import base_config
    from keras_frcnn.data.records import Dataset, ImageRecord
    from keras_frcnn.proposals import sources

    raw = np.array([[0, 0, 18, 40],  # 19 px wide: dropped
                    [0, 290, 119, 299],  # a 10 px strip along the bottom edge: dropped
                    [5, 5, 24, 24],  # 20 x 20: kept
                    [0, 0, 1, 1],  # 2 x 2: kept by the release's own filter only
                    [10, 10, 99, 199]], np.float32)
    record = ImageRecord("a", str(tmp_path / "a.jpg"), 120, 300, np.zeros((0, 4), np.float32),
                         np.zeros(0, np.int32), np.zeros(0, bool))
    dataset = Dataset("t", ("x",), (record,))
    monkeypatch.setattr(selective_search, "compute_selective_search", lambda *a, **k: [raw])
    scipy.io.savemat(tmp_path / "a_boxes.mat", {"boxes": raw.astype(np.uint16)})
    config = base_config().proposals
    boxes = sources.proposals_for_dataset(dataset, config, progress=False)["a"]
    np.testing.assert_array_equal(boxes, raw[[2, 4]])
    config.selective_search_min_size = 0  # off: only min_size applies
    boxes = sources.proposals_for_dataset(dataset, config, progress=False)["a"]
    np.testing.assert_array_equal(boxes, raw)
    config.selective_search_min_size, config.method, config.mat_dir = 20, "demo_mat", str(tmp_path)
    boxes = sources.proposals_for_dataset(dataset, config, progress=False)["a"]
    np.testing.assert_array_equal(boxes, raw)  # other sources are not R-CNN's selective search


def test_dense_boxes_cover_scales_ratios_and_edges():
    boxes = dense.dense_boxes(500, 375)
    assert 40_000 < len(boxes) < 50_000  # the paper: about 45k per image
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 499).all() and (boxes[:, 3] <= 374).all()
    assert set(np.round(h / w, 1)) == {0.5, 1.0, 2.0}
    assert (boxes[:, 2] == 499).any() and (boxes[:, 3] == 374).any()  # flush with the edges
    assert len(dense.dense_boxes(20, 20)) == 0  # nothing fits


def synthetic_image(path, seed):
    rng = np.random.default_rng(seed)
    image = np.full((96, 128, 3), 40, np.uint8)
    for _ in range(4):
        x, y = rng.integers(0, 100), rng.integers(0, 70)
        image[y:y + 24, x:x + 24] = rng.integers(0, 255, 3)
    from PIL import Image

    Image.fromarray(image).save(path)


def test_selective_search_is_cached_and_resumable(tmp_path):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"im{k}.png")
        synthetic_image(paths[-1], k)
    cache_dir = tmp_path / "cache"
    first = selective_search.compute_selective_search(paths[:2], cache_dir, workers=2,
                                                      progress=False)
    entries = sorted((cache_dir).rglob("*.npz"))
    assert len(entries) == 2 and not list(cache_dir.rglob("*.tmp"))
    for boxes, path in zip(first, paths):
        assert len(boxes) > 0 and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (boxes[:, 2] <= 127).all() and (boxes[:, 3] <= 95).all()
    stamps = [e.stat().st_mtime_ns for e in entries]
    # A later run with one more image computes only that one.
    again = selective_search.compute_selective_search(paths, cache_dir, workers=0, progress=False)
    assert [e.stat().st_mtime_ns for e in entries] == stamps
    assert len(list(cache_dir.rglob("*.npz"))) == 3
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # The same image under another name hits the cache (keyed by content).
    shutil.copy(paths[0], tmp_path / "copy.png")
    copy = selective_search.compute_selective_search([tmp_path / "copy.png"], cache_dir,
                                                     workers=0, progress=False)
    np.testing.assert_array_equal(copy[0], first[0])
    assert len(list(cache_dir.rglob("*.npz"))) == 3
    # A corrupt cache entry is recomputed, not trusted, and written back; the other entry
    # is served from the cache, untouched.
    stamp_of = {e.stem: stamp for e, stamp in zip(entries, stamps)}
    corrupt, intact = (e for p in paths[:2] for e in entries
                       if e.stem == selective_search.image_digest(p))
    corrupt.write_bytes(b"garbage")
    fixed = selective_search.compute_selective_search(paths[:2], cache_dir, workers=0,
                                                      progress=False)
    np.testing.assert_array_equal(fixed[1], first[1])
    # The same boxes again (OpenCV ranks them with an unseeded random number, so their
    # order can change from one computation to the next), and the entry holds them.
    np.testing.assert_array_equal(np.sort(fixed[0].view("f4,f4,f4,f4"), axis=0),
                                  np.sort(first[0].view("f4,f4,f4,f4"), axis=0))
    with np.load(corrupt, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["boxes"], fixed[0])
    assert intact.stat().st_mtime_ns == stamp_of[intact.stem]
    assert not list(cache_dir.rglob("*.tmp"))


def test_selective_search_bad_inputs(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        selective_search.compute_selective_search([tmp_path / "broken.jpg"], tmp_path / "c",
                                                  workers=0, progress=False)
    with pytest.raises(DatasetError, match="image not found"):
        selective_search.compute_selective_search([tmp_path / "nope.jpg"], tmp_path / "c",
                                                  workers=0, progress=False)
    with pytest.raises(ValueError, match="mode"):
        selective_search.selective_search(np.zeros((8, 8, 3), np.uint8), "slow")


def test_truncated_image_decodes_what_is_there(tmp_path, caplog):
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="keras_frcnn.proposals"):
        image = read_image_bgr(tmp_path / "half.jpg")
        read_image_bgr(tmp_path / "half.jpg")
    assert image.shape == (60, 80, 3)
    assert [r.message for r in caplog.records].count(
        f"{tmp_path / 'half.jpg'}: truncated or damaged image, decoded what is there") == 1


def test_a_bad_image_among_many_stops_the_workers_with_its_name(tmp_path):
    paths = []
    for k in range(6):
        paths.append(tmp_path / f"im{k}.png")
        synthetic_image(paths[-1], k)
    (tmp_path / "im3.png").write_bytes(b"garbage, not an image")
    with pytest.raises(DatasetError, match="im3.png"):
        selective_search.compute_selective_search(paths, tmp_path / "c", workers=2, progress=False)
