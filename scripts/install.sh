#!/usr/bin/env bash
# Sets up keras-frcnn in ./.venv on a fresh machine: a Python 3.11 virtual
# environment, the pinned dependencies, and the package in editable mode,
# which builds the RoI pooling op (custom_ops/Makefile) for that TensorFlow.
#
#   bash scripts/install.sh          # runtime dependencies
#   bash scripts/install.sh --test   # plus pytest, hypothesis and the [beam] extra
#                                    # (Apache Beam), so that its tests run too
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
requirements=(-r requirements.txt)
if [ "${1:-}" = "--test" ]; then
  requirements+=(-r requirements-test.txt -r requirements-beam.txt)
fi
.venv/bin/python -m pip install --quiet "${requirements[@]}"
# No build isolation: the op must be built against the TensorFlow installed above.
.venv/bin/python -m pip install --quiet --no-build-isolation --no-deps -e .
.venv/bin/python -c "import keras_frcnn.ops.loader as l; l.load(); print('keras-frcnn installed; RoI pooling op loaded from', l.CPU_LIBRARY)"
# The same resolver run that installs Beam must leave TensorFlow's own dependencies whole.
.venv/bin/python -m pip check
