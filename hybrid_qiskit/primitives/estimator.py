"""``BatchedStatevectorEstimator``: an exact Qiskit V2 estimator that evaluates a whole PUB at once.

Qiskit's ``StatevectorEstimator`` binds and simulates every parameter set of a PUB separately;
this one compiles the circuit once (cached) and evolves all parameter sets of a PUB together.
PUBs of one ``run`` that share a circuit and parameter values (EstimatorQNN sends one PUB per
observable, all with the same values) share one evolution, and every observable is read off
the same final states. Results are the exact expectation values (``precision=0``) or, like the
reference estimator, those values plus Gaussian noise of standard deviation ``precision`` when
a positive precision is asked for.

Gotchas:
    * ``run`` computes before it returns (the job comes back done): a thread hand-off per call
      cost more than the simulation itself on a busy 2-core machine.
    * Observable objects are remembered by identity (EstimatorQNN passes the same ones on every
      call): do not change a SparsePauliOp in place between runs.
    * The last few final states are kept (keyed by program and parameter values) so that
      :class:`~.adjoint_gradient.AdjointEstimatorGradient` on the same estimator can skip the
      forward evolution of the backward pass.

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
from concurrent.futures import Future

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers import BindingsArray, ObservablesArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.providers import JobError
from qiskit.quantum_info import SparsePauliOp

from .compiler import compile_circuit
from .layers import Program
from .simulate import CompiledObservable, expectations, simulate


class EagerJob(PrimitiveJob):
    """A :class:`PrimitiveJob` that runs its function when submitted, in the calling thread.

    Results, errors (raised by ``result()``), ``status()`` and ``done()`` behave as for the
    threaded job; the work just finishes before ``run`` returns.
    """

    def _submit(self):
        if self._future is not None:
            raise JobError("Primitive job has been submitted already.")
        future: Future = Future()
        try:
            future.set_result(self._function(*self._args, **self._kwargs))
        except Exception as exc:  # surfaced by result(), as with the threaded job
            future.set_exception(exc)
        self._future = future


class BatchedStatevectorEstimator(BaseEstimatorV2):
    """Exact V2 estimator: one vectorized statevector pass per circuit and parameter array.

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
        # SparsePauliOp objects (by shape and ids) -> ObservablesArray, and ObservablesArray
        # (by id) -> its compiled observables. The objects are kept so that a reused id (of a
        # freed object) is never mistaken for them.
        self._observable_arrays: dict[tuple, tuple[tuple[SparsePauliOp, ...], ObservablesArray]] = {}
        self._compiled_arrays: dict[int, tuple[ObservablesArray, list[CompiledObservable]]] = {}
        self._states: OrderedDict[tuple, np.ndarray] = OrderedDict()

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

    # -- final-state cache, shared with the adjoint gradient ------------------------------

    _STATES_KEPT = 2  # a training step needs one: the forward pass's, for its backward pass

    @staticmethod
    def _state_key(program: Program, values: np.ndarray) -> tuple:
        return (id(program), values.shape, values.tobytes())

    def cached_states(self, program: Program, values: np.ndarray) -> np.ndarray | None:
        """Final states (2**n, B) from an earlier ``run`` of ``program`` on exactly ``values``
        (float64, (B, P)), or None."""
        return self._states.get(self._state_key(program, values))

    def _keep_states(self, program: Program, values: np.ndarray, states: np.ndarray) -> None:
        self._states[self._state_key(program, values)] = states
        while len(self._states) > self._STATES_KEPT:
            self._states.popitem(last=False)

    # -- running --------------------------------------------------------------------------

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> PrimitiveJob:
        if precision is None:
            precision = self._default_precision
        if precision < 0:
            raise ValueError("precision must be non-negative")
        job = EagerJob(self._run, self._coerce(pubs, precision))
        job._submit()
        return job

    def _coerce(self, pubs: Iterable[EstimatorPubLike], precision: float) -> list[EstimatorPub]:
        """``EstimatorPub.coerce`` for each PUB, converting each observable object (or nested
        list of them) and each parameter array once: EstimatorQNN sends the same observable
        objects on every call, and PUBs of one call may share a parameter array."""
        out, bindings = [], {}
        for pub in pubs:
            flat = None
            if (isinstance(pub, tuple) and len(pub) in (3, 4) and isinstance(pub[0], QuantumCircuit)
                    and isinstance(pub[2], np.ndarray)):
                flat = _flatten_observables(pub[1])
            if flat is None:
                out.append(EstimatorPub.coerce(pub, precision))
                continue
            circuit, obs, values = pub[:3]
            shape, objects = flat
            for o in objects:
                if o.num_qubits != circuit.num_qubits:
                    raise ValueError(
                        f"The number of qubits of the circuit ({circuit.num_qubits}) does not match "
                        f"the number of qubits of an observable ({o.num_qubits})."
                    )
            key = (shape, tuple(map(id, objects)))
            hit = self._observable_arrays.get(key)
            if hit is None or any(a is not b for a, b in zip(hit[0], objects)):
                array = ObservablesArray.coerce(obs)
                array.validate()
                hit = (objects, array)
                self._observable_arrays[key] = hit
                if len(self._observable_arrays) > 512:
                    self._observable_arrays.pop(next(iter(self._observable_arrays)))
            bkey = (id(circuit), id(values))
            if bkey not in bindings:
                array = BindingsArray.coerce({tuple(circuit.parameters): values})
                array.validate()
                if array.num_parameters != circuit.num_parameters:
                    raise ValueError(
                        f"The number of values ({array.num_parameters}) does not match "
                        f"the number of parameters ({circuit.num_parameters}) for the circuit."
                    )
                bindings[bkey] = array
            pub_precision = pub[3] if len(pub) == 4 and pub[3] is not None else precision
            if pub_precision < 0:
                raise ValueError("precision must be non-negative.")
            # Everything EstimatorPub.validate checks was checked above, once per object; the
            # shapes' broadcastability is checked by the constructor.
            out.append(EstimatorPub(circuit, hit[1], bindings[bkey], pub_precision, validate=False))
        return out

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        # One evolution per distinct (circuit, parameter values); PUBs sharing it are answered
        # from the same final states.
        groups: list[tuple[Program, object, np.ndarray, list[int]]] = []
        for i, pub in enumerate(pubs):
            program = self.program(pub.circuit)
            bindings = pub.parameter_values
            for g_program, g_bindings, g_values, members in groups:
                if g_program is program and (
                    g_bindings is bindings or _same_values(g_values, self._values(program, pub))
                ):
                    members.append(i)
                    break
            else:
                groups.append((program, bindings, self._values(program, pub), [i]))
        results: list[PubResult | None] = [None] * len(pubs)
        for program, _, values, members in groups:
            states = simulate(program, values)  # (2**n, rows)
            self._keep_states(program, values, states)
            observables: list[CompiledObservable] = []
            index: dict[int, int] = {}
            pub_rows = {}
            for i in members:
                rows = []
                for obs in self._compiled_observables(pubs[i].observables, program):
                    if id(obs) not in index:
                        index[id(obs)] = len(observables)
                        observables.append(obs)
                    rows.append(index[id(obs)])
                pub_rows[i] = rows
            table = expectations(states, observables)  # (n_obs, rows)
            for i in members:
                results[i] = self._pub_result(pubs[i], table[pub_rows[i]])
        return PrimitiveResult(results, metadata={"version": 2})

    def _compiled_observables(self, array: ObservablesArray, program: Program) -> list[CompiledObservable]:
        """The compiled observables of ``array`` in ``ravel()`` order (cached per array object:
        :meth:`_coerce` reuses one array per observable object)."""
        hit = self._compiled_arrays.get(id(array))
        if hit is not None and hit[0] is array:
            compiled = hit[1]
        else:
            compiled = [self.observable(o) for o in array.ravel().tolist()]
            self._compiled_arrays[id(array)] = (array, compiled)
            if len(self._compiled_arrays) > 512:
                self._compiled_arrays.pop(next(iter(self._compiled_arrays)))
        if any(o.num_qubits != program.num_qubits for o in compiled):
            raise ValueError("an observable's qubit count differs from its circuit's")
        return compiled

    @staticmethod
    def _values(program: Program, pub: EstimatorPub) -> np.ndarray:
        """The PUB's parameter sets as a float64 (rows, P) array in ``program.parameters`` order."""
        bindings = pub.parameter_values
        rows = int(np.prod(bindings.shape)) if bindings.shape else 1
        P = len(program.parameters)
        if not P:
            return np.zeros((rows, 0))
        data = bindings.data
        if len(data) == 1 and next(iter(data)) == program.parameter_names:
            values = next(iter(data.values()))  # already in column order: skip the name lookup
        else:
            values = bindings.as_array(program.parameters)
        return np.ascontiguousarray(values, dtype=float).reshape(rows, P)

    def _pub_result(self, pub: EstimatorPub, table: np.ndarray) -> PubResult:
        """Broadcast the (n_obs, rows) table to the PUB's shape (observables x parameters)."""
        bshape = pub.parameter_values.shape
        oshape = pub.observables.shape
        if not oshape:  # one observable (EstimatorQNN's PUBs): no broadcasting to do
            evs = table[0].reshape(bshape)
        else:
            oi, bi = np.broadcast_arrays(
                np.arange(table.shape[0]).reshape(oshape), np.arange(table.shape[1]).reshape(bshape)
            )
            evs = table[oi, bi]
        if pub.precision:
            evs = np.asarray(self._rng.normal(evs, pub.precision))
        stds = np.full(evs.shape, float(pub.precision))
        data = DataBin(evs=evs, stds=stds, shape=evs.shape)
        return PubResult(
            data, metadata={"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata}
        )


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def _flatten_observables(obs) -> tuple[tuple[int, ...], tuple[SparsePauliOp, ...]] | None:
    """(shape, SparsePauliOps in row-major order) for a SparsePauliOp or a regular nested
    list/tuple of them; None for anything else (left to ``EstimatorPub.coerce``)."""
    if isinstance(obs, SparsePauliOp):
        return (), (obs,)
    if not isinstance(obs, (list, tuple)) or not obs:
        return None
    parts = [_flatten_observables(o) for o in obs]
    if any(p is None for p in parts) or len({p[0] for p in parts}) != 1:
        return None
    return (len(obs),) + parts[0][0], tuple(o for p in parts for o in p[1])
