"""Noise models for the noisy Aer backends: from a fake device, or from a few numbers.

Two builders return a :class:`NoiseSpec` (the Aer ``NoiseModel``, the readout error per qubit,
and a JSON-able summary for the run's metadata):

* :func:`device_noise`: the device's calibration (gate errors, readout errors, T1/T2 and gate
  times, as ``NoiseModel.from_backend`` reads them) with every error rate multiplied by
  ``noise_scale``. The device's ``Target`` is copied with each gate error and readout error
  times the scale, and T1, T2 divided by it (so relaxation rates, which are what set a gate's
  relaxation error, scale too); Aer then builds its usual depolarizing + thermal-relaxation +
  readout model from the copy. Errors past their physical maximum are clipped (by us for readout,
  at 0.5; by Aer for gates). ``noise_scale=0`` is exactly noiseless: no noise model at all.
* :func:`parametric_noise`: one- and two-qubit depolarizing probabilities, a symmetric readout
  error and thermal relaxation (T1, T2 in µs; gate times in ns) on a given set of gates, all
  scaled by ``noise_scale`` in the same way (probabilities times it, T1/T2 divided by it).

``rz`` is left noiseless in both: on IBM hardware it is a virtual frame change (zero duration,
zero error).

:func:`fold_readout` turns an observable into the one whose exact expectation equals what a
measurement with those readout errors reports on average; the exact (density-matrix) backend uses
it, since Aer's exact estimator never measures.

Example:
    >>> spec = parametric_noise(one_qubit_gates=["sx", "x"], two_qubit_gates=["cx"],
    ...                         readout_error=0.02)
    >>> spec.summary["readout_error"], spec.readout_all
    (0.02, (0.02, 0.02))
"""

from __future__ import annotations

import copy
import itertools
import statistics
from dataclasses import dataclass, field

from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.errors import HybridQiskitError

# Instructions that are not gates: never given a gate error of ours.
NON_GATES = {
    "measure",
    "reset",
    "delay",
    "barrier",
    "for_loop",
    "if_else",
    "switch_case",
    "while_loop",
    "box",
}
VIRTUAL_GATES = {"rz"}  # frame changes on IBM hardware: no duration, no error


@dataclass(frozen=True)
class NoiseSpec:
    """A noise model with what else the backends need to know about it.

    Attributes:
        model: the Aer ``NoiseModel``; None means noiseless.
        readout: physical qubit -> (P(read 1 | 0), P(read 0 | 1)) for qubits with their own error.
        readout_all: the same pair for every qubit not in ``readout`` (None: no readout error).
        summary: JSON-able description (kind, scale, parameters or device medians).
    """

    model: object | None
    readout: dict[int, tuple[float, float]] = field(default_factory=dict)
    readout_all: tuple[float, float] | None = None
    summary: dict = field(default_factory=dict)

    def readout_of(self, qubit: int) -> tuple[float, float]:
        """Readout flip probabilities of ``qubit`` ((0, 0) when it has none)."""
        return self.readout.get(qubit, self.readout_all or (0.0, 0.0))


def _check_scale(noise_scale: float) -> float:
    if noise_scale is None or noise_scale < 0:
        raise HybridQiskitError(
            f"noise_scale must be >= 0 (0 = noiseless, 1 = as given), got {noise_scale}"
        )
    return float(noise_scale)


def scale_target(target, noise_scale: float):
    """A copy of ``target`` with gate and readout errors times ``noise_scale``, T1/T2 divided by it.

    Args:
        target: a device's ``Target`` (it is not modified).
        noise_scale: a positive factor.

    Returns:
        The scaled copy.
    """
    from qiskit.providers import QubitProperties
    from qiskit.transpiler import InstructionProperties

    scaled = copy.deepcopy(target)
    for name in target.operation_names:
        if name in NON_GATES - {"measure"}:
            continue
        cap = 0.5 if name == "measure" else 1.0  # a readout flip past 1/2 would carry information
        for qargs, props in target[name].items():
            if props is None or props.error is None:
                continue
            new = InstructionProperties(
                duration=props.duration, error=min(props.error * noise_scale, cap)
            )
            scaled.update_instruction_properties(name, qargs, new)
    if target.qubit_properties:
        scaled.qubit_properties = [
            QubitProperties(
                t1=None if q.t1 is None else q.t1 / noise_scale,
                t2=None if q.t2 is None else q.t2 / noise_scale,
                frequency=q.frequency,
            )
            for q in target.qubit_properties
        ]
    return scaled


def _device_stand_in(backend, target):
    """A minimal BackendV2 carrying ``target``: what ``NoiseModel.from_backend`` reads."""
    from qiskit.providers import BackendV2, Options

    class ScaledDevice(BackendV2):
        @property
        def target(self):
            return target

        @property
        def max_circuits(self):
            return None

        @classmethod
        def _default_options(cls):
            return Options()

        def run(self, run_input, **options):  # only read, never run
            raise NotImplementedError

    return ScaledDevice(name=f"{backend.name}_scaled")


def device_noise_summary(backend, noise_scale: float = 1.0) -> dict:
    """What :func:`device_noise` would report about ``backend``'s noise, without building it.

    Building the Aer model of a whole 156-qubit device takes ~8 s; the description of a run only
    needs the scaled medians, and simulation builds the model of the reduced device instead.
    """
    scale = _check_scale(noise_scale)
    summary = {"kind": "device", "device": backend.name, "noise_scale": scale}
    if scale == 0:
        return {**summary, "kind": "none (device noise scaled to 0)"}
    target = backend.target
    return {**summary, **_medians(target if scale == 1 else scale_target(target, scale))}


def device_noise(backend, noise_scale: float = 1.0) -> NoiseSpec:
    """The noise of fake device ``backend`` with every error rate times ``noise_scale``.

    Args:
        backend: a BackendV2 with calibration data (a fake device, or its reduced device).
        noise_scale: 0 = noiseless, 1 = the device, 2 = twice as noisy.

    Returns:
        The NoiseSpec; its summary carries the scaled medians.

    Raises:
        HybridQiskitError: a negative scale.
    """
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.noise.device import basic_device_readout_errors

    scale = _check_scale(noise_scale)
    summary = device_noise_summary(backend, scale)
    if scale == 0:
        return NoiseSpec(None, summary=summary)
    target = backend.target
    if scale == 1:  # the device as it is: no copy needed
        scaled, model = target, NoiseModel.from_backend(backend)
    else:
        scaled = scale_target(target, scale)
        model = NoiseModel.from_backend(_device_stand_in(backend, scaled))
    # The readout errors exactly as Aer builds them from the (scaled) target.
    readout = {
        qubits[0]: (float(error.probabilities[0][1]), float(error.probabilities[1][0]))
        for qubits, error in basic_device_readout_errors(target=scaled)
    }
    return NoiseSpec(model, readout=readout, summary=summary)


def _medians(target) -> dict:
    """Median error rates and coherence times of a target (for the run's metadata)."""
    out: dict = {}

    def median_error(name):
        errs = [p.error for p in target[name].values() if p is not None and p.error is not None]
        return statistics.median(errs) if errs else None

    for name in target.operation_names:
        if name in NON_GATES | VIRTUAL_GATES or name == "id":
            continue
        kind = "2q" if target.operation_from_name(name).num_qubits == 2 else "1q"
        out[f"median_error_{kind}_{name}"] = median_error(name)
    if "measure" in target.operation_names:
        out["median_readout_error"] = median_error("measure")
    props = target.qubit_properties or []
    for key in ("t1", "t2"):
        vals = [getattr(q, key) for q in props if getattr(q, key) is not None]
        out[f"median_{key}_us"] = statistics.median(vals) * 1e6 if vals else None
    return out


def parametric_noise(
    *,
    one_qubit_gates,
    two_qubit_gates,
    depolarizing: float = 0.0,
    depolarizing_2q: float | None = None,
    readout_error: float = 0.0,
    t1: float | None = None,
    t2: float | None = None,
    gate_time_1q: float = 50.0,
    gate_time_2q: float = 300.0,
    noise_scale: float = 1.0,
) -> NoiseSpec:
    """Depolarizing, readout and thermal-relaxation noise from a few numbers, on every qubit.

    Args:
        one_qubit_gates: gate names that get the one-qubit errors (``rz`` is skipped: virtual).
        two_qubit_gates: gate names that get the two-qubit errors.
        depolarizing: depolarizing probability p per gate.
        depolarizing_2q: two-qubit depolarizing probability per gate (None: ``depolarizing``,
            so that "p = 0.03" means one model everywhere: every gate, as the noise sweep's
            depolarizing level does).
        readout_error: probability that a measured bit flips (both ways).
        t1: relaxation time in µs (None: no thermal relaxation).
        t2: dephasing time in µs (default: t1); must be <= 2·t1.
        gate_time_1q: one-qubit gate duration in ns (for relaxation).
        gate_time_2q: two-qubit gate duration in ns (for relaxation).
        noise_scale: multiplies the probabilities and divides T1/T2; 0 = noiseless.

    Returns:
        The NoiseSpec.

    Raises:
        HybridQiskitError: probabilities outside [0, 1], non-positive times, T2 > 2·T1.
    """
    from qiskit_aer.noise import (
        NoiseModel,
        ReadoutError,
        depolarizing_error,
        thermal_relaxation_error,
    )

    scale = _check_scale(noise_scale)
    if depolarizing_2q is None:
        depolarizing_2q = depolarizing
    for key, p in (
        ("depolarizing", depolarizing),
        ("depolarizing_2q", depolarizing_2q),
        ("readout_error", readout_error),
    ):
        if not 0 <= p <= 1:
            raise HybridQiskitError(f"{key} must be a probability in [0, 1], got {p}")
    if t1 is None and t2 is not None:
        raise HybridQiskitError("t2 needs t1 (thermal relaxation takes both, in µs)")
    if t2 is None:
        t2 = t1
    if t1 is not None and (t1 <= 0 or t2 <= 0 or t2 > 2 * t1):
        raise HybridQiskitError(f"need t1 > 0 and 0 < t2 <= 2*t1 (µs), got t1={t1}, t2={t2}")
    if gate_time_1q < 0 or gate_time_2q < 0:
        raise HybridQiskitError("gate times must be >= 0 (ns)")
    summary = {
        "kind": "parametric",
        "noise_scale": scale,
        "depolarizing": depolarizing,
        "depolarizing_2q": depolarizing_2q,
        "readout_error": readout_error,
        "t1_us": t1,
        "t2_us": t2,
        "gate_time_1q_ns": gate_time_1q,
        "gate_time_2q_ns": gate_time_2q,
    }
    one_q = [g for g in one_qubit_gates if g not in VIRTUAL_GATES]
    two_q = list(two_qubit_gates)
    relax = scale > 0 and t1 is not None
    if scale == 0 or not (depolarizing or depolarizing_2q or readout_error or relax):
        return NoiseSpec(
            None, summary={**summary, "kind": "none (parametric, all zero or scaled to 0)"}
        )

    model = NoiseModel(basis_gates=sorted(set(one_qubit_gates) | set(two_q)))
    t1_s, t2_s = (t1 * 1e-6 / scale, t2 * 1e-6 / scale) if relax else (None, None)
    for gates, p, n, time_ns in (
        (one_q, depolarizing, 1, gate_time_1q),
        (two_q, depolarizing_2q, 2, gate_time_2q),
    ):
        if not gates:
            continue
        error = None
        if p:
            # Clip at the largest physical depolarizing parameter, 4^n / (4^n - 1).
            error = depolarizing_error(min(p * scale, 4**n / (4**n - 1)), n)
        if relax and time_ns:
            one = thermal_relaxation_error(t1_s, t2_s, time_ns * 1e-9)
            relaxation = one if n == 1 else one.expand(one)
            error = relaxation if error is None else error.compose(relaxation)
        if error is not None:
            model.add_all_qubit_quantum_error(error, gates)
    readout_all = None
    if readout_error:
        p = min(readout_error * scale, 0.5)
        model.add_all_qubit_readout_error(ReadoutError([[1 - p, p], [p, 1 - p]]))
        readout_all = (p, p)
    return NoiseSpec(model, readout_all=readout_all, summary=summary)


def fold_readout(observable: SparsePauliOp, spec: NoiseSpec) -> SparsePauliOp:
    """The observable whose exact expectation is what measuring ``observable`` reports on average.

    A measured ±1 outcome on qubit q with flip probabilities a = P(1|0), b = P(0|1) has mean
    (b - a) + (1 - a - b)·σ_q given the true eigenvalue, and readout errors are independent per
    qubit, so each Pauli term P on support S becomes ∏_{q∈S} ((b_q - a_q)·I + (1 - a_q - b_q)·σ_q).
    (Basis-change gates before an X or Y measurement are not part of this; they carry no noise.)

    Args:
        observable: on the circuit's physical qubits (after ``apply_layout``).
        spec: the noise whose readout errors apply.

    Returns:
        The folded observable (unchanged when there is no readout error).
    """
    if not spec.readout and spec.readout_all is None:
        return observable
    n = observable.num_qubits
    terms: list[tuple[str, list[int], complex]] = []
    for label, coeff in observable.to_list():
        support = [q for q in range(n) if label[n - 1 - q] != "I"]
        factors = []
        for q in support:
            a, b = spec.readout_of(q)
            factors.append(((b - a), (1 - a - b)))
        for keep in itertools.product((False, True), repeat=len(support)):
            weight = coeff
            for (offset, slope), k in zip(factors, keep):
                weight *= slope if k else offset
            if weight == 0:
                continue
            qubits = [q for q, k in zip(support, keep) if k]
            paulis = "".join(label[n - 1 - q] for q in qubits)
            terms.append((paulis, qubits, weight))
    if not terms:
        return SparsePauliOp("I" * n, 0.0)
    return SparsePauliOp.from_sparse_list(terms, num_qubits=n).simplify(atol=0)
