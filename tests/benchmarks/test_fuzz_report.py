"""benchmarks/fuzz.py's report: counts and findings in one section, the errors by type and
message in another, on another page (nothing is fuzzed here)."""

import re
import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fuzz  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python benchmarks/fuzz.py --seed 0 --output docs/benchmarks.md"


def tallies(messages=3):
    result = {}
    for target in fuzz.TARGETS:
        tally = fuzz.Tally(target, seed=0)
        tally.machine, tally.seconds = "a test machine", 90.0
        tally.counts.update({"results": 7, "errors": 3})
        for i in range(messages):
            key = "ValueError", f"message {i} | with a bar"
            tally.errors[key].update({"custom_op": i + 1, "composite": i + 1})
            tally.examples[key] = (i, "the full message")
        result[target] = tally
    return result


def slug(heading):
    """GitHub's anchor for a heading, as tests/test_docs.py computes it."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_summary_links_the_errors_and_holds_no_error_rows():
    lines = fuzz.markdown(tallies(), Namespace(seed=0), COMMAND, 180.0,
                          fuzz.link("docs/robustness.md", "docs/benchmarks.md"))
    text = "\n".join(lines)
    assert lines[0] == "## Fuzzing"
    assert "| roi_pool | 10 | 7 | 3 | 0 | 0 | 0 | 0 | 0 | 1.5 |" in lines
    assert "| saved_model | 10 |" in text
    assert ("Errors by type and message: [robustness.md](robustness.md"
            "#errors-of-the-last-fuzzing-run). Findings: none.") in lines
    assert "ValueError" not in text
    without = "\n".join(fuzz.markdown(tallies(), Namespace(seed=0), COMMAND, 180.0))
    assert "no `--details` file" in without


def test_details_hold_the_errors_and_link_back():
    lines = fuzz.error_markdown(tallies(fuzz.ERROR_ROWS + 2), Namespace(seed=0), COMMAND,
                                fuzz.link("docs/benchmarks.md", "docs/robustness.md"))
    assert lines[0] == f"### {fuzz.DETAILS_HEADING}"
    assert slug(fuzz.DETAILS_HEADING) == fuzz.DETAILS_ANCHOR
    assert "[benchmarks.md](benchmarks.md#fuzzing)" in lines[2]
    rows = [line for line in lines if line.startswith("| roi_pool |")]
    assert len(rows) == fuzz.ERROR_ROWS + 1 and rows[-1].startswith("| roi_pool | | 2 rarer")
    assert "| roi_pool | ValueError | message 16 / with a bar | 17 | 17 | 16 |" in rows


def test_the_docs_hold_each_section_where_the_documented_command_writes_it():
    summary = (ROOT / "docs" / "benchmarks.md").read_text()
    details = (ROOT / "docs" / "robustness.md").read_text()
    start, end = fuzz.report.markers(fuzz.SECTION)
    section = summary.split(start, 1)[1].split(end, 1)[0]
    assert section.startswith("\n## Fuzzing\n") and "InvalidArgumentError" not in section
    assert f"(robustness.md#{fuzz.DETAILS_ANCHOR})" in section
    start, end = fuzz.report.markers(fuzz.DETAILS)
    section = details.split(start, 1)[1].split(end, 1)[0]
    assert section.startswith(f"\n### {fuzz.DETAILS_HEADING}\n")
    assert "--details docs/robustness.md" in details
