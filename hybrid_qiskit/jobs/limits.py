"""IBM Quantum's limits, handled where they bite: refusals retried, waits and expiries explained.

* :func:`send_with_backoff`: a job refused for a rate limit (HTTP 429) or the instance's
  pending-job limit is sent again after a pause (:data:`BACKOFF_S`: 10 s, 30 s, 60 s, 120 s,
  300 s), then the submission goes on with the rows after it, by itself. Other refusals, and
  one that outlasts the pauses, stop the submission as before (the rows without a job are sent
  with ``submit --resume``).
* :func:`usage_note`: a job that sits queued while the instance has no usage left is waiting for
  the usage period to reset, not for the QPU; ``fetch`` and ``jobs`` say so.
* :func:`expiry_note`: a job cancelled because its batch or session outlived its time-to-live
  (``max_ttl``; 10 minutes on the Open Plan) gets that reason, and the way to send its rows again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

from hybrid_qiskit.jobs.tracking import Say, one_line

BACKOFF_S = (10.0, 30.0, 60.0, 120.0, 300.0)  # pauses before each retry; len() retries at most
# What IBM Quantum answers when it will take the job later, not never: HTTP 429 (rate limit),
# error 3458 (too many pending jobs), 1012 (too many jobs running at once).
_RETRYABLE = re.compile(r"\b429\b|too many requests|rate.?limit|\b3458\b|\b1012\b|pending jobs|"
                        r"jobs running concurrently", re.IGNORECASE)


def is_retryable(exc: BaseException) -> bool:
    """A refusal that clears with time (rate or pending-job limits)."""
    status = getattr(exc, "status_code", None)
    return status == 429 or bool(_RETRYABLE.search(str(exc)))


def batch_ended(exc: BaseException) -> bool:
    """A refusal because the job's batch or session no longer takes jobs (closed, expired)."""
    text = str(exc).lower()
    return "session" in text and any(w in text for w in ("closed", "expired", "not accepting", "inactive"))


def send_with_backoff(send: Callable[[], object], what: str, say: Say, *, pauses=None, sleep=None):
    """``send()``, again after each pause while IBM Quantum refuses it for a limit that clears
    with time. The last refusal (or any other error) is raised."""
    pauses = BACKOFF_S if pauses is None else pauses
    sleep = sleep or time.sleep
    for attempt in range(len(pauses) + 1):
        try:
            return send()
        except Exception as exc:
            if attempt == len(pauses) or not is_retryable(exc):
                raise
            say(f"IBM Quantum refused {what} for now ({one_line(exc)}); sending it again in "
                f"{pauses[attempt]:g} s (retry {attempt + 1} of {len(pauses)})")
            sleep(pauses[attempt])
    raise AssertionError("unreachable")


def usage_note(service, cache: dict | None = None) -> str | None:
    """Why queued jobs do not start when the instance has used its allowance; None otherwise
    (or when the service does not say). ``cache`` keeps one answer per service."""
    from hybrid_qiskit.jobs.cost import summarize_usage

    key = id(service)
    if cache is not None and key in cache:
        return cache[key]
    note = None
    usage = getattr(service, "usage", None)
    if callable(usage):
        try:
            info = summarize_usage(usage())
        except Exception:  # noqa: BLE001 - no usage reported: no note
            info = None
        if info and info["limit_reached"]:
            used = info.get("consumed_seconds")
            of = f" ({used:,.0f} of {info['limit_seconds']:,.0f} s used)" if used is not None and info.get(
                "limit_seconds") else ""
            ends = f"; the usage period ends {info['period_end'][:10]}" if info.get("period_end") else ""
            note = (f"waiting: the instance has no usage left{of}, so IBM Quantum holds its jobs queued until "
                    f"usage is available again{ends} (cancel with: hybrid-qiskit jobs cancel JOB_ID)")
    if cache is not None:
        cache[key] = note
    return note


def _when(text) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def expiry_note(service, session_id: str | None, reason: str | None, mode: str = "batch") -> str | None:
    """The reason for a job cancelled or failed because its batch or session ran past its
    time-to-live; None when that is not what happened."""
    if not session_id:
        return None
    text = (reason or "").lower()
    said = any(word in text for word in ("expired", "max_ttl", "time-to-live", "time to live", "ttl"))
    details = None
    try:
        client = service._get_api_client()  # the runtime's own call behind Session.details()
        details = client.session_details(session_id)
    except Exception:  # noqa: BLE001 - no details: decide from the reason alone
        details = None
    ran_out = False
    ttl = None
    if details:
        ttl = details.get("max_ttl")
        start, end = _when(details.get("started_at") or details.get("activated_at")), _when(details.get("closed_at"))
        ran_out = (details.get("state") == "closed" and ttl is not None and start is not None and end is not None
                   and (end - start).total_seconds() >= float(ttl))
    if not (said or ran_out):
        return None
    limit = f" ({float(ttl):g} s)" if ttl else ""
    return (f"its {mode} {session_id} ran past its time-to-live{limit} and IBM Quantum cancelled the jobs still "
            "queued in it; send these rows again (in a new batch) with: hybrid-qiskit fetch --rerun JOB_ID")
