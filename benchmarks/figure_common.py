"""Shared by the figure modules (figures.py and the figure_*.py it calls): the page
width, the colours, drawing boxes in imshow's coordinates and writing a PNG.

Boxes are (x1, y1, x2, y2), 0-based inclusive pixel coordinates (keras_frcnn/boxes.py);
imshow puts pixel or feature cell i at [i - 0.5, i + 0.5].
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

WIDTH_INCHES, DPI = 9.0, 100  # 900 pixels wide
FOREGROUND, BACKGROUND, GROUND_TRUTH = "#ff7f0e", "#1f77b4", "#00ff00"


def outline(ax, edges, colour, width=1.5, style="solid"):
    """Draws [n, 4] rectangles given by their edges (left, top, right, bottom) in
    imshow's coordinates; ``colour`` is one colour or one per rectangle."""
    x1, y1, x2, y2 = np.asarray(edges, np.float64).reshape(-1, 4).T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1),
                        np.stack([x2, y2], 1), np.stack([x1, y2], 1)], axis=1)
    ax.add_collection(PolyCollection(corners, facecolors="none", edgecolors=colour,
                                     linewidths=width, linestyles=style))


def draw_boxes(ax, boxes, colour, width=1.5, style="solid"):
    """[n, 4] boxes (x1, y1, x2, y2), inclusive pixel coordinates, as rectangles."""
    outline(ax, np.asarray(boxes, np.float64).reshape(-1, 4) + [-0.5, -0.5, 0.5, 0.5],
            colour, width, style)


def bgr_to_rgb(image_bgr):
    return np.ascontiguousarray(np.asarray(image_bgr)[..., ::-1])


def clipped_texts(fig):
    """The texts of ``fig`` (titles, axis labels, legends, notes, annotations) that reach
    beyond its canvas as drawn at DPI, each as its string."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts) + [t for legend in fig.legends for t in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    canvas = fig.bbox
    clipped = []
    for text in texts:
        if not (text.get_visible() and text.get_text()):
            continue
        box = text.get_window_extent(renderer)
        if (box.x0 < canvas.x0 - 0.5 or box.x1 > canvas.x1 + 0.5 or box.y0 < canvas.y0 - 0.5
                or box.y1 > canvas.y1 + 0.5):
            clipped.append(text.get_text())
    return clipped


def save(fig, path):
    """Writes ``fig`` as a 256-colour PNG: photos drawn in full colour would make a
    figure several times larger for the docs without a visible difference. A text that
    the canvas would cut is a ValueError naming it."""
    from PIL import Image

    path = Path(path)
    clipped = clipped_texts(fig)
    if clipped:
        plt.close(fig)
        raise ValueError(f"{path.name}: text cut by the edge of the figure: {clipped}; "
                         "shorten it, wrap it or give the figure room")
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT).save(path,
                                                                            optimize=True)
    return path


def split_images(config, split, count):
    """[(record, [n, 4] proposals)] of the first ``count`` images of ``split``."""
    from keras_frcnn.proposals.sources import first_images

    pairs = first_images(config, split, count)
    if not pairs:
        raise ValueError(f"split {split!r} of {config.dataset.kind} data has no images")
    return pairs


def split_dataset(config, split, max_images=0):
    """(dataset, {image_id: [n, 4] proposals}) of ``split`` of ``config``'s data, its
    first ``max_images`` images if > 0; ValueError for a split without images."""
    import dataclasses

    from keras_frcnn.configs import split_sections
    from keras_frcnn.data.sources import load_dataset
    from keras_frcnn.proposals.sources import proposals_for_dataset

    dataset_config, proposals_config = split_sections(config, split)
    dataset = load_dataset(dataset_config, split)
    if max_images > 0:
        dataset = dataclasses.replace(dataset, records=tuple(dataset.records[:max_images]))
    if not dataset.records:
        raise ValueError(f"split {split!r} of {config.dataset.kind} data has no images")
    return dataset, proposals_for_dataset(dataset, proposals_config, False, split=split)
