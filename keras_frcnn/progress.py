"""Progress of long loops: a live bar on a terminal, plain log lines elsewhere.

A bar redraws its line with carriage returns and colour codes; written to a file or a
pipe (a log of a batch job, CI) it becomes one long line of them. Off a terminal the
loops therefore log a line now and then instead: at the start, about every tenth of the
work or minute, and at the end.
"""

import logging
import sys
import time

logger = logging.getLogger("keras_frcnn.progress")


def is_terminal(stream):
    """True if ``stream`` (sys.stdout, sys.stderr) is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced, or closed
        return False


class LogProgress:
    """tqdm's ``update``/``close`` as log lines: "<desc>: 40 of 120 images (33 %)"."""

    def __init__(self, total, desc, unit, min_seconds=60.0):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self._min_seconds = min_seconds
        self._next = max(1, -(-total // 10))
        self._last = time.monotonic()
        logger.info("%s: %d %ss", desc, total, unit)

    def update(self, count=1):
        """``count`` more done; logs a line at each tenth of the work or minute."""
        self.done += count
        now = time.monotonic()
        if self.done >= self._next or now - self._last >= self._min_seconds:
            self._next = self.done + max(1, -(-self.total // 10))
            self._last = now
            if self.done < self.total:
                logger.info("%s: %d of %d %ss (%d %%)", self.desc, self.done, self.total,
                            self.unit, 100 * self.done // max(self.total, 1))

    def close(self):
        """Logs the last line (once)."""
        if self.total:
            logger.info("%s: %d of %d %ss done", self.desc, self.done, self.total, self.unit)
            self.total = 0


def progress_bar(total, desc, unit):
    """A tqdm bar on stderr if it is a terminal, else a LogProgress."""
    if is_terminal(sys.stderr):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit)
    return LogProgress(total, desc, unit)


class TrainingLog:
    """keras.utils.Progbar's ``update(step, values)`` as one log line every
    ``every`` steps and at the last: "step 40 of 3000: loss 0.5321, ..."."""

    def __init__(self, steps, every):
        self.steps, self.every = steps, every

    def update(self, step, values=None):
        """Logs ``values`` [(name, value)] if ``step`` is one to log."""
        if values and (step % self.every == 0 or step == self.steps):
            listed = ", ".join(f"{name} {value:.4f}" for name, value in values)
            logger.info("step %d of %d: %s", step, self.steps, listed)


def training_bar(steps, every, verbose, metrics=()):
    """keras.utils.Progbar of ``metrics`` on a terminal (stdout), else a TrainingLog;
    with ``verbose`` False, a Progbar that shows nothing."""
    import keras

    if verbose and not is_terminal(sys.stdout):
        return TrainingLog(steps, every)
    return keras.utils.Progbar(steps, verbose=1 if verbose else 0,
                               stateful_metrics=list(metrics))
