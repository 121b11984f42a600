"""Writing files so that nobody ever reads a half-written one, reading them back with
errors that name the file, telling files apart by their contents, and locking a workdir
against a second writer.

Paths beyond the local disk: a path with a scheme (``gs://``, ``s3://``, ``hdfs://``,
``ram://``) is read and written through TensorFlow's file systems (``tf.io.gfile``;
s3 and hdfs need their plugin, tensorflow-io), local paths as they always were. The
helpers below (``is_url``, ``join``, ``read_bytes``, ``is_file``, ``make_dirs``, and
``atomic_write`` and ``file_digest``) take either, so that images, the proposal cache
and detection outputs can sit in a bucket (docs/scale.md). TensorFlow is imported
only when such a path is used.

Modes: every file and folder written here gets the mode the process's umask gives a
newly created one (0644 and 0755 under the usual umask 022), as ``open`` and
``mkdir`` would. ``tempfile`` creates its files 0600 and folders 0700 whatever the
umask says, which would keep other users (a TF Serving account, a colleague sharing
a proposal cache) out of outputs renamed from them.
"""

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

_UMASK_LOCK = threading.Lock()
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path):
    """True for a path with a scheme (``gs://bucket/a.jpg``, ``ram://x``): one that the
    helpers here read through tf.io.gfile. A ``pathlib.Path`` is never one (it would
    have folded the ``//``)."""
    return isinstance(path, str) and bool(_URL.match(path))


def local_only(path, what, fix="give a local folder"):
    """``path`` unchanged; ValueError naming it if it is a URL, for the places that must
    be on a local (or shared POSIX) file system: a training workdir (locked with flock,
    checkpoints renamed into place), an evaluation's output folder (replaced whole by a
    rename), bin/detect.py's pictures (docs/scale.md)."""
    if is_url(str(path)):
        raise ValueError(f"{what} {path}: must be a local (or mounted) folder, not a URL; "
                         f"{fix} (docs/scale.md, \"Paths beyond the local disk\")")
    return path


def in_memory(path):
    """True for TensorFlow's in-memory file system (``ram://``), which only the process
    that wrote it sees: no worker process or fresh process can read it."""
    return str(path).startswith("ram://")


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def join(base, *parts):
    """``base`` / ``parts``: a Path for a local ``base``, a "/"-joined string for a URL."""
    if not is_url(base):
        return Path(base).joinpath(*parts)
    return "/".join([base.rstrip("/"), *(str(p).strip("/") for p in parts)])


def parent(path):
    """The folder holding ``path`` (a Path, or a URL string)."""
    return path.rsplit("/", 1)[0] if is_url(path) else Path(path).parent


def name(path):
    """The last part of ``path`` (a file's name with its suffix)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_url(path) else Path(path).name


def stem(path):
    """The file name of ``path`` without its last suffix."""
    if not is_url(path):
        return Path(path).stem
    base = name(path)
    return base.rsplit(".", 1)[0] if "." in base[1:] else base


def is_dir(path):
    """True if ``path`` is an existing folder; False where it cannot be reached."""
    if not is_url(path):
        return Path(path).is_dir()
    try:
        return _gfile().isdir(path)
    except Exception:  # noqa: BLE001 - tf.errors of an unreachable bucket: "not there"
        return False


def list_dir(path):
    """The names in the folder ``path``, sorted (no sub-folder's contents)."""
    if not is_url(path):
        return sorted(p.name for p in Path(path).iterdir())
    return sorted(n.rstrip("/") for n in _gfile().listdir(path))


def read_text(path):
    """The file's text (UTF-8); errors as read_bytes."""
    return read_bytes(path).decode()


def is_file(path):
    """True if ``path`` is an existing file (not a folder); False where it cannot be
    reached."""
    if not is_url(path):
        return Path(path).is_file()
    gfile = _gfile()
    try:
        return gfile.exists(path) and not gfile.isdir(path)
    except Exception:  # noqa: BLE001 - tf.errors of an unreachable bucket: "not there"
        return False


def read_bytes(path):
    """The file's bytes. A missing file raises FileNotFoundError naming ``path``; another
    failure of a URL's file system, OSError naming it."""
    if not is_url(path):
        return Path(path).read_bytes()
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            return file.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{path}: no such file") from None
    except tf.errors.OpError as err:
        raise OSError(errno.EIO, f"cannot read {path}: {err.message}") from None


def make_dirs(path):
    """Creates the folder ``path`` and its parents (a no-op where they exist)."""
    if is_url(path):
        _gfile().makedirs(path)
    else:
        Path(path).mkdir(parents=True, exist_ok=True)


def current_umask():
    """The process's umask, read without changing it where Linux reports it
    (/proc/self/status, kernel 4.7+); elsewhere set and restored under a lock, which
    guards only the callers of this function: a thread creating a file meanwhile
    elsewhere would get umask 022 for that instant."""
    try:
        match = re.search(r"^Umask:\s*([0-7]+)$", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        match = None
    if match:
        return int(match.group(1), 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_temp_dir(parent, prefix):
    """A new uniquely named folder in ``parent``, with the mode ``mkdir`` would give it
    (tempfile.mkdtemp makes it 0700), for building something to rename into place."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def atomic_write(path, data):
    """Writes ``data`` (bytes or str) to a unique temporary file beside ``path``, then
    renames it over ``path``; on any error the temporary file is removed. The file gets
    the mode ``open`` would give a new one (0644 under umask 022). An OSError names
    ``path``, not the temporary file. A URL is written the same way through tf.io.gfile
    (``_atomic_write_url``)."""
    if is_url(path):
        return _atomic_write_url(path, data)
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as err:
        raise _naming(err, path) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from None
        raise


def _atomic_write_url(path, data):
    """atomic_write for a URL: a uniquely named temporary object beside ``path``, renamed
    over it. (On an object store an object appears whole once its upload completes, and
    the rename is a copy: either way nobody reads half of one.)"""
    import tensorflow as tf

    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with tf.io.gfile.GFile(tmp, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException as err:
        try:
            tf.io.gfile.remove(tmp)
        except Exception:  # noqa: BLE001 - never written, or already renamed
            pass
        if isinstance(err, tf.errors.OpError):
            raise OSError(errno.EIO, f"cannot write {path}: {err.message}") from None
        raise


def _naming(err, path):
    """The OSError ``err`` of writing ``path`` through a temporary file, naming ``path``."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOENT and not path.parent.is_dir():
        reason = f"its folder {path.parent} does not exist"
    elif err.errno == errno.ENOTDIR:
        reason = f"{path.parent} is not a folder"
    return type(err)(err.errno, f"cannot write {path}: {reason}")


@contextlib.contextmanager
def run_folder(target):
    """Builds a folder that holds one run's outputs, never two: yields a fresh folder
    beside ``target`` to write into (made first, so an unwritable place fails before
    the work); when the block completes it replaces ``target`` (an earlier run's
    folder moves aside, the new one is renamed in, the old one is deleted), and when
    the block fails it is deleted, leaving ``target`` as it was. If the final rename
    fails, the earlier run goes back in place and the new one is kept as
    ``<name>.failed-<pid>-*``, which the error names. A kill leaves ``<name>.tmp-<pid>-*`` (an unfinished run) or, between
    the two renames, ``<name>.old-<pid>-*`` (the earlier run, with ``target``
    missing): the next run deletes the first and puts the second back
    (_remove_leftovers)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    staging = make_temp_dir(target.parent, f"{target.name}.tmp-{os.getpid()}-")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    try:
        if target.exists():
            # rename(2) replaces an empty folder whole: target moves onto this one.
            old = Path(tempfile.mkdtemp(prefix=f"{target.name}.old-{os.getpid()}-",
                                        dir=target.parent))
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException as err:
        if old is not None:
            if target.exists():  # the first rename failed: old is the empty placeholder
                old.rmdir()
            else:
                os.replace(old, target)
        if isinstance(err, OSError):
            # Out of _remove_leftovers' reach: the message sends the user to these files.
            kept = staging.with_name(staging.name.replace(".tmp-", ".failed-", 1))
            try:
                os.replace(staging, kept)
            except OSError:
                kept = staging
            raise type(err)(err.errno, f"cannot move the finished run into {target} "
                                       f"({err.strerror}); its files are in {kept}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(target):
    """Cleans up after run_folder calls whose process has ended (killed mid-way): an
    ``.old-<pid>-*`` folder goes back to ``target`` if that is missing (the kill fell
    between the two renames; the earlier run was whole), every other leftover
    (``.tmp-``: unfinished) is deleted."""
    pattern = re.compile(re.escape(target.name) + r"\.(tmp|old)-(\d+)-")
    leftovers = [(match.group(1), path) for path in target.parent.iterdir()
                 if (match := pattern.match(path.name)) and path.is_dir()
                 and not _alive(int(match.group(2)))]
    for kind, path in sorted(leftovers, key=lambda item: item[0] != "old"):
        if kind == "old" and not target.exists():
            os.replace(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid):
    """True if a process ``pid`` exists (on this machine: a folder shared between hosts
    can hold another host's live run, which this cannot see)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


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


def file_digest(path):
    """The SHA-256 (hex) of the file's bytes, read in chunks (an image or a weights file
    can be hundreds of MB); a URL through tf.io.gfile."""
    if is_url(path):
        import tensorflow as tf

        digest = hashlib.sha256()
        with tf.io.gfile.GFile(path, "rb") as file:  # no readinto: hashlib's reader refuses it
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def weights_key(value):
    """What a ``model.weights`` setting loads: "sha256:<hex>" of the file it names, so
    that the same file at another path (or a link to it) is the same weights and another
    file at the same path is not; the value itself where it names no file ("imagenet",
    "", a missing file, which loading then refuses)."""
    path = Path(value) if value and value != "imagenet" else None
    if path is None or not path.is_file():
        return value
    stat = path.stat()
    return _cached_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns,
                          stat.st_ctime_ns, stat.st_ino)


@functools.lru_cache(maxsize=16)
def _cached_digest(path, *stat):  # size, times, inode: a replaced file is read again
    return f"sha256:{file_digest(path)}"


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
