"""keras-frcnn: Fast R-CNN (Girshick, ICCV 2015) for TensorFlow 2 and Keras 3.

Importing the package does not load the compiled op; ``roi_pool`` loads it on
first use (see keras_frcnn/ops/loader.py).
"""

from keras_frcnn import layers
from keras_frcnn.ops import roi_pool

__version__ = "0.1.0"
__all__ = ["layers", "roi_pool"]
