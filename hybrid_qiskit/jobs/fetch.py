"""``fetch``: bring recorded jobs up to date, store their results, finish their submissions.

IBM Quantum jobs are looked up with ``service.job(id)`` (the service rebuilt from the account
recorded at submission). A local job whose process has died is run again from the ledger's own
PUB; with ``--rerun``, so is a failed or cancelled job, on the recorded backend, settings and
device (:func:`~hybrid_qiskit.jobs.recorded.pinned_handle`). Each re-run is claimed in the
ledger first, so two ``fetch`` at once run each lost job once. A remote submission with rows
that have no job first asks the service for jobs with its tag (a job accepted just before a
crash) and records them. Rows still without a job are reported with the
``submit --resume`` command that sends them. Fetching a finished job again only rewrites the
same outputs. One damaged ledger among several runs is reported and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import (
    FINAL,
    LEDGER_NAME,
    PENDING,
    Ledger,
    index_add,
    index_lookup,
    index_run_dirs,
    process_alive,
)
from hybrid_qiskit.jobs.limits import expiry_note, send_with_backoff, usage_note
from hybrid_qiskit.jobs.pubs import pub_from_ledger
from hybrid_qiskit.jobs.recorded import (
    adopt_orphans,
    close_handle,
    job_tags,
    may_hide_orphans,
    pinned_handle,
    service_for,
    set_tags,
)
from hybrid_qiskit.jobs.results import outputs_dir
from hybrid_qiskit.jobs.tracking import (
    LOCAL_POLL_S,
    REMOTE_POLL_S,
    Live,
    Outcome,
    Say,
    Watched,
    check_poll,
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
    local_reruns: list[tuple] = field(default_factory=list)  # (rdir, ledger, row, status), run in a pool
    problems: list[str] = field(default_factory=list)
    usage: dict = field(default_factory=dict)  # service id -> its "no usage left" note (asked once)


def fetch(job_ids: list[str] | tuple = (), *, run_dir: str | None = None, all_pending: bool = False,
          wait: bool = False, rerun: bool = False, poll: float | None = None, say: Say = print,
          live: Live | None = None) -> Outcome:
    """Collect the given jobs (or every pending one), store results, finish complete submissions.

    Raises:
        HybridQiskitError: an unknown job id, a missing run directory or ledger, no credentials.
        Interrupted: Ctrl-C while waiting (``wait=True``, or a local job run again).
    """
    from hybrid_qiskit.jobs.submit import LOCAL_WORKERS

    check_poll(poll)
    state = _Fetch(say=say, rerun=rerun)
    targets = _targets(job_ids, run_dir, all_pending)
    many = len(targets) > 1 or (all_pending and not job_ids)
    try:
        for rdir, ids in targets.items():
            try:
                _visit_run(rdir, ids, state)
            except HybridQiskitError as exc:
                if not many:
                    raise
                state.problems.append(f"skipped {rdir}: {exc}")
                state.say(f"skipped {rdir}: {exc}")
                ledger = state.ledgers.pop(rdir, None)
                state.touched.pop(rdir, None)
                if ledger is not None:
                    ledger.close()
        for handle in state.handles.values():  # after every remote re-run: a closed Batch takes no more jobs
            close_handle(handle)
        feed = _RerunFeed(state) if state.local_reruns else None
        to_watch = {j: w for j, w in state.watched.items() if wait or not w.remote}
        if to_watch or feed is not None:
            remote = any(w.remote for w in to_watch.values())
            watch(to_watch, poll=poll or (REMOTE_POLL_S if remote else LOCAL_POLL_S), live=live, feed=feed,
                  capacity=LOCAL_WORKERS + sum(1 for w in to_watch.values() if w.remote))
        outcome = Outcome(failed=list(state.failed), problems=list(state.problems))
        for rdir, sids in state.touched.items():
            ledger = state.ledgers[rdir]
            settle(rdir, ledger, sorted(sids), outcome, say)
            for sid in sorted(sids):
                if ledger.unsubmitted(sid):
                    outcome.unsubmitted[sid] = f"hybrid-qiskit submit {rdir} --resume {sid}"
        return outcome
    finally:
        for handle in state.handles.values():
            close_handle(handle)
        for ledger in state.ledgers.values():
            ledger.close()


def _visit_run(rdir: str, ids: list[str], state: _Fetch) -> None:
    """Open a run's ledger, adopt its orphans, bring its jobs (or the given ones) up to date."""
    ledger = state.ledgers[rdir] = Ledger.for_run(rdir, create=False)
    if ids:
        subs = {(ledger.job(i) or {}).get("submission_id") for i in ids} - {None}
    else:
        subs = set(ledger.submission_ids())
    for sid in sorted(subs):
        _adopt(rdir, ledger, sid, state)
        _check_client(ledger, sid, state)
    rows = [_follow(ledger, i, state) for i in ids] if ids else _open_jobs(ledger, rdir, state.rerun, state)
    for row in rows:
        _visit(rdir, ledger, row, state)


def _adopt(rdir: str, ledger: Ledger, sid: str, state: _Fetch) -> None:
    """Record IBM Quantum jobs of ``sid`` that carry its tag but are missing from the ledger."""
    jobs = ledger.jobs(sid)
    if not any(j["remote"] for j in jobs) and not _credentialed(ledger.submission(sid)):
        return
    if not may_hide_orphans(ledger, sid):
        return
    try:
        adopt_orphans(ledger, ledger.submission(sid), state.services, state.say)
    except HybridQiskitError as exc:
        state.say(f"warning: submission {sid}: {exc}")
    state.touched.setdefault(rdir, set()).add(sid)


def _check_client(ledger: Ledger, sid: str, state: _Fetch) -> None:
    """IBM Quantum results are post-processed here, by this qiskit-ibm-runtime's decoders: say so
    when it is not the version the submission was made with."""
    from importlib.metadata import PackageNotFoundError, version

    then = ledger.submission(sid).get("runtime_version")
    try:
        installed = version("qiskit-ibm-runtime")
    except PackageNotFoundError:
        return
    if then and then != installed and any(j["remote"] and j["status"] != "DONE" for j in ledger.jobs(sid)):
        state.say(f"note: submission {sid} was made with qiskit-ibm-runtime {then}; its results are decoded "
                  f"with {installed}, installed here")


def _credentialed(sub: dict) -> bool:
    from backends import backend_spec

    return backend_spec(sub["backend"]).needs_credentials


class _RerunFeed:
    """Local re-runs waiting for a free worker (``tracking.watch`` refills from here)."""

    def __init__(self, state: _Fetch):
        self.state = state

    def __call__(self, free: int) -> dict[str, Watched]:
        before = set(self.state.watched)
        while free > 0 and self.state.local_reruns:
            rdir, ledger, row, status = self.state.local_reruns.pop(0)
            if _rerun(rdir, ledger, row, status, self.state):
                free -= 1
        return {j: w for j, w in self.state.watched.items() if j not in before}

    @property
    def done(self) -> bool:
        return not self.state.local_reruns


def _targets(job_ids, run_dir, all_pending) -> dict[str, list[str]]:
    """Run directory -> job ids to fetch there (empty list: its open jobs)."""
    if run_dir:
        path = Path(run_dir).resolve()
        if not (path / LEDGER_NAME).exists():
            raise HybridQiskitError(f"{path} has no job ledger ({LEDGER_NAME}); submit from it first")
        return {str(path): list(job_ids)}
    if not job_ids and not all_pending:
        raise HybridQiskitError("name the job(s) to fetch, or pass --all-pending")
    if all_pending and not job_ids:
        return {d: [] for d in index_run_dirs() if Path(d, LEDGER_NAME).exists()}
    out: dict[str, list[str]] = {}
    for jid in job_ids:
        rdir = index_lookup(jid)
        if rdir is None:
            raise HybridQiskitError(f"unknown job id {jid!r}: not in the job index; pass --run-dir RUN_DIR if its ledger is there")
        if not Path(rdir, "jobs.sqlite").exists():
            raise HybridQiskitError(f"job {jid} belongs to {rdir}, which has no job ledger any more; pass --run-dir NEW_PATH if the run moved")
        out.setdefault(rdir, []).append(jid)
    return out


def _follow(ledger: Ledger, job_id: str, state: _Fetch) -> dict:
    """The job's row, or the job that re-ran it (and so on)."""
    row = ledger.job(job_id)
    if row is None:
        raise HybridQiskitError(f"unknown job id {job_id!r}: not in {ledger.path}")
    while row["status"] != "DONE":
        newer = [j for j in ledger.jobs(row["submission_id"]) if j["replaces"] == row["job_id"]]
        if not newer:
            break
        state.say(f"job {row['job_id']} was re-run as {newer[-1]['job_id']} ({row['reason']})")
        row = newer[-1]
    if state.rerun and row["status"] == "DONE":
        state.say(f"job {row['job_id']} is already DONE; --rerun sends nothing for it")
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
            service = service_for(ledger.submission(row["submission_id"]), state.services)
            note = usage_note(service, state.usage) if status == "QUEUED" else None
            ledger.set_status(jid, status, note)
            state.say(f"job {jid} {status}" + (f": {note}" if note else ""))
            state.watched[jid] = Watched(job, ledger, True)
            return
        status = collect(ledger, jid, job, status)
        if status == "DONE":
            return
        row = ledger.job(jid)
        _explain_expiry(ledger, row, state)
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
        if row["remote"]:
            _rerun(rdir, ledger, row, status, state)
        else:  # local simulations: a bounded pool, started while watching
            state.local_reruns.append((rdir, ledger, row, status))
    else:
        state.say(f"job {jid} {status}: {row['reason']} (pass --rerun to submit its rows again)")
        state.failed.append(jid)


def _explain_expiry(ledger: Ledger, row: dict, state: _Fetch) -> None:
    """A job cancelled because its batch or session outlived its time-to-live: that reason."""
    if row["status"] not in ("CANCELLED", "ERROR") or not row.get("session_id"):
        return
    sub = ledger.submission(row["submission_id"])
    note = expiry_note(service_for(sub, state.services), row["session_id"], row["reason"],
                       mode=(sub.get("settings") or {}).get("mode") or "batch")
    if note:
        ledger.set_status(row["job_id"], row["status"], note)


def _remote_job(ledger: Ledger, row: dict, state: _Fetch):
    """``service.job(id)``, with the service built once per account; None if it has no such job."""
    sub = ledger.submission(row["submission_id"])
    service = service_for(sub, state.services)
    try:
        return service.job(row["job_id"])
    except Exception as exc:
        if type(exc).__name__ == "RuntimeJobNotFound":
            state.say(f"job {row['job_id']}: IBM Quantum has no such job for this account ({one_line(exc)})")
            state.failed.append(row["job_id"])
            return None
        raise HybridQiskitError(f"could not get job {row['job_id']} from IBM Quantum: {one_line(exc)}") from None


def _rerun(rdir: str, ledger: Ledger, row: dict, status: str, state: _Fetch) -> bool:
    """Run a job's rows again from the ledger's own PUB, on the recorded backend and device,
    recording the new job id. Claimed first: another fetch doing the same skips it. Returns
    whether a job was sent."""
    sid, old = row["submission_id"], row["job_id"]
    taken = ledger.claim(old)
    if taken is not None:
        state.say(f"job {old} {status}: not re-run here, {taken}")
        return False
    sub = ledger.submission(sid)
    try:
        if sid not in state.handles:
            state.handles[sid] = pinned_handle(sub)
        handle = state.handles[sid]
        pub = pub_from_ledger(sub)
        a, b = row["row_start"], row["row_stop"]
        set_tags(handle, job_tags(sid, (a, b), replaces=old))
        try:
            job = send_with_backoff(lambda: handle.estimator.run([pub.rows(a, b)]), f"rows {a}-{b - 1}",
                                    state.say) if row["remote"] else handle.estimator.run([pub.rows(a, b)])
            new = job.job_id()
        except Exception as exc:  # noqa: BLE001 - the service's refusal, the network
            raise HybridQiskitError(f"re-running rows {a}-{b - 1} of job {old} failed: {one_line(exc)}") from None
    except BaseException:
        ledger.release(old)
        raise
    ledger.add_job(new, sid, (a, b), remote=row["remote"], replaces=old, replaced_status=status,
                   replaced_reason=f"{row['reason'] or status.lower()}; re-run as job {new}")
    warning = index_add(new, rdir, sid)
    if warning:
        state.say(f"warning: {warning}")
    where = "IBM Quantum" if row["remote"] else "locally"
    device = f" (on {sub.get('backend_name') or sub['device']}, as recorded)" if sub["device"] else ""
    state.say(f"job {old} {status} ({row['reason']}); re-ran rows {a}-{b - 1} {where} "
              f"from the ledger as job {new}{device}")
    state.watched[new] = Watched(job, ledger, row["remote"])
    return True
