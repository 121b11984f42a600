"""Shared start-up of the bin/ programs: absl flags with clear configuration errors,
and TensorFlow's CPU kernels chosen before TensorFlow loads."""

import difflib
import os
import sys
from pathlib import Path

from absl import app, flags

from keras_frcnn.configs import load_config_file

# TensorFlow uses its oneDNN kernels (convolutions, matrix products) by default only on
# CPUs with AVX-512 VNNI, BF16 or AMX; elsewhere (AVX2-only CPUs such as AMD EPYC Zen 3)
# it falls back to Eigen's, and a kangaroo training step took 1.8 s instead of 0.8 s
# (docs/training.md, which also lists the exception: VGG16's training step, 0.73x).
# The programs therefore ask for oneDNN unless the user chose:
# TF_ENABLE_ONEDNN_OPTS=0 keeps Eigen's kernels. Read once, when TensorFlow loads, so it
# must be set here, before any program imports TensorFlow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _unknown_key_message(argv, err):
    """Names the --config.* override whose key does not exist, the nearest valid key and
    all valid keys of its section."""
    path = _config_argument(argv)
    config = load_config_file(path.split(":", 1)[0]) if path else None
    for arg in argv[1:]:
        if config is None or not arg.startswith("--config.") or "=" not in arg:
            continue
        keys, node = arg[len("--config."):].split("=", 1)[0].split("."), config
        for depth, key in enumerate(keys):
            if not hasattr(node, "keys"):
                return (f"config.{'.'.join(keys[:depth])} in {arg} is a setting, not a "
                        f"section: it has no key {key!r}")
            if key not in node:
                valid = sorted(node.keys())
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                section = "config." + ".".join(keys[:depth]) if depth else "config"
                return (f"unknown config key {key!r} in {arg}{hint} (valid keys of {section}: "
                        f"{', '.join(valid)})")
            node = node[key]
    first_line = str(err).strip("\"'").splitlines()[0].strip("\"'")
    return f"bad configuration override: {first_line}"


def _parse_flags(argv, known_only=False):
    try:
        return flags.FLAGS(argv, known_only=known_only)
    except (AttributeError, KeyError, TypeError) as err:
        sys.exit(f"error: {_unknown_key_message(argv, err)}")
    except OSError as err:  # ml_collections loads the file here when --config.* overrides it
        _check_config_file(_config_argument(argv))
        sys.exit(f"error: {str(err).splitlines()[0]}")
    except (flags.Error, ValueError) as err:
        sys.exit(f"error: {err}")


def _config_argument(argv):
    """The value of --config in ``argv`` (``--config=PATH`` or ``--config PATH``), or None."""
    for k, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and k + 1 < len(argv):
            return argv[k + 1]
    return None


def _check_config_file(path):
    """One line for a --config file that does not exist. ml_collections loads it while
    the flags are parsed when an override follows (_parse_flags), else at its first use;
    either way it printed two chained tracebacks."""
    if path and not Path(path.split(":", 1)[0]).is_file():
        sys.exit(f"error: --config={path}: no such file (the experiment configs are in "
                 "configs/, e.g. --config=configs/demo.py)")


def _adopt_program(main):
    """Makes ``--help`` of a console script (frcnn-train, ...) print what ``python
    bin/<name>.py --help`` prints. absl's help shows the docstring of ``__main__`` and
    the flags defined in the main module, which it names ``sys.argv[0]``; a console
    script's ``__main__`` is the installer's wrapper, which defines neither."""
    module = sys.modules.get(main.__module__)
    if module is None or main.__module__ == "__main__":
        return
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    wrapper = sys.modules.get("__main__")
    if wrapper is not None and not getattr(wrapper, "__doc__", None):
        wrapper.__doc__ = module.__doc__


def program_flags(main):
    """The names of the flags the module of ``main`` defines (its key flags)."""
    module = sys.modules.get(main.__module__)
    return [f.name for f in flags.FLAGS.get_key_flags_for_module(module)] if module else []


def run(main, required=("config",), pass_through=False):
    """app.run(main) with the ``required`` flags; a bad flag or config override, or
    stray positional arguments, exit with one line.

    ``pass_through``: flags the program does not define are handed to ``main`` in
    ``argv[1:]`` instead of refused (Beam pipeline options, which ``main`` checks:
    keras_frcnn.beam.pipeline_options); positional arguments are still refused."""
    flags.mark_flags_as_required(list(required))
    _adopt_program(main)

    def checked_main(argv):
        stray = [a for a in argv[1:] if not (pass_through and a.startswith("--"))]
        if stray:
            form = " (give pipeline options as --name=value)" if pass_through else ""
            sys.exit(f"error: unexpected arguments: {stray}{form}")
        _check_config_file(_config_argument(sys.argv))
        return main(argv)

    app.run(checked_main, flags_parser=lambda argv: _parse_flags(argv, pass_through))
