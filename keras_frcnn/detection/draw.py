"""Pictures of detections: boxes with class names and scores drawn on images."""

import colorsys

import cv2
import numpy as np


def class_colour(k):
    """A distinct BGR colour per class index."""
    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.85, 1.0)
    return int(255 * b), int(255 * g), int(255 * r)


def draw_detections(image_bgr, detections, class_names, score_threshold=0.5, scale=1.0):
    """A copy of ``image_bgr`` (resized by ``scale``) with detections above the threshold."""
    image = np.ascontiguousarray(image_bgr)
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    else:
        image = image.copy()
    keep = detections.scores >= score_threshold
    for box, score, k in sorted(zip(detections.boxes[keep], detections.scores[keep],
                                    detections.classes[keep]), key=lambda row: row[1]):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        colour = class_colour(int(k))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        label = f"{class_names[int(k) - 1]} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(image, label, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return image


TILE_HEIGHT = 360  # pixels: the common height of the photos in a contact sheet


def tile_scale(height, width, tile_height=TILE_HEIGHT, max_aspect=3.0):
    """The factor that brings an image to ``tile_height`` rows, less for panoramas wider
    than ``max_aspect`` times that (so one photo cannot stretch the sheet)."""
    return min(tile_height / height, max_aspect * tile_height / width)


def contact_sheet(images, columns=3, pad=4):
    """Tiles BGR images into rows of ``columns``, each image at its own size, side by side
    (a row is as high as its highest image, the sheet as wide as its widest row).

    Give it images of one height (``tile_scale``) and the sheet has no empty cells: the
    photos of a data set of mixed sizes read at one size, small ones included.
    """
    if not images:
        raise ValueError("contact_sheet: no images")
    rows = [images[i:i + columns] for i in range(0, len(images), columns)]
    heights = [max(im.shape[0] for im in row) for row in rows]
    widths = [sum(im.shape[1] for im in row) + pad * (len(row) - 1) for row in rows]
    sheet = np.full((sum(heights) + pad * (len(rows) + 1), max(widths) + 2 * pad, 3), 255,
                    np.uint8)
    y = pad
    for row, height in zip(rows, heights):
        x = pad
        for im in row:
            sheet[y:y + im.shape[0], x:x + im.shape[1]] = im
            x += im.shape[1] + pad
        y += height + pad
    return sheet
