"""keras-frcnn: Fast R-CNN (Girshick, ICCV 2015) for TensorFlow 2 and Keras 3.

Importing the package loads neither TensorFlow nor the compiled op: the
TensorFlow-dependent names below are imported on first access, so data and
proposal code (and the worker processes that run it) start fast. ``roi_pool``
loads the op on first use (see keras_frcnn/ops/loader.py).
"""

import importlib

__version__ = "0.1.0"
__all__ = ["Predictor", "layers", "roi_pool"]

_LAZY = {"roi_pool": ("keras_frcnn.ops", "roi_pool"), "layers": ("keras_frcnn.layers", None),
         "Predictor": ("keras_frcnn.predictor", "Predictor")}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_frcnn' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
