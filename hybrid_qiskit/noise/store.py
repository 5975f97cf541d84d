"""The sweep's memory: one JSON line per finished cell, appended and fsynced as it completes.

A rerun loads the finished cells by key and skips them, so a killed sweep resumes where it
stopped. A line cut short by a crash is ignored (its cell simply runs again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def cell_key(identity: dict) -> str:
    """Canonical text of a cell's identity (sorted keys), the resume key."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


class CellStore:
    """``cells.jsonl``: finished cells, keyed by :func:`cell_key` of their ``identity``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self.records[cell_key(record["identity"])] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from a crash: that cell runs again

    def get(self, identity: dict) -> dict | None:
        return self.records.get(cell_key(identity))

    def append(self, record: dict) -> None:
        """Write one finished cell durably (one write of a whole line, then fsync)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str) + "\n"
        with open(self.path, "ab") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                line = "\n" + line  # do not glue onto a torn line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.records[cell_key(record["identity"])] = record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
