"""``noisy_trajectories``: device-like noise injection at batched-statevector speed.

Every parameter set of a PUB (every sample of a training batch) is simulated as its own noisy
trajectory (:mod:`hybrid_qiskit.primitives.trajectories`): after each ISA gate a Pauli is drawn from that
gate's channel, then the measured bits are flipped by readout errors and ``shots`` outcomes are
sampled. Each call draws fresh trajectories (training sees fresh noise every step); ``seed``
makes the sequence reproducible. The gradient is the adjoint gradient of each sample's own
trajectory (the one its forward pass drew), through the readout's linear map, straight through
the shot noise.

The noise is ``aer_noisy``'s, channel for channel, on the same reduced device
(:mod:`backends.reduced`), with the same settings (``device``, ``noise_scale`` or the
parametric ones: :data:`backends.noise_source.NOISE_SETTINGS`):

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

from backends import BackendHandle, register_backend
from backends.noise_source import NoiseSource, noisy_pass_manager, takes_noise_settings
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.primitives import trajectories as tj
from hybrid_qiskit.primitives.caches import CircuitCache
from hybrid_qiskit.primitives.estimator import EagerJob
from hybrid_qiskit.primitives.gradient_base import BatchedEstimatorGradient
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


@dataclass(frozen=True)
class Drawn:
    """Trajectories drawn for ``rows`` parameter sets: ``trajectories`` columns per row."""

    program: tj.NoisyProgram
    rows: np.ndarray  # (R, P)
    columns: np.ndarray  # (R·T, P): row r's trajectories are columns r·T .. r·T+T-1
    traj: tj.Trajectories
    final: np.ndarray  # (2**n, R·T)
    weights: np.ndarray  # (T,): each trajectory's share of a row's shots


class TrajectoryEstimator(BaseEstimatorV2):
    """V2 estimator: one noisy trajectory (or ``trajectories``) per parameter set, Z-type
    observables, readout flips, ``shots`` measured outcomes.

    Args:
        device: the full device circuits are laid out on (None: circuits run as they are).
        noise: ``(reduced device or None, number of qubits) -> (channel, readout)``.
        shots: shots per parameter set when ``run`` gets no precision.
        trajectories: trajectories per parameter set (they share its shots).
        seed: seeds the generator of every trajectory and shot (fresh draws on every call).
    """

    _KEPT = 2  # a training step's forward pass, for its backward pass

    def __init__(self, *, device, noise, shots: int, trajectories: int = 1, seed=None):
        self.device = device
        self._noise = noise
        self.shots = shots
        self.trajectories = trajectories
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._circuits = CircuitCache(self._prepare, size=16)
        self._drawn: OrderedDict[tuple, Drawn] = OrderedDict()
        self._diagonals: OrderedDict[tuple, tuple] = OrderedDict()

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

    def diagonals(self, program: tj.NoisyProgram, qubits, observables: Sequence[dict]) -> np.ndarray:
        """(K, 2**n) diagonals of full-device observables on the program's qubits (cached: the
        QNN sends the same observables every step, and compacting 156-qubit labels costs ms)."""
        from backends.reduced import compact_label

        key = (id(program), tuple(tuple(sorted((k, complex(v)) for k, v in o.items())) for o in observables))
        hit = self._diagonals.get(key)
        if hit is not None and hit[0] is program:
            return hit[1]
        if qubits is not None:
            observables = [{compact_label(label, qubits): c for label, c in o.items()} for o in observables]
        diag = tj.diagonal_observables(observables, program.num_qubits)
        with self._lock:
            self._diagonals[key] = (program, diag)
            while len(self._diagonals) > 64:
                self._diagonals.popitem(last=False)
        return diag

    # -- trajectories ---------------------------------------------------------------------

    def draw(self, program: tj.NoisyProgram, rows: np.ndarray, shots: int | None) -> Drawn:
        """Fresh trajectories for ``rows`` (kept for the gradient of the same rows)."""
        t = self.trajectories
        columns = np.repeat(rows, t, axis=0)
        with self._lock:
            traj = tj.sample_trajectories(program, len(columns), self._rng)
        final = tj.simulate_trajectories(program, columns, traj)
        per = _shares(shots, t) if shots else np.ones(t)
        drawn = Drawn(program, rows, columns, traj, final, per / per.sum())
        with self._lock:
            self._drawn[(id(program), rows.shape, rows.tobytes())] = drawn
            while len(self._drawn) > self._KEPT:
                self._drawn.popitem(last=False)
        return drawn

    def drawn(self, program: tj.NoisyProgram, rows: np.ndarray) -> Drawn:
        """The trajectories the last run drew for exactly ``rows``, or fresh ones."""
        hit = self._drawn.get((id(program), rows.shape, rows.tobytes()))
        if hit is not None and hit.program is program:
            return hit
        return self.draw(program, rows, None)

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
        for pub in coerced:  # compile and check every PUB before any work
            terms = pub.observables.ravel().tolist()
            program, qubits = self.compiled(pub.circuit, (label for o in terms for label in o))
            prepared.append((pub, program, self.diagonals(program, qubits, terms)))
        job = EagerJob(self._run, prepared)
        job._submit()
        return job

    def _run(self, prepared) -> PrimitiveResult:
        return PrimitiveResult([self._pub_result(*p) for p in prepared], metadata={"version": 2})

    def _pub_result(self, pub: EstimatorPub, program: tj.NoisyProgram, diag: np.ndarray) -> PubResult:
        shots = math.ceil(1.0 / pub.precision**2) if pub.precision else None
        rows = parameter_rows(pub, program.parameters)
        drawn = self.draw(program, rows, shots)
        probs = tj.measured_probabilities(program, drawn.final)  # (2**n, R·T)
        r, t = len(rows), self.trajectories
        if shots is None:
            evs = (diag @ probs).reshape(len(diag), r, t) @ drawn.weights
            stds = np.zeros_like(evs)
        else:
            probs = np.clip(probs, 0, None)
            probs /= probs.sum(axis=0)
            per = np.tile(_shares(shots, t), r)
            with self._lock:
                counts = self._rng.multinomial(per, probs.T)  # (R·T, 2**n)
            counts = counts.reshape(r, t, -1).sum(axis=1).T / shots  # (2**n, R) frequencies
            evs = diag @ counts
            stds = np.sqrt(np.maximum((diag**2) @ counts - evs**2, 0) / shots)
        return PubResult(
            DataBin(evs=broadcast_rows(pub, evs), stds=broadcast_rows(pub, stds), shape=pub.shape),
            metadata={"target_precision": pub.precision, "shots": shots, "trajectories": t,
                      "circuit_metadata": pub.circuit.metadata},
        )


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
            program, qubits = est.compiled(circuit, (label for o in terms for label in o))
            folded = tj.fold_readout_diagonal(program, est.diagonals(program, qubits, terms))
            values = np.asarray([parameter_values[i] for i in members], dtype=float)
            rows, row_of = distinct_rows(values, len(terms))
            drawn = est.drawn(program, rows)
            grads = tj.trajectory_gradient(program, drawn.columns, drawn.traj, drawn.final, folded)
            t = len(drawn.weights)
            grads = np.einsum("krtp,t->krp", grads.reshape(len(terms), len(rows), t, -1), drawn.weights)
            full = grads[obs_of, row_of]
            names = list(program.parameters)
            column = {p: j for j, p in enumerate(names)}
            for k, i in enumerate(members):
                chosen = parameters[i]
                if chosen is None:
                    gradients[i], metadata[i] = full[k], {"parameters": names}
                else:
                    gradients[i] = full[k, [column[p] for p in chosen]]
                    metadata[i] = {"parameters": list(chosen)}
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))


# ------------------------------------------------------------------------ registration


@register_backend(
    "noisy_trajectories",
    summary="a device's noise (x noise_scale) as sampled Pauli trajectories, one per sample; fast, for training",
)
@takes_noise_settings(shots=1024, trajectories=1)
def noisy_trajectories(**settings) -> BackendHandle:
    """Noise injection with ``aer_noisy``'s noise and settings (see the module docstring).

    ``trajectories``: noisy trajectories per parameter set, sharing its ``shots``; 1 is the
    training default, ``shots`` gives a QPU's shot statistics at ``shots`` times the cost.

    Raises:
        HybridQiskitError: bad shots or trajectories; bad scale, probabilities, times or device.
    """
    settings = {p: settings.get(p, d.default) for p, d in noisy_trajectories.__signature__.parameters.items()}
    shots, t = settings["shots"], settings["trajectories"]
    if not isinstance(shots, int) or shots < 1:
        raise HybridQiskitError(f"shots must be a positive integer, got {shots!r}")
    if not isinstance(t, int) or not 1 <= t <= shots:
        raise HybridQiskitError(f"trajectories must be an integer in [1, shots], got {t!r}")
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
                                    seed=settings["seed"])
    precision = shots_precision(shots)
    return BackendHandle(
        name="noisy_trajectories",
        estimator=estimator,
        gradient=TrajectoryGradient(estimator),
        pass_manager=noisy_pass_manager(source.backend, settings["optimization_level"], settings["seed"]),
        precision=precision,
        exact=False,
        device=source.backend,
        description={
            "name": "noisy_trajectories",
            "device": source.target["name"],
            "target": source.target,
            "shots": shots,
            "trajectories": t,
            "noise": {**source.summary, "model": "Pauli trajectories: Aer's device depolarizing + "
                      "twirled thermal relaxation per gate, readout flips", "readout_error_in_results": "sampled"},
            "optimization_level": settings["optimization_level"],
            "seed": settings["seed"],
            "simulated": "only the physical qubits the circuit touches (reduced device)"
            if source.backend is not None else "the circuit's qubits (all-to-all)",
            "estimator": "TrajectoryEstimator (one noisy trajectory per parameter set)",
            "gradient": "adjoint, per sample's trajectory (readout map included, straight through shots)",
        },
    )

