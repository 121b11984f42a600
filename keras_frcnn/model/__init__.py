"""The Fast R-CNN network: backbones, heads, the multi-task loss and the training model."""
