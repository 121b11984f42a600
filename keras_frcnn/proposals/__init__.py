"""Object proposals: the release's selective-search files, selective search
computed with OpenCV (cached), and dense boxes; plus the common filtering.

Boxes are 0-based inclusive (x1, y1, x2, y2), as everywhere in keras_frcnn.
Nothing here imports TensorFlow, so worker processes start quickly.
"""
