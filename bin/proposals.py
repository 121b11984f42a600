"""Precomputes object proposals for a dataset split into the proposal cache.

    python bin/proposals.py --config=configs/demo.py --split=train
    python bin/proposals.py --config=configs/kangaroo.py \
        --config.dataset.root=data/kangaroo --config.proposals.mode=quality

Selective search results are cached per image (keyed by content and method),
so training and detection later reuse them; an interrupted run resumes.

On Apache Beam (the extra: pip install ".[beam]"): any Beam pipeline option, given
as --name=value, runs the same search as a Beam pipeline on that runner, writing
the same cache entries (docs/scale.md). Images already cached are skipped. A bad
image is listed in the dead-letter file (--dead_letter) with
--config.dataset.on_error=skip, and fails the pipeline naming it otherwise.

    python bin/proposals.py --config=configs/demo.py --split=train \
        --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2
    python bin/proposals.py --config=configs/coco_vgg16.py --split=train \
        --config.proposals.cache_dir=gs://BUCKET/proposals \
        --runner=DataflowRunner --project=PROJECT --region=REGION \
        --temp_location=gs://BUCKET/tmp
"""

import sys

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_SPLIT = flags.DEFINE_string("split", None, "dataset split (default: the config's train split)")
_DEAD_LETTER = flags.DEFINE_string(
    "dead_letter", None, "with Beam options: the text file listing the images that could not "
    "be searched, one line each (default <cache>/dead_letter-<dataset>-<split>.txt)")


def main(argv):
    from keras_frcnn.configs import split_sections
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.proposals.sources import summarize, timed_proposals

    config = _CONFIG.value
    beam_args = argv[1:]
    if _DEAD_LETTER.value and not beam_args:
        sys.exit("error: --dead_letter is for runs on Beam: add Beam pipeline options (e.g. "
                 "--runner=DirectRunner)")
    print(config.dataset, config.proposals, sep="\n")
    split = _SPLIT.value or config.dataset.train_split
    try:
        dataset_config, proposals_config = split_sections(config, split)
        options = _beam_options(beam_args, proposals_config)
        dataset = load_dataset(dataset_config, split)
        if options is not None:
            return _run_on_beam(options, dataset, proposals_config, split,
                                config.dataset.on_error or "raise")
        proposals, seconds = timed_proposals(dataset, proposals_config, split=split)
    except (DatasetError, OSError, ValueError) as err:  # e.g. --split=bogus
        sys.exit(f"error: {err}")
    print(f"{dataset.name}: {summarize(proposals, seconds)}")


def _beam_options(args, proposals_config):
    """Beam's PipelineOptions of ``args``, or None without any; one line if Beam is
    missing or the method is not selective search."""
    if not args:
        return None
    from keras_frcnn.beam import BeamMissing, pipeline_options

    try:
        options = pipeline_options(args, cli.program_flags(main))
    except BeamMissing as err:
        sys.exit(f"error: {err}")
    if proposals_config.method != "selective_search":
        raise ValueError(f"Beam options ({args[0]} ...) run selective search as a pipeline; "
                         f"proposals.method={proposals_config.method!r} computes nothing to "
                         "spread: drop them, or set --config.proposals.method=selective_search")
    return options


def _run_on_beam(options, dataset, proposals_config, split, on_error):
    import logging
    import time

    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' INFO chatter
    from keras_frcnn.beam.proposals import run_proposals_pipeline
    from keras_frcnn.files import join, read_bytes
    from keras_frcnn.proposals.sources import proposal_cache_dir

    cache_dir = proposal_cache_dir(proposals_config)
    dead_letter = _DEAD_LETTER.value or str(join(cache_dir, f"dead_letter-{dataset.name}-"
                                                            f"{split}.txt"))
    from keras_frcnn.beam import PipelineFailed

    start = time.perf_counter()
    refused = dataset.metadata.get("skipped", ())  # the reader left them out (on_error=skip)
    try:
        counts = run_proposals_pipeline(options, [r.image_path for r in dataset.records],
                                        cache_dir, dead_letter, proposals_config.mode,
                                        max_pixels=dataset.max_image_pixels,
                                        orient=dataset.exif_orientation, on_error=on_error,
                                        refused=refused)
    except PipelineFailed as err:
        sys.exit(f"error: {err}")
    seconds = time.perf_counter() - start
    count = len(dataset.records) + len(refused)
    print(f"{dataset.name}: {count} image{'s' * (count != 1)} on Beam in {seconds:.1f} s: "
          f"{counts['computed']} computed, {counts['cached']} already cached, "
          f"{counts['dead_letter']} in the dead-letter file {dead_letter}")
    if counts["dead_letter"]:
        lines = read_bytes(dead_letter).decode().splitlines()
        print("\n".join(lines[:10] + ([f"... and {len(lines) - 10} more"] if len(lines) > 10
                                      else [])))


def run():
    """Entry point of the console script frcnn-proposals."""
    cli.run(main, pass_through=True)


if __name__ == "__main__":
    run()
