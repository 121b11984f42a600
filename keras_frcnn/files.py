"""Writing files so that nobody ever reads a half-written one, reading them back with
errors that name the file, and locking a workdir against a second writer."""

import fcntl
import json
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


class CorruptFile(ValueError):
    """A file that exists but cannot be parsed: truncated by a crash or a full disk,
    or edited by hand."""


def read_json(path, fix, expect=dict):
    """The JSON value in ``path``, which must be an ``expect`` (dict: an object, list:
    an array); CorruptFile naming the file and ``fix`` (what the user can do about
    it) if it is truncated, not JSON or not of that kind. A missing file raises
    FileNotFoundError as usual."""
    path = Path(path)
    text = path.read_bytes()
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        state = "empty" if not text.strip() else f"corrupt or truncated ({err})"
        raise CorruptFile(f"{path}: {state}; {fix}") from None
    if not isinstance(value, expect):
        kind = {dict: "an object", list: "an array"}.get(expect, expect.__name__)
        raise CorruptFile(f"{path}: corrupt (a JSON {type(value).__name__}, not {kind}); {fix}")
    return value


class WorkdirBusy(RuntimeError):
    """The workdir's lock cannot be taken: another process holds it, or the file
    system does not lock."""


class WorkdirLock:
    """An exclusive lock on a workdir, held while a training runs in it.

    flock(2) on ``<workdir>/<name>``: the kernel drops it when the process ends, however
    it ends (kill -9 included), so a lock is never stale. The holder writes its PID
    into the file so a second run can say who holds it; the file itself stays.
    """

    def __init__(self, workdir, name="train.lock"):
        self.path = Path(workdir) / name
        self._fd = None

    def acquire(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise WorkdirBusy(f"cannot create the lock file {self.path}: {err.strerror}; "
                              "give a writable --workdir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WorkdirBusy(f"{self.path.parent} is in use by another training (PID "
                              f"{holder}); wait for it to finish or stop it, or give "
                              "another --workdir") from None
        except OSError as err:
            os.close(fd)
            raise WorkdirBusy(f"cannot lock {self.path}: {err.strerror}; give a --workdir "
                              "on a file system that supports flock (a local disk)") from None
        # A fixed width, written in one call without truncating first, so a run that
        # reads the file while this one writes it never sees it empty.
        os.pwrite(fd, f"{os.getpid():<20}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
