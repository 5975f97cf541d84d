"""The cost of a submission before anything is sent: jobs, circuits, shots, QPU time.

The runtime's own client-side preparation (``executor_estimator.prepare``, what
``Estimator.run`` does before sending) is run on one and on two rows of the PUB, so every
mitigation overhead is counted as the runtime will produce it: twirling randomizations, TREX's
calibration circuits (a fixed number per job), ZNE's noise-factor copies. The difference of the
two gives the executions per row; the rest is per job. Estimators without that preparation
count ``rows x measured bases x shots``.

QPU time (the formula in the README's hardware section)::

    t_shot  = rep_delay + circuit duration x mean ZNE noise factor + readout
    seconds = (rows x executions per row + jobs x executions per job) x t_shot

``rep_delay`` is the estimator's ``execution.rep_delay`` or the device configuration's
``default_rep_delay`` (250 us on Heron); the circuit duration comes from the device target's
gate durations (``QuantumCircuit.estimate_duration``), the readout from its ``measure``
durations. Example: 2,000 images at 1,024 shots on Heron: about 8.6 QPU-minutes. The estimated
*usage* (what the instance is charged, and what ``--confirm-above`` and the budget check use)
adds the service's time beyond the shots::

    usage = QPU time + jobs x PER_JOB_SECONDS + circuits x PER_CIRCUIT_SECONDS

an estimate with its basis printed (:data:`OVERHEAD_BASIS`); ``jobs`` shows each job's actual
usage beside it once the job has run. For IBM Quantum the plan also shows the instance's
remaining usage (``QiskitRuntimeService.usage()``) where the service reports it.

Chunk sizing uses the same counts: two-qubit gates per row are multiplied by the sum of the
noise factors under gate-folding ZNE (the service's job limit counts them so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.jobs.pubs import DEFAULT_MAX_ROWS, MAX_EXECUTIONS, SAFE_TWO_QUBIT_GATES, HeadPub


@dataclass(frozen=True)
class Overheads:
    """What one row and one job of a PUB cost, mitigation included."""

    shots: int  # shots per circuit requested
    bases: int  # measured bases per row (qubit-wise commuting groups of the observables)
    circuits_per_row: int  # circuits the QPU runs per row (randomizations, noise factors)
    circuits_per_job: int  # fixed per job (TREX calibration)
    executions_per_row: int  # shots summed over those circuits
    executions_per_job: int
    two_qubit_per_row: int  # two-qubit gates per row, ZNE folding included
    zne_factors: tuple[float, ...]  # () without gate-folding ZNE
    mitigation: str  # in words

    @property
    def factor(self) -> float:
        """Executions per row over the plain ``bases x shots``."""
        return self.executions_per_row / max(1, self.bases * self.shots)


@dataclass(frozen=True)
class CostPlan:
    """What a submission will send, and about how much QPU time it takes."""

    backend: str
    device: str | None
    jobs: int
    rows: int
    circuits: int
    shots: int
    executions: int
    mitigation: str
    overhead: float
    rep_delay_us: float | None
    shot_us: float | None
    qpu_seconds: float | None
    calibration_rows: int = 0  # per job, counted in rows (post-measurement normalization)
    layout: dict | None = None  # backends.layout.placement_facts, plus "how" (the layout setting)
    overhead_seconds: float | None = None  # per-job overhead + per-circuit loading (an estimate)
    usage: dict | None = None  # the instance's usage as the service reports it (remote only)

    @property
    def usage_seconds(self) -> float | None:
        """The estimated usage: shots plus overheads (what the budget and --confirm-above check)."""
        if self.qpu_seconds is None:
            return None
        return self.qpu_seconds + (self.overhead_seconds or 0.0)

    @property
    def remaining_seconds(self) -> float | None:
        return None if not self.usage else self.usage.get("remaining_seconds")

    @property
    def over_budget(self) -> bool:
        """The estimate exceeds the instance's remaining usage (as reported)."""
        left = self.remaining_seconds
        return left is not None and self.usage_seconds is not None and self.usage_seconds > left

    def lines(self) -> list[str]:
        where = self.backend + (f" on {self.device}" if self.device else "")
        out = [
            f"plan: {self.jobs} job(s), {self.rows} PUB row(s) (images"
            + (f", {self.calibration_rows} per job for normalization statistics" if self.calibration_rows else "")
            + f"), {self.circuits:,} circuits, "
            f"{self.shots:,} shots per image, {self.executions:,} executions in all ({where})",
            f"  mitigation: {self.mitigation}; {self.overhead:.2f}x the executions of no mitigation",
        ]
        if self.qpu_seconds is None:
            out.append("  QPU time: not estimated (the device gives no repetition delay)")
        else:
            out.append(f"  estimated QPU time: {fmt_seconds(self.qpu_seconds)} (rep delay {self.rep_delay_us:g} us "
                       f"+ circuit and readout = {self.shot_us:.1f} us per execution; queueing not included)")
            out.append(f"  estimated usage: {fmt_seconds(self.usage_seconds)} = that + {self.jobs} job(s) x "
                       f"{PER_JOB_SECONDS:g} s + {self.circuits:,} circuits x {PER_CIRCUIT_SECONDS * 1e3:g} ms "
                       f"(an estimate: {OVERHEAD_BASIS}; `hybrid-qiskit jobs` shows each job's actual usage)")
        return out + usage_lines(self.usage, self.usage_seconds) + layout_lines(self.layout)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The service's time beyond the shots, per job and per circuit (an estimate, printed with its basis).
PER_JOB_SECONDS = 6.0
PER_CIRCUIT_SECONDS = 0.002
OVERHEAD_BASIS = ("per-job overhead from IBM's execution-modes FAQ, where two 40-circuit jobs took about 6 s more "
                  "than one 80-circuit job; per-circuit loading assumed 2 ms")


def usage_lines(usage: dict | None, estimate: float | None) -> list[str]:
    """The instance's remaining usage, as the service reports it, against the estimate."""
    if not usage or usage.get("remaining_seconds") is None:
        return []
    left, limit = usage["remaining_seconds"], usage.get("limit_seconds")
    period = f", period ends {usage['period_end'][:10]}" if usage.get("period_end") else ""
    line = (f"  instance usage: {left:,.0f} s left" + (f" of {limit:,.0f} s" if limit else "") + period)
    if estimate is not None and estimate > left:
        line += f"; this plan's estimate ({estimate:,.0f} s) is more than what is left"
    return [line]


def instance_usage(handle) -> dict | None:
    """``QiskitRuntimeService.usage()`` of the instance the handle's QPU belongs to, in a small
    dict (``remaining_seconds``, ``limit_seconds``, ``consumed_seconds``, ``limit_reached``,
    ``period_end``); None for local backends or where the service does not report it."""
    if not getattr(handle, "remote", False):
        return None
    service = getattr(handle.device, "service", None)
    usage = getattr(service, "usage", None)
    if not callable(usage):
        return None
    try:
        raw = usage()
    except Exception:  # noqa: BLE001 - not reported: the plan says nothing about it
        return None
    return summarize_usage(raw)


def summarize_usage(raw: dict | None) -> dict | None:
    if not isinstance(raw, dict):
        return None
    limit = raw.get("usage_limit_seconds") or raw.get("usage_allocation_seconds")
    left = raw.get("usage_remaining_seconds")
    if left is None and limit is not None:
        left = max(0.0, float(limit) - float(raw.get("usage_consumed_seconds") or 0))
    period = raw.get("usage_period") or {}
    return {"remaining_seconds": None if left is None else float(left),
            "limit_seconds": None if limit is None else float(limit),
            "consumed_seconds": raw.get("usage_consumed_seconds"),
            "limit_reached": bool(raw.get("usage_limit_reached")) or (left is not None and float(left) <= 0),
            "period_end": period.get("end_time") if isinstance(period, dict) else None}


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.2f}%"


def layout_lines(facts: dict | None) -> list[str]:
    """The physical qubits a plan runs on, with their readout and two-qubit errors."""
    if not facts:
        return []
    qubits = ",".join(map(str, facts["qubits"]))
    out = [f"  layout ({facts.get('how') or 'as recorded'}): physical qubits {qubits}"]
    out.append("    readout error: " + " ".join(_pct(e) for e in facts["readout"])
               + f" (device median {_pct(facts['median_readout'])}, worst decile from {_pct(facts['p90_readout'])})")
    if facts["couplings"]:
        gate = facts.get("gate") or "two-qubit"
        shown = ", ".join(f"{a}-{b} {_pct(e)}" for a, b, e, _ in facts["couplings"])
        out.append(f"    {gate} error: {shown} (device median {_pct(facts['median_2q'])}, "
                   f"worst decile from {_pct(facts['p90_2q'])})")
    return out


def placement(handle, pub: HeadPub) -> dict | None:
    """The plan's layout facts: the ISA circuit's physical qubits on the handle's device."""
    device = handle.device
    target = getattr(device, "target", None)
    if target is None:
        return None
    from backends.layout import placement_facts

    try:
        facts = placement_facts(pub.circuit, target)
    except Exception:  # noqa: BLE001 - a device without calibration: no layout lines
        return None
    how = getattr(handle.pass_manager, "note", None) or handle.description.get("layout")
    facts["how"] = how
    return facts


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def measured_bases(pub: HeadPub) -> int:
    return len(SparsePauliOp.sum(list(pub.observables)).paulis.group_qubit_wise_commuting())


def two_qubit_gates(circuit) -> int:
    return sum(1 for inst in circuit.data if inst.operation.num_qubits == 2)


def overheads(handle, pub: HeadPub) -> Overheads:
    """Per-row and per-job counts for ``handle``'s estimator, mitigation included."""
    shots = int(handle.description.get("shots") or 1)
    bases = measured_bases(pub)
    two_q = two_qubit_gates(pub.circuit) * bases
    zne = _zne_factors(handle)
    if zne:
        two_q = int(round(two_q * sum(zne)))
    counted = _runtime_counts(handle, pub)
    if counted is None:
        return Overheads(shots, bases, bases, 0, bases * shots, 0, two_q, zne, _mitigation_words(handle, zne, 0))
    (c1, e1), (c2, e2) = counted
    per_row_c, per_row_e = c2 - c1, e2 - e1
    per_job_c, per_job_e = c1 - per_row_c, e1 - per_row_e
    return Overheads(shots, bases, per_row_c, per_job_c, per_row_e, per_job_e, two_q, zne,
                     _mitigation_words(handle, zne, per_job_e))


def _finalized(handle):
    """The runtime estimator's finalized options (resilience-level defaults applied), or None."""
    options = getattr(handle.estimator, "options", None)
    try:
        from qiskit_ibm_runtime.executor_estimator.finalize_options import (
            finalize_estimator_options,
        )
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions
    except ImportError:
        return None
    return finalize_estimator_options(options) if isinstance(options, EstimatorOptions) else None


def _zne_factors(handle) -> tuple[float, ...]:
    options = _finalized(handle)
    if options is None or not options.resilience.zne_mitigation:
        return ()
    zne = options.resilience.zne
    if not str(zne.amplifier).startswith("gate_folding"):
        return ()
    if zne.noise_factors == "auto":
        from qiskit_ibm_runtime.options_models.zne import DEFAULT_NOISE_FACTORS

        return tuple(float(f) for f in DEFAULT_NOISE_FACTORS)
    return tuple(float(f) for f in zne.noise_factors)


def _mitigation_words(handle, zne: tuple[float, ...], calibration_executions: int) -> str:
    options = _finalized(handle)
    if options is None:
        return "none"
    parts = []
    if options.resilience.measure_mitigation:
        parts.append(f"TREX ({calibration_executions:,} calibration executions per job)")
    if zne:
        parts.append(f"ZNE gate folding, noise factors {', '.join(f'{f:g}' for f in zne)} "
                     f"(two-qubit gates x{sum(zne):g})")
    elif options.resilience.zne_mitigation:
        parts.append("ZNE (PEA)")
    if options.twirling.enable_gates:
        parts.append("gate twirling")
    if options.dynamical_decoupling.enable:
        parts.append(f"dynamical decoupling ({options.dynamical_decoupling.sequence_type})")
    return ", ".join(parts) or f"none (resilience level {options.resilience_level})"


def _runtime_counts(handle, pub: HeadPub):
    """((circuits, executions) for 1 row, for 2 rows) as the runtime prepares them, or None."""
    options = getattr(handle.estimator, "options", None)
    try:
        from qiskit_ibm_runtime.executor_estimator.prepare import prepare
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions
    except ImportError:
        return None
    if not isinstance(options, EstimatorOptions):
        return None
    out = []
    for n in (1, 2):
        values = np.repeat(pub.values[:1], n, axis=0)
        try:
            program, _ = prepare([(pub.circuit, [[o] for o in pub.observables], values)], options,
                                 backend=handle.device)
        except Exception:  # noqa: BLE001 - an estimate only: fall back to the plain count
            return None
        sizes = [int(item.size()) for item in program.items]
        out.append((sum(sizes), int(program.shots) * sum(sizes)))
    return out


def shot_seconds(handle, pub: HeadPub, zne: tuple[float, ...]) -> tuple[float | None, float | None]:
    """(rep delay, seconds per execution) on the handle's device; (None, None) without one."""
    device = handle.device
    if device is None:
        return None, None
    rep = None
    options = getattr(handle.estimator, "options", None)
    execution = getattr(options, "execution", None)
    if execution is not None and getattr(execution, "rep_delay", None) is not None:
        rep = float(execution.rep_delay)
    if rep is None:
        rep = getattr(device, "default_rep_delay", None)
    if rep is None:
        try:
            rep = device.configuration().default_rep_delay
        except Exception:  # noqa: BLE001 - a device without a configuration
            rep = None
    if rep is None:
        return None, None
    target = getattr(device, "target", None)
    duration = readout = 0.0
    if target is not None:
        try:
            duration = float(pub.circuit.estimate_duration(target, unit="s"))
        except Exception:  # noqa: BLE001 - durations missing from the target
            duration = 0.0
        if "measure" in target.operation_names:
            from backends.reduced import active_qubits

            used = set(active_qubits(pub.circuit))
            lengths = [p.duration for q, p in target["measure"].items()
                       if p is not None and p.duration and (not used or q[0] in used)]
            readout = max(lengths, default=0.0)
    mean_fold = float(np.mean(zne)) if zne else 1.0
    return float(rep), float(rep) + duration * mean_fold + readout


def plan_for(handle, pub: HeadPub, rows: list[tuple[int, int]], ov: Overheads | None = None) -> CostPlan:
    """The cost plan of sending ``rows`` of ``pub`` as one job per range."""
    ov = ov or overheads(handle, pub)
    n_rows = sum(b - a for a, b in rows) + len(rows) * pub.calibration_rows  # every job runs the calibration set
    executions = n_rows * ov.executions_per_row + len(rows) * ov.executions_per_job
    rep, per_shot = shot_seconds(handle, pub, ov.zne_factors)
    return CostPlan(
        backend=handle.name, device=handle.description.get("device"), jobs=len(rows), rows=n_rows,
        circuits=n_rows * ov.circuits_per_row + len(rows) * ov.circuits_per_job, shots=ov.shots,
        executions=executions, mitigation=ov.mitigation, overhead=(executions / max(1, n_rows * ov.bases * ov.shots)),
        rep_delay_us=None if rep is None else rep * 1e6, shot_us=None if per_shot is None else per_shot * 1e6,
        qpu_seconds=None if per_shot is None else executions * per_shot, calibration_rows=pub.calibration_rows,
        layout=placement(handle, pub),
        overhead_seconds=len(rows) * PER_JOB_SECONDS
        + (n_rows * ov.circuits_per_row + len(rows) * ov.circuits_per_job) * PER_CIRCUIT_SECONDS,
        usage=instance_usage(handle),
    )


def estimate_basis(plan: CostPlan, ov: Overheads) -> dict:
    """What one job's usage estimate is made of (recorded with the submission): the counts per
    row and per job, the seconds per execution, and the overheads."""
    return {"shot_seconds": None if plan.shot_us is None else plan.shot_us * 1e-6,
            "executions_per_row": ov.executions_per_row, "executions_per_job": ov.executions_per_job,
            "circuits_per_row": ov.circuits_per_row, "circuits_per_job": ov.circuits_per_job,
            "calibration_rows": plan.calibration_rows, "per_job_seconds": PER_JOB_SECONDS,
            "per_circuit_seconds": PER_CIRCUIT_SECONDS}


def job_estimate(basis: dict | None, rows: int) -> float | None:
    """The estimated usage of one job of ``rows`` samples (its calibration rows added)."""
    if not basis or basis.get("shot_seconds") is None:
        return None
    n = rows + basis["calibration_rows"]
    shots = (n * basis["executions_per_row"] + basis["executions_per_job"]) * basis["shot_seconds"]
    circuits = n * basis["circuits_per_row"] + basis["circuits_per_job"]
    return shots + basis["per_job_seconds"] + circuits * basis["per_circuit_seconds"]


def max_rows_per_job(ov: Overheads) -> int:
    """Rows per job inside the service's per-job limits, mitigation overheads counted: the
    executions (per-row ones, after the fixed per-job calibration) and the two-qubit gates."""
    room = max(1, MAX_EXECUTIONS - ov.executions_per_job)
    by_executions = room // max(1, ov.executions_per_row)
    by_gates = SAFE_TWO_QUBIT_GATES // ov.two_qubit_per_row if ov.two_qubit_per_row else DEFAULT_MAX_ROWS
    return max(1, min(DEFAULT_MAX_ROWS, by_executions, by_gates))
