"""What submit and fetch share: job states, waiting on jobs, recording what they return.

Two kinds of job:

* remote (``ibm_runtime``): IBM Quantum keeps the job; any process can fetch it by id, any time.
* local (``ibm_local`` and every simulator backend): the job runs in a thread of the submitting
  process and cannot be retrieved by id, so ``submit`` always waits for it and stores the result.
  If that process dies first (killed, Ctrl-C, crash), the job is gone; the ledger still holds its
  exact PUB (ISA circuit as QPY, observables, parameter values), so ``fetch`` notices the dead
  process (pid, its start time, host) and runs the same PUB again, recording the new job id with
  ``replaces`` pointing at the old one. It says so on the terminal; nothing is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import FINAL, PENDING, Ledger
from hybrid_qiskit.jobs.pubs import expvals_of
from hybrid_qiskit.jobs.results import finish

LOCAL_POLL_S = 0.2  # a local simulation finishes in seconds
REMOTE_POLL_S = 10.0  # a queued QPU job changes state in minutes; be gentle with the API

Say = Callable[[str], None]
Live = Callable[[dict[str, str], float], None]


def status_name(status: Any) -> str:
    """One spelling for qiskit's ``JobStatus`` enum (local jobs) and the runtime's strings."""
    name = str(getattr(status, "name", status)).upper()
    return {"INITIALIZING": "QUEUED", "VALIDATING": "QUEUED"}.get(name, name)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Interrupted(Exception):
    """Ctrl-C while waiting. Remote jobs stay queued at IBM Quantum; local ones are LOST (the
    ledger says so, and ``fetch`` runs them again)."""

    def __init__(self, remote_pending: list[str], local_lost: list[str], note: str | None = None):
        super().__init__("interrupted")
        self.remote_pending = remote_pending
        self.local_lost = local_lost
        self.note = note  # e.g. how to send the rows that got no job


def check_poll(poll: float | None) -> None:
    """``--poll``: a finite, positive number of seconds (or None: the default)."""
    if poll is not None and not (math.isfinite(poll) and poll > 0):
        raise HybridQiskitError(f"--poll must be a positive number of seconds, got {poll}")


@dataclass
class Watched:
    """A job object this process holds, and the ledger its state goes to."""

    job: Any
    ledger: Ledger
    remote: bool


@dataclass
class Outcome:
    """What submit / fetch achieved, for the CLI to print and turn into an exit code."""

    submission_ids: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # job ids not finished yet
    failed: list[str] = field(default_factory=list)  # job ids ERROR / CANCELLED / LOST, not re-run
    unsubmitted: dict[str, str] = field(default_factory=dict)  # submission id -> how to send its rows
    problems: list[str] = field(default_factory=list)  # runs skipped (damaged ledger, ...), one line each
    sent: bool = True  # False: a dry run, a declined plan, nothing to resume


# ------------------------------------------------------------------ waiting and collecting
def record_usage(ledger: Ledger, job_id: str, job) -> None:
    """A final job's actual usage (``job.usage()``, seconds; None while the service still
    counts it) and its metrics, into the ledger; jobs without them (simulators) record nothing."""
    metrics_of = getattr(job, "metrics", None)
    if not callable(metrics_of):
        return
    try:
        metrics = metrics_of()
    except Exception:  # noqa: BLE001 - not reported: nothing recorded, the job itself is fine
        return
    usage = (metrics or {}).get("usage") or {}
    seconds = None
    if usage.get("status", "pending") != "pending":
        for key in ("qpu_charge_time_seconds", "quantum_seconds", "seconds"):
            if usage.get(key) is not None:
                seconds = float(usage[key])
                break
    ledger.record_usage(job_id, seconds, metrics)


def collect(ledger: Ledger, job_id: str, job, status: str) -> str:
    """Record a job that reached a final state: its results, or why it has none; and its
    actual usage and metrics."""
    try:
        record_usage(ledger, job_id, job)
    except HybridQiskitError:  # the ledger could not take it: the results still go in
        pass
    if status == "DONE":
        try:
            pub_result = job.result()[0]  # once: for an IBM job, each call downloads the result
            evs, stds = expvals_of(pub_result)
        except Exception as exc:  # a result that cannot be read is a failed job, with the reason
            ledger.set_status(job_id, "ERROR", one_line(exc))
            return "ERROR"
        row = ledger.job(job_id)
        ran = row["row_stop"] - row["row_start"] + ledger.calibration_rows(row["submission_id"])
        if evs.shape[0] != ran:
            ledger.set_status(job_id, "ERROR", f"result has {evs.shape[0]} rows, the job ran {ran}")
            return "ERROR"
        ledger.store_result(job_id, evs, stds, dict(getattr(pub_result, "metadata", {}) or {}))
        return "DONE"
    reason = None
    try:
        reason = job.error_message()
    except Exception:  # noqa: BLE001 - local jobs have no message; the result's exception says it
        pass
    if not reason:
        try:
            job.result()  # the job is final: this returns or raises at once, with the reason
        except Exception as exc:
            reason = one_line(exc)
    ledger.set_status(job_id, status, reason or status.lower())
    return status


def watch(jobs: dict[str, Watched], *, poll: float, live: Live | None = None, feed=None,
          capacity: int = 1) -> dict[str, str]:
    """Poll every job until each is final, recording each change in its ledger.

    ``feed`` (local jobs): called with the number of free workers (``capacity`` minus the jobs
    not final) before each round, it sends that many more jobs and returns them; its ``done``
    says when it has nothing left. So a large submission runs ``capacity`` simulations at a
    time, not one thread per chunk.

    Raises:
        Interrupted: on Ctrl-C, after marking the local jobs LOST.
    """
    jobs = dict(jobs)
    states: dict[str, str] = {jid: "" for jid in jobs}
    t0 = time.monotonic()
    try:
        while True:
            if feed is not None:
                busy = sum(1 for s in states.values() if s not in FINAL)
                for jid, w in feed(max(0, capacity - busy)).items():
                    jobs[jid] = w
                    states[jid] = ""
            for jid, w in jobs.items():
                if states[jid] in FINAL:
                    continue
                status = status_name(w.job.status())
                if status in FINAL:
                    status = collect(w.ledger, jid, w.job, status)
                elif status != states[jid]:
                    w.ledger.set_status(jid, status)
                states[jid] = status
            if live and states:
                live(states, time.monotonic() - t0)
            if all(s in FINAL for s in states.values()) and (feed is None or feed.done):
                return states
            time.sleep(poll)
    except KeyboardInterrupt:
        pending = [j for j, s in states.items() if s not in FINAL]
        lost = [j for j in pending if not jobs[j].remote]
        for jid in lost:
            jobs[jid].ledger.set_status(jid, "LOST", "interrupted (Ctrl-C) before the local simulation finished")
        raise Interrupted([j for j in pending if jobs[j].remote], lost) from None


def settle(rdir, ledger: Ledger, submission_ids: list[str], outcome: Outcome, say: Say) -> None:
    """Finish what is complete; list what is still pending or failed. A submission that cannot
    be finished (its checkpoint changed) is reported and the others still go ahead."""
    for sid in submission_ids:
        sub = ledger.submission(sid)
        jobs = ledger.jobs(sid)
        try:
            summary = finish(rdir, sub, jobs)
        except HybridQiskitError as exc:
            say(f"submission {sid}: {exc}")
            outcome.failed.extend(j["job_id"] for j in jobs if j["job_id"] not in outcome.failed)
            continue
        if summary is not None:
            outcome.summaries.append(summary)
            continue
        replaced = {j["replaces"] for j in jobs if j["replaces"]}
        for j in jobs:
            if j["job_id"] in replaced or j["status"] == "DONE":
                continue
            target = outcome.pending if j["status"] in PENDING else outcome.failed
            if j["job_id"] not in target:
                target.append(j["job_id"])
