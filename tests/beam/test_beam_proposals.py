"""Selective search as a Beam pipeline (keras_frcnn/beam/proposals.py, bin/proposals.py
with Beam options): the cache it writes is the one compute_selective_search writes, byte
for byte, on DirectRunner in one process and in two worker processes; a rerun computes
nothing; a bad image goes to the dead-letter file and costs no other image its entry."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_frcnn.data.records import DatasetError
from keras_frcnn.proposals import selective_search
from tests.data.fixtures import write_voc
from tests.test_proposals import synthetic_image

pytest.importorskip("apache_beam")
from tests.beam.runners import IN_MEMORY, TWO_PROCESSES  # noqa: E402
from keras_frcnn.beam import PipelineFailed, pipeline_options  # noqa: E402
from keras_frcnn.beam.proposals import run_proposals_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four small PNGs and a JPEG wider than selective search's MAX_SIZE (downscaled, so
    cached under the other method key), and the cache compute_selective_search writes."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for k in range(4):
        paths.append(folder / f"im{k}.png")
        synthetic_image(paths[-1], k)
    wide = np.kron(np.random.default_rng(7).integers(0, 255, (6, 22, 3), np.uint8),
                   np.ones((50, 50, 1), np.uint8))  # 1100 x 300 blocks
    Image.fromarray(wide).save(folder / "wide.jpg", quality=90)
    paths.append(folder / "wide.jpg")
    reference = folder / "reference"
    selective_search.compute_selective_search(paths, reference, workers=0, progress=False)
    return paths, reference


def entries(folder):
    """{relative path: bytes} of the cache entries under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*.npz")}


@pytest.mark.parametrize("args", [IN_MEMORY, TWO_PROCESSES], ids=["in_memory", "2_processes"])
def test_beam_writes_the_entries_compute_selective_search_writes(images, tmp_path, args):
    paths, reference = images
    assert len({p.parent.name for p in reference.rglob("*.npz")}) == 2  # both method keys
    cache, dead = tmp_path / "cache", tmp_path / "dead.txt"
    counts = run_proposals_pipeline(pipeline_options(args), paths, cache, dead)
    assert counts == {"computed": 5, "cached": 0, "dead_letter": 0}
    assert entries(cache) == entries(reference)  # same keys, same bytes
    assert dead.read_text() == "" and not list(cache.rglob("*.tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npz")}
    again = run_proposals_pipeline(pipeline_options(args), paths, cache, dead)
    assert again == {"computed": 0, "cached": 5, "dead_letter": 0}  # a rerun computes nothing
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npz")} == stamps


def test_a_bad_image_goes_to_the_dead_letter_file_and_the_others_are_cached(images, tmp_path):
    paths, reference = images
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not a JPEG")
    missing = tmp_path / "missing.png"
    cache, dead = tmp_path / "cache", tmp_path / "dead.txt"
    counts = run_proposals_pipeline(pipeline_options(TWO_PROCESSES),
                                    [paths[0], corrupt, *paths[1:], missing], cache, dead)
    assert counts == {"computed": 5, "cached": 0, "dead_letter": 2}
    assert sorted(dead.read_text().splitlines()) == [
        f"{corrupt}: missing or not a decodable image", f"{missing}: image not found"]
    assert entries(cache) == entries(reference)
    # on_error=raise fails the pipeline in one line naming the image; finished entries stay.
    with pytest.raises(DatasetError) as raised:
        run_proposals_pipeline(pipeline_options(IN_MEMORY), [corrupt, *paths], tmp_path / "c2",
                               dead, on_error="raise")
    assert str(raised.value) == f"{corrupt}: missing or not a decodable image"
    done = entries(tmp_path / "c2")  # what finished before the failure (order is Beam's)
    assert all(entries(reference)[name] == data for name, data in done.items())
    again = run_proposals_pipeline(pipeline_options(IN_MEMORY), paths, tmp_path / "c2", dead)
    assert again == {"computed": 5 - len(done), "cached": len(done), "dead_letter": 0}
    assert entries(tmp_path / "c2") == entries(reference)


def test_a_cache_the_workers_cannot_write_fails_the_pipeline_in_one_line(images, tmp_path):
    paths, _ = images
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(PipelineFailed, match=r"^the pipeline failed: (NotADirectoryError|"
                                             r"FileExistsError): .*file"):
        run_proposals_pipeline(pipeline_options(IN_MEMORY), paths[:1],
                               tmp_path / "file" / "cache", tmp_path / "dead.txt")


def test_an_oversized_image_is_refused_from_its_header(images, tmp_path):
    paths, _ = images
    counts = run_proposals_pipeline(pipeline_options(IN_MEMORY), paths[-1:], tmp_path / "c",
                                    tmp_path / "dead.txt", max_pixels=1000)
    assert counts["dead_letter"] == 1
    assert "1100x300 (0.33 megapixels), above the limit" in (tmp_path / "dead.txt").read_text()


def test_pipeline_options_are_checked():
    assert pipeline_options(TWO_PROCESSES).get_all_options()["direct_num_workers"] == 2
    with pytest.raises(ValueError, match=r"^--direct_num_workrs=2: neither a flag of this "
                                         r"program nor a Beam pipeline option; did you mean "
                                         r"--direct_num_workers\?"):
        pipeline_options(["--runner=DirectRunner", "--direct_num_workrs=2"])


def run_program(*args, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "bin" / "proposals.py"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_the_program_runs_on_beam_given_pipeline_options(tmp_path):
    root = write_voc(tmp_path / "VOC", {"a": (96, 64, [("cat", 0, 10, 10, 40, 40)]),
                                        "b": (80, 80, [("dog", 0, 5, 5, 60, 70)]),
                                        "c": (80, 80, [("dog", 0, 5, 5, 60, 70)])},
                     split="train")
    (root / "JPEGImages" / "c.jpg").unlink()  # refused by the reader: on the dead letter
    rng = np.random.default_rng(0)
    jpegs = [root / "JPEGImages" / f"{image_id}.jpg" for image_id in ("a", "b")]
    for path in jpegs:  # texture so that selective search has regions to merge
        size = Image.open(path).size
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)
    common = ["--config=configs/demo.py", "--config.dataset.kind=voc",
              f"--config.dataset.root={root}", "--config.dataset.classes=('cat', 'dog')",
              f"--config.proposals.cache_dir={tmp_path / 'c'}", "--split=train",
              "--config.dataset.on_error=skip"]
    result = run_program(*common, *TWO_PROCESSES)
    assert result.returncode == 0, result.stderr[-3000:]
    dead = tmp_path / "c" / "dead_letter-VOC_train-train.txt"
    summary = [line for line in result.stdout.splitlines() if " on Beam in " in line]
    assert summary[0].startswith("VOC_train: 3 images on Beam in ") and summary[0].endswith(
        f" s: 2 computed, 0 already cached, 1 in the dead-letter file {dead}")
    assert dead.read_text() == (f"{root / 'Annotations' / 'c.xml'}: image not found (looked "
                                f"for {root / 'JPEGImages' / 'c.jpg'}, "
                                f"{root / 'JPEGImages' / 'c.jpg'})\n")
    assert result.stdout.strip().splitlines()[-1] == dead.read_text().strip()
    # The entries the program writes without Beam options.
    selective_search.compute_selective_search(jpegs, tmp_path / "plain", workers=0,
                                              progress=False)
    assert entries(tmp_path / "plain") == entries(tmp_path / "c")
    result = run_program(*common, "--runner=DirectRunner")
    assert f" s: 0 computed, 2 already cached, 1 in the dead-letter file {dead}" in result.stdout
    # A flag neither the program's nor Beam's: one line, the nearest option.
    result = run_program(*common, "--runer=DirectRunner")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --runer=DirectRunner: neither a flag of this program nor a Beam pipeline "
        "option; did you mean --runner? (--help lists the program's flags)")
    result = run_program(*common, "--runner=DirectRunner", "--splt=train")  # the program's
    assert result.stderr.strip().splitlines()[-1].endswith("did you mean --split? (--help "
                                                           "lists the program's flags)")
    result = run_program(*common, "--dead_letter=x.txt")
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --dead_letter is for runs on Beam")
    result = run_program(*common, "--runner", "DirectRunner")
    assert result.stderr.strip().splitlines()[-1] == (
        "error: unexpected arguments: ['DirectRunner'] (give pipeline options as --name=value)")
