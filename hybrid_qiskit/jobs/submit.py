"""``submit``: run the classical part here, send the quantum head's PUBs, record every job.

``encode`` runs locally; the head's PUB for N samples (one ISA circuit, an (N, P) parameter
array) is split into jobs that respect the service's per-job limits, and each job id goes into
the run's ledger the moment the service accepts it, before anything waits on it. Local jobs
(every backend but ``ibm_runtime``) are then waited for, here, since they live in this process.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import Ledger, index_add, now
from hybrid_qiskit.jobs.pubs import (
    chunks,
    circuit_to_qpy,
    default_max_rows,
    head_pub,
    observables_to_json,
)
from hybrid_qiskit.jobs.results import model_sha256
from hybrid_qiskit.jobs.tracking import (
    LOCAL_POLL_S,
    REMOTE_POLL_S,
    Live,
    Outcome,
    Say,
    Watched,
    close_mode,
    one_line,
    settle,
    watch,
)


def submit(run_dir: str | Path, *, backend: str, settings: dict, samples: int, split: str = "test",
           max_rows: int | None = None, wait: bool = False, poll: float | None = None,
           say: Say = print, live: Live | None = None) -> Outcome:
    """Run ``encode`` here, submit the head's PUB for the first ``samples`` of ``split``.

    Args:
        run_dir: a trained run directory.
        backend, settings: what ``create_backend`` gets (the seed defaults to the run's).
        max_rows: samples per job (default: :func:`~hybrid_qiskit.jobs.pubs.default_max_rows`).
        wait: wait for remote jobs too (local jobs are always waited for: they live here).

    Raises:
        HybridQiskitError: no run / checkpoint, a classical model, bad sample count, a
            submission the service refuses (the jobs already accepted stay recorded).
        Interrupted: Ctrl-C while waiting.
    """
    run_dir = Path(run_dir).resolve()
    record, handle, pub, rows = _prepare(run_dir, backend, dict(settings), samples, split, max_rows)
    sid, remote = record["submission_id"], handle.remote
    what = backend + (f" ({record['device']}, {handle.description.get('shots')} shots)" if record["device"] else "")
    outcome = Outcome(submission_ids=[sid])
    with Ledger.for_run(run_dir) as ledger:
        ledger.add_submission(record)
        say(f"submission {sid}: {samples} {split} samples in {len(rows)} job(s) on {what}; ledger {ledger.path}")
        _tag_jobs(handle, sid)
        watched = _submit_rows(handle, pub, rows, ledger, sid, run_dir, remote, say)
        outcome.job_ids = list(watched)
        if remote and not wait:
            outcome.pending = list(watched)
            return outcome
        watch(watched, poll=poll or (REMOTE_POLL_S if remote else LOCAL_POLL_S), live=live)
        settle(run_dir, ledger, [sid], outcome, say)
    return outcome


def _prepare(run_dir: Path, backend: str, settings: dict, samples: int, split: str, max_rows: int | None):
    """Everything up to the first job: the classical part, the PUB, the exact baseline, the
    ledger record. Returns (record, handle, pub, row ranges)."""
    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.cli import load_run
    from hybrid_qiskit.models import is_quantum
    from hybrid_qiskit.training import load_splits

    cfg, payload = load_run(str(run_dir))
    if not is_quantum(cfg.model):
        raise HybridQiskitError(f"a {cfg.model} model is a classical baseline: it has no quantum head to run on hardware")
    settings.setdefault("seed", cfg.seed)
    splits = load_splits(cfg)  # the run's own config: the same split, in the same order
    data = getattr(splits, split)
    if not 1 <= samples <= len(data):
        raise HybridQiskitError(f"--samples must be between 1 and {len(data)} (the {split} split's size), got {samples}")
    images, labels = (t[:samples] for t in data.tensors)

    handle = create_backend(backend, **settings)
    model = restore_model(payload, handle)
    with torch.no_grad():
        angles = model.encode(images)
    pub = head_pub(model, angles.numpy())
    exact_evs, exact_pred = _exact(payload, angles, settings["seed"])
    rows = chunks(samples, max_rows or default_max_rows(pub, handle.description.get("shots")))
    record = {
        "submission_id": f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
        "created_at": now(), "run_dir": str(run_dir), "model_sha256": model_sha256(run_dir / "model.pt"),
        "backend": backend, "device": handle.description.get("device"), "settings": settings,
        "description": handle.description, "split": split, "positions": list(range(samples)),
        "source_indices": splits.test_indices[:samples].tolist() if split == "test" else None,
        "labels": labels.tolist(), "circuit_qpy": circuit_to_qpy(pub.circuit),
        "parameter_names": pub.parameter_names, "observables": observables_to_json(pub.observables),
        "parameter_values": pub.values, "exact_expvals": exact_evs, "exact_predictions": exact_pred.tolist(),
        "max_rows": max(b - a for a, b in rows),
    }
    return record, handle, pub, rows


def _exact(payload, angles, seed):
    """⟨Z⟩ and predictions of the same samples on exact statevector (the agreement baseline)."""
    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model

    model = restore_model(payload, create_backend("statevector", seed=seed))
    with torch.no_grad():
        evs = model.quantum(angles)
        return evs.numpy().astype("float64"), model.decode(evs).argmax(1).numpy()


def _tag_jobs(handle, submission_id: str) -> None:
    """Tag remote jobs with the submission id: should a process die between the service
    accepting a job and the ledger write, ``service.jobs(job_tags=[...])`` still finds it."""
    env = getattr(getattr(handle.estimator, "options", None), "environment", None)
    if env is not None and hasattr(env, "job_tags"):
        env.job_tags = ["hybrid-qiskit", f"hybrid-qiskit-{submission_id}"]


def _submit_rows(handle, pub, rows, ledger, sid, run_dir, remote, say) -> dict[str, Watched]:
    """One job per row range, each recorded before the next is sent."""
    watched: dict[str, Watched] = {}
    try:
        for a, b in rows:
            try:
                job = handle.estimator.run([pub.rows(a, b)])
            except Exception as exc:
                done = f"; the {len(watched)} job(s) already accepted are in the ledger" if watched else ""
                raise HybridQiskitError(f"submitting rows {a}-{b - 1} failed: {one_line(exc)}{done}") from None
            jid = job.job_id()
            ledger.add_job(jid, sid, (a, b), remote=remote, session_id=getattr(job, "session_id", None) if remote else None)
            warning = index_add(jid, run_dir, sid)
            if warning:
                say(f"warning: {warning}")
            watched[jid] = Watched(job, ledger, remote)
            say(f"  job {jid}  rows {a}-{b - 1}  recorded")
    finally:
        close_mode(handle)
    return watched
