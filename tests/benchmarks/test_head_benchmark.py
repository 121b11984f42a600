"""The per-RoI cost the head benchmark reports, against counts worked by hand."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import head_benchmark  # noqa: E402

from keras_frcnn.model.fast_rcnn import FastRCNN  # noqa: E402


def test_multiply_adds_per_roi_of_both_mobilenet_v2_heads():
    fc = head_benchmark.multiply_adds_per_roi(FastRCNN(2, backbone="mobilenet_v2"))
    # fc6 7 x 7 x 576 -> 1024, fc7 1024 -> 1024, the siblings 1024 -> 2 and 1024 -> 4.
    assert fc == {"fc6": 7 * 7 * 576 * 1024, "fc7": 1024 * 1024, "cls_score": 2048,
                  "bbox_pred": 4096}
    blocks = head_benchmark.multiply_adds_per_roi(
        FastRCNN(2, backbone="mobilenet_v2", head="imagenet_blocks"))
    # 4 x 4 positions after block_13's stride-2 depthwise of the 8 x 8 RoI.
    expand, depthwise = 16 * 160 * 960, 16 * 960 * 9
    assert blocks["block_13_depthwise"] == 16 * 576 * 9
    assert blocks["block_13_project"] == 16 * 576 * 160
    assert blocks["block_14_expand"] == blocks["block_15_expand"] == expand
    assert blocks["block_16_depthwise"] == depthwise
    assert blocks["block_16_project"] == 16 * 960 * 320
    assert blocks["Conv_1"] == 16 * 320 * 1280
    assert blocks["cls_score"] == 1280 * 2 and blocks["bbox_pred"] == 1280 * 4
    assert sum(blocks.values()) == 25_736_704 and sum(fc.values()) == 29_956_096
