"""Our gradients keep qiskit-machine-learning's ``BaseEstimatorGradient`` contract, so that they drop
in wherever its own do: its constructor (``options=``, ``derivative_type=``, ``pass_manager=``),
validation in ``run()`` rather than ``result()``, options merged run > gradient > estimator."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import StatevectorEstimator
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_machine_learning.gradients import BaseEstimatorGradient, DerivativeType

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

A, B = Parameter("a"), Parameter("b")
Z = SparsePauliOp("Z")


def _rx() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.rx(A, 0)
    return qc


def _gradients():
    est = BatchedStatevectorEstimator()
    return [AdjointEstimatorGradient(est), BatchedParamShiftEstimatorGradient(est)]


@pytest.mark.parametrize("cls", [AdjointEstimatorGradient, BatchedParamShiftEstimatorGradient])
def test_constructor_takes_the_base_class_arguments(cls):
    est = BatchedStatevectorEstimator()
    grad = cls(est, options={"shots": 200}, derivative_type=DerivativeType.REAL, pass_manager=None)
    assert isinstance(grad, BaseEstimatorGradient) and grad.derivative_type is DerivativeType.REAL
    assert grad.options.get("shots") == 200
    res = grad.run([_rx()], [Z], [[1.0]]).result()
    assert res.options.get("shots") == 200
    np.testing.assert_allclose(res.gradients[0], [-np.sin(1.0)], atol=1e-9)
    grad.update_default_options(shots=100)
    assert grad.run([_rx()], [Z], [[1.0]], shots=300).result().options.get("shots") == 300
    assert grad.options.get("shots") == 100
    with pytest.raises(ValueError, match="derivative"):
        cls(est, derivative_type=DerivativeType.COMPLEX)


@pytest.mark.parametrize("grad", _gradients(), ids=["adjoint", "param_shift"])
def test_bad_arguments_fail_in_run(grad):
    qc = _rx()
    two = [[np.pi / 4], [np.pi / 2]]
    bad = [
        ([qc], [Z], two, None),  # more value sets than circuits
        ([qc, qc], [Z, Z], two, [[A]]),  # fewer parameter lists than circuits
        ([qc, qc], [Z], two, [[A]]),  # fewer observables than circuits
        ([qc], [Z], [[np.pi / 4, np.pi / 4]], None),  # more values than parameters
        ([qc], [SparsePauliOp("ZZ")], [[0.1]], None),  # observable wider than the circuit
        ([qc], [Z], [[0.1]], [[A, B]]),  # a parameter not in the circuit
        ([QuantumCircuit(1)], [Z], [[]], None),  # nothing to differentiate
    ]
    for circuits, observables, values, parameters in bad:
        with pytest.raises(ValueError):
            grad.run(circuits, observables, values, parameters=parameters)  # no .result()


def test_param_shift_lets_the_estimator_choose_its_precision():
    """No precision given: none is passed, so a shot-based estimator uses its own default."""
    seen = []

    class Recording(BatchedStatevectorEstimator):
        def run(self, pubs, *, precision=None):
            seen.append(precision)
            return super().run(pubs, precision=precision)

    grad = BatchedParamShiftEstimatorGradient(Recording(default_precision=0.0))
    np.testing.assert_allclose(grad.run([_rx()], [Z], [[1.0]]).result().gradients[0], [-np.sin(1.0)])
    assert seen == [None]
    BatchedParamShiftEstimatorGradient(Recording(), precision=0.0).run([_rx()], [Z], [[1.0]]).result()
    assert seen[-1] == 0.0


def test_adjoint_refuses_a_foreign_estimator_clearly():
    with pytest.raises(TypeError, match="BatchedStatevectorEstimator") as info:
        AdjointEstimatorGradient(StatevectorEstimator())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [AdjointEstimatorGradient, BatchedParamShiftEstimatorGradient])
def test_pass_manager_transpiles_circuit_and_observable(cls):
    backend = GenericBackendV2(num_qubits=3, seed=1)
    pm = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=1)
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.rzz(A, 0, 1)
    qc.ry(B, 1)
    obs = SparsePauliOp("XZ")
    grad = cls(BatchedStatevectorEstimator(), pass_manager=pm)
    values = [[0.4, -1.1]]
    got = grad.run([qc], [obs], values).result().gradients[0]
    want = AdjointEstimatorGradient().run([qc], [obs], values).result().gradients[0]
    np.testing.assert_allclose(got, want, atol=1e-9)
