"""The V2 estimators behind the noisy Aer backends (``backends.aer_noisy`` builds them).

* :class:`AerShotEstimator` measures: every qubit-wise-commuting Pauli basis is sampled with real
  shots on an ``AerSimulator`` carrying the noise model, all parameter sets in one Aer call, so
  shot noise AND readout error show in the results.
* :class:`ExactNoisyEstimator` gives the exact noisy expectation (density matrix, no shots),
  with readout error folded in analytically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.quantum_info import PauliList

from hybrid_qiskit.primitives.caches import CircuitCache
from hybrid_qiskit.primitives.pubs import broadcast_rows, parameter_rows


class AerShotEstimator(BaseEstimatorV2):
    """A V2 estimator that measures: every Pauli basis is sampled with real shots on Aer.

    PUBs that share a circuit and parameter values (EstimatorQNN's forward pass sends one per
    observable) are measured together, as hardware would: their Pauli terms are grouped into
    qubit-wise-commuting bases, and each basis is one measured copy of the circuit (rotations into
    the Z basis written in ``rz``/``sx``, so they stay ISA gates), run for ALL parameter sets in
    one Aer call through ``parameter_binds`` (Aer binds natively; no Python copy per set).
    Expectation values are parities averaged over the counts; stds are shot-noise estimates.
    On a device, :class:`backends.reduced.ReducedDeviceEstimator` gives it circuits compacted to
    their qubits and the noise model of those qubits only, so Aer never converts a whole
    156-qubit model.

    Args:
        noise_model: Aer NoiseModel (None: noiseless).
        method: Aer's simulation method.
        default_precision: used when ``run`` gets none; shots = ceil(1 / precision²).
        seed: seeds a generator that draws each run's ``seed_simulator`` (reproducible runs,
            independent shot noise from one call to the next).
    """

    def __init__(
        self, *, noise_model=None, method="density_matrix", default_precision: float, seed=None
    ):
        self._noise_model = noise_model
        self._method = method
        self._default_precision = default_precision
        self._rng = np.random.default_rng(seed)
        self._simulators: dict[str, object] = {}
        # circuit -> {measured basis: the circuit with its rotations and measurements}; the
        # cache sees in-place edits of the circuit (hybrid_qiskit.primitives.caches).
        self._measured = CircuitCache(lambda circuit: {}, size=16)

    def method(self, num_qubits: int, images: int | None = None, shots: int = 1024) -> str:
        """Aer's method for a circuit of this width (``auto``: :func:`backends.noise_source.aer_method`)."""
        from backends.noise_source import aer_method

        return aer_method("aer_noisy", num_qubits, self._method, images=images, shots=shots)

    def simulator(self, num_qubits: int):
        """The AerSimulator carrying the noise model, with the method for this width (built once)."""
        from qiskit_aer import AerSimulator

        method = self.method(num_qubits)
        if method not in self._simulators:
            # Parallel over experiments (parameter sets): per-set setup dominates at a few
            # qubits; measured faster than Aer's default, and no worse on a busy machine.
            self._simulators[method] = AerSimulator(
                method=method, noise_model=self._noise_model, max_parallel_experiments=0
            )
        return self._simulators[method]

    def run(
        self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
    ) -> PrimitiveJob:
        from hybrid_qiskit.memory import check_shots

        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for pub in coerced:
            if not pub.precision or pub.precision <= 0:
                raise ValueError(
                    "a shot-based estimator needs precision > 0 (shots = 1/precision²)"
                )
            # A call too long or too large for Aer is refused before any work (one line, with the estimate).
            shots = math.ceil(1 / pub.precision**2)
            check_shots("aer_noisy", shots)
            self.method(pub.circuit.num_qubits, images=max(1, pub.parameter_values.size), shots=shots)
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        results: list = [None] * len(pubs)
        groups: dict[tuple, list[int]] = {}
        values = [parameter_rows(pub) for pub in pubs]
        for i, pub in enumerate(pubs):
            key = (id(pub.circuit), pub.precision, values[i].shape, values[i].tobytes())
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            pub = pubs[members[0]]
            shots = math.ceil(1.0 / pub.precision**2)
            labels = {
                label
                for m in members
                for obs in pubs[m].observables.ravel().tolist()
                for label in obs
            }
            term_ev = self._estimate_terms(pub.circuit, values[members[0]], labels, shots)
            for m in members:
                results[m] = _pub_result(pubs[m], term_ev, len(values[m]), shots)
        return PrimitiveResult(results, metadata={"version": 2})

    def _estimate_terms(self, circuit, values, labels, shots) -> dict[str, np.ndarray]:
        """Pauli label -> its estimate for every parameter set (rows,), from measured shots."""
        n, rows = circuit.num_qubits, len(values)
        paulis = [label for label in sorted(labels) if set(label) != {"I"}]
        term_ev: dict[str, np.ndarray] = {}
        for group in PauliList(paulis).group_qubit_wise_commuting() if paulis else []:
            z_any, x_any = np.any(group.z, axis=0), np.any(group.x, axis=0)
            support = [q for q in range(n) if z_any[q] or x_any[q]]
            basis = "".join(
                "Y" if x_any[q] and z_any[q] else "X" if x_any[q] else "Z" if z_any[q] else "I"
                for q in reversed(range(n))
            )
            measured = self._measured_circuit(circuit, basis, support)
            keys, counts, row = self._sample(measured, values, shots)
            for pauli in group:
                mask = sum(1 << j for j, q in enumerate(support) if pauli.z[q] or pauli.x[q])
                sign = 1.0 - 2.0 * _parity(keys & mask)
                term_ev[pauli.to_label()] = np.bincount(row, counts * sign, rows) / shots
        return term_ev

    def _measured_circuit(
        self, circuit: QuantumCircuit, basis: str, support: list[int]
    ) -> QuantumCircuit:
        """``circuit`` + rotations into ``basis`` + measurements of ``support`` (cached)."""
        bases = self._measured.get(circuit)
        if basis in bases:
            return bases[basis]
        n = circuit.num_qubits
        qc = circuit.copy()
        creg = ClassicalRegister(len(support), "meas")
        qc.add_register(creg)
        for j, q in enumerate(support):
            if basis[n - 1 - q] == "X":  # H = rz(π/2)·sx·rz(π/2) up to a phase
                qc.rz(math.pi / 2, q)
                qc.sx(q)
                qc.rz(math.pi / 2, q)
            elif basis[n - 1 - q] == "Y":  # sx (a π/2 turn about X) maps Y to Z
                qc.sx(q)
            qc.measure(q, creg[j])
        bases[basis] = qc
        return qc

    def _sample(self, circuit, values, shots: int):
        """Counts of every parameter set, flattened: (outcome, count, parameter-set index)."""
        params = list(circuit.parameters)
        binds = [{p: values[:, j].tolist() for j, p in enumerate(params)}] if params else None
        seed = int(self._rng.integers(2**31))
        result = (
            self.simulator(circuit.num_qubits)
            .run([circuit], parameter_binds=binds, shots=shots, seed_simulator=seed)
            .result()
        )
        if not result.success:
            raise RuntimeError(f"Aer simulation failed: {result.status}")
        keys, counts, row = [], [], []
        for r, experiment in enumerate(result.results[: len(values)]):
            hist = experiment.data.counts  # hex outcome -> count
            keys.extend(int(k, 16) for k in hist)
            counts.extend(hist.values())
            row.extend([r] * len(hist))
        return np.asarray(keys, dtype=np.int64), np.asarray(counts, dtype=float), np.asarray(row)


def _pub_result(pub: EstimatorPub, term_ev: dict, rows: int, shots: int) -> PubResult:
    """Combine Pauli-term estimates into the PUB's observables, broadcast to the PUB's shape."""
    obs_flat = pub.observables.ravel().tolist()  # [{pauli label: coeff}]
    ones = np.ones(rows)
    evs_table, var_table = np.zeros((len(obs_flat), rows)), np.zeros((len(obs_flat), rows))
    for k, obs in enumerate(obs_flat):
        for label, coeff in obs.items():
            term = ones if set(label) == {"I"} else term_ev[label]
            evs_table[k] += np.real(coeff) * term
            var_table[k] += abs(coeff) ** 2 * (1 - term**2) / shots  # terms taken as independent
    evs = broadcast_rows(pub, evs_table)
    stds = np.sqrt(np.maximum(broadcast_rows(pub, var_table), 0))
    metadata = {
        "target_precision": pub.precision,
        "shots": shots,
        "circuit_metadata": pub.circuit.metadata,
    }
    return PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape), metadata=metadata)


def _parity(x: np.ndarray) -> np.ndarray:
    """Parity of the set bits of each int64 (numpy < 2 has no bitwise_count)."""
    x = x.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        x ^= x >> shift
    return x & 1


class ExactNoisyEstimator(BaseEstimatorV2):
    """Exact noisy expectation values: Aer's density-matrix EstimatorV2, plus readout error.

    Aer's estimator never measures, so readout error would be missing; each observable is
    replaced by its readout-folded form (:func:`backends.noise.fold_readout`), which makes the
    results the exact mean of what :class:`AerShotEstimator` samples.

    Args:
        noise: the NoiseSpec (model and readout errors).
        seed: Aer's seed (used only if a positive precision asks for sampled noise).
    """

    def __init__(self, noise, *, seed: int | None = None):
        self._noise = noise
        self._seed = seed
        self._aer = None
        self._folded: dict[tuple, dict] = {}

    def _estimator(self):
        from qiskit_aer.primitives import EstimatorV2 as AerEstimator

        if self._aer is None:
            options = {
                "method": "density_matrix",
                "noise_model": self._noise.model,
                "seed_simulator": self._seed,
            }
            self._aer = AerEstimator(options={"backend_options": options})
        return self._aer

    def _fold(self, terms: dict) -> dict:
        from qiskit.quantum_info import SparsePauliOp

        from backends.noise import fold_readout

        key = tuple(sorted(terms.items()))
        if key not in self._folded:
            folded = fold_readout(SparsePauliOp(list(terms), list(terms.values())), self._noise)
            self._folded[key] = dict(
                zip(folded.paulis.to_labels(), np.real(folded.coeffs).tolist())
            )
        return self._folded[key]

    def run(
        self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
    ) -> PrimitiveJob:
        from backends.noise_source import aer_method

        coerced = [
            EstimatorPub.coerce(pub, 0.0 if precision is None else precision) for pub in pubs
        ]
        for pub in coerced:  # a circuit too wide is refused before any work
            aer_method("aer_noisy_exact", pub.circuit.num_qubits)
        folded, erased = [], []
        for pub in coerced:
            terms = [self._fold(t) for t in pub.observables.ravel().tolist()]
            # Readout flips of 1/2 (the cap, reached at large noise scales) erase an observable:
            # its value is exactly 0, but primitives refuse an observable without terms. It runs
            # as the identity and its result is zeroed.
            gone = np.array([not any(t.values()) for t in terms], dtype=bool)
            identity = "I" * pub.circuit.num_qubits
            flat = np.empty(len(terms), dtype=object)
            flat[:] = [{identity: 1.0} if g else t for t, g in zip(terms, gone)]
            observables = ObservablesArray(flat.reshape(pub.observables.shape).tolist())
            folded.append(
                EstimatorPub(pub.circuit, observables, pub.parameter_values, pub.precision)
            )
            erased.append(gone.reshape(pub.observables.shape))
        job = PrimitiveJob(self._run, folded, erased)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub], erased: list[np.ndarray]) -> PrimitiveResult:
        results = []
        for pub, gone in zip(pubs, erased):
            result = self._estimator().run([pub]).result()[0]
            if gone.any():
                evs = np.where(gone, 0.0, result.data.evs)
                stds = np.where(gone, 0.0, result.data.stds)
                result = PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape), metadata=result.metadata)
            results.append(result)
        return PrimitiveResult(results, metadata={"version": 2})
