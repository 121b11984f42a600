"""Paths beyond the local disk (keras_frcnn.files): images and the proposal cache read
and written through tf.io.gfile, tested on TensorFlow's in-memory file system
(``ram://``), which behaves as gs:// or s3:// do for these calls."""

import hashlib
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_frcnn import files
from keras_frcnn.data import images
from keras_frcnn.data.records import DatasetError
from keras_frcnn.proposals import selective_search
from tests.test_proposals import synthetic_image


def put(url, data):
    with tf.io.gfile.GFile(url, "wb") as file:
        file.write(data)


def test_file_helpers_read_and_write_urls(request):
    root = f"ram://{request.node.name}"
    assert files.is_url(root + "/a") and not files.is_url("relative/a")
    assert not files.is_url(files.join("/local", "a")) and files.join(root + "/", "b", "c.npz") \
        == f"{root}/b/c.npz"
    assert files.parent(f"{root}/b/c.npz") == f"{root}/b"
    files.make_dirs(f"{root}/b")
    files.atomic_write(f"{root}/b/c.bin", b"x" * 3_000_000)
    files.atomic_write(f"{root}/b/c.bin", "replaced")  # over an existing file
    assert files.read_bytes(f"{root}/b/c.bin") == b"replaced"
    assert tf.io.gfile.listdir(f"{root}/b") == ["c.bin"]  # no temporary file left
    assert files.is_file(f"{root}/b/c.bin") and not files.is_file(f"{root}/b")
    assert files.file_digest(f"{root}/b/c.bin") == hashlib.sha256(b"replaced").hexdigest()
    with pytest.raises(FileNotFoundError, match=f"{root}/nope: no such file"):
        files.read_bytes(f"{root}/nope")


def test_images_decode_from_urls_as_from_local_files(tmp_path, request):
    root = f"ram://{request.node.name}"
    local = tmp_path / "a.png"
    synthetic_image(local, 3)
    put(f"{root}/a.png", local.read_bytes())
    expected = images.read_image_bgr(local)
    np.testing.assert_array_equal(images.read_image_bgr(f"{root}/a.png"), expected)
    assert images.image_size(f"{root}/a.png") == (128, 96)
    assert images.probe_image(f"{root}/a.png", expected_size=(128, 96)) == (128, 96)
    small, full = images.read_image_bgr_within(f"{root}/a.png", 64)
    assert full == (128, 96) and small.shape == (48, 64, 3)
    with pytest.raises(DatasetError, match=r"a.png: image is 128x96 .* above the limit"):
        images.read_image_bgr(f"{root}/a.png", max_pixels=1000)
    with pytest.raises(DatasetError, match=f"^{root}/nope.png: missing or not a decodable"):
        images.read_image_bgr(f"{root}/nope.png")
    # A truncated JPEG decodes as far as it goes, as a local one does.
    buffer = io.BytesIO()
    Image.fromarray(expected[..., ::-1]).save(buffer, "JPEG")
    put(f"{root}/half.jpg", buffer.getvalue()[:len(buffer.getvalue()) // 2])
    (tmp_path / "half.jpg").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    np.testing.assert_array_equal(images.read_image_bgr(f"{root}/half.jpg"),
                                  images.read_image_bgr(tmp_path / "half.jpg"))


def test_selective_search_reads_and_caches_on_urls(tmp_path, request):
    root = f"ram://{request.node.name}"
    local = []
    for k in range(2):
        local.append(tmp_path / f"im{k}.png")
        synthetic_image(local[-1], k)
        put(f"{root}/images/im{k}.png", local[-1].read_bytes())
    urls = [f"{root}/images/im{k}.png" for k in range(2)]
    expected = selective_search.compute_selective_search(local, tmp_path / "cache", workers=0,
                                                         progress=False)
    # workers=2 is overridden: ram:// files are this process's alone.
    boxes = selective_search.compute_selective_search(urls, f"{root}/cache", workers=2,
                                                      progress=False)
    for a, b in zip(boxes, expected):
        np.testing.assert_array_equal(a, b)
    for path in sorted((tmp_path / "cache").rglob("*.npz")):  # the same entries, same bytes
        url = f"{root}/cache/{path.parent.name}/{path.name}"
        assert files.read_bytes(url) == path.read_bytes()
    # A rerun reads the cache, and Beam's unit of work finds the entries there.
    state, cached = selective_search.search_into_cache(urls[0], f"{root}/cache")
    assert state == "cached"
    np.testing.assert_array_equal(cached, expected[0])
    again = selective_search.compute_selective_search(urls, f"{root}/cache", progress=False)
    np.testing.assert_array_equal(again[1], expected[1])
    with pytest.raises(DatasetError, match="image not found"):
        selective_search.compute_selective_search([f"{root}/images/nope.png"], f"{root}/cache",
                                                  progress=False)


def test_the_places_that_stay_local_refuse_urls_in_one_line():
    """A training workdir (flock, renamed checkpoints), an evaluation's output folder
    (replaced by a rename) and bin/detect.py's pictures stay on a local or mounted file
    system (docs/scale.md); a URL there would have become a local folder named "gs:"."""
    from keras_frcnn import training
    from keras_frcnn.configs import base_config
    from keras_frcnn.detection.run import check_output_dir
    from keras_frcnn.evaluation.run import check_run_folder

    with pytest.raises(ValueError, match=r"^workdir gs://b/w: must be a local \(or mounted\) "
                                         r"folder, not a URL; give a local or mounted"):
        training.train(base_config(), "gs://b/w")
    with pytest.raises(ValueError, match=r"^output folder gs://b/e: must be a local"):
        check_run_folder("gs://b/e")
    with pytest.raises(ValueError, match=r"^--output_dir gs://b/d: must be a local .*run "
                                         r"detection on Beam"):
        check_output_dir("gs://b/d")
