"""``AdjointEstimatorGradient``: exact gradients for EstimatorQNN in one reverse sweep.

EstimatorQNN's backward pass hands its gradient a list of ``batch x observables`` (circuit,
observable, parameter set) triples, all sharing one circuit. The stock parameter-shift gradient
turns that into ``2 x parameters`` shifted PUBs per triple, each a separate simulation. Here the
triples are grouped by circuit, the distinct parameter sets and observables are found, and one
adjoint sweep over the batch (:func:`~.batched_statevector.adjoint_gradient`) yields every
derivative. Values equal the parameter-shift gradient to floating-point accuracy (tested).

Example:
    >>> from hybrid_qiskit.primitives import BatchedStatevectorEstimator, AdjointEstimatorGradient
    >>> est = BatchedStatevectorEstimator()
    >>> grad = AdjointEstimatorGradient(est)   # pass as EstimatorQNN(gradient=grad, estimator=est)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.providers import Options
from qiskit.quantum_info import SparsePauliOp
from qiskit.quantum_info.operators.base_operator import BaseOperator
from qiskit_machine_learning.algorithm_job import AlgorithmJob
from qiskit_machine_learning.gradients import BaseEstimatorGradient, EstimatorGradientResult

from .batched_statevector import adjoint_gradient
from .estimator import BatchedStatevectorEstimator


class AdjointEstimatorGradient(BaseEstimatorGradient):
    """Exact adjoint-method gradient of ⟨O⟩ for :class:`BatchedStatevectorEstimator`.

    Args:
        estimator: the exact estimator whose compiled-circuit cache is shared. (Gradients are
            always exact; the estimator's precision does not apply to them.)
    """

    def __init__(self, estimator: BatchedStatevectorEstimator | None = None):
        super().__init__(estimator or BatchedStatevectorEstimator())

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        observables: Sequence[BaseOperator],
        parameter_values: Sequence[Sequence[float]] | np.ndarray,
        parameters: Sequence[Sequence[Parameter] | None] | None = None,
        **options,
    ) -> AlgorithmJob:
        # The base class validates every triple separately (a set comparison of parameters per
        # circuit): with a QNN's batch x observables triples that costs more than the gradient
        # itself. The same checks are done once per distinct circuit in ``_run``.
        if isinstance(circuits, QuantumCircuit):
            circuits = (circuits,)
        if isinstance(observables, BaseOperator):
            observables = (observables,)
        if parameters is None:
            parameters = [None] * len(circuits)
        if not (len(circuits) == len(observables) == len(parameter_values) == len(parameters)):
            raise ValueError(
                "circuits, observables, parameter values and parameters must have equal lengths"
            )
        job = AlgorithmJob(self._run, circuits, observables, parameter_values, parameters, **options)
        job.submit()
        return job

    def _run(
        self,
        circuits: Sequence[QuantumCircuit],
        observables: Sequence[BaseOperator],
        parameter_values: Sequence[Sequence[float]] | np.ndarray,
        parameters: Sequence[Sequence[Parameter] | None],
        **options,
    ) -> EstimatorGradientResult:
        estimator: BatchedStatevectorEstimator = self._estimator
        gradients: list[np.ndarray | None] = [None] * len(circuits)
        metadata: list[dict | None] = [None] * len(circuits)

        groups: dict[int, list[int]] = {}
        for i, circuit in enumerate(circuits):
            groups.setdefault(id(circuit), []).append(i)

        for members in groups.values():
            circuit = circuits[members[0]]
            program = estimator.program(circuit)
            values = np.asarray([parameter_values[i] for i in members], dtype=float)
            if values.ndim != 2 or values.shape[1] != len(program.parameters):
                raise ValueError(
                    f"a circuit with {len(program.parameters)} parameters got parameter sets "
                    f"of shape {values.shape}"
                )
            # A QNN repeats each parameter set once per observable: simulate each only once.
            rows, row_of = np.unique(values, axis=0, return_inverse=True)
            obs_keys: dict[int, int] = {}
            compiled = []
            obs_of = np.empty(len(members), dtype=int)
            for k, i in enumerate(members):
                key = id(observables[i])
                if key not in obs_keys:
                    obs_keys[key] = len(compiled)
                    obs = observables[i]
                    obs = obs if isinstance(obs, SparsePauliOp) else SparsePauliOp(obs)
                    compiled.append(estimator.observable(obs))
                obs_of[k] = obs_keys[key]
            if any(o.num_qubits != program.num_qubits for o in compiled):
                raise ValueError("an observable's qubit count differs from its circuit's")
            _, grads = adjoint_gradient(program, rows, compiled)  # (K, R, P)

            column = {p: j for j, p in enumerate(program.parameters)}
            for k, i in enumerate(members):
                full = grads[obs_of[k], row_of.ravel()[k]]
                params = parameters[i]
                if params is None:
                    params = program.parameters
                    gradients[i] = full.copy()
                else:
                    try:
                        gradients[i] = full[[column[p] for p in params]]
                    except KeyError as exc:
                        raise ValueError(f"parameter {exc.args[0]} is not in the circuit") from None
                metadata[i] = {"parameters": list(params)}
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))

