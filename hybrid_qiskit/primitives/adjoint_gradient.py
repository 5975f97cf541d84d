"""``AdjointEstimatorGradient``: exact gradients for EstimatorQNN in one reverse sweep.

EstimatorQNN's backward pass hands its gradient a list of ``batch x observables`` (circuit,
observable, parameter set) triples, all sharing one circuit. The stock parameter-shift gradient
turns that into ``2 x parameters`` shifted PUBs per triple, each a separate simulation. Here the
triples are grouped by circuit, the distinct parameter sets and observables are found (the QNN's
``np.tile`` of its batch is recognized without sorting), and one adjoint sweep over the batch
(:func:`~.adjoint_sweep.adjoint_gradient`) yields every derivative. Values equal the
parameter-shift gradient to floating-point accuracy (tested).

Gotchas:
    * The final states come from the shared estimator's forward pass when it ran on exactly the
      same parameter values (a training step's forward then backward), else they are simulated.
    * Like the estimator, ``run`` computes before it returns; the job comes back done.
    * Gradients are exact whatever the estimator's precision.
    * It simulates with a :class:`BatchedStatevectorEstimator` (sharing its caches); any other
      estimator is refused: use :class:`~.param_shift.BatchedParamShiftEstimatorGradient`.

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
from qiskit.quantum_info.operators.base_operator import BaseOperator
from qiskit.transpiler.passmanager import BasePassManager
from qiskit_machine_learning.gradients import DerivativeType, EstimatorGradientResult

from .adjoint_sweep import adjoint_gradient, adjoint_vjp
from .estimator import BatchedStatevectorEstimator
from .gradient_base import BatchedEstimatorGradient
from .pubs import distinct_rows


class AdjointEstimatorGradient(BatchedEstimatorGradient):
    """Exact adjoint-method gradient of ⟨O⟩ for :class:`BatchedStatevectorEstimator`.

    Args:
        estimator: the exact estimator whose compiled-circuit cache is shared (a new one if
            None). Gradients are always exact; the estimator's precision does not apply to them.
        options: default run options, recorded in each result (as by the base class).
        derivative_type: ``DerivativeType.REAL`` only.
        pass_manager: transpiles each circuit once before it is simulated.

    Raises:
        TypeError: for an estimator other than a :class:`BatchedStatevectorEstimator`.
    """

    def __init__(
        self,
        estimator: BatchedStatevectorEstimator | None = None,
        options: Options | None = None,
        derivative_type: DerivativeType = DerivativeType.REAL,
        pass_manager: BasePassManager | None = None,
    ):
        if estimator is None:
            estimator = BatchedStatevectorEstimator()
        if not isinstance(estimator, BatchedStatevectorEstimator):
            raise TypeError(
                f"AdjointEstimatorGradient simulates with a BatchedStatevectorEstimator, not a "
                f"{type(estimator).__name__}: use BatchedParamShiftEstimatorGradient with other estimators"
            )
        super().__init__(estimator, options, derivative_type, pass_manager)

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

        first = circuits[0] if len(circuits) else None
        if all(c is first for c in circuits):  # EstimatorQNN: one circuit, batch x observables
            groups = {id(first): list(range(len(circuits)))} if len(circuits) else {}
        else:
            groups: dict[int, list[int]] = {}
            for i, circuit in enumerate(circuits):
                groups.setdefault(id(circuit), []).append(i)

        for members in groups.values():
            circuit, _ = self.to_run(circuits[members[0]], observables[members[0]])
            program = estimator.program(circuit)
            if isinstance(parameter_values, np.ndarray) and len(members) == len(parameter_values):
                values = np.asarray(parameter_values, dtype=float)
            else:
                values = np.asarray([parameter_values[i] for i in members], dtype=float)
            if values.ndim != 2 or values.shape[1] != len(program.parameters):
                raise ValueError(
                    f"a circuit with {len(program.parameters)} parameters got parameter sets "
                    f"of shape {values.shape}"
                )
            obs_keys: dict[int, int] = {}
            compiled = []
            obs_of = np.empty(len(members), dtype=int)
            for k, i in enumerate(members):
                key = id(observables[i])
                if key not in obs_keys:
                    obs_keys[key] = len(compiled)
                    compiled.append(estimator.observable(self.to_run(circuits[i], observables[i])[1]))
                obs_of[k] = obs_keys[key]
            rows, row_of = distinct_rows(values, len(compiled))
            # The estimator's forward pass on these parameter sets already has the final states.
            states = estimator.cached_states(program, rows)
            _, grads = adjoint_gradient(program, rows, compiled, state=states,
                                        single=estimator.single_precision, method=estimator.method)  # (K, R, P)
            full = grads[obs_of, row_of]  # (members, P)

            names = list(program.parameters)
            if len(members) == len(circuits) and all(p is None for p in parameters):
                gradients = list(full)  # the QNN's call: one group, every parameter
                metadata = [{"parameters": names} for _ in members]
                break
            column = None
            for k, i in enumerate(members):
                params = parameters[i]
                if params is None:
                    gradients[i] = full[k]
                    metadata[i] = {"parameters": names}
                    continue
                if column is None:
                    column = {p: j for j, p in enumerate(program.parameters)}
                try:
                    gradients[i] = full[k, [column[p] for p in params]]
                except KeyError as exc:
                    raise ValueError(f"parameter {exc.args[0]} is not in the circuit") from None
                metadata[i] = {"parameters": list(params)}
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))

    def vjp(self, circuit: QuantumCircuit, observables: Sequence[BaseOperator], parameter_values: np.ndarray,
            cotangent: np.ndarray) -> np.ndarray:
        """Σ_k cotangent[b, k] · d⟨O_k⟩/dθ for each parameter set b: (B, P), columns in the
        circuit's parameter order. What a backward pass through K readouts needs, without their
        K Jacobians (see :func:`~.adjoint_sweep.adjoint_vjp`). The final states come from the
        estimator's forward pass on the same values, as for :meth:`run`.

        Args:
            circuit: the circuit, with ``observables`` (K of them) read out.
            parameter_values: (B, P).
            cotangent: (B, K), the loss's gradient with respect to each row's K values.
        """
        estimator: BatchedStatevectorEstimator = self._estimator
        if not len(observables):
            raise ValueError("a vector-Jacobian product needs at least one observable")
        run_circuit = self.to_run(circuit, observables[0])[0]
        program = estimator.program(run_circuit)
        compiled = [estimator.observable(self.to_run(circuit, o)[1]) for o in observables]
        values = np.asarray(parameter_values, dtype=float)
        cotangent = np.asarray(cotangent, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(program.parameters) or cotangent.shape != (len(values), len(compiled)):
            raise ValueError(f"a circuit with {len(program.parameters)} parameters and {len(compiled)} observables got "
                             f"parameter sets of shape {values.shape} and a cotangent of shape {cotangent.shape}")
        return adjoint_vjp(program, values, compiled, cotangent.T, state=estimator.cached_states(program, values),
                           single=estimator.single_precision, method=estimator.method)
