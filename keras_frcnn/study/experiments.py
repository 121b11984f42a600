"""The paper's design evaluations (section 5, and 2.3's sampling) as study experiments.

An experiment is a set of variants of one base config (the embedded demo by default),
each trained and tested from several seeds, and comparisons between them that the
paper made. The paper's numbers are VOC 2007 mAP of models S, M and L on a GPU; ours
are a small CPU model on the demo, so a comparison reports the *direction* and size of
a difference, beside the paper's.

Each variant changes config keys (``overrides``, dotted names) and is tested one or
more ways (``tests``: name -> test-section overrides). ``kind`` says how its model is
made: "train" (bin/train.py's training), "stagewise" (the model of variant ``source``,
then only bbox_pred trained), "svm" (one-vs-rest SVMs trained on the features of
``source``'s model), "svd" (``source``'s model compressed by truncated SVD, ranks in
``overrides["model.svd"]``).
"""

import dataclasses

NAMES = ("sampling", "multitask", "scales", "data", "svm", "proposals", "finetune", "svd")
PLAIN = {"": {}}  # one test, the config's own settings
WITH_AND_WITHOUT_REGRESSION = {"bbox_reg": {}, "no_bbox_reg": {"bbox_reg": False}}
# The release's test.py for both arms of Table 8: no score threshold (a margin can be
# negative) and hard NMS; a config's "default" mode or Soft-NMS would cut SVM margins at 0.
RELEASE_POSTPROCESSING = {"frcnn": {"mode": "frcnn", "soft_nms_sigma": 0.0}}
PAPER_SCALES = (480, 576, 688, 864, 1200)  # section 5.2's pyramid (S and M), for 600 ...
PAPER_SCALE, PAPER_PYRAMID_MAX = 600, 2000  # ... and its single scale and longest side


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # short, used in folder names
    label: str  # what the report shows
    overrides: dict = dataclasses.field(default_factory=dict)  # dotted config keys
    tests: dict = dataclasses.field(default_factory=lambda: dict(PLAIN))
    kind: str = "train"  # train | stagewise | svm | svd
    source: str = ""  # the variant whose model stagewise, svm and svd start from
    paper: dict = dataclasses.field(default_factory=dict)  # test name -> the paper's number(s)
    seeds: int = 0  # > 0: at most this many seeds (cost); 0: the study's


CLAIMS = ("higher", "lower", "not lower", "same")


class CannotRun(ValueError):
    """The config cannot run this experiment (not a bad flag): ``--experiments=all``
    leaves such an experiment out with a warning, where a bad flag stays an error."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The paper's finding that (variant a, test a) scores ``claim`` against (b, test b):
    "higher", "lower", "not lower" (no worse) or "same" (no meaningful difference)."""

    label: str
    a: tuple  # (variant, test)
    b: tuple
    claim: str
    paper: str  # the paper's numbers for this difference


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    section: str  # the paper's section or table
    question: str
    variants: tuple
    comparisons: tuple = ()
    proposal_quality: bool = False  # report AR and proposals per image (section 5.5)
    needs_pretrained: bool = False  # refuses a config without backbone weights

    def variant(self, name):
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class Options:
    """The sweeps' values (bin/study.py flags)."""

    sampling_images: tuple = (2, 8, 32)  # N, at R = 128 RoIs
    data_shares: tuple = (0.25, 0.5, 1.0)
    proposal_counts: tuple = (10, 25, 50, 100, 0)  # selective search's first k (0: the config's)
    dense_added: tuple = (500, 2000, -1)  # dense boxes added to selective search (-1: all)
    svd_fractions: tuple = ((1 / 2, 1 / 4), (1 / 4, 1 / 16), (1 / 8, 1 / 32))  # fc6, fc7

    def __post_init__(self):
        def check(name, values, valid, what):
            values = tuple(values)
            if not values:
                raise ValueError(f"--{name} is empty: give {what}")
            bad = [v for v in values if isinstance(v, bool) or not valid(v)]
            if bad:
                raise ValueError(f"--{name}: {bad[0]!r} is not {what}")
            if len(set(values)) != len(values):
                raise ValueError(f"--{name} repeats a value: {','.join(map(str, values))}")

        check("sampling_images", self.sampling_images, lambda v: isinstance(v, int) and v > 0,
              "a positive number of images")
        check("data_shares", self.data_shares,
              lambda v: isinstance(v, (int, float)) and 0 < v <= 1, "a share in (0, 1]")
        if len({int(round(100 * s)) for s in self.data_shares}) != len(self.data_shares):
            raise ValueError(f"--data_shares {self.data_shares}: shares must differ by at "
                             "least one per cent")
        check("proposal_counts", self.proposal_counts, lambda v: isinstance(v, int) and v >= 0,
              "a number of boxes (0: the config's top_k)")
        check("dense_added", self.dense_added, lambda v: isinstance(v, int) and v >= -1,
              "a number of dense boxes (-1: all)")
        check("svd_fractions", self.svd_fractions,
              lambda v: len(v) == 2 and all(0 < f <= 1 for f in v), "two fractions in (0, 1]")


def _percent(share):
    return f"{100 * share:g} %"


EXPENSIVE_ARM_SEEDS = 1


def sampling(config, options):
    rois = config.sampling.rois_per_batch
    uneven = [n for n in options.sampling_images if rois % n]
    if uneven:
        raise ValueError(f"--sampling_images={uneven[0]} does not divide the "
                         f"{rois} RoIs of a minibatch (sampling.rois_per_batch) evenly")
    images = options.sampling_images
    fewest = min(images)  # the paper's claim is about few images
    # A step reads N images, so the arms' cost grows with N (the demo: N = 2 11 minutes,
    # N = 8 37, N = 32 150). Of three or more, the largest N runs one seed, shown and
    # not judged; the others get the study's seeds and are judged against the fewest.
    costly = max(images) if len(images) > 2 else None
    variants = []
    for n in images:
        variants.append(Variant(
            f"n{n}", f"N = {n} images x {rois // n} RoIs",
            {"sampling.images_per_batch": n},
            paper={"": "66.9 (L, N = 2)" if n == 2 else "not run"},
            seeds=EXPENSIVE_ARM_SEEDS if n == costly else 0))
    judged = [n for n in images if n not in (fewest, costly)]
    comparisons = [
        Comparison(f"N = {fewest} against N = {n}", (f"n{fewest}", ""), (f"n{n}", ""),
                   "not lower", "no slower convergence observed (no numbers given)")
        for n in judged]
    # Per step, N = 2 reads a quarter of N = 8's images. The paper's evidence is not per
    # step ("good results with N = 2 ... using fewer SGD iterations than R-CNN"), so each
    # judged N also meets the fewest N given as many images, in more (cheaper) steps.
    steps = config.train.steps
    for n in judged:
        longer = int(round(steps * n / fewest))
        overrides = {"sampling.images_per_batch": fewest, "train.steps": longer}
        if config.train.step_size > 0:  # a fixed lr step (VOC configs) stretches too
            overrides["train.step_size"] = int(round(config.train.step_size * n / fewest))
        variants.append(Variant(
            f"n{fewest}_as_n{n}",
            f"N = {fewest} images x {rois // fewest} RoIs, {longer} steps (N = {n}'s images)",
            overrides, paper={"": "not run"}))
        comparisons.append(Comparison(
            f"N = {fewest} with N = {n}'s images ({longer} steps) against N = {n}",
            (f"n{fewest}_as_n{n}", ""), (f"n{n}", ""), "not lower",
            f"not in the paper (the same images read, {n // fewest}x the steps)"))
    return Experiment(
        "sampling", "Hierarchical sampling", "section 2.3",
        f"R = {rois} RoIs from N images, the same number of SGD steps: does drawing many "
        "RoIs from few images slow convergence, as the paper feared it might? (RoIs of one "
        "image are correlated; few images make a step cheap.) And given the same number of "
        f"images, in more steps, does N = {fewest} catch up?"
        + (f" N = {costly} reads {costly // fewest} times the images of N = {fewest} a "
           "step: it runs one seed, shown and not judged." if costly else ""),
        tuple(variants), tuple(comparisons))


TABLE6 = {  # (S, M, L) of Table 6's four columns
    "lambda0": (52.2, 54.7, 62.6),
    "lambda1_no_reg": (53.3, 55.5, 63.4),
    "stagewise": (54.6, 56.6, 64.0),
    "lambda1": (57.1, 59.2, 66.9),
}


def _sml(values):
    return " / ".join(f"{v:.1f}" for v in values) + " (S / M / L)"


def _sml_difference(a, b):
    return " / ".join(f"{x - y:+.1f}" for x, y in zip(a, b)) + " (S / M / L)"


def multitask(config, options):
    del options
    return Experiment(
        "multitask", "Multi-task training", "Table 6, section 5.1",
        "Does training classification and box regression together (lambda = 1) help, "
        "against classification alone (lambda = 0) and against stage-wise training (the "
        "lambda = 0 model, then only the box layer trained on it)? Tested with and without "
        "box regression, as the table does.",
        (Variant("lambda1", "multi-task, lambda = 1", {"train.loss_lambda": 1.0},
                 WITH_AND_WITHOUT_REGRESSION,
                 paper={"bbox_reg": _sml(TABLE6["lambda1"]),
                        "no_bbox_reg": _sml(TABLE6["lambda1_no_reg"])}),
         Variant("lambda0", "classification only, lambda = 0", {"train.loss_lambda": 0.0},
                 {"no_bbox_reg": {"bbox_reg": False}},
                 paper={"no_bbox_reg": _sml(TABLE6["lambda0"])}),
         Variant("stagewise", "stage-wise: lambda = 0, then bbox_pred alone",
                 {"train.loss_lambda": 1.0, "model.train_only": ("bbox_pred",)},
                 WITH_AND_WITHOUT_REGRESSION, kind="stagewise", source="lambda0",
                 paper={"bbox_reg": _sml(TABLE6["stagewise"])})),
        (Comparison("multi-task against classification only, both without box regression",
                    ("lambda1", "no_bbox_reg"), ("lambda0", "no_bbox_reg"), "higher",
                    _sml_difference(TABLE6["lambda1_no_reg"], TABLE6["lambda0"])),
         Comparison("multi-task against stage-wise, both with box regression",
                    ("lambda1", "bbox_reg"), ("stagewise", "bbox_reg"), "higher",
                    _sml_difference(TABLE6["lambda1"], TABLE6["stagewise"])),
         Comparison("stage-wise (with box regression) against classification only",
                    ("stagewise", "bbox_reg"), ("lambda0", "no_bbox_reg"), "higher",
                    _sml_difference(TABLE6["stagewise"], TABLE6["lambda0"])),
         Comparison("multi-task: box regression at test time against none",
                    ("lambda1", "bbox_reg"), ("lambda1", "no_bbox_reg"), "higher",
                    _sml_difference(TABLE6["lambda1"], TABLE6["lambda1_no_reg"]))))


def pyramid(config):
    """(scales, max_size): the paper's five scales and cap, in proportion to the config's
    first training scale and cap as 480-1200 / 2000 are to 600 / 1000."""
    base, cap = config.pipeline.scales[0], config.pipeline.max_size
    scales = tuple(int(round(s * base / PAPER_SCALE)) for s in PAPER_SCALES)
    return scales, int(round(cap * PAPER_PYRAMID_MAX / 1000))


def scales(config, options):
    del options
    five, cap = pyramid(config)
    one = config.pipeline.scales[0]
    return Experiment(
        "scales", "Scale invariance: one scale or an image pyramid", "Table 7, section 5.2",
        f"Trained and tested at one scale ({one}) or at five ({', '.join(map(str, five))}, "
        f"longest side {cap}; the paper's 480-1200 scaled to the config's {one}): how much "
        "mAP does the pyramid buy, at what cost in test time?",
        (Variant("one", f"one scale ({one})",
                 {"pipeline.scales": (one,), "test.scales": (one,)},
                 paper={"": "57.1 / 59.2 (S / M); 0.10 / 0.15 s per image"}),
         Variant("five", "five scales", {"pipeline.scales": five, "pipeline.max_size": cap,
                                         "test.scales": five, "test.max_size": cap},
                 paper={"": "58.4 / 60.7 (S / M); 0.39 / 0.64 s per image"})),
        (Comparison("five scales against one", ("five", ""), ("one", ""), "higher",
                    "+1.3 / +1.5 (S / M), at 3.9 / 4.3 x the test time"),))


def data(config, options):
    del config
    shares = sorted(options.data_shares)
    variants = tuple(Variant(f"data{int(round(100 * s))}", f"{_percent(s)} of the training images",
                             {"dataset.train_subset": float(s)},
                             paper={"": "66.9 (L, VOC07 trainval)" if s == 1 else "not run"})
                     for s in shares)
    comparisons = tuple(Comparison(f"{_percent(shares[-1])} against {_percent(s)}",
                                   (variants[-1].name, ""), (v.name, ""), "higher",
                                   "66.9 -> 70.0 with 3 x the images (07 -> 07+12, L)")
                        for s, v in zip(shares[:-1], variants[:-1]))
    return Experiment(
        "data", "More training data", "section 5.3",
        "mAP against the number of training images, the same number of SGD steps (a fixed "
        "random subset; smaller subsets inside larger ones).", variants, comparisons)


TABLE8 = {"svm": (56.3, 58.7, 66.8), "softmax": (57.1, 59.2, 66.9)}


def svm(config, options):
    del config, options
    return Experiment(
        "svm", "Softmax or SVMs", "Table 8, section 5.4",
        "One-vs-rest linear SVMs trained post hoc with hard-negative mining on the model's "
        "penultimate features (R-CNN's recipe), against the softmax trained with the network.",
        (Variant("softmax", "softmax (as trained)", tests=RELEASE_POSTPROCESSING,
                 paper={"frcnn": _sml(TABLE8["softmax"])}),
         Variant("svm", "one-vs-rest SVMs, hard negatives", tests=RELEASE_POSTPROCESSING,
                 kind="svm", source="softmax", paper={"frcnn": _sml(TABLE8["svm"])})),
        (Comparison("softmax against SVMs", ("softmax", "frcnn"), ("svm", "frcnn"), "higher",
                    _sml_difference(TABLE8["softmax"], TABLE8["svm"])),))


# Seeds of a sweep's inner points (proposals): only the ends are judged, so the points
# between are drawn from one seed; eight trainings a seed become three.
INNER_POINT_SEEDS = 1


def proposals(config, options):
    ss = {"proposals.method": "selective_search", "proposals.add_dense": 0}
    variants = []
    top_k = config.proposals.top_k
    # The ends that are judged: "all" selective search (the config's own top_k, count 0,
    # else the most boxes) and the most dense boxes added (-1: all, else the most).
    counts, added_counts = options.proposal_counts, options.dense_added
    full = 0 if 0 in counts else max(counts)
    most = -1 if -1 in added_counts else max(added_counts)
    for count in counts:  # 0: the config's own top_k
        variants.append(Variant(
            f"ss{count or 'all'}", f"selective search, first {count}" if count
            else f"selective search (top_k {top_k or 'all'})",
            {**ss, "proposals.top_k": count or top_k},
            paper={"": "1k-10k quality-mode boxes: 59.2 at 2k (M), falling slightly"},
            seeds=0 if count == full else INNER_POINT_SEEDS))
    for added in added_counts:  # -1: every dense box
        name = "all" if added < 0 else added
        variants.append(Variant(
            f"ss_dense{name}", f"selective search + {name} dense",
            {**ss, "proposals.top_k": top_k, "proposals.add_dense": added},
            paper={"": "2k SS + 2k-45k dense: falls to 53.0 (M)"},
            seeds=0 if added == most else INNER_POINT_SEEDS))
    full = f"ss{full or 'all'}"
    most = variants[len(counts) + added_counts.index(most)]
    variants.append(Variant("dense", "dense boxes only",
                            {"proposals.method": "dense", "proposals.add_dense": 0,
                             "proposals.top_k": 0},
                            paper={"": "52.9 (M, 45k boxes)"}))
    return Experiment(
        "proposals", "Are more proposals always better?", "section 5.5, Figure 3",
        "Selective search from few boxes to all, retrained and retested; dense boxes added "
        "to selective search; dense boxes alone. mAP against Average Recall and the number "
        "of proposals per image.",
        tuple(variants),
        (Comparison("all selective search boxes against dense boxes only", (full, ""),
                    ("dense", ""), "higher", "59.2 -> 52.9 (M, 2k SS against 45k dense)"),
         Comparison(f"selective search alone against {most.label}",
                    (full, ""), (most.name, ""), "higher",
                    "adding dense boxes lowers mAP, to 53.0 (M)")),
        proposal_quality=True)


def finetune(config, options):
    del options
    default = config.model.frozen
    described = "the config's" if default is not None else "the backbone's default"
    return Experiment(
        "finetune", "Which layers to fine-tune?", "Table 5, section 4.5",
        "From ImageNet weights: only the layers after RoI pooling trained (as SPPnet "
        f"could), {described} frozen layers, or every layer trained.",
        (Variant("head_only", "layers after RoI pooling only", {"model.freeze_backbone": True},
                 paper={"": "61.4 (L, >= fc6)"}),
         Variant("default", f"{described} frozen set", {"model.freeze_backbone": False},
                 paper={"": "66.9 (L, >= conv3_1)"}),
         Variant("all", "nothing frozen", {"model.freeze_backbone": False, "model.frozen": ()},
                 paper={"": "67.2 (L, >= conv2_1; conv1_1 did not fit in memory)"})),
        (Comparison("the default frozen set against the head only", ("default", ""),
                    ("head_only", ""), "higher", "+5.5 (L)"),
         Comparison("nothing frozen against the default set", ("all", ""), ("default", ""),
                    "same",
                    "+0.3 (L, from conv2_1), at 1.3 x the training time")),
        needs_pretrained=True)


def _svd_ranks(config, fractions):
    from keras_frcnn.model.backbones import SPECS

    widths = tuple(config.model.fc_units or SPECS[config.model.backbone].fc_units)
    if config.model.head != "fc" or len(widths) != 2:
        raise CannotRun("the svd experiment factors fc6 and fc7: it needs model.head 'fc'")
    return ",".join(f"{name}:{max(1, int(round(width * f)))}"
                    for name, width, f in zip(("fc6", "fc7"), widths, fractions))


def svd(config, options):
    variants = [Variant("full", "uncompressed", paper={"": "66.9 (L), 0.32 s per image"})]
    for fractions in options.svd_fractions:
        ranks = _svd_ranks(config, fractions)
        paper = ("66.6 (L, fc6 1024 / fc7 256 of 4096), 0.22 s per image"
                 if tuple(fractions) == (1 / 4, 1 / 16) else "not run")
        variants.append(Variant(ranks.replace(":", "").replace(",", "_"),
                                f"SVD {ranks.replace(',', ', ')}", {"model.svd": ranks},
                                kind="svd", source="full", paper={"": paper}))
    return Experiment(
        "svd", "Truncated SVD", "Table 4, section 3.1",
        "fc6 and fc7 factored by truncated SVD without fine-tuning: mAP and detection time "
        "against the ranks kept.", tuple(variants),
        tuple(Comparison(f"uncompressed against {v.label}", ("full", ""), (v.name, ""), "same",
                         "+0.3 (L: 66.9 against 66.6 at 1024 / 256)") for v in variants[1:]
              if "not run" not in v.paper[""]))  # only the paper's own ranks are judged


BUILDERS = {"sampling": sampling, "multitask": multitask, "scales": scales, "data": data,
            "svm": svm, "proposals": proposals, "finetune": finetune, "svd": svd}


def build(name, config, options=Options()):
    if name not in BUILDERS:
        raise ValueError(f"no experiment {name!r}; choose from {', '.join(NAMES)}")
    return BUILDERS[name](config, options)
