"""ProposalStream: the proposals it hands out are those of proposals_for_dataset, filters
included, and it keeps none of them once pairs() has handed them out."""

import gc
import weakref

import numpy as np
import pytest

from keras_frcnn.configs import base_config
from keras_frcnn.data.folder import load_images
from keras_frcnn.proposals import selective_search, sources
from keras_frcnn.proposals.sources import ProposalStream, proposals_for_dataset


def small_object_images(folder, count=3):
    """PNGs of 8- to 32-pixel squares on grey: selective search finds boxes under R-CNN's
    20-pixel minimum in each."""
    from PIL import Image

    paths = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = np.full((96, 128, 3), 40, np.uint8)
        for size in (8, 12, 16, 24, 32):
            x, y = rng.integers(0, 128 - size), rng.integers(0, 96 - size)
            image[y:y + size, x:x + size] = rng.integers(0, 255, 3)
        paths.append(folder / f"im{seed}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def proposals_config(cache_dir, method="selective_search"):
    config = base_config().proposals
    config.method, config.cache_dir, config.workers = method, str(cache_dir), 0
    return config  # selective_search_min_size 20: R-CNN's filter, on


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_images(small_object_images(tmp_path_factory.mktemp("stream")))


def test_the_stream_applies_the_proposal_filters(dataset, tmp_path):
    """Catches a stream that hands out selective search's raw boxes: with R-CNN's 20-pixel
    minimum on, each image's raw boxes include smaller ones, which proposals_for_dataset
    drops and so must the stream."""
    config = proposals_config(tmp_path / "cache")
    expected = proposals_for_dataset(dataset, config, progress=False)
    raw = selective_search.compute_selective_search(
        [r.image_path for r in dataset.records], tmp_path / "cache", workers=0, progress=False)
    for record, boxes in zip(dataset.records, raw):  # the filter has something to drop
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1 < 20
        assert small.any() and len(expected[record.image_id]) == np.count_nonzero(~small)
    with ProposalStream(dataset, config, progress=False) as stream:
        pairs = list(stream.pairs())
    assert [record.image_id for record, _ in pairs] == list(expected)
    for record, boxes in pairs:
        np.testing.assert_array_equal(boxes, expected[record.image_id])
    with ProposalStream(dataset, config, progress=False) as stream:  # the mapping side
        for image_id, boxes in expected.items():
            np.testing.assert_array_equal(stream[image_id], boxes)


@pytest.mark.parametrize("method", ["selective_search", "dense"])
def test_pairs_keeps_none_of_the_proposals_it_handed_out(dataset, tmp_path, monkeypatch,
                                                         method):
    """Catches pairs() that leaves the handed-out boxes in the stream: a folder of photos'
    proposals would all be held until the stream is closed. Once the caller drops a
    pair's boxes nothing refers to them, nor to the raw boxes they were filtered from
    (the selective-search stream's); asking the mapping for them again is an error."""
    real_postprocess, raw = sources.postprocess_proposals, []

    def recording_postprocess(cfg, record, boxes):
        raw.append(weakref.ref(boxes))
        return real_postprocess(cfg, record, boxes)

    monkeypatch.setattr(sources, "postprocess_proposals", recording_postprocess)
    config = proposals_config(tmp_path / "cache", method)
    for run in ("computed", "from the cache"):  # selective search: computed, then cached
        handed_out, raw[:] = [], []
        with ProposalStream(dataset, config, progress=False) as stream:
            for record, boxes in stream.pairs():
                assert len(boxes) > 0
                handed_out.append(weakref.ref(boxes))
                del boxes
            gc.collect()
            assert [ref() for ref in handed_out] == [None] * len(dataset.records), run
            assert len(raw) == len(dataset.records) and [r() for r in raw] == [None] * len(raw)
            for record in dataset.records:
                with pytest.raises(KeyError, match=rf"{record.image_id}: its proposals were "
                                                   r"handed out by pairs\(\)"):
                    stream[record.image_id]
