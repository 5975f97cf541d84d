"""The job ledger: one SQLite file per run directory (``<run_dir>/jobs.sqlite``), and a small
user-level index that maps job ids to run directories so ``fetch JOB_ID`` finds them.

Why SQLite: every write is a transaction, so a crash leaves the file as it was before or after
a write, never half; and several processes may submit into the same run at once. The file is
opened in WAL mode (readers never block the writer) with a busy timeout, and every write runs
in ``BEGIN IMMEDIATE`` (it takes the write lock up front, so two writers queue instead of
failing halfway with "database is locked"). ``synchronous=FULL``: a job id is on disk before
anyone waits on it, even across a power cut.

Arrays (parameter values, expectation values) are stored as ``.npy`` bytes: exact float64,
self-describing shape, no pickle. Small lists (labels, indices, settings) are JSON.

The index lives in ``$HYBRID_QISKIT_HOME/index.sqlite`` (default:
``${XDG_DATA_HOME:-~/.local/share}/hybrid-qiskit/index.sqlite``); it only maps job ids to run
directories. The run's ledger is the source of truth: losing the index loses nothing
(``--run-dir`` finds the jobs).

Damaged files are never silently replaced: a ledger or index that is empty (0 bytes), not a
SQLite file, or not ours raises :class:`~hybrid_qiskit.jobs.sqlitefile.LedgerDamaged`, one line naming the file, what is wrong
and what to do. A new file is built aside and linked into place, so no reader ever sees a
half-created one. ``Ledger(path, readonly=True)`` writes nothing (``hybrid-qiskit jobs`` lists a
read-only run directory).

Example:
    >>> with Ledger(tmp / "jobs.sqlite") as ledger:   # doctest: +SKIP
    ...     ledger.jobs(pending_only=True)
    []
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.sqlitefile import (
    LEDGER_NAME,
    connect,
    damaged,
    guarded,
    immediate,
    sqlite_problem,
)

SCHEMA_VERSION = 4  # 2: runtime version, backend name, calibration time; re-run claims. 3: normalization.
# 4: the usage estimate per submission, each job's actual usage and metrics

# Job states. The service's own (QUEUED, RUNNING, DONE, ERROR, CANCELLED) plus LOST: a local
# job whose process ended before its result arrived (local jobs live only in that process).
FINAL = ("DONE", "ERROR", "CANCELLED", "LOST")
PENDING = ("SUBMITTED", "QUEUED", "RUNNING")

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    submission_id     TEXT PRIMARY KEY,
    created_at        TEXT NOT NULL,     -- ISO 8601, UTC
    run_dir           TEXT NOT NULL,     -- absolute, at submit time
    model_sha256      TEXT NOT NULL,     -- of model.pt: fetch refuses to decode with other weights
    backend           TEXT NOT NULL,     -- registry name
    device            TEXT,
    settings          TEXT NOT NULL,     -- JSON: create_backend settings (to run a job again)
    description       TEXT NOT NULL,     -- JSON: the backend handle's description
    split             TEXT NOT NULL,     -- test | val
    positions         TEXT NOT NULL,     -- JSON: each sample's position in the split
    source_indices    TEXT,              -- JSON: each sample's index in the source pool (test)
    labels            TEXT NOT NULL,     -- JSON: true labels
    circuit_qpy       BLOB NOT NULL,     -- the ISA circuit (QPY)
    parameter_names   TEXT NOT NULL,     -- JSON: column order of parameter_values
    observables       TEXT NOT NULL,     -- JSON: the laid-out observables, [[pauli, re, im], ...]
    parameter_values  BLOB NOT NULL,     -- npy (N, P): classical features and head weights
    exact_expvals     BLOB NOT NULL,     -- npy (N, n): the same samples, exact statevector
    exact_predictions TEXT NOT NULL,     -- JSON
    max_rows          INTEGER NOT NULL,  -- rows per job
    runtime_version   TEXT,              -- qiskit-ibm-runtime at submission (its decoders read the results)
    backend_name      TEXT,              -- the device the ISA circuit was laid out on (re-runs stay there)
    calibrated_at     TEXT,              -- that device's calibration timestamp, ISO 8601
    normalization     TEXT,              -- JSON: post-measurement normalization (NULL: none)
    calibration_values BLOB,             -- npy (K, P): calibration rows every job runs after its samples
    estimate          TEXT               -- JSON: what the usage estimate of a job is made of (cost.job_estimate)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions(submission_id),
    row_start     INTEGER NOT NULL,      -- this job runs rows [row_start, row_stop)
    row_stop      INTEGER NOT NULL,
    remote        INTEGER NOT NULL,      -- 1: IBM Quantum keeps it (fetch by id); 0: in-process
    status        TEXT NOT NULL,
    reason        TEXT,                  -- why ERROR, CANCELLED or LOST
    host          TEXT NOT NULL,         -- the submitting process, to tell a dead local job
    pid           INTEGER NOT NULL,
    pid_started   TEXT,                  -- that process's start time (a reused pid is not it)
    session_id    TEXT,
    replaces      TEXT,                  -- the job id this one runs again
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT,
    expvals       BLOB,                  -- npy (rows, n), raw, when DONE
    stds          BLOB,
    metadata      TEXT,                  -- JSON: the PUB result's metadata
    claimed_by    TEXT,                  -- host:pid:start of the process re-running this job
    usage_seconds REAL,                  -- the job's actual usage (job.usage()), once final; NULL: not known
    job_metrics   TEXT                   -- JSON: job.metrics() (timestamps, usage) when it ended
);
CREATE INDEX IF NOT EXISTS jobs_by_submission ON jobs(submission_id);
"""

# Columns added after schema 1, added to older ledgers when they are opened for writing.
MIGRATIONS = {
    "submissions": {"runtime_version": "TEXT", "backend_name": "TEXT", "calibrated_at": "TEXT",
                    "normalization": "TEXT", "calibration_values": "BLOB", "estimate": "TEXT"},
    "jobs": {"claimed_by": "TEXT", "usage_seconds": "REAL", "job_metrics": "TEXT"},
}

INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    run_dir       TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def to_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def from_npy(blob: bytes | None, path: Path, what: str) -> np.ndarray | None:
    """The array stored in a ledger cell; a damaged one is one line naming the file and the row."""
    if blob is None:
        return None
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise damaged(path, f"{what} holds a damaged array ({str(exc).splitlines()[0][:80]})") from None


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started (Linux /proc clock ticks since boot), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name) may hold spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 of the file: starttime


def process_alive(host: str, pid: int, started: str | None) -> bool | None:
    """True / False for a process on this host; None when it ran on another host (unknown)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the pid exists, trust it
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return started is None or process_start_time(pid) == started


class Ledger:
    """The jobs of one run directory. Use as a context manager (closes the connection).

    Args:
        path: the ``jobs.sqlite`` file.
        readonly: open without writing anything (listing; a read-only folder works).
        create: create the file if it is missing (``submit``); otherwise a missing file is an error.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, create: bool = True):
        self.path = Path(path)
        self.readonly = readonly
        self._conn = connect(self.path, SCHEMA, version=SCHEMA_VERSION, migrations=MIGRATIONS, readonly=readonly,
                             create=create)

    @classmethod
    def for_run(cls, run_dir: str | Path, *, readonly: bool = False, create: bool = True) -> Ledger:
        return cls(Path(run_dir) / LEDGER_NAME, readonly=readonly, create=create)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------- writes
    @guarded
    def add_submission(self, record: dict[str, Any]) -> None:
        """Insert a submission; ``record`` has the columns of ``submissions`` (arrays as numpy,
        lists and dicts as Python objects)."""
        row = dict(record)
        for key in ("settings", "description", "positions", "source_indices", "labels", "parameter_names",
                    "observables", "exact_predictions"):
            row[key] = json.dumps(row[key], default=str)
        for key in ("parameter_values", "exact_expvals"):
            row[key] = to_npy(row[key])
        if row.get("normalization") is not None:
            row["normalization"] = json.dumps(row["normalization"], default=str)
        if row.get("calibration_values") is not None:
            row["calibration_values"] = to_npy(row["calibration_values"])
        if row.get("estimate") is not None:
            row["estimate"] = json.dumps(row["estimate"], default=str)
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with immediate(self._conn) as c:
            c.execute(f"INSERT INTO submissions ({cols}) VALUES ({marks})", row)

    @guarded
    def add_job(self, job_id: str, submission_id: str, rows: tuple[int, int], *, remote: bool,
                status: str = "SUBMITTED", session_id: str | None = None,
                replaces: str | None = None, replaced_status: str | None = None,
                replaced_reason: str | None = None) -> None:
        """Record a job the moment the service (or the local simulator) has accepted it.

        With ``replaces``, the job this one runs again gets ``replaced_status`` and
        ``replaced_reason`` in the same transaction: the ledger never shows the old job pending
        while the new one is missing.
        """
        pid, stamp = os.getpid(), now()
        with immediate(self._conn) as c:
            c.execute(
                "INSERT INTO jobs (job_id, submission_id, row_start, row_stop, remote, status, host, pid,"
                " pid_started, session_id, replaces, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, submission_id, rows[0], rows[1], int(remote), status, socket.gethostname(), pid,
                 process_start_time(pid), session_id, replaces, stamp, stamp),
            )
            if replaces:
                c.execute(
                    "UPDATE jobs SET status = COALESCE(?, status), reason = COALESCE(?, reason), updated_at = ?,"
                    " finished_at = COALESCE(finished_at, ?) WHERE job_id = ? AND status != 'DONE'",
                    (replaced_status, replaced_reason, stamp, stamp, replaces),
                )

    @guarded
    def set_status(self, job_id: str, status: str, reason: str | None = None) -> None:
        stamp = now()
        finished = stamp if status in FINAL else None
        with immediate(self._conn) as c:
            c.execute(
                "UPDATE jobs SET status = ?, reason = COALESCE(?, reason), updated_at = ?,"
                " finished_at = COALESCE(finished_at, ?) WHERE job_id = ? AND status != 'DONE'",
                (status, reason, stamp, finished, job_id),
            )

    @guarded
    def store_result(self, job_id: str, expvals: np.ndarray, stds: np.ndarray | None, metadata: Any) -> None:
        """Mark a job DONE with its raw results. A job already DONE keeps its first results
        (fetching twice changes nothing)."""
        stamp = now()
        with immediate(self._conn) as c:
            c.execute(
                "UPDATE jobs SET status = 'DONE', reason = NULL, expvals = ?, stds = ?, metadata = ?,"
                " updated_at = ?, finished_at = ? WHERE job_id = ? AND status != 'DONE'",
                (to_npy(expvals), None if stds is None else to_npy(stds),
                 json.dumps(metadata, default=str), stamp, stamp, job_id),
            )

    @guarded
    def record_usage(self, job_id: str, seconds: float | None, metrics: dict | None) -> None:
        """A final job's actual usage (seconds; None: not reported yet) and its metrics. A usage
        already recorded is kept unless a known one replaces an unknown one."""
        with immediate(self._conn) as c:
            c.execute(
                "UPDATE jobs SET usage_seconds = COALESCE(?, usage_seconds),"
                " job_metrics = COALESCE(?, job_metrics) WHERE job_id = ?",
                (seconds, None if metrics is None else json.dumps(metrics, default=str), job_id),
            )

    # ------------------------------------------------------------- reads
    @guarded
    def submission(self, submission_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM submissions WHERE submission_id = ?", (submission_id,)).fetchone()
        if row is None:
            raise HybridQiskitError(f"no submission {submission_id} in {self.path}")
        out = dict(row)
        for key in ("settings", "description", "positions", "source_indices", "labels", "parameter_names",
                    "observables", "exact_predictions"):
            out[key] = json.loads(out[key]) if out[key] is not None else None
        for key in ("parameter_values", "exact_expvals", "calibration_values"):
            # .get: a schema-2 ledger opened read-only lacks the new columns
            out[key] = from_npy(out.get(key), self.path, f"submission {submission_id}'s {key}")
        out["normalization"] = json.loads(out["normalization"]) if out.get("normalization") else None
        out["estimate"] = json.loads(out["estimate"]) if out.get("estimate") else None
        return out

    @guarded
    def calibration_rows(self, submission_id: str) -> int:
        """K: the calibration rows each job of the submission runs after its samples."""
        row = self._conn.execute("SELECT calibration_values FROM submissions WHERE submission_id = ?",
                                 (submission_id,)).fetchone()
        values = from_npy(row[0], self.path, f"submission {submission_id}'s calibration_values") if row else None
        return 0 if values is None else len(values)

    @guarded
    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_dict(row, self.path)

    @guarded
    def jobs(self, submission_id: str | None = None, *, pending_only: bool = False) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM jobs", []
        where = []
        if submission_id:
            where.append("submission_id = ?")
            args.append(submission_id)
        if pending_only:
            where.append(f"status IN ({', '.join('?' * len(PENDING))})")
            args.extend(PENDING)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY rowid", args).fetchall()  # submission order
        return [_job_dict(r, self.path) for r in rows]

    @guarded
    def submission_ids(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT submission_id FROM submissions ORDER BY rowid")]


    @guarded
    def claim(self, job_id: str) -> str | None:
        """Take the right to run ``job_id`` again, atomically: of two processes re-running the
        same lost job at once, one gets it. Returns None when this process holds the claim, else
        why not (already re-run, or another live process holds it)."""
        me = _me()
        with immediate(self._conn) as c:
            row = c.execute("SELECT claimed_by FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            again = c.execute("SELECT job_id FROM jobs WHERE replaces = ?", (job_id,)).fetchone()
            if again is not None:
                return f"already re-run as job {again[0]}"
            holder = row["claimed_by"] if row is not None else None
            if holder and holder != me:
                host, pid, started = holder.split(":", 2)
                if process_alive(host, int(pid), started or None) is not False:
                    return f"being re-run by process {pid} on {host}"
            c.execute("UPDATE jobs SET claimed_by = ? WHERE job_id = ?", (me, job_id))
        return None

    @guarded
    def release(self, job_id: str) -> None:
        """Give a claim back (re-running failed before the service took the job)."""
        with immediate(self._conn) as c:
            c.execute("UPDATE jobs SET claimed_by = NULL WHERE job_id = ? AND claimed_by = ?", (job_id, _me()))

    @guarded
    def unsubmitted(self, submission_id: str) -> list[tuple[int, int]]:
        """Row ranges of a submission that no job covers (a submission interrupted part-way:
        ``submit RUN --resume SUBMISSION`` sends them), split like the submission's jobs."""
        sub = self._conn.execute("SELECT labels, max_rows FROM submissions WHERE submission_id = ?",
                                 (submission_id,)).fetchone()
        if sub is None:
            return []
        total, size = len(json.loads(sub["labels"])), max(1, sub["max_rows"])
        covered = sorted((j["row_start"], j["row_stop"]) for j in self.jobs(submission_id))
        gaps, at = [], 0
        for a, b in covered + [(total, total)]:
            if a > at:
                gaps.extend((x, min(x + size, a)) for x in range(at, a, size))
            at = max(at, b)
        return gaps


def _me() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or ''}"


def _job_dict(row: sqlite3.Row, path: Path) -> dict[str, Any]:
    out = dict(row)
    out["remote"] = bool(out["remote"])
    out["expvals"] = from_npy(out["expvals"], path, f"job {out['job_id']}'s expvals")
    out["stds"] = from_npy(out["stds"], path, f"job {out['job_id']}'s stds")
    out["metadata"] = json.loads(out["metadata"]) if out["metadata"] else None
    out["job_metrics"] = json.loads(out["job_metrics"]) if out.get("job_metrics") else None  # .get: older ledgers
    out.setdefault("usage_seconds", None)
    return out


# ------------------------------------------------------------------ user-level index
def index_path() -> Path:
    """``$HYBRID_QISKIT_HOME/index.sqlite``, else the XDG data folder (tests point it at tmp)."""
    home = os.environ.get("HYBRID_QISKIT_HOME")
    if home:
        return Path(home) / "index.sqlite"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "hybrid-qiskit" / "index.sqlite"


def index_add(job_id: str, run_dir: str | Path, submission_id: str) -> str | None:
    """Map ``job_id`` to its run directory; returns a warning instead of raising, because the
    run's ledger already holds the job (an unwritable home folder must not fail a submission)."""
    try:
        conn = connect(index_path(), INDEX_SCHEMA, version=SCHEMA_VERSION)
        try:
            with immediate(conn) as c:
                c.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)",
                          (job_id, str(Path(run_dir).resolve()), submission_id, now()))
        finally:
            conn.close()
    except (sqlite3.Error, OSError, HybridQiskitError) as exc:
        return f"could not add job {job_id} to the job index {index_path()} ({exc}); fetch it with --run-dir {run_dir}"
    return None


def index_lookup(job_id: str) -> str | None:
    """The run directory recorded for ``job_id``, or None."""
    path = index_path()
    if not path.exists():
        return None
    try:
        conn = connect(path, INDEX_SCHEMA, version=SCHEMA_VERSION, readonly=True)
        try:
            row = conn.execute("SELECT run_dir FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise sqlite_problem(path, exc) from None
    return None if row is None else row[0]


def index_run_dirs() -> list[str]:
    """Every run directory the index knows, oldest first."""
    path = index_path()
    if not path.exists():
        return []
    try:
        conn = connect(path, INDEX_SCHEMA, version=SCHEMA_VERSION, readonly=True)
        try:
            rows = conn.execute("SELECT run_dir, MIN(created_at) AS t FROM jobs GROUP BY run_dir ORDER BY t").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise sqlite_problem(path, exc) from None
    return [r[0] for r in rows]
