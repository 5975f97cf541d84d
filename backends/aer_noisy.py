"""Noisy Aer backends: a fake device's noise (scaled), or parametric noise, on its ISA.

* ``aer_noisy``: real shots. Each qubit-wise-commuting group of Pauli terms is measured on an
  ``AerSimulator`` carrying the noise model, so shot noise AND readout error show in the results.
  (Aer's own EstimatorV2 computes expectation values from the simulator state and never measures:
  with a noise model it leaves readout error out.)
* ``aer_noisy_exact``: the exact noisy expectation (density matrix, no shots) for smooth curves.
  Readout error is included analytically (:func:`backends.noise.fold_readout`), so this is the
  mean of what ``aer_noisy`` samples (exactly so for Z-type observables like the head's; X/Y
  terms miss the noise of the basis-change gates ``aer_noisy`` adds before measuring).

Where the noise comes from (``device`` and the parametric settings):

* ``device="fake_manila"`` (any name from ``hybrid-qiskit backends --devices``) and no parametric
  setting: the device's calibration, every error rate times ``noise_scale`` (0 = noiseless,
  1 = the device, 2 = twice as noisy).
* any of ``depolarizing``, ``depolarizing_2q``, ``readout_error``, ``t1`` given: that parametric
  noise (times ``noise_scale``) replaces the calibration; the device still sets the coupling map
  and basis gates. ``device="all_to_all"``: no device, all-to-all coupling, basis rz/sx/x/cx.

Circuits are transpiled to the target's ISA once per model by the handle's pass manager
(``generate_preset_pass_manager(optimization_level, backend, seed_transpiler=seed)``); gradients
are batched parameter shifts on that same ISA circuit.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("aer_noisy", device="fake_manila", shots=1024, seed=7)
    >>> handle.description["noise"]["kind"]
    'device'
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.quantum_info import PauliList

from backends import BackendHandle, register_backend
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError

ALL_TO_ALL = "all_to_all"
GENERIC_BASIS = ("cx", "rz", "sx", "x")
METHODS = ("automatic", "density_matrix", "statevector", "matrix_product_state")
GRADIENT_KIND = "parameter-shift, batched (one PUB per circuit, on the ISA circuit)"


def active_qubits(circuit: QuantumCircuit) -> frozenset[int]:
    """Indices of the qubits any instruction of ``circuit`` touches."""
    return frozenset(circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits)


class AerShotEstimator(BaseEstimatorV2):
    """A V2 estimator that measures: every Pauli basis is sampled with real shots on Aer.

    PUBs that share a circuit and parameter values (EstimatorQNN's forward pass sends one per
    observable) are measured together, as hardware would: their Pauli terms are grouped into
    qubit-wise-commuting bases, and each basis is one measured copy of the circuit (rotations into
    the Z basis written in ``rz``/``sx``, so they stay ISA gates), run for ALL parameter sets in
    one Aer call through ``parameter_binds`` (Aer binds natively; no Python copy per set).
    Expectation values are parities averaged over the counts; stds are shot-noise estimates.
    Each circuit runs with the noise model restricted to its qubits (see
    :func:`backends.noise.restrict_noise_model`).

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
        self._simulators: dict[frozenset, object] = {}
        self._measured: OrderedDict[tuple, tuple[QuantumCircuit, QuantumCircuit]] = OrderedDict()

    def simulator(self, circuit: QuantumCircuit):
        """The AerSimulator for ``circuit``: the noise model restricted to its qubits (cached)."""
        from qiskit_aer import AerSimulator

        from backends.noise import restrict_noise_model

        qubits = active_qubits(circuit)
        if qubits not in self._simulators:
            # Parallel over experiments (parameter sets): per-set setup dominates at a few
            # qubits; measured faster than Aer's default, and no worse on a busy machine.
            self._simulators[qubits] = AerSimulator(
                method=self._method,
                noise_model=restrict_noise_model(self._noise_model, qubits),
                max_parallel_experiments=0,
            )
        return self._simulators[qubits]

    def run(
        self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
    ) -> PrimitiveJob:
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for pub in coerced:
            if not pub.precision or pub.precision <= 0:
                raise ValueError(
                    "a shot-based estimator needs precision > 0 (shots = 1/precision²)"
                )
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        results: list = [None] * len(pubs)
        groups: dict[tuple, list[int]] = {}
        values = [_parameter_rows(pub) for pub in pubs]
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
        key = (id(circuit), basis)
        hit = self._measured.get(key)
        if hit is not None and hit[0] is circuit:
            return hit[1]
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
        self._measured[key] = (circuit, qc)
        if len(self._measured) > 64:
            self._measured.popitem(last=False)
        return qc

    def _sample(self, circuit, values, shots: int):
        """Counts of every parameter set, flattened: (outcome, count, parameter-set index)."""
        params = list(circuit.parameters)
        binds = [{p: values[:, j].tolist() for j, p in enumerate(params)}] if params else None
        seed = int(self._rng.integers(2**31))
        result = (
            self.simulator(circuit)
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


def _parameter_rows(pub: EstimatorPub) -> np.ndarray:
    """The PUB's parameter sets as a (rows, parameters) array, in ``circuit.parameters`` order."""
    shape = pub.parameter_values.shape
    rows = int(np.prod(shape)) if shape else 1
    params = list(pub.circuit.parameters)
    if not params:
        return np.zeros((rows, 0))
    return pub.parameter_values.as_array(params).reshape(rows, len(params))


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
    bshape = pub.parameter_values.shape
    oi, bi = np.broadcast_arrays(
        np.arange(len(obs_flat)).reshape(pub.observables.shape), np.arange(rows).reshape(bshape)
    )
    evs = evs_table[oi, bi]
    stds = np.sqrt(np.maximum(var_table[oi, bi], 0))
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
    results the exact mean of what :class:`AerShotEstimator` samples. Each circuit runs with the
    noise model restricted to its qubits.

    Args:
        noise: the NoiseSpec (model and readout errors).
        seed: Aer's seed (used only if a positive precision asks for sampled noise).
    """

    def __init__(self, noise, *, seed: int | None = None):
        self._noise = noise
        self._seed = seed
        self._estimators: dict[frozenset, object] = {}
        self._folded: dict[tuple, dict] = {}

    def _estimator(self, circuit: QuantumCircuit):
        from qiskit_aer.primitives import EstimatorV2 as AerEstimator

        from backends.noise import restrict_noise_model

        qubits = active_qubits(circuit)
        if qubits not in self._estimators:
            model = restrict_noise_model(self._noise.model, qubits)
            options = {
                "method": "density_matrix",
                "noise_model": model,
                "seed_simulator": self._seed,
            }
            self._estimators[qubits] = AerEstimator(options={"backend_options": options})
        return self._estimators[qubits]

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
        coerced = [
            EstimatorPub.coerce(pub, 0.0 if precision is None else precision) for pub in pubs
        ]
        folded = []
        for pub in coerced:
            flat = np.empty(pub.observables.size, dtype=object)
            flat[:] = [self._fold(terms) for terms in pub.observables.ravel().tolist()]
            observables = ObservablesArray(flat.reshape(pub.observables.shape).tolist())
            folded.append(
                EstimatorPub(pub.circuit, observables, pub.parameter_values, pub.precision)
            )
        job = PrimitiveJob(self._run, folded)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        results = [self._estimator(pub.circuit).run([pub]).result()[0] for pub in pubs]
        return PrimitiveResult(results, metadata={"version": 2})


def _noise_and_target(device, noise_scale, parametric: dict):
    """(fake backend or None, NoiseSpec, description of the target) for the settings."""
    from backends.devices import describe_device, get_fake_backend
    from backends.noise import device_noise, parametric_noise

    use_parametric = any(
        parametric[k] is not None
        for k in ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2")
    )
    backend = None if device == ALL_TO_ALL else get_fake_backend(device)
    if backend is None:
        one_q, two_q = ["rz", "sx", "x"], ["cx"]
        target = {"name": ALL_TO_ALL, "basis_gates": list(GENERIC_BASIS), "coupling": "all-to-all"}
    else:
        info = describe_device(backend)
        two_q = info["two_qubit_gates"]
        one_q = [g for g in info["basis_gates"] if g not in two_q]
        target = info
    if use_parametric:
        given = {k: v for k, v in parametric.items() if v is not None}
        noise = parametric_noise(
            one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=noise_scale, **given
        )
    elif backend is not None:
        noise = device_noise(backend, noise_scale)
    else:
        noise = parametric_noise(
            one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=noise_scale
        )
    return backend, noise, target


def _pass_manager(backend, optimization_level: int, seed):
    from qiskit.transpiler import generate_preset_pass_manager

    from backends.devices import guard_width

    if optimization_level not in (0, 1, 2, 3):
        raise HybridQiskitError(
            f"optimization_level must be 0, 1, 2 or 3, got {optimization_level}"
        )
    if backend is None:
        return generate_preset_pass_manager(
            optimization_level=optimization_level,
            basis_gates=list(GENERIC_BASIS),
            seed_transpiler=seed,
        )
    return guard_width(
        generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        ),
        backend,
    )


@register_backend(
    "aer_noisy",
    summary="Aer with a fake device's noise (x noise_scale) or parametric noise; real shots incl. readout error",
)
def aer_noisy(
    *,
    device: str = "fake_manila",
    shots: int = 1024,
    noise_scale: float = 1.0,
    depolarizing: float | None = None,
    depolarizing_2q: float | None = None,
    readout_error: float | None = None,
    t1: float | None = None,
    t2: float | None = None,
    gate_time_1q: float = 50.0,
    gate_time_2q: float = 300.0,
    method: str = "density_matrix",
    optimization_level: int = 1,
    seed: int | None = None,
) -> BackendHandle:
    """Shot-based noisy simulation on ``device``'s ISA (see the module docstring for the noise).

    T1/T2 are in µs, gate times in ns. ``method`` is Aer's simulation method: the default,
    ``density_matrix``, evolves each parameter set once and samples every shot from it (Aer's
    ``automatic`` measured ~1.5x slower at 4 qubits, choosing per parameter set); beyond ~10
    qubits ``statevector`` (one noisy trajectory per shot) may be the better trade.

    Raises:
        HybridQiskitError: bad shots, method, scale, probabilities, times or device name.
    """
    if not isinstance(shots, int) or shots < 1:
        raise HybridQiskitError(f"shots must be a positive integer, got {shots!r}")
    if method not in METHODS:
        raise HybridQiskitError(f"unknown Aer method {method!r}; known: {', '.join(METHODS)}")
    parametric = dict(
        depolarizing=depolarizing,
        depolarizing_2q=depolarizing_2q,
        readout_error=readout_error,
        t1=t1,
        t2=t2,
        gate_time_1q=gate_time_1q,
        gate_time_2q=gate_time_2q,
    )
    backend, noise, target = _noise_and_target(device, noise_scale, parametric)
    pass_manager = _pass_manager(backend, optimization_level, seed)
    precision = shots_precision(shots)
    estimator = AerShotEstimator(
        noise_model=noise.model, method=method, default_precision=precision, seed=seed
    )
    return BackendHandle(
        name="aer_noisy",
        estimator=estimator,
        gradient=_gradient(estimator, precision),
        pass_manager=pass_manager,
        precision=precision,
        exact=False,
        description={
            "name": "aer_noisy",
            "device": target["name"],
            "target": target,
            "shots": shots,
            "noise": {**noise.summary, "readout_error_in_results": "measured (real shots)"},
            "method": method,
            "optimization_level": optimization_level,
            "seed": seed,
            "estimator": "AerShotEstimator (measured Pauli bases on AerSimulator, real shots)",
            "gradient": GRADIENT_KIND,
        },
    )


@register_backend(
    "aer_noisy_exact",
    summary="exact noisy expectation (Aer density matrix, no shots) with a device's or parametric noise",
)
def aer_noisy_exact(
    *,
    device: str = "fake_manila",
    noise_scale: float = 1.0,
    depolarizing: float | None = None,
    depolarizing_2q: float | None = None,
    readout_error: float | None = None,
    t1: float | None = None,
    t2: float | None = None,
    gate_time_1q: float = 50.0,
    gate_time_2q: float = 300.0,
    optimization_level: int = 1,
    seed: int | None = None,
) -> BackendHandle:
    """Exact density-matrix expectation under the same noise as ``aer_noisy``, no shot noise.

    Readout error is folded into the observables, so results are ``aer_noisy``'s mean.

    Raises:
        HybridQiskitError: bad scale, probabilities, times or device name.
    """
    parametric = dict(
        depolarizing=depolarizing,
        depolarizing_2q=depolarizing_2q,
        readout_error=readout_error,
        t1=t1,
        t2=t2,
        gate_time_1q=gate_time_1q,
        gate_time_2q=gate_time_2q,
    )
    backend, noise, target = _noise_and_target(device, noise_scale, parametric)
    pass_manager = _pass_manager(backend, optimization_level, seed)
    estimator = ExactNoisyEstimator(noise, seed=seed)
    return BackendHandle(
        name="aer_noisy_exact",
        estimator=estimator,
        gradient=_gradient(estimator, 0.0),
        pass_manager=pass_manager,
        precision=0.0,
        exact=True,
        description={
            "name": "aer_noisy_exact",
            "device": target["name"],
            "target": target,
            "shots": None,
            "noise": {
                **noise.summary,
                "readout_error_in_results": "folded into the observables (exact mean)",
            },
            "method": "density_matrix (exact expectation)",
            "optimization_level": optimization_level,
            "seed": seed,
            "estimator": "ExactNoisyEstimator (Aer density-matrix EstimatorV2 + readout folding)",
            "gradient": GRADIENT_KIND,
        },
    )


def _gradient(estimator, precision: float):
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    return BatchedParamShiftEstimatorGradient(estimator, precision=precision)
