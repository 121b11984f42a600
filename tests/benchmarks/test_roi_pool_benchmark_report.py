"""The benchmark's report and Markdown section handling (no timing here)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("roi_pool_benchmark",
                                              ROOT / "benchmarks" / "roi_pool_benchmark.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
floor = sys.modules["roi_pool_floor"]


def fake_results(modes, scale=1.0):
    times = {"custom_op": 0.01, "composite": 0.1, "crop_and_resize": 0.05}
    return {mode: {shape: {m: {"forward": t * scale, "forward+backward": 2 * t * scale}
                           for m, t in times.items()} for shape in bench.SHAPES}
            for mode in modes}


def fake_floor():
    parts = {"window reads": 2.0, "output write": 1.0, "pooled-size read": 1.0,
             "map write": 1.0, "cells": 1234}
    return {shape: {"passes": floor.floors(parts), "parts": parts} for shape in bench.SHAPES}


def test_window_cells_hand_worked():
    """The three RoIs of tests/ops/test_roi_pool.py's hand-worked grid, 2x2 bins on 4x4:
    4 bins of 2x2 cells; 4 overlapping bins of 2x2; 4 bins of 1x2 (one row)."""
    rois = [[0, 0, 0, 3, 3], [0, 1, 0, 3, 2], [0, 0, 3, 3, 3]]
    assert floor.window_cells(rois, 4, 4, pooled=2, spatial_scale=1.0) == 16 + 16 + 8
    # Corners round half away from zero in float32 products: 0.49999997 stays 0.
    assert floor.window_cells([[0, 0.49999997, 0, 1, 0]], 4, 4, pooled=1,
                              spatial_scale=1.0) == 2


def test_report_has_a_row_per_measured_mode_and_the_ratios():
    for modes in (["graph"], ["graph", "eager"]):
        section = bench.markdown(fake_results(modes), fake_results(["graph"], 1.5),
                                 {"train": 3, "test": 2}, fake_floor())
        rows = [line for line in section.splitlines() if line.startswith("| graph") or
                line.startswith("| eager")]
        assert len(rows) == 4 * len(modes)
        assert all("**5.0x**" in row and "| 10.0x |" in row for row in rows)
        # Floors: inference forward 2 + 1 = 3 ms, forward+backward 2 + 2 + 2 + 1 = 7 ms.
        assert ("| test | forward (inference kernel) | 10.0 | 3.0 | **3.33x** | 50.0 "
                "| **5.0x** |") in section
        assert "| train | forward+backward (training kernel) | 20.0 | 7.0 | **2.86x** |" in section
        # The floor's parts and the threading go to --details, not into the main section.
        assert "Floor parts" not in section and "1 thread" not in section


def test_details_hold_the_floor_parts_and_the_threading():
    details = bench.details_markdown(fake_results(["graph"]), fake_results(["graph"], 1.5),
                                     fake_floor())
    lines = details.splitlines()
    assert lines[0] == bench.DETAILS_START and lines[-1] == bench.DETAILS_END
    assert "| train | 30.00 | 20.00 | 1.50x |" in details
    assert ("Floor parts (ms): train: window reads 2.0, output write 1.0, pooled-size read 1.0, "
            "map write 1.0 (1,234 window cells); test:") in details


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\nintro\n")
    first = f"{bench.SECTION_START}\nold\n{bench.SECTION_END}\n"
    bench.report.write_section(path, first, bench.SECTION)
    path.write_text(path.read_text() + "\n## Other section\nkept\n")
    bench.report.write_section(path, f"{bench.SECTION_START}\nnew\n{bench.SECTION_END}\n",
                               bench.SECTION)
    text = path.read_text()
    assert "intro" in text and "kept" in text and "new" in text and "old" not in text
    assert text.count(bench.SECTION_START) == 1
