"""Progress and logs that a human can read, on a terminal and in a file.

* On a terminal (stderr is a TTY), long loops show a tqdm bar that disappears when done.
* Anywhere else (``train ... > log 2>&1``, CI, a notebook's captured output), there are no
  carriage-return frames: a loop that runs longer than ``every`` seconds prints one plain line
  every ``every`` seconds, from a background :class:`Heartbeat`, so even one batch that takes
  minutes (``ibm_local``) is never silent.
* :class:`RunLog` prints a run's lines (one per epoch) and appends them to the run's own
  ``train.log``; ``quiet`` silences the screen, never the file.

Example::

    >>> with Progress(total=3, desc="evaluate", quiet=True) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

EVERY = 30.0  # seconds: long work reports at least this often


def on_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: stderr, where progress goes) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class Heartbeat:
    """Call ``beat()`` every ``every`` seconds, from a background thread, while the block runs.

    Progress that is reported only between steps goes silent when one step is long (a 35-second
    evaluation of a single batch, a training run inside ``compare``); a heartbeat is not tied to
    the steps.
    """

    def __init__(self, beat: Callable[[], None], every: float | None = None):
        self.beat, self.every = beat, EVERY if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def report_every(describe: Callable[[float], str], every: float | None = None) -> Heartbeat:
    """A heartbeat that prints ``describe(seconds since it started)`` on stderr: long work that
    has no steps of its own to report after (a run inside ``compare``, a sweep's cells)."""
    t0 = time.perf_counter()
    return Heartbeat(lambda: print(describe(time.perf_counter() - t0), file=sys.stderr, flush=True), every)


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every ``every`` seconds (none for fast loops).

    Args:
        total: number of steps (batches).
        desc: what is running, e.g. ``"epoch 3/15"`` or ``"evaluate test"``.
        quiet: no output at all.
        every: seconds between plain lines off a terminal.
    """

    def __init__(self, *, total: int, desc: str, quiet: bool = False, every: float | None = None):
        self.total, self.desc, self.every = total, desc, EVERY if every is None else every
        self.n, self.postfix = 0, ""
        self._bar = self._heartbeat = None
        self._t0 = time.perf_counter()
        if quiet:
            return
        if on_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, leave=False)
            self._heartbeat = Heartbeat(self._bar.refresh, every=1.0)  # the elapsed time keeps moving
        else:
            self._heartbeat = Heartbeat(self._line, every=self.every)

    def __enter__(self) -> Progress:
        if self._heartbeat is not None:
            self._heartbeat.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._heartbeat is not None:
            self._heartbeat.__exit__(*exc)
        if self._bar is not None:
            self._bar.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def _line(self) -> None:
        extra = f"  {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} batches, {time.perf_counter() - self._t0:.0f}s{extra}",
              file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        if self._bar is not None:
            self._bar.set_postfix(**values)
        else:
            self.postfix = " ".join(f"{k} {v}" for k, v in values.items())


class RunLog:
    """A run's lines: printed (unless ``quiet``) and appended to ``path`` (the run's train.log).

    Lines printed with ``always=True`` (the final test accuracy, the run directory) show even
    when quiet: a quiet run still says what it produced and where.
    """

    def __init__(self, path: str | Path | None = None, *, quiet: bool = False):
        self.path = Path(path) if path is not None else None
        self.quiet = quiet

    def attach(self, path: str | Path) -> None:
        """Start writing to ``path`` (once its folder exists)."""
        self.path = Path(path)

    def __call__(self, line: str, *, always: bool = False) -> None:
        if always or not self.quiet:
            print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n")
