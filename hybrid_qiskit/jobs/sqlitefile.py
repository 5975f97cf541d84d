"""SQLite files that are never half-created, never silently replaced, and fail in one line.

* :func:`connect`: open a database in WAL mode with its schema in place; a new file is built
  aside and linked into place (no reader sees a half-created one, two creators agree on one);
  ``readonly=True`` writes nothing, not even the WAL index (``immutable`` in a read-only folder).
* An empty (0 bytes), non-SQLite or foreign file raises :class:`LedgerDamaged`: one line naming
  the file, what is wrong and what to do. Nothing replaces it by itself.
* :func:`guarded`: methods whose sqlite3 errors become such a line (locked, read-only, damaged).
* :func:`immediate`: one write transaction that takes the write lock at BEGIN.

Used by the job ledger (``jobs.sqlite``) and the job index (``index.sqlite``).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from hybrid_qiskit.errors import HybridQiskitError

BUSY_TIMEOUT_MS = 60_000  # a writer holds the lock for milliseconds; a minute means "stuck"
LEDGER_NAME = "jobs.sqlite"
INDEX_NAME = "index.sqlite"


class LedgerDamaged(HybridQiskitError):
    """A ledger or index file that cannot be read as one; the message says what to do."""


def _is_index(path: Path) -> bool:
    return path.name == INDEX_NAME


def _remedy(path: Path) -> str:
    if not _is_index(path):
        return (f"restore it from a backup, or move it aside (mv {path} {path}.damaged) to start a new "
                "one; nothing replaces it by itself")
    return (f"delete it (rm {path}); it only maps job ids to runs, every run's own {LEDGER_NAME} keeps "
            "its jobs, and `fetch --run-dir RUN` works without it")


def damaged(path: Path, what: str) -> LedgerDamaged:
    kind = "job index" if _is_index(path) else "job ledger"
    return LedgerDamaged(f"{path}: {what}, not a usable {kind}; {_remedy(path)}")


def sqlite_problem(path: Path, exc: sqlite3.Error) -> HybridQiskitError:
    """One line for an sqlite3 error: locked, read-only, or a damaged file."""
    text = str(exc).strip() or type(exc).__name__
    if "locked" in text or "busy" in text:
        return HybridQiskitError(f"{path} is locked by another process ({text}); try again when it finishes")
    if "readonly" in text or "read-only" in text:
        return HybridQiskitError(f"cannot write {path}: it is read-only ({text}); run from a writable copy")
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
        return HybridQiskitError(f"cannot open {path} ({text}); check the folder's permissions")
    return damaged(path, f"the file is damaged ({text})")


def _check(conn: sqlite3.Connection, path: Path, tables: tuple[str, ...], version: int) -> None:
    """The file is SQLite, of a schema we can read, with our tables."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise HybridQiskitError(f"{path} was written by a newer hybrid-qiskit (schema {found}); upgrade to read it")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in tables if t not in names]
    if missing:
        raise damaged(path, f"an SQLite file without the table(s) {', '.join(missing)}")


def _create(path: Path, schema: str, version: int) -> None:
    """Build a new database aside and link it into place: atomic, and never over an existing
    file (two processes creating it at once: one wins, the other opens the winner's)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise HybridQiskitError(f"cannot create {path}: {exc.strerror or exc}; choose a writable folder") from None
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            with immediate(conn):
                for statement in statements(schema):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(tmp + suffix).unlink(missing_ok=True)


def connect(path: Path, schema: str, *, version: int, migrations: dict | None = None, readonly: bool = False,
            create: bool = True) -> sqlite3.Connection:
    """Open a database in WAL mode with the schema in place (``readonly``: open it as it is,
    writing nothing, not even the WAL index when the folder is read-only).

    Raises:
        LedgerDamaged: an empty file, not SQLite, or without our tables.
        HybridQiskitError: missing (and not ``create``), locked, or unreadable.
    """
    tables = tuple(s.split()[5] for s in statements(schema) if s.upper().startswith("CREATE TABLE"))
    if path.exists() and path.stat().st_size == 0:
        raise damaged(path, "the file is empty (0 bytes): an interrupted copy or a truncated file")
    if not path.exists():
        if readonly or not create:
            raise HybridQiskitError(f"{path} does not exist")
        _create(path, schema, version)
    try:
        if readonly:
            return _connect_readonly(path, tables, version)
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _check(conn, path, tables, version)
            for attempt in range(50):
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 49:
                        raise
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, version, migrations or {})
        except BaseException:
            conn.close()
            raise
        return conn
    except sqlite3.Error as exc:
        raise sqlite_problem(path, exc) from None


def _connect_readonly(path: Path, tables: tuple[str, ...], version: int) -> sqlite3.Connection:
    """``mode=ro``; in a read-only folder a WAL database cannot get its index file, so then
    ``immutable=1`` (nobody can be writing a folder that cannot be written)."""
    uri = f"file:{quote(str(path.resolve()))}"
    for flags in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + flags, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            _check(conn, path, tables, version)
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if "immutable" in flags:  # SQLITE_CANTOPEN or READONLY_CANTINIT: no WAL index possible
                raise
        except BaseException:
            conn.close()
            raise
    raise AssertionError("unreachable")


def _migrate(conn: sqlite3.Connection, version: int, migrations: dict) -> None:
    """Bring an older file up to date (new nullable columns), in one write transaction."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
        return
    with immediate(conn):
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, columns in migrations.items():
            if table not in names:
                continue
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        conn.execute(f"PRAGMA user_version = {version}")


def guarded(method):
    """Ledger methods: an sqlite3 error becomes one line naming the file."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise sqlite_problem(self.path, exc) from None

    return wrapper


def statements(script: str) -> list[str]:
    """The statements of a schema script (executescript would COMMIT our open transaction)."""
    lines = [line.split("--")[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@contextmanager
def immediate(conn: sqlite3.Connection):
    """One write transaction: the write lock is taken at BEGIN, so it cannot fail midway on
    another writer; any exception rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
