"""RoI pooling ops: the public function, its pure-TF twin and the op loader."""

from keras_frcnn.ops.loader import CustomOpUnavailableError
from keras_frcnn.ops.roi_pool import roi_pool

__all__ = ["CustomOpUnavailableError", "roi_pool"]
