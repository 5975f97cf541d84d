"""``submit``: run the classical part here, print the cost, send the quantum head's PUBs, record
every job.

``encode`` runs locally; the head's PUB for N samples (one ISA circuit, an (N, P) parameter
array) is split into jobs that respect the service's per-job limits, mitigation overheads
counted (:mod:`~hybrid_qiskit.jobs.cost`). Before the first job goes out, the plan is printed:
jobs, rows, circuits, shots, mitigation overhead and estimated QPU time; above
``confirm_above`` minutes an IBM Quantum submission asks first (``yes`` skips the question,
``dry_run`` stops after the plan and sends nothing).

Post-measurement normalization (:mod:`hybrid_qiskit.normalization`; default for a model trained
with it): each job also runs a calibration set of training images, after its samples, and
``fetch`` standardizes the job's ⟨Z⟩ with the statistics of its own calibration rows.

Each job id goes into the run's ledger the moment the service accepts it, before anything waits
on it, and each IBM Quantum job carries its submission and rows in its tags (a job accepted just
before a crash is found again by ``fetch`` and ``jobs``). If a job cannot be sent, the rows
after it have no job: ``submit RUN --resume SUBMISSION`` sends exactly those, on the recorded
backend and device. Local jobs (every backend but ``ibm_runtime``) run in this process, a
bounded number at a time, and are waited for here.
"""

from __future__ import annotations

import math
import os
import secrets
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.cost import (
    CostPlan,
    estimate_basis,
    fmt_seconds,
    max_rows_per_job,
    overheads,
    plan_for,
)
from hybrid_qiskit.jobs.ledger import LEDGER_NAME, Ledger, index_add, now
from hybrid_qiskit.jobs.limits import batch_ended, send_with_backoff
from hybrid_qiskit.jobs.pubs import (
    chunks,
    circuit_to_qpy,
    head_pub,
    observables_to_json,
    pub_from_ledger,
)
from hybrid_qiskit.jobs.recorded import (
    adopt_orphans,
    close_handle,
    job_tags,
    pinned_handle,
    set_tags,
)
from hybrid_qiskit.jobs.results import model_sha256
from hybrid_qiskit.jobs.tracking import (
    LOCAL_POLL_S,
    REMOTE_POLL_S,
    Interrupted,
    Live,
    Outcome,
    Say,
    Watched,
    check_poll,
    one_line,
    settle,
    watch,
)

DEFAULT_CONFIRM_ABOVE_MIN = 1.0  # QPU-minutes; the Open Plan has 10 per rolling 28 days
LOCAL_WORKERS = max(1, min(4, os.cpu_count() or 1))  # local simulations at once, per submission

Confirm = Callable[[CostPlan], bool]


def submit(run_dir: str | Path, *, backend: str | None = None, settings: dict | None = None,
           samples: int | None = None, split: str = "test", max_rows: int | None = None,
           wait: bool = False, poll: float | None = None, resume: str | None = None,
           dry_run: bool = False, yes: bool = False, confirm_above: float = DEFAULT_CONFIRM_ABOVE_MIN,
           confirm: Confirm | None = None, say: Say = print, live: Live | None = None,
           normalize_stats: str | None = None, calibration_samples: int | None = None,
           refit_readout: bool = False) -> Outcome:
    """Run ``encode`` here, print the plan, submit the head's PUB for the first ``samples`` of
    ``split`` (or, with ``resume``, the rows of that submission that have no job yet).

    Args:
        run_dir: a trained run directory.
        backend, settings: what ``create_backend`` gets (the seed defaults to the run's).
        max_rows: samples per job (default: sized to the job limits, mitigation counted).
        wait: wait for remote jobs too (local jobs are always waited for: they live here).
        resume: a submission id of this run: send its rows that have no job, on its recorded
            backend, settings and device (``backend`` and ``settings`` must not be given).
        dry_run: print the plan, send and write nothing.
        yes, confirm_above, confirm: an IBM Quantum plan above ``confirm_above`` QPU-minutes is
            sent only with ``yes`` or when ``confirm(plan)`` says so; without ``confirm`` (no
            terminal) it is an error.
        normalize_stats: ``calibration`` (calibration rows in every job), ``batch`` (the
            submitted samples' own statistics) or ``off``; default: ``calibration`` for a model
            trained with normalization, else ``off``.
        calibration_samples: images in the calibration set (default 64).
        refit_readout: at fetch, re-fit the readout to the calibration rows' ⟨Z⟩ (every job's,
            re-standardized) and their labels; needs ``calibration`` statistics (the default then).

    Raises:
        HybridQiskitError: no run / checkpoint, a classical model, bad numbers, a submission
            the service refuses part-way (the jobs already accepted stay recorded; the message
            says how to send the rest).
        Interrupted: Ctrl-C while waiting.
    """
    check_poll(poll)
    if max_rows is not None and max_rows < 1:
        raise HybridQiskitError(f"--max-rows must be at least 1, got {max_rows}")
    if not math.isfinite(confirm_above) or confirm_above < 0:
        raise HybridQiskitError(f"--confirm-above must be a non-negative number of QPU-minutes, got {confirm_above}")
    run_dir = Path(run_dir).resolve()
    confirmation = _Confirmation(dry_run, yes, confirm_above, confirm, say)
    if resume:
        if backend or settings or samples is not None or normalize_stats or calibration_samples or refit_readout:
            raise HybridQiskitError("--resume sends the rows on the submission's recorded backend, device and "
                                    "settings; drop --backend, --samples, the backend and normalization flags")
        return _resume(run_dir, resume, max_rows, wait, poll, confirmation, say, live)
    if not backend:
        raise HybridQiskitError("submit needs --backend: ibm_runtime (an IBM QPU) or ibm_local (a fake device, offline)")
    if samples is None:
        raise HybridQiskitError("submit needs --samples N (or --resume SUBMISSION)")
    from backends import create_backend

    settings = dict(settings or {})
    cfg, payload, images, labels, sources, train = _load(run_dir, samples, split)
    settings.setdefault("seed", cfg.seed)
    if settings.get("layout") is not None:
        settings["layout"] = _resolve_layout(run_dir, settings["layout"])
    handle = create_backend(backend, **settings)
    try:  # from here on the handle may hold an open Session / Batch: closed on every path
        pub, normalization = _head(payload, handle, images, cfg, train, normalize_stats, calibration_samples,
                                   refit_readout)
        ov = overheads(handle, pub)
        # Every job also runs the calibration rows: they count against the job limits.
        rows = chunks(samples, max_rows if max_rows is not None
                      else max(1, max_rows_per_job(ov) - pub.calibration_rows))
        plan = plan_for(handle, pub, rows, ov)
        if not confirmation.allows(plan, handle.remote):
            return Outcome(sent=False)
        exact_evs, exact_pred = _exact(payload, images, settings["seed"])
        record = {
            "submission_id": f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
            "created_at": now(), "run_dir": str(run_dir), "model_sha256": model_sha256(run_dir / "model.pt"),
            "backend": backend, "device": handle.description.get("device"), "settings": settings,
            "description": {**handle.description, "physical_qubits": plan.layout and plan.layout["qubits"]},
            "split": split, "positions": list(range(samples)),
            "source_indices": sources, "labels": labels.tolist(), "circuit_qpy": circuit_to_qpy(pub.circuit),
            "parameter_names": pub.parameter_names, "observables": observables_to_json(pub.observables),
            "parameter_values": pub.values, "exact_expvals": exact_evs, "exact_predictions": exact_pred.tolist(),
            "max_rows": max(b - a for a, b in rows), **device_facts(handle),
            "normalization": normalization, "calibration_values": pub.calibration,
            "estimate": estimate_basis(plan, ov),
        }
        sid = record["submission_id"]
        with sender_lock(run_dir, sid), Ledger.for_run(run_dir) as ledger:
            ledger.add_submission(record)
            what = backend + (f" ({record['device']}, {handle.description.get('shots')} shots)" if record["device"] else "")
            say(f"submission {sid}: {samples} {split} samples in {len(rows)} job(s) on {what}; ledger {ledger.path}")
            if plan.layout:
                say(f"  on physical qubits {_qubits(plan.layout)}: the same layout elsewhere with --layout "
                    f"{_qubits(plan.layout)} (or --layout {sid} from this run)")
            return _send_and_wait(handle, pub, rows, ledger, sid, run_dir, wait, poll, say, live)
    finally:
        close_handle(handle)


def _qubits(facts: dict) -> str:
    return ",".join(map(str, facts["qubits"]))


def _resolve_layout(run_dir: Path, layout):
    """``--layout SUBMISSION``: the physical qubits that submission of this run was laid out on
    (a rehearsal's, pinned for the real job); any other value goes to the backend as it is."""
    from backends.layout import LAYOUTS

    text = str(layout).strip()
    if not isinstance(layout, str) or text in LAYOUTS or text.replace(",", "").replace(" ", "").isdigit():
        return layout
    if not (run_dir / LEDGER_NAME).exists():
        raise HybridQiskitError(f"--layout {text}: not a layout ({', '.join(LAYOUTS)} or physical qubits like 3,4,5) "
                                f"and {run_dir} has no submissions to take one from")
    with Ledger.for_run(run_dir, readonly=True) as ledger:
        if text not in ledger.submission_ids():
            raise HybridQiskitError(f"--layout {text}: not a layout ({', '.join(LAYOUTS)} or physical qubits like "
                                    f"3,4,5) nor a submission of {run_dir}")
        sub = ledger.submission(text)
    qubits = sub["description"].get("physical_qubits")
    if not qubits:
        raise HybridQiskitError(f"submission {text} recorded no physical qubits (made before layouts were recorded)")
    return ",".join(map(str, qubits))


class _Confirmation:
    """Print the plan; decide whether it may be sent (a dry run, --yes, --confirm-above, the prompt)."""

    def __init__(self, dry_run: bool, yes: bool, confirm_above: float, confirm: Confirm | None, say: Say):
        self.dry_run, self.yes, self.confirm_above, self.confirm, self.say = dry_run, yes, confirm_above, confirm, say

    def allows(self, plan: CostPlan, remote: bool) -> bool:
        for line in plan.lines():
            self.say(line)
        if self.dry_run:
            self.say("dry run: nothing sent")
            return False
        if remote and plan.over_budget and not self.yes:  # the Open Plan's minutes: refused, not asked
            raise HybridQiskitError(
                f"the estimated usage, {fmt_seconds(plan.usage_seconds)}, is more than the instance has left "
                f"({fmt_seconds(plan.remaining_seconds)}); jobs past it wait queued until the usage resets: send "
                "fewer --samples, or pass --yes to send it anyway")
        estimate = plan.usage_seconds
        if not remote or self.yes or estimate is None or estimate <= self.confirm_above * 60:
            return True
        above = (f"the estimated usage, {fmt_seconds(estimate)}, is above --confirm-above "
                 f"{self.confirm_above:g} min")
        if self.confirm is None:
            raise HybridQiskitError(f"{above}; pass --yes to send it anyway, or --dry-run to see the plan only")
        if self.confirm(plan):
            return True
        self.say("nothing sent")
        return False


def device_facts(handle) -> dict:
    """What the ledger records of where a submission runs: the qiskit-ibm-runtime version (its
    decoders read the results later), the device's name and its calibration time."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        runtime = version("qiskit-ibm-runtime")
    except PackageNotFoundError:
        runtime = None
    device, calibrated = handle.device, None
    if device is not None:
        try:
            props = device.properties()
            stamp = getattr(props, "last_update_date", None) if props is not None else None
            calibrated = stamp.isoformat() if hasattr(stamp, "isoformat") else (str(stamp) if stamp else None)
        except Exception:  # noqa: BLE001 - a device without properties: no calibration time
            calibrated = None
    name = getattr(device, "name", None) or handle.description.get("device")
    return {"runtime_version": runtime, "backend_name": name, "calibrated_at": calibrated}


def _load(run_dir: Path, samples: int, split: str):
    """The run's config, checkpoint and the first ``samples`` images of ``split`` (no backend)."""
    from hybrid_qiskit.models import is_quantum
    from hybrid_qiskit.runs import load_run, load_splits

    cfg, payload = load_run(str(run_dir))
    if not is_quantum(cfg.model):
        raise HybridQiskitError(f"a {cfg.model} model is a classical baseline: it has no quantum head to run on hardware")
    splits = load_splits(cfg)  # the run's own config: the same split, in the same order
    data = splits.images(split)
    if not 1 <= samples <= len(data):
        raise HybridQiskitError(f"--samples must be between 1 and {len(data)} (the {split} split's size), got {samples}")
    images, labels = (t[:samples] for t in data.tensors)
    sources = splits.test_indices[:samples].tolist() if split == "test" else None
    return cfg, payload, images, labels, sources, splits.train


def _head(payload, handle, images, cfg, train, stats: str | None, samples: int | None, refit: bool = False):
    """The head's PUB for ``images`` (the model restored on ``handle``, ``encode`` run here) and
    the submission's normalization record (None: off). With ``calibration`` statistics, the PUB
    carries the calibration set's rows for every job; with ``refit`` the record also holds their
    labels and the re-fit's anchor."""
    import torch

    from hybrid_qiskit.adaptation import (
        CALIBRATION_SAMPLES,
        REFIT_ANCHOR,
        calibration_set,
        normalization_policy,
        reference_statistics,
    )
    from hybrid_qiskit.checkpoints import restore_model

    model = restore_model(payload, handle)
    stats = normalization_policy(stats, refit=refit, layer=cfg.normalize, other_backend=True)
    with torch.no_grad():
        angles = model.encode(images)
        if stats == "off":
            return head_pub(model, angles.numpy()), None
        calib, indices = calibration_set(train, samples or CALIBRATION_SAMPLES, seed=cfg.seed)
        reference, kind = reference_statistics(model, payload, calib, seed=cfg.seed)
        record = {"stats": stats, "reference": kind, "reference_stats": reference.to_dict()}
        if stats == "batch":
            if len(images) < 2:
                raise HybridQiskitError("--normalize-stats batch takes the statistics of the submitted samples: "
                                        "submit at least 2, or use calibration")
            return head_pub(model, angles.numpy()), record
        record.update(calibration_samples=len(calib), calibration_indices=indices)
        if refit:
            record.update(refit={"anchor": REFIT_ANCHOR}, calibration_labels=train.tensors[1][indices].tolist())
        return head_pub(model, angles.numpy(), model.encode(calib).numpy()), record


def _exact(payload, images, seed):
    """⟨Z⟩ and predictions of the same samples on exact statevector (the agreement baseline)."""
    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model

    model = restore_model(payload, create_backend("statevector", seed=seed))
    with torch.no_grad():
        evs = model.quantum(model.encode(images))
        return evs.numpy().astype("float64"), model.decode(evs).argmax(1).numpy()


def _resume(run_dir: Path, sid: str, max_rows, wait, poll, confirmation: _Confirmation, say: Say, live) -> Outcome:
    """Send the rows of submission ``sid`` that have no job, on its recorded backend."""
    from hybrid_qiskit.jobs.recorded import may_hide_orphans

    if not (run_dir / LEDGER_NAME).exists():
        raise HybridQiskitError(f"{run_dir} has no job ledger ({LEDGER_NAME}); nothing to resume")
    with Ledger.for_run(run_dir, create=False) as ledger:
        sub = ledger.submission(sid)  # an unknown id is one line before any lock or folder
    with sender_lock(run_dir, sid), Ledger.for_run(run_dir, create=False) as ledger:
        if _is_remote(sub, ledger.jobs(sid)) and may_hide_orphans(ledger, sid):
            adopt_orphans(ledger, sub, {}, say)  # a job accepted before a crash is not sent twice
        rows = ledger.unsubmitted(sid)
        if max_rows is not None:
            rows = [r for a, b in rows for r in ((x, min(x + max_rows, b)) for x in range(a, b, max_rows))]
        if not rows:
            say(f"submission {sid}: every row has a job; nothing to resume (see: hybrid-qiskit jobs {run_dir})")
            return Outcome(submission_ids=[sid], sent=False)
        handle = pinned_handle(sub)
        try:
            pub = pub_from_ledger(sub)
            if not confirmation.allows(plan_for(handle, pub, rows), handle.remote):
                return Outcome(sent=False)
            say(f"submission {sid}: resuming {sum(b - a for a, b in rows)} unsubmitted row(s) in {len(rows)} "
                f"job(s) on {sub['backend']}" + (f" ({sub['device']})" if sub["device"] else ""))
            return _send_and_wait(handle, pub, rows, ledger, sid, run_dir, wait, poll, say, live)
        finally:
            close_handle(handle)


def sender_lock(run_dir: Path, sid: str):
    """One sender per submission: two ``submit --resume`` of one submission both read the same
    unsubmitted rows and sent each of them twice (twice the QPU time). The second now waits for
    nothing: it is refused in one line naming the process that holds the submission."""
    from hybrid_qiskit.fileio import WriterLock

    # A folder of its own: the lock's clean-up of dead temporaries must not touch the results
    # that fetch writes into jobs/<sid>/ meanwhile.
    return WriterLock(Path(run_dir) / "jobs" / ".sending" / sid, what=f"sending submission {sid}")


def _is_remote(sub: dict, jobs: list[dict]) -> bool:
    from backends import backend_spec

    return any(j["remote"] for j in jobs) if jobs else backend_spec(sub["backend"]).needs_credentials


def _send_and_wait(handle, pub, rows, ledger: Ledger, sid: str, run_dir: Path, wait: bool, poll, say: Say,
                   live) -> Outcome:
    """Send one job per row range, record each, wait where this process must; then finish."""
    remote = handle.remote
    sender = _Sender(handle, pub, ledger, sid, run_dir, remote, say)
    outcome = Outcome(submission_ids=[sid])
    resume_hint = f"rows without a job: hybrid-qiskit submit {run_dir} --resume {sid}"
    if remote:
        try:
            watched = sender.all(rows)
        except KeyboardInterrupt:
            close_handle(handle)
            raise Interrupted(list(sender.ids), [], note=resume_hint) from None
        close_handle(handle)  # a closed Session / Batch takes no more jobs; queued ones still run
        outcome.job_ids = list(watched)
        if sender.error is not None:
            raise sender.error
        if not wait:
            outcome.pending = list(watched)
            return outcome
        watch(watched, poll=poll or REMOTE_POLL_S, live=live)
    else:  # local simulations: a bounded pool, refilled as jobs finish
        feed = _Feed(rows, sender)
        try:
            states = watch({}, poll=poll or LOCAL_POLL_S, live=live, feed=feed, capacity=LOCAL_WORKERS)
        except Interrupted as stop:
            stop.note = resume_hint if feed.rows else None
            raise
        outcome.job_ids = list(states)
        if sender.error is not None:
            raise sender.error
    settle(run_dir, ledger, [sid], outcome, say)
    return outcome


class _Sender:
    """Sends one row range as a job, tagged, and records it before anything waits on it. The
    first failure is kept (``error``, which says how to send the rest) and stops sending."""

    def __init__(self, handle, pub, ledger: Ledger, sid: str, run_dir: Path, remote: bool, say: Say):
        self.handle, self.pub, self.ledger, self.sid = handle, pub, ledger, sid
        self.run_dir, self.remote, self.say = run_dir, remote, say
        self.ids: list[str] = []
        self.error: HybridQiskitError | None = None

    def one(self, a: int, b: int) -> tuple[str, Watched] | None:
        if self.error is not None:
            return None
        set_tags(self.handle, job_tags(self.sid, (a, b)))
        try:
            # A rate or pending-job limit clears with time: wait, send again, go on with the rest.
            job = send_with_backoff(lambda: self.handle.estimator.run([self.pub.rows(a, b)]), f"rows {a}-{b - 1}",
                                    self.say) if self.remote else self.handle.estimator.run([self.pub.rows(a, b)])
            jid = job.job_id()
        except Exception as exc:  # noqa: BLE001 - the service's refusal, the network, anything
            done = f"; the {len(self.ids)} job(s) already accepted are in the ledger" if self.ids else ""
            ended = ("; its batch or session has ended (closed, or past its time-to-live), and --resume opens a "
                     "new one" if self.remote and batch_ended(exc) else "")
            self.error = HybridQiskitError(
                f"submitting rows {a}-{b - 1} failed: {one_line(exc)}{done}{ended}; send the rows without a job "
                f"with: hybrid-qiskit submit {self.run_dir} --resume {self.sid}")
            return None
        session = getattr(job, "session_id", None) if self.remote else None
        self.ledger.add_job(jid, self.sid, (a, b), remote=self.remote, session_id=session)
        warning = index_add(jid, self.run_dir, self.sid)
        if warning:
            self.say(f"warning: {warning}")
        self.ids.append(jid)
        self.say(f"  job {jid}  rows {a}-{b - 1}  recorded")
        return jid, Watched(job, self.ledger, self.remote)

    def all(self, rows) -> dict[str, Watched]:
        out: dict[str, Watched] = {}
        for a, b in rows:
            sent = self.one(a, b)
            if sent is None:
                break
            out[sent[0]] = sent[1]
        return out


class _Feed:
    """Row ranges waiting for a free local worker (see ``tracking.watch``)."""

    def __init__(self, rows, sender: _Sender):
        self.rows = deque(rows)
        self.sender = sender

    def __call__(self, free: int) -> dict[str, Watched]:
        out: dict[str, Watched] = {}
        while free > 0 and self.rows and self.sender.error is None:
            sent = self.sender.one(*self.rows.popleft())
            if sent is None:
                break
            out[sent[0]] = sent[1]
            free -= 1
        return out

    @property
    def done(self) -> bool:
        return not self.rows or self.sender.error is not None
