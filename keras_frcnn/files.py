"""Writing files so that nobody ever reads a half-written one."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, data):
    """Writes ``data`` (bytes or str) to a unique temporary file beside ``path``, then
    renames it over ``path``; on any error the temporary file is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
