"""What our gradients share with qiskit-machine-learning's ``BaseEstimatorGradient``, done once
per distinct circuit instead of once per (circuit, observable, parameter set) triple.

EstimatorQNN's backward pass hands its gradient ``batch x observables`` triples that all share
one circuit; the base class checks every triple separately (a set comparison of parameters per
circuit), which costs more than our gradients themselves. The checks and their messages are the
base class's, and they are made in ``run()`` (a bad argument never reaches ``result()``); the
constructor takes the base class's arguments (``options``, ``derivative_type``,
``pass_manager``), and options merge as there: ``run`` > gradient > estimator.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import copy

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.providers import Options
from qiskit.quantum_info import SparsePauliOp
from qiskit.quantum_info.operators.base_operator import BaseOperator
from qiskit.transpiler.passmanager import BasePassManager
from qiskit_machine_learning.algorithm_job import AlgorithmJob
from qiskit_machine_learning.gradients import BaseEstimatorGradient, DerivativeType

from .caches import CircuitCache
from .estimator import EagerJob


class EagerAlgorithmJob(EagerJob, AlgorithmJob):
    """An AlgorithmJob that computes when submitted (see :class:`~.estimator.EagerJob`)."""

    def submit(self) -> None:
        self._submit()  # AlgorithmJob.submit would reach PrimitiveJob's threaded _submit


class BatchedEstimatorGradient(BaseEstimatorGradient):
    """Base of :class:`~.adjoint_gradient.AdjointEstimatorGradient` and
    :class:`~.param_shift.BatchedParamShiftEstimatorGradient`.

    Args:
        estimator: the V2 estimator.
        options: default run options (recorded in each result, as by the base class).
        derivative_type: only ``DerivativeType.REAL``: both compute d⟨O⟩/dθ.
        pass_manager: transpiles each circuit (once per circuit) before it runs; observables
            follow its layout.
        cache_size: how many circuits' derived forms to keep.

    Raises:
        ValueError: for a derivative type other than REAL.
    """

    def __init__(
        self,
        estimator,
        options: Options | None = None,
        derivative_type: DerivativeType = DerivativeType.REAL,
        pass_manager: BasePassManager | None = None,
        *,
        cache_size: int = 32,
    ):
        if derivative_type != DerivativeType.REAL:
            raise ValueError(f"{type(self).__name__} computes real derivatives only (DerivativeType.REAL), "
                             f"not {derivative_type}")
        super().__init__(estimator, options, derivative_type, pass_manager)
        self._isa: CircuitCache[QuantumCircuit] = CircuitCache(self._transpile, cache_size)

    def run(
        self,
        circuits: Sequence[QuantumCircuit],
        observables: Sequence[BaseOperator],
        parameter_values: Sequence[Sequence[float]] | np.ndarray,
        parameters: Sequence[Sequence[Parameter] | None] | None = None,
        **options,
    ) -> AlgorithmJob:
        if isinstance(circuits, QuantumCircuit):
            circuits = (circuits,)
        if isinstance(observables, BaseOperator):
            observables = (observables,)
        if parameters is None:
            parameters = [None] * len(circuits)
        validate_arguments(circuits, observables, parameter_values, parameters)
        opts = copy(self._default_options)
        opts.update_options(**options)
        job = EagerAlgorithmJob(self._run, circuits, observables, parameter_values, parameters, **opts.__dict__)
        job.submit()
        return job

    def _get_local_options(self, options) -> Options:
        # The base class copies ``estimator.options``, which V2 estimators need not have.
        base = getattr(self._estimator, "options", None)
        opts = copy(base) if isinstance(base, Options) else Options()
        opts.update_options(**options)
        return opts

    # -- the pass manager -----------------------------------------------------------------

    def _transpile(self, circuit: QuantumCircuit) -> QuantumCircuit:
        isa = self._pass_manager.run(circuit)
        if set(isa.parameters) != set(circuit.parameters):
            raise ValueError("the pass manager removed or added circuit parameters; their gradients cannot be mapped back")
        return isa

    def to_run(self, circuit: QuantumCircuit, observable: BaseOperator) -> tuple[QuantumCircuit, SparsePauliOp]:
        """The circuit and observable as they run: transpiled by the pass manager, if any."""
        obs = observable if isinstance(observable, SparsePauliOp) else SparsePauliOp(observable)
        if self._pass_manager is None:
            return circuit, obs
        isa = self._isa.get(circuit)
        return isa, obs.apply_layout(isa.layout)


def validate_arguments(circuits, observables, parameter_values, parameters) -> None:
    """``BaseEstimatorGradient._validate_arguments``, with its messages, once per distinct circuit.

    Raises:
        ValueError: Invalid arguments are given.
    """
    n = len(circuits)
    if n != len(parameter_values):
        raise ValueError(f"The number of circuits ({n}) does not match the number of parameter value sets "
                         f"({len(parameter_values)}).")
    if n != len(observables):
        raise ValueError(f"The number of circuits ({n}) does not match the number of observables ({len(observables)}).")
    if n != len(parameters):
        raise ValueError(f"The number of circuits ({n}) does not match the number of the list of specified "
                         f"parameters ({len(parameters)}).")
    if not n:
        return
    first = circuits[0]
    if all(c is first for c in circuits):  # EstimatorQNN's call: every triple checked at once
        _check_triples(0, first, parameter_values, observables, parameters)
        return
    for i, circuit in enumerate(circuits):
        _check_triples(i, circuit, parameter_values[i : i + 1], observables[i : i + 1], parameters[i : i + 1])


def _check_triples(i: int, circuit: QuantumCircuit, values, observables, parameters) -> None:
    """The checks for triples that share ``circuit`` (the first of them is the ``i``-th)."""
    if not circuit.num_parameters:
        raise ValueError(f"The {i}-th circuit is not parameterised.")
    if isinstance(values, np.ndarray) and values.ndim == 2:
        widths = {values.shape[1]}
    else:
        widths = {len(v) for v in values}
    for width in widths - {circuit.num_parameters}:
        raise ValueError(f"The number of values ({width}) does not match the number of parameters "
                         f"({circuit.num_parameters}) for the {i}-th circuit.")
    for obs in {id(o): o for o in observables}.values():
        if obs.num_qubits != circuit.num_qubits:
            raise ValueError(f"The number of qubits of the {i}-th circuit ({circuit.num_qubits}) does not match "
                             f"the number of qubits of the {i}-th observable ({obs.num_qubits}).")
    for params in {id(p): p for p in parameters if p is not None}.values():
        if not set(params).issubset(circuit.parameters):
            raise ValueError(f"The {i}-th parameters contains parameters not present in the {i}-th circuit.")
