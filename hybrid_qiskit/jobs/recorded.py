"""What a submission recorded, put back to work: its backend, pinned; its tags; its orphans.

* :func:`pinned_handle`: the backend handle a submission's later jobs (``fetch --rerun``,
  ``submit --resume``) run on: the recorded backend, settings and device, never "least busy"
  again, since the ledger's ISA circuit is laid out for that one device.
* :func:`job_tags`: every IBM Quantum job carries its submission and its rows in its tags.
* :func:`adopt_orphans`: a process that dies after the service accepted a job and before the
  ledger write leaves a job that is billed but unrecorded. Only rows without a job (or a claimed
  re-run without its new job) can hide one, so only then is the service asked for the
  submission's tagged jobs (``service.jobs(job_tags=[...])``); each one missing from the ledger
  is recorded with the rows its tags name.
"""

from __future__ import annotations

from typing import Any

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import Ledger, index_add
from hybrid_qiskit.jobs.tracking import Say, one_line, status_name

TAG = "hybrid-qiskit"


def job_tags(submission_id: str, rows: tuple[int, int], replaces: str | None = None) -> list[str]:
    """Tags of one job: the project, its submission, its rows, and the job it runs again."""
    tags = [TAG, f"{TAG}-{submission_id}", f"{TAG}-rows-{rows[0]}-{rows[1]}"]
    return tags + ([f"{TAG}-replaces-{replaces}"] if replaces else [])


def parse_tags(tags: list[str], submission_id: str) -> tuple[tuple[int, int] | None, str | None]:
    """(rows, replaced job id) named by a job's tags; rows None if not a job of this submission."""
    if f"{TAG}-{submission_id}" not in tags:
        return None, None
    rows = replaces = None
    for tag in tags:
        if tag.startswith(f"{TAG}-rows-"):
            a, b = tag.rsplit("-", 2)[1:]
            if a.isdigit() and b.isdigit() and int(a) < int(b):
                rows = (int(a), int(b))
        elif tag.startswith(f"{TAG}-replaces-"):
            replaces = tag[len(f"{TAG}-replaces-"):]
    return rows, replaces


def set_tags(handle, tags: list[str]) -> None:
    """Tag the next ``estimator.run`` (runtime estimators; others have no tags)."""
    env = getattr(getattr(handle.estimator, "options", None), "environment", None)
    if env is not None and hasattr(env, "job_tags"):
        env.job_tags = list(tags)


def pinned_handle(sub: dict[str, Any]):
    """The handle for more jobs of submission ``sub``: its backend, settings and device.

    Raises:
        HybridQiskitError: the backend now resolves to another device than the recorded one.
    """
    from backends import backend_spec, create_backend

    settings = dict(sub["settings"])
    device = sub.get("backend_name") or sub.get("device")
    if device and "device" in backend_spec(sub["backend"]).settings:
        settings["device"] = device  # "least busy" at submission: the same QPU now
    if sub["description"].get("instance") or sub["description"].get("channel"):
        settings.update({k: sub["description"][k] for k in ("instance", "channel") if sub["description"].get(k)})
    handle = create_backend(sub["backend"], **settings)
    now = handle.description.get("device")
    if device and now != device:
        close_handle(handle)
        raise HybridQiskitError(f"submission {sub['submission_id']} was laid out for {device}, but the backend "
                                f"now gives {now}; its circuit cannot run there")
    return handle


def close_handle(handle) -> None:
    """Close a handle's Session / Batch (queued jobs still run; no new ones are accepted)."""
    close = getattr(handle, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is tidiness; the jobs are recorded
            pass
        return
    mode = getattr(handle.estimator, "mode", None)
    if mode is not None and hasattr(mode, "close"):
        try:
            mode.close()
        except Exception:  # noqa: BLE001
            pass


def service_for(sub: dict[str, Any], services: dict):
    """The IBM Quantum service of the account a submission used (one per account)."""
    from backends import ibm_runtime  # the network boundary: tests replace runtime_service

    key = (sub["description"].get("instance"), sub["description"].get("channel"))
    if key not in services:
        services[key] = ibm_runtime.runtime_service(instance=key[0], channel=key[1])
    return services[key]


def may_hide_orphans(ledger: Ledger, sid: str) -> bool:
    """Whether a remote submission has rows without a job, or a claimed re-run without its
    new job: the only places a job accepted but never recorded can be."""
    if ledger.unsubmitted(sid):
        return True
    jobs = ledger.jobs(sid)
    replaced = {j["replaces"] for j in jobs if j["replaces"]}
    return any(j.get("claimed_by") and j["job_id"] not in replaced for j in jobs)


def find_orphans(ledger: Ledger, sub: dict[str, Any], services: dict, say: Say) -> list[dict[str, Any]]:
    """The submission's tagged IBM Quantum jobs that the ledger lacks (nothing is written).

    Raises:
        HybridQiskitError: the service cannot be reached or asked.
    """
    sid = sub["submission_id"]
    service = service_for(sub, services)
    try:
        found = service.jobs(job_tags=[f"{TAG}-{sid}"], limit=None)
    except Exception as exc:
        raise HybridQiskitError(f"could not ask IBM Quantum for the jobs of submission {sid}: {one_line(exc)}") from None
    known = {j["job_id"] for j in ledger.jobs()}
    orphans = []
    for job in sorted(found, key=lambda j: str(getattr(j, "creation_date", "") or "")):
        jid = job.job_id()
        if jid in known:
            continue
        rows, replaces = parse_tags(list(getattr(job, "tags", None) or []), sid)
        if rows is None:
            say(f"warning: IBM Quantum job {jid} carries submission {sid}'s tag but no rows; left alone")
            continue
        orphans.append({"job_id": jid, "rows": rows, "replaces": replaces, "status": status_name(job.status())})
    return orphans


def adopt_orphans(ledger: Ledger, sub: dict[str, Any], services: dict, say: Say,
                  orphans: list[dict[str, Any]] | None = None) -> list[str]:
    """Record the submission's tagged IBM Quantum jobs that the ledger lacks; their ids.

    Raises:
        HybridQiskitError: the service cannot be reached or asked.
    """
    sid = sub["submission_id"]
    if orphans is None:
        orphans = find_orphans(ledger, sub, services, say)
    for o in orphans:
        jid, rows, replaces = o["job_id"], o["rows"], o["replaces"]
        status = o["status"] if o["status"] in ("QUEUED", "RUNNING") else "SUBMITTED"
        ledger.add_job(jid, sid, rows, remote=True, status=status, replaces=replaces,
                       replaced_reason=f"re-run as job {jid} (found at IBM Quantum by its tag)" if replaces else None)
        warning = index_add(jid, ledger.path.parent, sid)
        if warning:
            say(f"warning: {warning}")
        say(f"job {jid} (rows {rows[0]}-{rows[1] - 1}) was accepted by IBM Quantum but missing from the "
            f"ledger; found by its tag and recorded")
    return [o["job_id"] for o in orphans]
