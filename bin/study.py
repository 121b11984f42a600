"""Runs the paper's design evaluations (section 5, and section 2.3's sampling) in
miniature: each experiment trains and tests its variants from several seeds and
reports the mean and range of mAP beside the paper's numbers, with a verdict.

    python bin/study.py --experiments=multitask
    python bin/study.py --experiments=all --seeds=3 --report=docs/study.md \\
        --figure_dir=docs/figures
    python bin/study.py --experiments=finetune --config=configs/kangaroo.py \\
        --config.dataset.root=data/kangaroo

Experiments (docs/study.md says what each asks and what it found on the demo):
  sampling   section 2.3: R = 128 RoIs from N = 2, 8 and 32 images, same steps; and N = 2
             given N = 8's images (4x the steps)
  multitask  Table 6: lambda = 1, lambda = 0, stage-wise; with and without box regression
  scales     Table 7: one training/test scale against the five-scale pyramid
  data       section 5.3: mAP against the share of training images (25 / 50 / 100 %)
  svm        Table 8: post-hoc one-vs-rest SVMs with hard negatives against the softmax
  proposals  section 5.5, Figure 3: selective search counts, dense boxes added, dense
             only; mAP, Average Recall and proposals per image
  finetune   Table 5: head only, the default frozen set, nothing frozen (needs a
             backbone with ImageNet weights: configs/kangaroo.py)
  svd        Table 4: fc6/fc7 truncated-SVD ranks against mAP and detection time

Every model is kept in --study_dir (runs/<kind>-<hash>/, a training workdir): a run
that finished is reused, a stopped one resumes, and experiments that need the same
model (the config itself at a seed) share it. Ctrl-C stops after the current step;
run the same command again to go on. The data is --config's (default: the embedded
demo); any --config.* override applies to every variant.
"""

import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from keras_frcnn import cli
from keras_frcnn.study.experiments import NAMES, Options

# The repository's configs/ (an editable install, as scripts/install.sh makes, keeps it).
DEMO_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo.py")
_CONFIG = config_flags.DEFINE_config_file("config", DEMO_CONFIG,
                                          "base experiment config (default: the demo)",
                                          lock_config=True)
_EXPERIMENTS = flags.DEFINE_list(
    "experiments", None, f"experiments to run, comma-separated, or 'all': {', '.join(NAMES)}")
_STUDY_DIR = flags.DEFINE_string("study_dir", "workdirs/study",
                                 "where runs, results and the report are kept")
_SEEDS = flags.DEFINE_integer("seeds", 3, "seeds per variant (0, 1, ...)")
_REPORT = flags.DEFINE_string("report", None, "Markdown report (default <study_dir>/study.md); "
                              "it covers every experiment the study folder holds")
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "where each experiment's results (<name>.json) are kept (default "
    "<study_dir>/results); rows found there for the same model and test are reused "
    "without their models: docs/study/results holds docs/study.md's")
_FIGURE_DIR = flags.DEFINE_string("figure_dir", None, "plots (default <study_dir>/figures)")
_LIST = flags.DEFINE_bool("list", False, "list the experiments and their variants, run nothing")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "rewrite the report (and its plots) from "
                                 "the results the study folder holds, run nothing")
_SAMPLING = flags.DEFINE_list("sampling_images", ["2", "8", "32"],
                              "sampling: images per minibatch N")
_DATA = flags.DEFINE_list("data_shares", ["0.25", "0.5", "1"],
                          "data: shares of the training images")
_COUNTS = flags.DEFINE_list("proposal_counts", ["10", "25", "50", "100", "0"],
                            "proposals: selective search's first k per image (0: the "
                            "config's proposals.top_k; the demo's images have 40-300)")
_DENSE = flags.DEFINE_list("dense_added", ["500", "2000", "-1"],
                           "proposals: dense boxes added to the selective-search boxes (-1: "
                           "all, about 7,000 on a demo image)")


def _numbers(flag, kind):
    try:
        return tuple(kind(v) for v in flag.value)
    except ValueError:
        sys.exit(f"error: --{flag.name}={','.join(flag.value)}: give {kind.__name__} values "
                 "separated by commas")


def main(argv):
    logging.getLogger("keras_frcnn").setLevel(logging.INFO)
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.files import WorkdirBusy
    from keras_frcnn.study import describe, run_study
    from keras_frcnn.training import TrainingDiverged
    from keras_frcnn.workdirs import NoUsableCheckpoint

    config = _CONFIG.value
    try:
        options = Options(sampling_images=_numbers(_SAMPLING, int),
                          data_shares=_numbers(_DATA, float),
                          proposal_counts=_numbers(_COUNTS, int),
                          dense_added=_numbers(_DENSE, int))
    except ValueError as err:
        sys.exit(f"error: {err}")
    if _LIST.value:
        print("\n".join(describe(config, options)))
        return
    if _REPORT_ONLY.value:
        from keras_frcnn.study.report import load_results, write_report

        root = Path(_STUDY_DIR.value)
        results = Path(_RESULTS_DIR.value or root / "results")
        if not results.is_dir() or not load_results(root, results):
            sys.exit(f"error: {results} holds no results (<experiment>.json); run "
                     "experiments first, or give --results_dir")
        report = _REPORT.value or root / "study.md"
        write_report(load_results(root, results), report, _FIGURE_DIR.value or root / "figures",
                     config=config)
        print(f"report written to {report}")
        return
    names = _EXPERIMENTS.value
    if not names:
        sys.exit(f"error: give --experiments: one or more of {', '.join(NAMES)}, or all")
    if "all" in names and len(names) > 1:
        sys.exit(f"error: --experiments={','.join(names)}: give all alone, or name experiments")
    everything = names == ["all"]
    if everything:
        names = list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        sys.exit(f"error: --experiments: no experiment {', '.join(unknown)}; choose from "
                 f"{', '.join(NAMES)} or all")
    try:
        run_study(config, _STUDY_DIR.value, names, _SEEDS.value, options, _REPORT.value,
                  _FIGURE_DIR.value, command=_command(sys.argv[1:]),
                  progress=sys.stderr.isatty(), skip=everything,
                  results_dir=_RESULTS_DIR.value)
    except (DatasetError, NoUsableCheckpoint, TrainingDiverged, ValueError, WorkdirBusy) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt as err:
        sys.exit(f"\ninterrupted{': ' + str(err) if str(err) else ''}; finished runs are kept "
                 f"in {_STUDY_DIR.value}: run the same command again to go on")
    print(f"report written to {_REPORT.value or Path(_STUDY_DIR.value) / 'study.md'}")


def _command(args):
    """The command line as the report shows it, without where the report goes."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--report", "--figure_dir", "--results_dir"):
            skip = True  # its value follows as the next word
            continue
        if not arg.startswith(("--report=", "--figure_dir=", "--results_dir=")):
            kept.append(arg)
    return " ".join(["frcnn-study", *kept])


def run():
    """Entry point of the console script frcnn-study."""
    cli.run(main, required=())


if __name__ == "__main__":
    run()
