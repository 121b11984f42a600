"""The worker processes of selective search (proposals/selective_search.py): a process
pool whose workers run one OpenCV thread each, ignore Ctrl-C (the parent stops them),
and never outlive the process that started them."""

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import threading
import time

import cv2


def worker_context():
    """fork when TensorFlow is not loaded here (fast, no re-import of __main__);
    spawn otherwise, since forking a process with TensorFlow's threads is unsafe."""
    return multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")


def _worker_init(parent):
    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group: the parent stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent",
                     daemon=True).start()


def _watch_parent(parent, interval=0.5):
    """Ends this worker once ``parent`` (a PID) is no longer its parent: a process whose
    parent dies is handed to init or a subreaper. A killed parent (SIGKILL, the OOM
    killer) cannot stop its workers, and the pool's own exit on a broken pipe waits for
    the running search, which can take minutes. OpenCV releases the GIL while it
    searches, so this thread runs meanwhile. (Linux's parent-death signal is tied to the
    creating thread, which may be a short-lived one here: polling is the portable way.)
    multiprocessing's resource tracker exits once the last worker holding its pipe has."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def start_pool(workers):
    """A ProcessPoolExecutor of ``workers`` processes set up as the module docstring says."""
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=worker_context(), initializer=_worker_init,
        initargs=(os.getpid(),))


def worker_result(future):
    """The result of a worker's future; its DatasetError as it is; a dead pool explained."""
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as err:
        raise RuntimeError(
            "selective-search worker processes died. A script that starts them after "
            "importing TensorFlow must guard its entry point with "
            "`if __name__ == '__main__':` (they are spawned and re-import it); "
            "or pass workers=0.") from err
