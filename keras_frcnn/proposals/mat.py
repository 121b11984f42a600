"""The original release's selective-search ``.mat`` files.

* Dataset files (``data/selective_search_data/<dataset>.mat``): key ``boxes``,
  a cell array with one ``[n, 4]`` array per image, rows ``(y1, x1, y2, x2)``
  1-based; optional key ``images`` with the image ids in the same order.
* Demo files (``data/demo/<id>_boxes.mat``): key ``boxes``, one ``[n, 4]``
  array of 0-based ``(x1, y1, x2, y2)``.
"""

from pathlib import Path

import numpy as np

from keras_frcnn.data.records import DatasetError


def _loadmat(path):
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: proposal file not found")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it "
                           "with -v7 or convert it with h5py") from None
    except (ValueError, OSError, TypeError, IndexError, KeyError, EOFError) as err:
        # scipy reports a truncated or foreign file in any of these ways.
        raise DatasetError(f"{path}: not a readable .mat file: {err!r}") from None


def _boxes_key(contents, path):
    if "boxes" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise DatasetError(f"{path}: no 'boxes' key (keys: {keys})")
    return contents["boxes"]


def _as_box_array(value, path, what):
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise DatasetError(f"{path}: {what} has shape {array.shape}, expected [n, 4]")
    return array.astype(np.float32)


def load_demo_boxes(path):
    """A demo ``<id>_boxes.mat`` -> [n, 4] float32, already 0-based (x1, y1, x2, y2)."""
    return _as_box_array(_boxes_key(_loadmat(path), path), path, "'boxes'")


def load_dataset_boxes(path, image_ids=None):
    """A dataset ``.mat`` -> {image_id: [n, 4] float32 0-based (x1, y1, x2, y2)}.

    Image ids come from the file's ``images`` key, else from ``image_ids`` (in
    file order; the counts must match).
    """
    contents = _loadmat(path)
    cells = np.asarray(_boxes_key(contents, path), dtype=object).reshape(-1)
    if "images" in contents:
        ids = [str(np.asarray(v).reshape(-1)[0]) for v in np.asarray(contents["images"],
                                                                   dtype=object).reshape(-1)]
    elif image_ids is not None:
        ids = [str(i) for i in image_ids]
    else:
        raise DatasetError(f"{path}: no 'images' key; pass the image ids in file order")
    if len(ids) != len(cells):
        raise DatasetError(f"{path}: {len(cells)} box arrays for {len(ids)} image ids")
    result = {}
    for k, (image_id, cell) in enumerate(zip(ids, cells)):
        yxyx = _as_box_array(cell, path, f"box array {k} ({image_id})")
        result[image_id] = yxyx[:, [1, 0, 3, 2]] - 1
    return result
