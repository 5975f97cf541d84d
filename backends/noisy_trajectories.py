"""``noisy_trajectories``: a device's noise as sampled Pauli trajectories, at any width.

Every parameter set of a PUB (every sample of a training batch) is simulated as its own noisy
trajectory (:mod:`hybrid_qiskit.primitives.trajectories`): after each ISA gate a Pauli is drawn from that
gate's channel, then the measured bits are flipped by readout errors and ``shots`` outcomes are
sampled. Each call draws fresh trajectories (training sees fresh noise every step); ``seed``
makes the sequence reproducible. The gradient is the adjoint gradient of each sample's own
trajectory (the one its forward pass drew), through the readout's linear map, straight through
the shot noise.

The noise is ``aer_noisy``'s, channel for channel, on the same reduced device
(:mod:`backends.reduced`), with the same settings (``device``, ``noise_scale`` or the
parametric ones: :class:`backends.settings.NoiseSettings`):

* the device's ``Target`` is scaled exactly as ``aer_noisy`` scales it
  (:func:`backends.noise.scale_target`: errors x scale, T1/T2 / scale);
* each gate instance gets Aer's ``NoiseModel.from_backend`` error: thermal relaxation over the
  gate's duration, here as its Pauli twirl (same fidelity; the non-unital part is dropped), and a
  depolarizing error whose parameter makes the pair's average gate infidelity equal the
  calibrated gate error (Aer's ``_device_depolarizing_error`` formula, with its clipping);
* readout flips as Aer's ``basic_device_readout_errors`` reads them from the scaled target.

So means agree with ``aer_noisy_exact`` (tested, within 4 sigma) up to the twirl: it keeps each
channel's fidelity but drops relaxation's pull towards |0⟩, a bias of order t/T1 per gate on a
qubit in |1⟩ (Heron gates last 24-84 ns against T1 of ~100 µs; on the tests' circuit -0.004 in
⟨Z⟩ at noise scale 1, -0.024 at scale 8). Spreads: ``trajectories`` trajectories per sample
share its shots. With one (the default, and the cheap choice for training) a sample's value
varies as (1-m²)/N + Var(trajectory mean)·(1-1/N); a QPU's shots are each their own trajectory,
(1-m²)/N, which ``trajectories=shots`` reproduces (tested against Aer's shot spread).

``precision=0`` in ``estimator.run`` skips shot sampling: each value is then its trajectory's
exact, readout-folded expectation.

Two simulators run the trajectories (``method``): a batched statevector (2**n amplitudes per
trajectory, :mod:`hybrid_qiskit.primitives.trajectories`), and for circuits whose two-qubit gates
form a path of neighbouring qubits (every chain head laid out on a device) with c·Z readouts, the
exact matrix-product state (:mod:`hybrid_qiskit.primitives.noisy_chain`): the same draws, the
same values and gradients to rounding, at a cost linear in the width. ``auto`` takes the chain
from :data:`NOISY_CHAIN_QUBITS`; ``mps`` insists on it, ``statevector`` never takes it.
Statevector trajectories too wide for memory, and calls whose trajectories or shots cannot fit,
are refused in one line before anything is drawn.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=2, shots=512, seed=1)
    >>> handle.description["noise"]["noise_scale"], handle.description["shots"]
    (2.0, 512)
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.providers import Options
from qiskit_machine_learning.gradients import EstimatorGradientResult

from backends.layout import layout_text, parse_layout
from backends.noise_source import NoiseSource, noisy_pass_manager
from backends.registry import BackendHandle, register_backend
from backends.settings import NoisyTrajectoriesSettings
from backends.statevector import shots_precision
from hybrid_qiskit import memory
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.primitives import trajectories as tj
from hybrid_qiskit.primitives.caches import CircuitCache
from hybrid_qiskit.primitives.estimator import EagerJob
from hybrid_qiskit.primitives.gradient_base import BatchedEstimatorGradient
from hybrid_qiskit.primitives.mps import MAX_BOND
from hybrid_qiskit.primitives.noisy_chain import (
    NoisyChain,
    branch_bytes,
    compile_noisy_chain,
    noisy_chain_gradient,
    noisy_chain_values,
    sample_readouts,
    slot_codes,
)
from hybrid_qiskit.primitives.pubs import broadcast_rows, distinct_rows, parameter_rows

# ------------------------------------------------------------------------ noise from settings


def device_channels(reduced, scale: float):
    """``(channel(name, qubits), readout)`` of a (reduced) device, errors times ``scale``,
    converted as Aer's ``NoiseModel.from_backend`` converts them (module docstring)."""
    from qiskit.circuit import Gate
    from qiskit_aer.noise.device import basic_device_readout_errors

    from backends.noise import scale_target

    n = reduced.num_qubits
    if scale == 0:  # aer_noisy: no noise model at all
        return (lambda name, qubits: None), np.zeros((n, 2))
    target = reduced.target if scale == 1 else scale_target(reduced.target, scale)
    props = target.qubit_properties or [None] * n
    cache: dict = {}

    def channel(name: str, qubits: tuple[int, ...]):
        key = (name, qubits)
        if key not in cache:
            inst = target[name].get(qubits) if name in target.operation_names else None
            cache[key] = None if inst is None else _calibrated(target, name, qubits, inst, props, Gate)
        return cache[key]

    readout = np.zeros((n, 2))
    for qubits, error in basic_device_readout_errors(target=target):
        readout[qubits[0]] = (error.probabilities[0][1], error.probabilities[1][0])
    return channel, readout


def _calibrated(target, name, qubits, inst, props, gate_type):
    k, dim = len(qubits), 2 ** len(qubits)
    relax, relax_fid = None, 1.0
    if inst.duration:
        relax = []
        for q in qubits:
            t1 = props[q].t1 if props[q] is not None and props[q].t1 is not None else math.inf
            t2 = props[q].t2 if props[q] is not None and props[q].t2 is not None else 2 * t1
            relax.append(tj.relaxation_twirl(t1, t2, inst.duration))
        process = float(np.prod([r[0] for r in relax]))  # a Pauli channel's process fidelity
        relax_fid = (dim * process + 1) / (dim + 1)  # average gate fidelity, as Aer computes it
    depol = 0.0
    error = inst.error
    if error and isinstance(target.operation_from_name(name), gate_type) and error > 1 - relax_fid:
        error = min(error, dim / (dim + 1))
        depol = dim * (error - (1 - relax_fid)) / (dim * relax_fid - 1)
        depol = min(depol, 4**k / (4**k - 1))
    return tj.gate_channel(k, depolarizing=depol, relaxation=relax)


def parametric_channels(settings: dict, scale: float, one_q: Sequence[str], two_q: Sequence[str], n: int):
    """``(channel, readout)`` of the parametric settings, as :func:`backends.noise.parametric_noise`
    builds them (depolarizing p·scale, T1/T2 / scale over the given gate times, readout p·scale)."""
    from backends.noise import VIRTUAL_GATES

    p1 = settings["depolarizing"] or 0.0
    p2 = settings["depolarizing_2q"] if settings["depolarizing_2q"] is not None else p1
    t1, t2 = settings["t1"], settings["t2"] if settings["t2"] is not None else settings["t1"]
    relax = scale > 0 and t1 is not None
    noisy = {1: (set(one_q) - VIRTUAL_GATES, p1, settings["gate_time_1q"]),
             2: (set(two_q), p2, settings["gate_time_2q"])}

    def channel(name, qubits):
        gates, p, time_ns = noisy.get(len(qubits), ((), 0, 0))
        if scale == 0 or name not in gates:
            return None
        k = len(qubits)
        twirl = None
        if relax and time_ns:
            one = tj.relaxation_twirl(t1 * 1e-6 / scale, t2 * 1e-6 / scale, time_ns * 1e-9)
            twirl = [one] * k
        return tj.gate_channel(k, depolarizing=min(p * scale, 4**k / (4**k - 1)), relaxation=twirl)

    flip = min((settings["readout_error"] or 0.0) * scale, 0.5)
    return channel, np.full((n, 2), flip)


# ------------------------------------------------------------------------ the estimator

# Under ``method="auto"`` a circuit runs as a noisy chain from this width (when it is one and every
# observable is c·Z_q). Measured on digits heads, fake_fez, 1,024 shots: evaluation per image
# (experiments/bench_backends.py --noisy-widths) with one trajectory per image, chain against
# statevector, 0.0001 vs 0.0000 s at 4 qubits, 0.0002 vs 0.0001 at 8, 0.0006 vs 0.0043 at 12;
# with one per shot 0.029 vs 0.060 at 8. The gradient of 64 trajectories at 8 qubits took 0.013 s
# on the chain against 0.12 s on the statevector, so training favours the chain from 8 qubits.
NOISY_CHAIN_QUBITS = 8
METHODS = ("auto", "statevector", "mps")
# Statevector trajectories run a block of columns of about this size at a time.
STATEVECTOR_BLOCK_BYTES = 256 << 20


@dataclass(frozen=True)
class Plan:
    """How a PUB's circuit runs: as a noisy ``chain`` with single-Z ``readouts`` (program
    qubit, coefficient), or on the statevector with the observables' ``diagonals``."""

    program: tj.NoisyProgram
    chain: NoisyChain | None
    readouts: list[tuple[int, float]] | None
    diagonals: np.ndarray | None


@dataclass(frozen=True)
class Drawn:
    """Trajectories drawn for ``rows`` parameter sets: ``trajectories`` columns per row."""

    plan: Plan
    rows: np.ndarray  # (R, P)
    columns: np.ndarray  # (R·T, P): row r's trajectories are columns r·T .. r·T+T-1
    traj: tj.Trajectories
    weights: np.ndarray  # (T,): each trajectory's share of a row's shots
    codes: np.ndarray | None = None  # chain: each column's Pauli per slot
    final: np.ndarray | None = None  # statevector: final states (2**n, R·T), when kept


class TrajectoryEstimator(BaseEstimatorV2):
    """V2 estimator: one noisy trajectory (or ``trajectories``) per parameter set, Z-type
    observables, readout flips, ``shots`` measured outcomes.

    Args:
        device: the full device circuits are laid out on (None: circuits run as they are).
        noise: ``(reduced device or None, number of qubits) -> (channel, readout)``.
        shots: shots per parameter set when ``run`` gets no precision.
        trajectories: trajectories per parameter set (they share its shots).
        seed: seeds the generator of every trajectory and shot (fresh draws on every call).
        method: ``auto`` (a noisy chain where it applies and pays, see
            :data:`NOISY_CHAIN_QUBITS`), ``statevector`` or ``mps`` (the chain, or an error).
    """

    _KEPT = 2  # a training step's forward pass, for its backward pass

    def __init__(self, *, device, noise, shots: int, trajectories: int = 1, seed=None, method: str = "auto"):
        self.device = device
        self._noise = noise
        self.shots = shots
        self.trajectories = trajectories
        self.method = method
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._circuits = CircuitCache(self._prepare, size=16)
        self._drawn: OrderedDict[tuple, Drawn] = OrderedDict()
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()

    # -- compiling ------------------------------------------------------------------------

    def _prepare(self, circuit: QuantumCircuit) -> dict:
        from backends.reduced import active_qubits

        return {"active": active_qubits(circuit) if self.device is not None else None, "programs": {}}

    def compiled(self, circuit: QuantumCircuit, labels: Iterable[str]) -> tuple[tj.NoisyProgram, tuple[int, ...] | None]:
        """The program of ``circuit`` on the qubits its gates and ``labels`` touch (cached)."""
        from backends.reduced import compact_circuit, reduce_device

        entry = self._circuits.get(circuit)
        qubits = None
        if self.device is not None:
            n = circuit.num_qubits
            used = set(entry["active"])
            for label in labels:
                used.update(n - 1 - i for i, ch in enumerate(label) if ch != "I")
            qubits = tuple(sorted(used))
        if qubits not in entry["programs"]:
            if qubits is None:
                channel, readout = self._noise(None, circuit.num_qubits)
                small = circuit
            else:
                channel, readout = self._noise(reduce_device(self.device, qubits), len(qubits))
                small = compact_circuit(circuit, qubits)
            entry["programs"][qubits] = tj.compile_noisy_program(small, channel, readout, tuple(circuit.parameters))
        return entry["programs"][qubits], qubits

    def plan(self, circuit: QuantumCircuit, observables: Sequence[dict]) -> Plan:
        """How ``circuit`` runs with full-device ``observables`` ({label: coeff}), cached: the
        QNN sends the same circuit and observables every step, and compacting 156-qubit labels
        costs milliseconds.

        Raises:
            HybridQiskitError: ``method="mps"`` where no chain applies, or statevector
                trajectories of a circuit too wide for this machine's memory.
        """
        from backends.reduced import compact_label

        key = (id(circuit), tuple(tuple(sorted((k, complex(v)) for k, v in o.items())) for o in observables))
        entry = self._circuits.get(circuit)  # a new entry when the circuit was edited in place
        hit = self._plans.get(key)
        if hit is not None and hit[0] is entry:
            return hit[1]
        program, qubits = self.compiled(circuit, (label for o in observables for label in o))
        if qubits is not None:
            observables = [{compact_label(label, qubits): c for label, c in o.items()} for o in observables]
        plan = self._plan(program, observables)
        with self._lock:
            self._plans[key] = (entry, plan)
            while len(self._plans) > 64:
                self._plans.popitem(last=False)
        return plan

    def _plan(self, program: tj.NoisyProgram, observables: Sequence[dict]) -> Plan:
        n = program.num_qubits
        if self.method != "statevector":
            chain = program_chain(program)
            readouts = single_z_readouts(observables, n)
            if chain is not None and readouts is not None and (self.method == "mps" or n >= NOISY_CHAIN_QUBITS):
                return Plan(program, chain, readouts, None)
            if self.method == "mps":
                why = ("its two-qubit gates do not form a path of neighbours (or its bond exceeds "
                       f"{MAX_BOND})" if chain is None else "an observable is not c·Z on one qubit")
                raise HybridQiskitError(f"noisy_trajectories method=mps: the {n}-qubit circuit is not a chain: "
                                        f"{why}; use method=statevector or auto")
        check_statevector_memory(n, len(observables), self.trajectories)
        return Plan(program, None, None, tj.diagonal_observables(observables, n))

    # -- trajectories ---------------------------------------------------------------------

    def draw(self, plan: Plan, rows: np.ndarray, shots: int | None) -> Drawn:
        """Fresh trajectories for ``rows`` (kept for the gradient of the same rows)."""
        t = self.trajectories
        columns = np.repeat(rows, t, axis=0)
        with self._lock:
            traj = tj.sample_trajectories(plan.program, len(columns), self._rng)
        per = _shares(shots, t) if shots else np.ones(t)
        codes = final = None
        if plan.chain is not None:
            codes = slot_codes(plan.chain, traj)
        elif _state_bytes(plan.program, len(columns)) <= STATEVECTOR_BLOCK_BYTES:
            final = tj.simulate_trajectories(plan.program, columns, traj)
        drawn = Drawn(plan, rows, columns, traj, per / per.sum(), codes, final)
        with self._lock:
            self._drawn[(id(plan.program), rows.shape, rows.tobytes())] = drawn
            while len(self._drawn) > self._KEPT:
                self._drawn.popitem(last=False)
        return drawn

    def drawn(self, plan: Plan, rows: np.ndarray) -> Drawn:
        """The trajectories the last run drew for exactly ``rows``, or fresh ones."""
        hit = self._drawn.get((id(plan.program), rows.shape, rows.tobytes()))
        if hit is not None and hit.plan.program is plan.program:
            return hit
        return self.draw(plan, rows, None)

    # -- running --------------------------------------------------------------------------

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None):
        if precision is None:
            precision = shots_precision(self.shots)
        if precision < 0:
            raise ValueError("precision must be non-negative")
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        if not coerced:
            raise HybridQiskitError("no PUBs to run")
        prepared = []
        for pub in coerced:  # compile, plan and check every PUB before any work
            plan = self.plan(pub.circuit, pub.observables.ravel().tolist())
            check_call_memory(plan, max(1, pub.parameter_values.size) * self.trajectories,
                              math.ceil(1.0 / pub.precision**2) if pub.precision else 0, self.trajectories)
            prepared.append((pub, plan))
        job = EagerJob(self._run, prepared)
        job._submit()
        return job

    def _run(self, prepared) -> PrimitiveResult:
        return PrimitiveResult([self._pub_result(*p) for p in prepared], metadata={"version": 2})

    def _pub_result(self, pub: EstimatorPub, plan: Plan) -> PubResult:
        shots = math.ceil(1.0 / pub.precision**2) if pub.precision else None
        rows = parameter_rows(pub, plan.program.parameters)
        drawn = self.draw(plan, rows, shots)
        t = self.trajectories
        if plan.chain is not None:
            evs, stds = self._chain_values(drawn, shots)
        else:
            evs, stds = self._statevector_values(drawn, shots)
        return PubResult(
            DataBin(evs=broadcast_rows(pub, evs), stds=broadcast_rows(pub, stds), shape=pub.shape),
            metadata={"target_precision": pub.precision, "shots": shots, "trajectories": t,
                      "method": "mps" if plan.chain is not None else "statevector",
                      "circuit_metadata": pub.circuit.metadata},
        )

    def _chain_values(self, drawn: Drawn, shots: int | None) -> tuple[np.ndarray, np.ndarray]:
        plan, r, t = drawn.plan, len(drawn.rows), self.trajectories
        if shots is None:
            per_column = noisy_chain_values(plan.chain, drawn.columns, drawn.codes, plan.readouts)
            evs = per_column.reshape(len(plan.readouts), r, t) @ drawn.weights
            return evs, np.zeros_like(evs)
        qubits = sorted({q for q, _ in plan.readouts})
        with self._lock:
            sums = sample_readouts(plan.chain, drawn.columns, drawn.codes, np.tile(_shares(shots, t), r), qubits,
                                   self._rng)
        means = sums.reshape(len(qubits), r, t).sum(axis=2) / shots  # (Q, R) mean of Z
        where = {q: i for i, q in enumerate(qubits)}
        coeffs = np.array([c for _, c in plan.readouts])[:, None]
        z = means[[where[q] for q, _ in plan.readouts]]
        evs = coeffs * z
        return evs, np.abs(coeffs) * np.sqrt(np.maximum(1 - z**2, 0) / shots)

    def _statevector_values(self, drawn: Drawn, shots: int | None) -> tuple[np.ndarray, np.ndarray]:
        plan, r, t = drawn.plan, len(drawn.rows), self.trajectories
        diag = plan.diagonals
        evs = np.empty((len(diag), r))
        stds = np.zeros((len(diag), r))
        for block, final in _statevector_blocks(drawn, r, t):
            probs = tj.measured_probabilities(plan.program, final)  # (2**n, rows·T)
            rows = len(range(r)[block])
            if shots is None:
                evs[:, block] = (diag @ probs).reshape(len(diag), rows, t) @ drawn.weights
                continue
            probs = np.clip(probs, 0, None)
            probs /= probs.sum(axis=0)
            per = np.tile(_shares(shots, t), rows)
            with self._lock:
                counts = self._rng.multinomial(per, probs.T)  # (rows·T, 2**n)
            counts = counts.reshape(rows, t, -1).sum(axis=1).T / shots  # (2**n, rows) frequencies
            evs[:, block] = diag @ counts
            stds[:, block] = np.sqrt(np.maximum((diag**2) @ counts - evs[:, block] ** 2, 0) / shots)
        return evs, stds


def program_chain(program: tj.NoisyProgram) -> NoisyChain | None:
    """The program's noisy chain, compiled once (None: not a chain)."""
    if "chain" not in program.forms:
        program.forms["chain"] = compile_noisy_chain(program)
    return program.forms["chain"]


def single_z_readouts(observables: Sequence[dict], n: int) -> list[tuple[int, float]] | None:
    """(qubit, c) per observable when each is c·Z on one qubit (the heads' readouts), else None."""
    out = []
    for terms in observables:
        if len(terms) != 1:
            return None
        (label, coeff), = terms.items()
        if set(label) - {"I", "Z"} or label.count("Z") != 1 or abs(complex(coeff).imag) > 1e-12:
            return None
        out.append((n - 1 - label.index("Z"), float(complex(coeff).real)))
    return out


def _state_bytes(program: tj.NoisyProgram, columns: int) -> int:
    return (16 << program.num_qubits) * columns


def statevector_image_bytes(n: int, observables: int, trajectories: int = 1) -> int:
    """Bytes statevector trajectories hold for one image: its ``trajectories`` states, each with
    the gradient's co-states (1 + K) beside it, and the probabilities."""
    return (16 << n) * trajectories * (2 + observables)


def check_statevector_memory(n: int, observables: int, trajectories: int = 1, available: int | None = None) -> None:
    """Refuse, before allocating, statevector trajectories whose one image does not fit: its
    ``trajectories`` states, each with the gradient's co-states (1 + K) beside it, and the
    probabilities (a block of images runs at a time, never less than one).

    Raises:
        HybridQiskitError: one line with the estimate and what can run it.
    """
    need = statevector_image_bytes(n, observables, trajectories)
    free = memory.available_memory() if available is None else available
    if need > memory.HEADROOM * free:
        raise HybridQiskitError(
            f"noisy_trajectories: a {n}-qubit circuit that is not a chain runs on the statevector, which needs "
            f"about {memory.size_text(need)} per image (2**{n} amplitudes x {trajectories} trajectories x "
            f"{2 + observables} copies), but only {memory.size_text(free)} is free; a chain head (linear "
            f"entanglement) runs as a matrix-product state at any width"
        )


def check_call_memory(plan: Plan, columns: int, shots: int, trajectories: int, available: int | None = None) -> None:
    """Refuse, before drawing anything, a call whose trajectories or shots cannot fit: each
    column's parameters, Pauli draws and (chain) the sampler's branches for one column.

    Raises:
        HybridQiskitError: one line with the estimate and what to lower.
    """
    per_column = 8 * len(plan.program.parameters) + 8 * (len(plan.chain.slots) if plan.chain else 0) + 64
    need = columns * per_column
    if plan.chain is not None and shots:
        need += branch_bytes(plan.chain, math.ceil(shots / trajectories))
    free = memory.available_memory() if available is None else available
    if need > memory.HEADROOM * free:
        raise HybridQiskitError(
            f"noisy_trajectories: {columns:,} trajectories ({trajectories:,} per image) with {shots:,} shots need "
            f"about {memory.size_text(need)}, but only {memory.size_text(free)} is free; lower --shots, trajectories "
            f"or the number of images per call")


def _statevector_blocks(drawn: Drawn, r: int, t: int):
    """(row slice, final states of its columns), a block of rows at a time (bounded memory)."""
    if drawn.final is not None:
        yield slice(0, r), drawn.final
        return
    per = max(1, STATEVECTOR_BLOCK_BYTES // max(1, _state_bytes(drawn.plan.program, t)))
    for lo in range(0, r, per):
        hi = min(r, lo + per)
        traj = drawn.traj.columns_slice(lo * t, hi * t)
        yield slice(lo, hi), tj.simulate_trajectories(drawn.plan.program, drawn.columns[lo * t: hi * t], traj)


def _shares(shots: int, t: int) -> np.ndarray:
    """Shots of each of a row's ``t`` trajectories (they add up to ``shots``)."""
    return np.array([shots // t + (i < shots % t) for i in range(t)], dtype=np.int64)


# ------------------------------------------------------------------------ the gradient


class TrajectoryGradient(BatchedEstimatorGradient):
    """Adjoint gradient of each parameter set's own trajectories (those its forward pass drew;
    fresh ones when the forward pass ran on other values), through the readout map."""

    def __init__(self, estimator: TrajectoryEstimator, options: Options | None = None, **kwargs):
        if not isinstance(estimator, TrajectoryEstimator):
            raise TypeError("TrajectoryGradient replays a TrajectoryEstimator's trajectories")
        super().__init__(estimator, options, **kwargs)

    def _run(self, circuits, observables, parameter_values, parameters, **options) -> EstimatorGradientResult:
        est: TrajectoryEstimator = self._estimator
        gradients: list = [None] * len(circuits)
        metadata: list = [None] * len(circuits)
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(circuits):
            groups.setdefault(id(c), []).append(i)
        for members in groups.values():
            circuit, _ = self.to_run(circuits[members[0]], observables[members[0]])
            distinct: dict[int, int] = {}
            terms, obs_of = [], np.empty(len(members), dtype=int)
            for k, i in enumerate(members):
                if id(observables[i]) not in distinct:
                    distinct[id(observables[i])] = len(terms)
                    op = self.to_run(circuits[i], observables[i])[1]
                    terms.append(dict(zip(op.paulis.to_labels(), op.coeffs)))
                obs_of[k] = distinct[id(observables[i])]
            plan = est.plan(circuit, terms)
            values = np.asarray([parameter_values[i] for i in members], dtype=float)
            rows, row_of = distinct_rows(values, len(terms))
            drawn = est.drawn(plan, rows)
            grads = _trajectory_gradients(plan, drawn, len(rows), len(drawn.weights))
            t = len(drawn.weights)
            grads = np.einsum("krtp,t->krp", grads.reshape(len(terms), len(rows), t, -1), drawn.weights)
            full = grads[obs_of, row_of]
            names = list(plan.program.parameters)
            column = {p: j for j, p in enumerate(names)}
            for k, i in enumerate(members):
                chosen = parameters[i]
                if chosen is None:
                    gradients[i], metadata[i] = full[k], {"parameters": names}
                else:
                    gradients[i] = full[k, [column[p] for p in chosen]]
                    metadata[i] = {"parameters": list(chosen)}
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))


def _trajectory_gradients(plan: Plan, drawn: Drawn, r: int, t: int) -> np.ndarray:
    """d(value)/d(parameter) of ``plan``'s observables on every column's own trajectory (those
    ``drawn``, perhaps for other observables of the same program), (K, R·T, P)."""
    if plan.chain is not None:
        codes = drawn.codes if drawn.codes is not None else slot_codes(plan.chain, drawn.traj)
        return noisy_chain_gradient(plan.chain, drawn.columns, codes, plan.readouts)[1]
    folded = tj.fold_readout_diagonal(plan.program, plan.diagonals)
    parts = []
    for block, final in _statevector_blocks(drawn, r, t):
        cols = slice(block.start * t, block.stop * t)
        traj = drawn.traj if drawn.final is not None else drawn.traj.columns_slice(cols.start, cols.stop)
        parts.append(tj.trajectory_gradient(plan.program, drawn.columns[cols], traj, final, folded))
    return np.concatenate(parts, axis=1)


# ------------------------------------------------------------------------ registration


@register_backend(
    "noisy_trajectories",
    summary="a device's noise (x noise_scale) as sampled Pauli trajectories, one per sample or per shot; "
            "chain heads as a noisy matrix-product state at any width",
    settings=NoisyTrajectoriesSettings,
)
def noisy_trajectories(**settings) -> BackendHandle:
    """Noise injection with ``aer_noisy``'s noise and settings (see the module docstring).

    ``trajectories``: noisy trajectories per parameter set, sharing its ``shots``; 1 is the
    training default, ``shots`` gives a QPU's shot statistics at ``shots`` times the cost.

    Raises:
        HybridQiskitError: bad shots or trajectories; bad scale, probabilities, times or device.
    """
    shots, t = settings["shots"], settings["trajectories"]
    if not 1 <= t <= shots:
        raise HybridQiskitError(f"trajectories must be an integer in [1, shots], got {t!r}")
    if settings["method"] not in METHODS:
        raise HybridQiskitError(f"unknown method {settings['method']!r} for noisy_trajectories; "
                                f"known: {', '.join(METHODS)}")
    source = NoiseSource(settings)  # validates the noise settings, as for aer_noisy
    if source.fixed is not None:
        two_q = source.target.get("two_qubit_gates", ["cx"])
        one_q = [g for g in source.target["basis_gates"] if g not in two_q]

        def noise(reduced, num_qubits):
            return parametric_channels(settings, source.scale, one_q, two_q, num_qubits)
    else:

        def noise(reduced, num_qubits):
            return device_channels(reduced, source.scale)

    estimator = TrajectoryEstimator(device=source.backend, noise=noise, shots=shots, trajectories=t,
                                    seed=settings["seed"], method=settings["method"])
    precision = shots_precision(shots)
    return BackendHandle(
        name="noisy_trajectories",
        estimator=estimator,
        gradient=TrajectoryGradient(estimator),
        pass_manager=noisy_pass_manager(source.backend, settings["optimization_level"], settings["seed"],
                                         settings["layout"]),
        precision=precision,
        exact=False,
        device=source.backend,
        description={
            "name": "noisy_trajectories",
            "device": source.target["name"],
            "target": source.target,
            "shots": shots,
            "trajectories": t,
            "method": settings["method"],
            "noise": {**source.summary, "model": "Pauli trajectories: Aer's device depolarizing + "
                      "twirled thermal relaxation per gate, readout flips", "readout_error_in_results": "sampled"},
            "optimization_level": settings["optimization_level"],
            "layout": layout_text(parse_layout(settings["layout"])) if source.backend is not None else None,
            "seed": settings["seed"],
            "simulated": "only the physical qubits the circuit touches (reduced device)"
            if source.backend is not None else "the circuit's qubits (all-to-all)",
            "estimator": "TrajectoryEstimator (one noisy trajectory per parameter set)",
            "gradient": "adjoint, per sample's trajectory (readout map included, straight through shots)",
        },
    )

