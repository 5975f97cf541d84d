"""Files that survive kills and concurrent commands: atomic writes and one writer per folder.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`write_json`: a temporary file
  in the same folder, fsynced, then renamed over the target. A reader (or a resumed run) sees the
  old file or the new one, never half of one.
* :class:`WriterLock`: an ``fcntl.flock`` on ``<folder>/.lock`` held by the command that writes
  the folder (``train``, ``noise-sweep``, ``submit``, ``fetch``). A second writer gets one clear
  line naming the holder's pid. The kernel drops the lock when its holder dies, so a killed run
  never leaves a stale lock, and the next writer removes the temporary files that the dead one
  left behind.
* :class:`ReaderLock`: a shared lock on the same file, for a long read that needs the folder
  unchanged throughout (a noise sweep of a run's model): readers share it, a writer waits for
  none of them but is refused in one line while any holds it, and a reader is refused while a
  writer holds it. Quick reads (evaluate) take no lock.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with WriterLock(folder, what="train"):
    ...     write_json(f"{folder}/metrics.json", {"accuracy": 1.0})
    >>> read_json(f"{folder}/metrics.json")
    {'accuracy': 1.0}
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError

TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in ``path`` (errors are the caller's to turn into one line)."""
    return json.loads(Path(path).read_text())


class WriterLock:
    """One writer per folder: ``with WriterLock(folder, what="train"): ...``.

    Args:
        folder: the folder written (created if missing).
        what: the command taking the lock, for the message a second writer sees.

    Raises:
        HybridQiskitError: another live process holds the lock (its pid and command are named),
            or the folder cannot be written (read-only, no permission).
    """

    def __init__(self, folder: str | Path, *, what: str):
        self.folder = Path(folder)
        self.what = what
        self._fh = None

    def __enter__(self) -> WriterLock:
        path = self.folder / ".lock"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")  # noqa: SIM115 - held until __exit__
        except OSError as exc:
            raise HybridQiskitError(
                f"cannot write to {self.folder}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fh)
            doing = "written" if holder else "read (a noise sweep?) or written"  # readers leave no name
            raise HybridQiskitError(
                f"{self.folder} is being {doing} by {holder or 'another process'}; wait for it to finish "
                "(or stop it) and try again"
            ) from None
        fh.seek(0)
        fh.truncate()  # a reader that held the file left nothing in it
        fh.write(f"pid {os.getpid()} ({self.what})")
        fh.flush()
        self._fh = fh
        self._remove_dead_temporaries()
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def _remove_dead_temporaries(self) -> None:
        """Temporary files of a writer that was killed mid-write: with the lock held, no live
        writer of this folder can own one."""
        for tmp in self.folder.glob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)


def _holder(fh) -> str:
    """The name a lock's holder wrote into it ("pid N (command)"; empty for readers), and close it."""
    fh.seek(0)
    holder = fh.read().strip()
    fh.close()
    return holder


class ReaderLock:
    """A shared lock on ``<folder>/.lock`` for as long as a reader needs the folder unchanged.

    A folder that cannot hold a lock file (read-only) is read without one: nothing can write
    it either.

    Raises:
        HybridQiskitError: a writer (``train``) holds the folder; its pid and command are named.
    """

    def __init__(self, folder: str | Path, *, what: str):
        self.folder = Path(folder)
        self.what = what
        self._fh = None

    def __enter__(self) -> ReaderLock:
        try:
            fh = open(self.folder / ".lock", "a+")  # noqa: SIM115 - held until __exit__
        except OSError:
            return self
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HybridQiskitError(
                f"{self.folder} is being written by {_holder(fh) or 'another process'}, so {self.what} would read a model that "
                "changes under it; wait for it to finish and try again"
            ) from None
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
