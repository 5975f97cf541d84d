"""``fetch``: bring recorded jobs up to date, store their results, finish their submissions.

IBM Quantum jobs are looked up with ``service.job(id)`` (the service rebuilt from the account
recorded at submission). A local job whose process has died is run again from the ledger's own
PUB; with ``--rerun``, so is a failed or cancelled job. Fetching a finished job again only
rewrites the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import (
    FINAL,
    PENDING,
    Ledger,
    index_add,
    index_lookup,
    index_run_dirs,
    process_alive,
)
from hybrid_qiskit.jobs.pubs import pub_from_ledger
from hybrid_qiskit.jobs.results import outputs_dir
from hybrid_qiskit.jobs.tracking import (
    LOCAL_POLL_S,
    REMOTE_POLL_S,
    Live,
    Outcome,
    Say,
    Watched,
    close_mode,
    collect,
    one_line,
    settle,
    status_name,
    watch,
)


@dataclass
class _Fetch:
    """State of one fetch call: open ledgers, jobs to watch, submissions to finish."""

    say: Say
    rerun: bool
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    watched: dict[str, Watched] = field(default_factory=dict)
    touched: dict[str, set[str]] = field(default_factory=dict)  # run dir -> submission ids
    services: dict[tuple, Any] = field(default_factory=dict)
    handles: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def fetch(job_ids: list[str] | tuple = (), *, run_dir: str | None = None, all_pending: bool = False,
          wait: bool = False, rerun: bool = False, poll: float | None = None, say: Say = print,
          live: Live | None = None) -> Outcome:
    """Collect the given jobs (or every pending one), store results, finish complete submissions.

    Raises:
        HybridQiskitError: an unknown job id, a missing run directory or ledger, no credentials.
        Interrupted: Ctrl-C while waiting (``wait=True``, or a local job run again).
    """
    state = _Fetch(say=say, rerun=rerun)
    try:
        for rdir, ids in _targets(job_ids, run_dir, all_pending).items():
            ledger = state.ledgers[rdir] = Ledger.for_run(rdir)
            rows = [_follow(ledger, i, say) for i in ids] if ids else _open_jobs(ledger, rdir, rerun, state)
            for row in rows:
                _visit(rdir, ledger, row, state)
        for handle in state.handles.values():  # after every re-run: a closed Batch takes no more jobs
            close_mode(handle)
        to_watch = {j: w for j, w in state.watched.items() if wait or not w.remote}
        if to_watch:
            remote = any(w.remote for w in to_watch.values())
            watch(to_watch, poll=poll or (REMOTE_POLL_S if remote else LOCAL_POLL_S), live=live)
        outcome = Outcome(failed=list(state.failed))
        for rdir, sids in state.touched.items():
            settle(rdir, state.ledgers[rdir], sorted(sids), outcome, say)
        return outcome
    finally:
        for ledger in state.ledgers.values():
            ledger.close()


def _targets(job_ids, run_dir, all_pending) -> dict[str, list[str]]:
    """Run directory -> job ids to fetch there (empty list: its open jobs)."""
    if run_dir:
        path = Path(run_dir).resolve()
        if not (path / "jobs.sqlite").exists():
            raise HybridQiskitError(f"{path} has no job ledger (jobs.sqlite); submit from it first")
        return {str(path): list(job_ids)}
    if not job_ids and not all_pending:
        raise HybridQiskitError("name the job(s) to fetch, or pass --all-pending")
    if all_pending and not job_ids:
        return {d: [] for d in index_run_dirs() if Path(d, "jobs.sqlite").exists()}
    out: dict[str, list[str]] = {}
    for jid in job_ids:
        rdir = index_lookup(jid)
        if rdir is None:
            raise HybridQiskitError(f"unknown job id {jid!r}: not in the job index; pass --run-dir RUN_DIR if its ledger is there")
        if not Path(rdir, "jobs.sqlite").exists():
            raise HybridQiskitError(f"job {jid} belongs to {rdir}, which has no job ledger any more; pass --run-dir NEW_PATH if the run moved")
        out.setdefault(rdir, []).append(jid)
    return out


def _follow(ledger: Ledger, job_id: str, say: Say) -> dict:
    """The job's row, or the job that re-ran it (and so on)."""
    row = ledger.job(job_id)
    if row is None:
        raise HybridQiskitError(f"unknown job id {job_id!r}: not in {ledger.path}")
    while row["status"] != "DONE":
        newer = [j for j in ledger.jobs(row["submission_id"]) if j["replaces"] == row["job_id"]]
        if not newer:
            break
        say(f"job {row['job_id']} was re-run as {newer[-1]['job_id']} ({row['reason']})")
        row = newer[-1]
    return row


def _open_jobs(ledger: Ledger, rdir: str, rerun: bool, state: _Fetch) -> list[dict]:
    """Jobs not finished, and lost (or, with --rerun, failed) jobs not yet run again; plus the
    submissions whose outputs are missing (a crash between storing and writing them)."""
    jobs = ledger.jobs()
    replaced = {j["replaces"] for j in jobs if j["replaces"]}
    again = ("LOST", "ERROR", "CANCELLED") if rerun else ("LOST",)
    for sid in ledger.submission_ids():
        if not (outputs_dir(rdir, sid) / "result.json").exists():
            state.touched.setdefault(rdir, set()).add(sid)
    return [j for j in jobs if j["status"] in PENDING or (j["status"] in again and j["job_id"] not in replaced)]


def _visit(rdir: str, ledger: Ledger, row: dict, state: _Fetch) -> None:
    """Bring one job up to date; queue it for watching if this process can watch it."""
    state.touched.setdefault(rdir, set()).add(row["submission_id"])
    jid, status = row["job_id"], row["status"]
    if status == "DONE":
        return
    if row["remote"] and status in PENDING:
        job = _remote_job(ledger, row, state)
        if job is None:
            return
        status = status_name(job.status())
        if status not in FINAL:
            ledger.set_status(jid, status)
            state.say(f"job {jid} {status}")
            state.watched[jid] = Watched(job, ledger, True)
            return
        status = collect(ledger, jid, job, status)
        if status == "DONE":
            return
        row = ledger.job(jid)
    elif not row["remote"] and status in PENDING:
        alive = process_alive(row["host"], row["pid"], row["pid_started"])
        if alive:
            state.say(f"local job {jid} is still running in process {row['pid']}; fetch it after that process ends")
            return
        if alive is None and not state.rerun:
            state.say(f"local job {jid} ran in process {row['pid']} on host {row['host']}: fetch it there, "
                      "or pass --rerun to run it again here")
            return
        status = "LOST"
        row["reason"] = f"its process (pid {row['pid']} on {row['host']}) ended before the result arrived"
    if (status == "LOST" and not row["remote"]) or state.rerun:
        _rerun(rdir, ledger, row, status, state)
    else:
        state.say(f"job {jid} {status}: {row['reason']} (pass --rerun to submit its rows again)")
        state.failed.append(jid)


def _remote_job(ledger: Ledger, row: dict, state: _Fetch):
    """``service.job(id)``, with the service built once per account; None if it has no such job."""
    from backends import ibm_runtime  # the network boundary: tests replace runtime_service

    sub = ledger.submission(row["submission_id"])
    key = (sub["description"].get("instance"), sub["description"].get("channel"))
    if key not in state.services:
        state.services[key] = ibm_runtime.runtime_service(instance=key[0], channel=key[1])
    try:
        return state.services[key].job(row["job_id"])
    except Exception as exc:
        if type(exc).__name__ == "RuntimeJobNotFound":
            state.say(f"job {row['job_id']}: IBM Quantum has no such job for this account ({one_line(exc)})")
            state.failed.append(row["job_id"])
            return None
        raise HybridQiskitError(f"could not get job {row['job_id']} from IBM Quantum: {one_line(exc)}") from None


def _rerun(rdir: str, ledger: Ledger, row: dict, status: str, state: _Fetch) -> None:
    """Run a job's rows again from the ledger's own PUB, recording the new job id."""
    from backends import create_backend

    sid = row["submission_id"]
    sub = ledger.submission(sid)
    if sid not in state.handles:
        settings = dict(sub["settings"])
        if row["remote"]:  # the same IBM Quantum account the jobs were submitted with
            settings.update({k: sub["description"][k] for k in ("instance", "channel") if sub["description"].get(k)})
        state.handles[sid] = create_backend(sub["backend"], **settings)
    handle = state.handles[sid]
    pub = pub_from_ledger(sub)
    a, b = row["row_start"], row["row_stop"]
    job = handle.estimator.run([pub.rows(a, b)])
    new = job.job_id()
    ledger.add_job(new, sid, (a, b), remote=row["remote"], replaces=row["job_id"], replaced_status=status,
                   replaced_reason=f"{row['reason'] or status.lower()}; re-run as job {new}")
    warning = index_add(new, rdir, sid)
    if warning:
        state.say(f"warning: {warning}")
    where = "IBM Quantum" if row["remote"] else "locally"
    state.say(f"job {row['job_id']} {status} ({row['reason']}); re-ran rows {a}-{b - 1} {where} "
              f"from the ledger as job {new}")
    state.watched[new] = Watched(job, ledger, row["remote"])
