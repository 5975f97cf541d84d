"""The sweep's memory: one JSON line per finished cell, appended and fsynced as it completes.

A rerun loads the finished cells by key and skips them, so a killed sweep resumes where it
stopped. Only the driver appends (whatever executor ran the cell), under the sweep folder's
:class:`~hybrid_qiskit.fileio.WriterLock`, so two sweeps never write one file.

Damage is told apart from a kill: a last line cut short by a crash is ignored silently (its
cell runs again); any other line that is not a finished cell is reported in one warning line
and its cell runs again; a file that is not text at all is an error naming it, and so is one
cell twice with other results (a repeated identical line is harmless and read once).
"""

from __future__ import annotations

import json
import os
from numbers import Real
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError


def cell_key(identity: dict) -> str:
    """Canonical text of a cell's identity (sorted keys), the resume key."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def _problem(record) -> str | None:
    """Why a parsed line is not a finished cell (None: it is one)."""
    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
        return "no 'identity'"
    accuracy = record.get("accuracy")
    if not isinstance(accuracy, Real) or isinstance(accuracy, bool) or not 0 <= accuracy <= 1:
        return "no valid 'accuracy'"
    return None


def _result(record: dict) -> tuple:
    """What a cell measured (not when it finished or how long it took)."""
    return record.get("accuracy"), record.get("loss"), record.get("mean_abs_z")


class CellStore:
    """``cells.jsonl``: finished cells, keyed by :func:`cell_key` of their ``identity``.

    ``damaged`` lists ``(line number, why)`` of lines that were skipped (not a torn last line).

    Raises:
        HybridQiskitError: the file cannot be read, or is binary (not a cell log).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.line_of: dict[str, int] = {}  # key -> the line that holds it
        self.damaged: list[tuple[int, str]] = []
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise HybridQiskitError(f"cannot read {self.path}: {exc.strerror or exc}; "
                                    "it should be the sweep's cell log (a file)") from None
        try:
            text = data.decode()
            if "\x00" in text:
                raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        except UnicodeDecodeError:
            raise HybridQiskitError(
                f"{self.path} is binary, not a sweep's cell log; move it away and rerun (the sweep "
                "then starts afresh), or restore it from a backup"
            ) from None
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                why = _problem(record)
            except json.JSONDecodeError:
                record, why = None, "not JSON"
            if why is None:
                key = cell_key(record["identity"])
                first = self.records.get(key)
                if first is not None and _result(first) != _result(record):
                    # A cell is unique by identity: two results for one cell mean the log was edited or
                    # merged by hand, and either could be the one the table should show.
                    raise HybridQiskitError(
                        f"{self.path}: lines {self.line_of[key]} and {number} hold the same cell with other results "
                        f"(accuracy {first['accuracy']} and {record['accuracy']}); delete the wrong line and rerun")
                self.records.setdefault(key, record)
                self.line_of.setdefault(key, number)
            elif not (number == len(lines) and not text.endswith("\n")):
                self.damaged.append((number, why))  # a torn last line from a kill is expected

    def warning(self) -> str | None:
        """One line about damaged lines, or None."""
        if not self.damaged:
            return None
        shown = ", ".join(f"{n} ({why})" for n, why in self.damaged[:3])
        more = f" and {len(self.damaged) - 3} more" if len(self.damaged) > 3 else ""
        return (f"warning: {self.path}: ignored line(s) {shown}{more} that are not finished cells; those "
                "cells run again (delete the lines to silence this)")

    def get(self, identity: dict) -> dict | None:
        return self.records.get(cell_key(identity))

    def append(self, record: dict) -> None:
        """Write one finished cell durably (one write of a whole line, then fsync)."""
        line = json.dumps(record, default=str) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                if fh.tell() > 0 and not self._ends_with_newline():
                    line = "\n" + line  # do not glue onto a torn line
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise HybridQiskitError(f"cannot write {self.path}: {exc.strerror or exc}; cells finished "
                                    "so far are saved: free the disk or fix permissions, then rerun") from None
        self.records[cell_key(record["identity"])] = record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"


def finished_elsewhere(noise_dir: Path, exclude: Path) -> dict[str, dict]:
    """Finished cells of the run's other sweeps (``noise_dir/*/cells.jsonl``), by key: a cell is
    the same wherever it was computed, so a new sweep reuses them. Unreadable logs are skipped
    (they are not this sweep's to judge)."""
    found: dict[str, dict] = {}
    if not noise_dir.is_dir():
        return found
    for path in sorted(noise_dir.glob("*/cells.jsonl")):
        if path.parent.resolve() == exclude.resolve():
            continue
        try:
            found.update(CellStore(path).records)
        except HybridQiskitError:
            continue
    return found
