"""The study's report: per experiment a table of variants (mean and range over seeds,
times, the paper's number beside ours), the paper's comparisons with a verdict, a
plot, and for the proposals experiment the analogue of the paper's Figure 3.

Verdicts (one rule for every comparison): with fewer than three seeds on either side
nothing is judged (two arms of two seeds drawn from one distribution fail to overlap
one time in three; of three seeds, one time in ten). Otherwise, if the ranges of the two arms' per-seed mAPs overlap,
the difference is "within the seed spread", whatever its sign. If they do not
overlap, it "agrees" when its direction is the paper's and "disagrees" when not; where
the paper found no meaningful difference ("same"), separated ranges disagree, and where
it claimed only "not lower", a higher arm agrees.
"""

import json
import os
from pathlib import Path

import numpy as np

from keras_frcnn.files import atomic_write
from keras_frcnn.study.runner import summarize

AGREES, DISAGREES, WITHIN, NOT_JUDGED = ("agrees", "disagrees", "within the seed spread",
                                         "not judged (under 3 seeds)")
MIN_SEEDS = 3


def verdict(a_values, b_values, claim):
    """The verdict on the paper's ``claim`` that arm a scores "higher", "lower", "not
    lower" or "same" against arm b, from their per-seed values."""
    a, b = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return NOT_JUDGED
    if a.min() <= b.max() and b.min() <= a.max():
        return WITHIN
    higher = a.mean() > b.mean()
    agrees = {"higher": higher, "lower": not higher, "not lower": higher, "same": False}
    if claim not in agrees:
        raise ValueError(f"unknown claim {claim!r}")
    return AGREES if agrees[claim] else DISAGREES


def values(rows, variant, test, key="mAP"):
    return [r[key] for r in rows if r["variant"] == variant and r["test"] == test
            and r.get(key) is not None]


def _pct(x):
    return f"{100 * x:.1f}"


def _range(summary, scale=100.0, digits=1):
    if summary is None:
        return "-"
    if summary["n"] == 1:
        return "one seed"
    return f"{scale * summary['min']:.{digits}f} to {scale * summary['max']:.{digits}f}"


def _cost_minutes(rows):
    """Minutes of an experiment's runs: each model made once, each test once."""
    made = {}
    tested = 0.0
    for row in rows:
        made[row["run"]] = row["train_seconds"]
        tested += row["test_seconds"]
    return (sum(made.values()) + tested) / 60.0


def experiment_section(result, figure_dir, report_dir):
    """Markdown lines of one experiment's results (``result``: results.json's entry)."""
    exp, rows = result["experiment"], result["rows"]
    command = own_command(result["command"], exp["name"])
    lines = [f"## {exp['title']} ({exp['section']})", "", exp["question"], "",
             f"`{command}`: {_cost_minutes(rows):.0f} minutes on this machine "
             f"({result['machine']}; a model shared with another experiment is counted in "
             f"each), {result['seeds']} seed{'s' if result['seeds'] > 1 else ''} per arm"
             + (" unless the table says fewer." if any(v["seeds"] for v in exp["variants"])
                else "."), ""]
    if not result.get("complete", True):
        lines += ["Stopped before every arm and seed ran: the tables show what finished; "
                  "the same command goes on from here.", ""]
    quality = exp["proposal_quality"]
    header = "| variant | test | seeds | mAP (mean) | range | model (min) | test (s/image) |"
    # model (min): making the model from nothing, its source's training included
    rule = "|---|---|---:|---:|---|---:|---:|"
    if quality:
        header += " AR | proposals / image |"
        rule += "---:|---:|"
    lines += [header + " paper |", rule + "---|"]
    for variant in exp["variants"]:
        for test in variant["tests"]:
            mine = [r for r in rows if r["variant"] == variant["name"] and r["test"] == test]
            if not mine:
                continue
            m = summarize([r["mAP"] for r in mine])
            train = summarize([r.get("model_seconds", r["train_seconds"]) for r in mine])
            speed = summarize([r["network_seconds_per_image"] for r in mine])
            line = (f"| {variant['label']} | {_test_label(test)} | {m['n']} | "
                    f"{_pct(m['mean'])} | {_range(m)} | {train['mean'] / 60:.1f} | "
                    + (f"{speed['mean']:.3f} |" if speed else "- |"))
            if quality:
                line += (f" {mine[0]['average_recall']:.3f} | "
                         f"{mine[0]['proposals_per_image']:.0f} |")
            lines.append(line + f" {variant['paper'].get(test, '')} |")
    if exp["comparisons"]:
        lines += ["", "| comparison | ours (difference of means) | paper | verdict |",
                  "|---|---:|---|---|"]
        for comparison in exp["comparisons"]:
            a = values(rows, *comparison["a"])
            b = values(rows, *comparison["b"])
            if not a or not b:
                continue
            difference = 100 * (np.mean(a) - np.mean(b))
            lines.append(f"| {comparison['label']} | {difference:+.1f} | {comparison['paper']} | "
                         f"{verdict(a, b, comparison['claim'])} |")
    for name in result.get("figures", []):
        path = Path(figure_dir) / name
        alt, caption = FIGURE_TEXT.get(name, (exp["title"], ""))
        lines += ["", f"![{alt}]({os.path.relpath(path, report_dir)})"]
        if caption:
            lines += ["", caption]
    return lines + [""]


# Alt text and caption of the figures that need one (the others take the title).
FIGURE_TEXT = {"study_figure3.png": (
    "mAP and Average Recall against proposals per image",
    "*The Figure 3 analogue.* Each line is one seed (seed 0) at every point of the sweep; "
    "where a point ran more seeds, the orange mark is their mean and its bar their range. "
    "Read the rise or fall along a line as one seed's, not as a finding.")}


def own_command(command, name):
    """The recorded command line with its --experiments naming this experiment alone."""
    words = [f"--experiments={name}" if w.startswith("--experiments=") else w
             for w in command.split()]
    return " ".join(words)


def _test_label(test):
    return {"": "as configured", "bbox_reg": "box regression",
            "no_bbox_reg": "no box regression",
            "frcnn": "the release's post-processing"}.get(test, test)


def plot_experiment(result, path):
    """Each variant/test's seeds (dots), their range (line) and mean (tick) of mAP. No
    bars: the axis starts near the lowest seed, and a bar's length from there would
    exaggerate differences the report calls within the seed spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp, rows = result["experiment"], result["rows"]
    labels, seed_values = [], []
    for variant in exp["variants"]:
        for test in variant["tests"]:
            found = values(rows, variant["name"], test)
            if found:
                suffix = f"\n({_test_label(test)})" if test else ""
                labels.append(variant["label"] + suffix)
                seed_values.append(100 * np.asarray(found))
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(labels)), dpi=100)
    positions = np.arange(len(labels))[::-1]
    for y, found in zip(positions, seed_values):
        ax.plot([found.min(), found.max()], [y, y], color="#08519c", lw=1.5)
        ax.plot(found, np.full(len(found), y), "o", color="#08519c", ms=4)
        ax.plot([found.mean()], [y], "|", color="#e6550d", ms=16, mew=2.5)
    ax.set_yticks(positions, labels, fontsize=8)
    low = min(v.min() for v in seed_values)
    ax.set_xlim(max(0.0, low - 10), 100)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", color="#dddddd", lw=0.5)
    ax.set_xlabel("VOC mAP (%) on the test split: dots = seeds, line = range, "
                  "orange tick = mean")
    ax.set_title(f"{exp['title']} ({exp['section']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_figure3(result, path):
    """mAP and Average Recall against proposals per image (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    by_variant = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    recall_ax = ax.twinx()
    groups = (("ss", "selective search", "o-"), ("ss_dense", "selective search + dense", "s--"),
              ("dense", "dense only", "D"))
    for prefix, label, style in groups:
        names = [v["name"] for v in result["experiment"]["variants"]
                 if (v["name"].startswith(prefix) and not (prefix == "ss" and "dense" in v["name"]))
                 and v["name"] in by_variant]
        if not names:
            continue
        # One seed set per line: seed 0 at every point of the sweep (the inner points ran
        # one seed by design); the points that ran more seeds get their mean and range as
        # separate markers, so a line never joins one seed to a mean of three.
        first = {n: min(by_variant[n], key=lambda r: r["seed"]) for n in names}
        points = sorted((first[n]["proposals_per_image"], 100 * first[n]["mAP"],
                         first[n]["average_recall"]) for n in names)
        x, value, recall = (np.asarray(c) for c in zip(*points))
        seed = min(r["seed"] for r in first.values())
        ax.plot(x, value, style, color="#1f77b4", label=f"mAP, {label}: seed {seed}")
        recall_ax.plot(x, recall, style, color="#d62728", mfc="none", label=f"AR, {label}")
        several = [n for n in names if len(by_variant[n]) > 1]
        if several:
            found = [100 * np.asarray([r["mAP"] for r in by_variant[n]]) for n in several]
            x = np.asarray([first[n]["proposals_per_image"] for n in several])
            mean = np.asarray([f.mean() for f in found])
            ax.errorbar(x, mean, yerr=[mean - [f.min() for f in found],
                                       [f.max() for f in found] - mean],
                        fmt="_", ms=14, mew=2, color="#ff7f0e", capsize=4,
                        label=f"mAP, {label}: mean of {len(found[0])} seeds, bar = range")
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (test split)")
    ax.set_ylabel("VOC mAP (%)", color="#1f77b4")
    recall_ax.set_ylabel("Average Recall (IoU 0.5 to 1)", color="#d62728")
    recall_ax.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()
    more = recall_ax.get_legend_handles_labels()
    # Below the axes, not inside them: inside, it hid the fewest-boxes point.
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax.set_title("mAP and AR against proposals per image (the paper's Figure 3)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


INTRO = """# The paper's design evaluations, run

Written by `bin/study.py` (`frcnn-study`); run it again to update this page. Each
experiment below asks one of the paper's section 5 questions (and section 2.3's) of a
small model: every variant is trained and tested from `--seeds` seeds (3 unless told;
each table says how many ran per arm). The seed sets the initial weights, dropout, and
the data order, flips and RoI sampling; seed 0 of the demo config is the README's main
job. mAP is VOC AP at IoU 0.5 (area under the curve)
on the config's test split, as bin/evaluate.py reports it.

The paper's numbers are VOC 2007 test mAP of models S, M and L on a GPU; ours are not
comparable in size, so each comparison sets the *difference* we measured beside the
paper's. The verdict follows one rule: with fewer than three seeds on either side
nothing is judged (two arms of two seeds from the same distribution fail to overlap one
time in three, of three seeds one time in ten); if the two arms' per-seed ranges overlap, the difference is
"within the seed spread" whatever its sign, and is not a finding; if they do not
overlap, it "agrees" when its direction is the paper's and "disagrees" when not (where
the paper saw no meaningful difference, separated ranges disagree; where it claimed only
that one arm is not worse, a better one agrees). Times are this
machine's: the model's minutes (training, or fitting the SVMs, or compressing) and
the network's seconds per test image after a warm-up. The machine is shared, and a run
made while other work ran takes longer: read small differences in time with care.

Every row is kept in its experiment's results file (`--results_dir`; docs/study.md's are
in docs/study/results/) with the digests of its model and test, and a study run again
with the same results folder reuses it even where the models are gone: the page can be
completed over several sittings, on fresh machines, and `frcnn-study --report_only
--results_dir=docs/study/results --report=docs/study.md --figure_dir=docs/figures`
rewrites it and its plots from the repository alone. A row on data
outside the repository (finetune's kangaroo photos) is keyed by the data's resolved path
too, so a machine that keeps the photos elsewhere trains that row again; a weights file
is keyed by its contents, wherever it lies.
"""


def planned_section(experiment):
    """Markdown lines of an experiment not run yet: its heading (the same as when it has
    run, so links to it hold either way), its question and the command that runs it."""
    command = f"frcnn-study --experiments={experiment.name}"
    if experiment.needs_pretrained:
        command += " --config=configs/kangaroo.py"
    return [f"## {experiment.title} ({experiment.section})", "", experiment.question, "",
            f"Not run yet: `{command}`.", ""]


def write_report(results, path, figure_dir, intro=None, config=None):
    """Writes the Markdown report of ``results`` ({experiment name: entry}) and its
    figures into ``figure_dir``; returns the report's text. With ``config``, each
    experiment not in ``results`` gets its section too, saying how to run it."""
    from keras_frcnn.study.experiments import NAMES, build

    path, figure_dir = Path(path), Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    lines = (INTRO if intro is None else intro).splitlines() + [""]
    missing = [name for name in NAMES if name not in results]
    if missing and config is not None:
        lines += ["Not run yet: " + ", ".join(f"`{name}`" for name in missing)
                  + " (each section below gives the command).", ""]
    elif missing:
        lines += ["Not run yet: " + ", ".join(f"`{name}` (`frcnn-study --experiments={name}`)"
                                             for name in missing) + ".", ""]
    for name in NAMES:
        if name not in results:
            if config is not None:
                try:
                    lines += planned_section(build(name, config))
                except ValueError:  # this config cannot build it (e.g. svd without fc)
                    pass
            continue
        result = results[name]
        figures = [f"study_{name}.png"]
        plot_experiment(result, figure_dir / figures[0])
        if result["experiment"]["proposal_quality"]:
            figures.append("study_figure3.png")
            plot_figure3(result, figure_dir / figures[1])
        lines += experiment_section({**result, "figures": figures}, figure_dir, path.parent)
    text = "\n".join(lines).rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    return text


def load_results(study_dir, results_dir=None):
    """{experiment name: entry} of every <name>.json in ``results_dir`` (default the study
    folder's results/)."""
    from keras_frcnn.study.experiments import NAMES

    found = {}
    for name in NAMES:
        file = Path(results_dir or Path(study_dir) / "results") / f"{name}.json"
        if file.is_file():
            found[name] = json.loads(file.read_text())
    return found
