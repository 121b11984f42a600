"""The console scripts (frcnn-train, ...) print the same --help as python bin/<name>.py."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("train", "evaluate", "detect", "proposals", "compress", "export", "study",
            "convert_caffemodel", "convert_tflite")
FIRST_FLAG = {"convert_tflite": "--tflite:"}  # the others all take --config


def help_text(argv):
    out = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    return out.returncode, out.stdout  # absl exits with 1 after --help


@pytest.mark.parametrize("name", PROGRAMS)
def test_console_script_help_lists_the_program_s_flags(name):
    script = Path(sys.executable).parent / f"frcnn-{name.replace('_', '-')}"
    if not script.is_file():
        pytest.skip(f"{script} not installed (pip install -e . installs it)")
    source = ROOT / "bin" / f"{name}.py"
    code, expected = help_text([sys.executable, str(source)])
    got_code, got = help_text([str(script)])
    # The same text but for the program's name in the flags' heading and usage lines.
    assert got.replace(str(script), "PROGRAM") == expected.replace(str(source), "PROGRAM")
    assert got_code == code
    assert FIRST_FLAG.get(name, "--config:") in got  # its flags are listed
    assert got.splitlines()[0].strip()  # after the docstring
