"""``jobs cancel``: stop IBM Quantum jobs that have not finished, and record it.

    hybrid-qiskit jobs cancel JOB_ID [JOB_ID ...]
    hybrid-qiskit jobs cancel --submission SUBMISSION [--run-dir RUN_DIR]

Each job is cancelled with the runtime's own ``RuntimeJobV2.cancel()`` (the service stops it;
usage already spent on it stays spent) and marked ``CANCELLED`` in its run's ledger with the
reason "cancelled with hybrid-qiskit jobs cancel", so ``jobs`` shows it and ``fetch --rerun``
can send its rows again. A job that already ended is left as it is (said so); a local job
lives in the process that submitted it (stop that process).
"""

from __future__ import annotations

from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import FINAL, LEDGER_NAME, Ledger, index_lookup, index_run_dirs
from hybrid_qiskit.jobs.recorded import service_for
from hybrid_qiskit.jobs.tracking import Outcome, Say, one_line, status_name

REASON = "cancelled with hybrid-qiskit jobs cancel"


def _run_of_submission(submission: str, run_dir: str | None) -> str:
    if run_dir:
        if not (Path(run_dir) / LEDGER_NAME).exists():
            raise HybridQiskitError(f"{run_dir} has no job ledger ({LEDGER_NAME})")
        return str(Path(run_dir).resolve())
    for rdir in index_run_dirs():
        if (Path(rdir) / LEDGER_NAME).exists():
            with Ledger.for_run(rdir, readonly=True) as ledger:
                if submission in ledger.submission_ids():
                    return rdir
    raise HybridQiskitError(f"unknown submission {submission!r}: not in any run of the job index; "
                            "pass --run-dir RUN_DIR")


def _targets(job_ids, submission, run_dir) -> dict[str, list[str]]:
    """Run directory -> the job ids to cancel there."""
    if bool(job_ids) == bool(submission):
        raise HybridQiskitError("jobs cancel takes job ids or --submission ID (one of the two)")
    if submission:
        rdir = _run_of_submission(submission, run_dir)
        with Ledger.for_run(rdir, readonly=True) as ledger:
            if submission not in ledger.submission_ids():
                raise HybridQiskitError(f"no submission {submission} in {rdir}")
            replaced = {j["replaces"] for j in ledger.jobs(submission) if j["replaces"]}
            ids = [j["job_id"] for j in ledger.jobs(submission) if j["job_id"] not in replaced]
        return {rdir: ids}
    out: dict[str, list[str]] = {}
    for jid in job_ids:
        rdir = str(Path(run_dir).resolve()) if run_dir else index_lookup(jid)
        if rdir is None:
            raise HybridQiskitError(f"unknown job id {jid!r}: not in the job index; pass --run-dir RUN_DIR")
        out.setdefault(rdir, []).append(jid)
    return out


def cancel(job_ids=(), *, submission: str | None = None, run_dir: str | None = None, say: Say = print) -> Outcome:
    """Cancel the given jobs (or every unfinished job of ``submission``) at IBM Quantum and
    record it. Returns an :class:`Outcome` whose ``failed`` lists the jobs that could not be.

    Raises:
        HybridQiskitError: unknown ids or submission, no ledger, no credentials.
    """
    outcome = Outcome(sent=False)
    services: dict = {}
    for rdir, ids in _targets(list(job_ids), submission, run_dir).items():
        with Ledger.for_run(rdir, create=False) as ledger:
            for jid in ids:
                row = ledger.job(jid)
                if row is None:
                    raise HybridQiskitError(f"unknown job id {jid!r}: not in {ledger.path}")
                if row["status"] in FINAL:
                    say(f"job {jid} is already {row['status']}; nothing to cancel")
                    continue
                if not row["remote"]:
                    say(f"job {jid} is a local simulation in process {row['pid']} on {row['host']}: stop that "
                        "process to stop it")
                    outcome.failed.append(jid)
                    continue
                service = service_for(ledger.submission(row["submission_id"]), services)
                try:
                    job = service.job(jid)
                except Exception as exc:  # noqa: BLE001 - unknown at IBM Quantum, the network
                    say(f"job {jid}: could not get it from IBM Quantum ({one_line(exc)})")
                    outcome.failed.append(jid)
                    continue
                try:
                    job.cancel()
                except Exception as exc:  # noqa: BLE001 - the service's answer, as one line
                    ended = _final_status(job)
                    if ended is not None:  # it ended meanwhile: fetch collects it
                        say(f"job {jid} ended ({ended}) before it could be cancelled; collect it with: "
                            f"hybrid-qiskit fetch {jid}")
                        continue
                    say(f"job {jid}: IBM Quantum did not cancel it ({one_line(exc)})")
                    outcome.failed.append(jid)
                    continue
                ledger.set_status(jid, "CANCELLED", REASON)
                outcome.job_ids.append(jid)
                say(f"job {jid} cancelled (rows {row['row_start']}-{row['row_stop'] - 1}); recorded in {ledger.path}; "
                    f"send its rows again with: hybrid-qiskit fetch --rerun {jid}")
    if not outcome.job_ids and not outcome.failed:
        say("nothing to cancel: no unfinished job among them" if not submission else
            f"nothing to cancel: submission {submission} has no unfinished job")
    return outcome


def _final_status(job) -> str | None:
    try:
        status = status_name(job.status())
    except Exception:  # noqa: BLE001
        return None
    return status if status in FINAL else None
