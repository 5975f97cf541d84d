"""``BatchedStatevectorEstimator``: an exact Qiskit V2 estimator that evaluates a whole PUB at once.

Qiskit's ``StatevectorEstimator`` binds and simulates every parameter set of a PUB separately;
this one compiles the circuit once (cached) and evolves all parameter sets of a PUB together,
then reads every observable of the PUB off the same final states. Results are the exact
expectation values (``precision=0``) or, like the reference estimator, those values plus
Gaussian noise of standard deviation ``precision`` when a positive precision is asked for.

Example:
    >>> import numpy as np
    >>> from qiskit.circuit.library import real_amplitudes
    >>> from qiskit.quantum_info import SparsePauliOp
    >>> qc = real_amplitudes(2, reps=1)
    >>> est = BatchedStatevectorEstimator()
    >>> res = est.run([(qc, SparsePauliOp("ZZ"), np.zeros((5, 4)))]).result()
    >>> res[0].data.evs.shape
    (5,)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.quantum_info import SparsePauliOp

from .batched_statevector import CompiledObservable, simulate
from .program import Program, compile_circuit


class BatchedStatevectorEstimator(BaseEstimatorV2):
    """Exact V2 estimator: one vectorized statevector pass per PUB.

    Args:
        default_precision: precision used when ``run`` is given none; 0 means exact values.
        seed: seed for the Gaussian noise added when precision > 0.
        cache_size: how many compiled circuits to keep (keyed by circuit identity: the QNN
            passes the same circuit object on every call).
    """

    def __init__(self, *, default_precision: float = 0.0, seed: int | None = None, cache_size: int = 32):
        self._default_precision = default_precision
        self._rng = np.random.default_rng(seed)
        self._cache_size = cache_size
        self._programs: OrderedDict[int, tuple[QuantumCircuit, Program]] = OrderedDict()
        self._observables: dict[tuple, CompiledObservable] = {}

    @property
    def default_precision(self) -> float:
        return self._default_precision

    def program(self, circuit: QuantumCircuit) -> Program:
        """The compiled program for ``circuit`` (compiled once, then cached by identity)."""
        key = id(circuit)
        hit = self._programs.get(key)
        # A stale id (the object was freed and the id reused) is caught by the identity check.
        if hit is not None and hit[0] is circuit:
            self._programs.move_to_end(key)
            return hit[1]
        program = compile_circuit(circuit)
        self._programs[key] = (circuit, program)
        if len(self._programs) > self._cache_size:
            self._programs.popitem(last=False)
        return program

    def observable(self, terms: dict[str, complex] | SparsePauliOp) -> CompiledObservable:
        """The compiled form of an observable given as ``{pauli: coeff}`` or a SparsePauliOp."""
        if isinstance(terms, SparsePauliOp):
            terms = dict(zip(terms.paulis.to_labels(), terms.coeffs))
        key = tuple(sorted(terms.items()))
        obs = self._observables.get(key)
        if obs is None:
            obs = CompiledObservable(SparsePauliOp(list(terms), list(terms.values())))
            self._observables[key] = obs
        return obs

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> PrimitiveJob:
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        return PrimitiveResult([self._run_pub(pub) for pub in pubs], metadata={"version": 2})

    def _run_pub(self, pub: EstimatorPub) -> PubResult:
        circuit = pub.circuit
        program = self.program(circuit)
        bindings = pub.parameter_values
        values = bindings.as_array(program.parameters) if program.parameters else None
        bshape = bindings.shape
        rows = int(np.prod(bshape)) if bshape else 1
        values = (
            values.reshape(rows, len(program.parameters))
            if values is not None
            else np.zeros((rows, 0))
        )
        states = simulate(program, values)  # (2**n, rows)
        obs_flat = pub.observables.ravel().tolist()
        table = np.stack([self.observable(o).expectation(states) for o in obs_flat])  # (n_obs, rows)
        # Broadcast the observables' shape against the parameters' shape, as the PUB defines.
        oshape = pub.observables.shape
        oi, bi = np.broadcast_arrays(
            np.arange(len(obs_flat)).reshape(oshape), np.arange(rows).reshape(bshape)
        )
        evs = table[oi, bi]
        if pub.precision:
            evs = self._rng.normal(evs, pub.precision)
        stds = np.full(evs.shape, float(pub.precision))
        data = DataBin(evs=evs, stds=stds, shape=evs.shape)
        return PubResult(
            data, metadata={"target_precision": pub.precision, "circuit_metadata": circuit.metadata}
        )
