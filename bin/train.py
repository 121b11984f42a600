"""Trains a Fast R-CNN detector.

    python bin/train.py --config=configs/demo.py --workdir=workdirs/demo
    python bin/train.py --config=configs/voc07_vgg16.py --workdir=... --config.train.base_lr=0.002

Running again with the same --workdir resumes from its latest checkpoint (with
the settings it recorded; a larger train.steps trains further). Other settings are
refused, naming them; --overwrite starts over.
See keras_frcnn/workdirs.py for what the workdir holds, docs/training.md for
stopping, resuming and damaged files.
"""

import logging
import sys

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and the model go")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "delete what an earlier training wrote in "
                               "--workdir (checkpoints, model, record) and start over")


def main(argv):
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.files import WorkdirBusy
    from keras_frcnn.training import TrainingDiverged, train
    from keras_frcnn.workdirs import NoUsableCheckpoint

    config = _CONFIG.value
    print(config)
    try:
        result = train(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
    except (DatasetError, NoUsableCheckpoint, TrainingDiverged, ValueError, WorkdirBusy) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:  # before the first step: nothing to save (proposals are cached)
        sys.exit("\ninterrupted while preparing the data; run the same command again")
    if result["interrupted"]:  # on a line of its own: the progress bar's is unfinished
        print(f"\ninterrupted after step {result['step']} of {config.train.steps}: saved the "
              f"training state in {result['checkpoint']} (no model.keras yet); run the same "
              f"command again to go on from step {result['step'] + 1}")
    else:
        print(f"finished {result['step']} steps; model in {_WORKDIR.value}/model.keras")


def run():
    """Entry point of the console script frcnn-train."""
    cli.run(main, required=("config", "workdir"))


if __name__ == "__main__":
    run()
