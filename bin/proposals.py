"""Precomputes object proposals for a dataset split into the proposal cache.

    python bin/proposals.py --config=configs/demo.py --split=train
    python bin/proposals.py --config=configs/kangaroo.py \
        --config.dataset.root=data/kangaroo --config.proposals.mode=quality

Selective search results are cached per image (keyed by content and method),
so training and detection later reuse them; an interrupted run resumes.
"""

import sys

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_SPLIT = flags.DEFINE_string("split", None, "dataset split (default: the config's train split)")


def main(argv):
    from keras_frcnn.configs import split_sections
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.proposals.sources import summarize, timed_proposals

    config = _CONFIG.value
    print(config.dataset, config.proposals, sep="\n")
    split = _SPLIT.value or config.dataset.train_split
    try:
        dataset_config, proposals_config = split_sections(config, split)
        dataset = load_dataset(dataset_config, split)
        proposals, seconds = timed_proposals(dataset, proposals_config, split=split)
    except (DatasetError, FileNotFoundError, ValueError) as err:  # e.g. --split=bogus
        sys.exit(f"error: {err}")
    print(f"{dataset.name}: {summarize(proposals, seconds)}")


def run():
    """Entry point of the console script frcnn-proposals."""
    cli.run(main)


if __name__ == "__main__":
    run()
