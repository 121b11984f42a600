"""Shared start-up of the bin/ programs: absl flags with clear configuration errors."""

import importlib.util
import sys

from absl import app, flags


def _load_config_file(argv):
    """get_config() of the file named by --config=..., or None."""
    for arg in argv[1:]:
        if arg.startswith("--config="):
            spec = importlib.util.spec_from_file_location("config_file", arg.split("=", 1)[1])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.get_config()
    return None


def _unknown_key_message(argv, err):
    """Names the --config.* override whose key does not exist, and the valid keys."""
    key = str(err).strip("\"'")
    for arg in argv[1:]:
        if not arg.startswith("--config.") or "=" not in arg:
            continue
        path = arg[len("--config."):].split("=", 1)[0].split(".")
        if key in path:
            parent = _load_config_file(argv)
            for name in path[:path.index(key)]:
                parent = parent[name] if parent is not None else None
            valid = ", ".join(sorted(parent.keys())) if hasattr(parent, "keys") else "none"
            return f"unknown config key {key!r} in {arg} (valid keys here: {valid})"
    return f"bad configuration override: {err}"


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as err:
        sys.exit(f"error: {_unknown_key_message(argv, err)}")
    except (flags.Error, ValueError, TypeError) as err:
        sys.exit(f"error: {err}")


def run(main):
    """app.run(main), but a bad flag or config override exits with one line."""
    app.run(main, flags_parser=_parse_flags)
