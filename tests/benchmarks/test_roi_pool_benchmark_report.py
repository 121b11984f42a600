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


def fake_results(modes, scale=1.0):
    times = {"custom_op": 0.01, "composite": 0.1, "crop_and_resize": 0.05}
    return {mode: {shape: {m: {"forward": t * scale, "forward+backward": 2 * t * scale}
                           for m, t in times.items()} for shape in bench.SHAPES}
            for mode in modes}


def test_report_has_a_row_per_measured_mode_and_the_ratios():
    for modes in (["graph"], ["graph", "eager"]):
        section = bench.markdown(fake_results(modes), fake_results(["graph"], 1.5),
                                 {"train": 3, "test": 2})
        rows = [line for line in section.splitlines() if line.startswith("| graph") or
                line.startswith("| eager")]
        assert len(rows) == 4 * len(modes)
        assert all("**5.0x**" in row and "| 10.0x |" in row for row in rows)
        assert "| train | 30.00 | 20.00 | 1.50x |" in section


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
