"""Precision-recall curves as a PNG (matplotlib, no display needed)."""

import io
import math
from pathlib import Path

import numpy as np

from keras_frcnn.files import atomic_write


def plot_pr_curves(result, path, columns=4):
    """One panel per class of a VocResult: precision vs recall, AP in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.classes)
    columns = min(columns, len(names)) or 1
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows),
                                squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        curve = result.curves[name]
        ap = result.aps[name]
        if len(curve.tp) and curve.num_positives:
            ax.plot(np.concatenate([[0], curve.recall]), np.concatenate([[1], curve.precision]),
                    lw=1.5)
        ax.set_title(f"{name}: AP {'n/a' if not np.isfinite(ap) else f'{100 * ap:.1f}'}",
                     fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    figure.suptitle(f"mAP {100 * result.mean_ap:.1f} ({result.match_rule})",
                    fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    atomic_write(Path(path), buffer.getvalue())
