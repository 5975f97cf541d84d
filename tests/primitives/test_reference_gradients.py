"""qiskit-machine-learning's estimator-gradient tests, with our gradients and estimator substituted.

Adapted from qiskit-machine-learning's ``test/gradients/test_estimator_gradient.py``
(Apache-2.0, (C) IBM 2019, 2025): the same circuits, values and expected gradients, for the
exact tests (``TestEstimatorGradient``) and the pass-manager ones (``TestEstimatorGradientV2``,
whose runtime estimator on a fake backend is replaced by our exact one, so the tolerance is the
exact tests'). SPSA and LinComb are not ours and are left out.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import efficient_su2, real_amplitudes
from qiskit.circuit.library.standard_gates import RXXGate, RYYGate, RZXGate, RZZGate
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

_BACKEND = GenericBackendV2(num_qubits=3, seed=123)
_PASS_MANAGER = generate_preset_pass_manager(optimization_level=1, backend=_BACKEND, seed_transpiler=123)
GRADIENTS = [
    pytest.param(AdjointEstimatorGradient, None, id="adjoint"),
    pytest.param(BatchedParamShiftEstimatorGradient, None, id="param_shift"),
    pytest.param(AdjointEstimatorGradient, _PASS_MANAGER, id="adjoint-pass_manager"),
    pytest.param(BatchedParamShiftEstimatorGradient, _PASS_MANAGER, id="param_shift-pass_manager"),
]
Z = SparsePauliOp.from_list([("Z", 1)])
ZI = SparsePauliOp.from_list([("ZI", 1)])


def _make(cls, pass_manager):
    return cls(estimator=BatchedStatevectorEstimator(), pass_manager=pass_manager)


def _hph() -> QuantumCircuit:
    a = Parameter("a")
    qc = QuantumCircuit(1)
    qc.h(0)
    qc.p(a, 0)
    qc.h(0)
    return qc


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_operators_single_circuit_and_p(cls, pm):
    gradient = _make(cls, pm)
    qc = _hph()
    for _ in range(2):
        np.testing.assert_allclose(gradient.run([qc], [Z], [[np.pi / 4]]).result().gradients[0], [-1 / np.sqrt(2)], atol=1e-3)
    np.testing.assert_allclose(gradient.run(qc, Z, [[np.pi / 4]]).result().gradients[0], [-1 / np.sqrt(2)], atol=1e-3)
    for value, want in [(np.pi / 4, -1 / np.sqrt(2)), (0, 0), (np.pi / 2, -1)]:
        np.testing.assert_allclose(gradient.run([qc], [Z], [[value]]).result().gradients[0], [want], atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_u(cls, pm):
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(1)
    qc.h(0)
    qc.u(a, b, c, 0)
    qc.h(0)
    gradient = _make(cls, pm)
    for values, want in [
        ([np.pi / 4, 0, 0], [-0.70710678, 0.0, 0.0]),
        ([np.pi / 4, np.pi / 4, np.pi / 4], [-0.35355339, -0.85355339, -0.85355339]),
    ]:
        np.testing.assert_allclose(gradient.run([qc], [Z], [values]).result().gradients[0], want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_efficient_su2(cls, pm):
    qc = efficient_su2(2, reps=1)
    gradient = _make(cls, pm)
    for value, want in [
        (np.pi / 4, [-0.35355339, -0.70710678, 0, 0.35355339, 0, -0.70710678, 0, 0]),
        (np.pi / 2, [0, 0, 0, 1, 0, 0, 0, 0]),
    ]:
        got = gradient.run([qc], [ZI], [[value] * qc.num_parameters]).result().gradients[0]
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
@pytest.mark.parametrize("gate", [RXXGate, RYYGate, RZZGate, RZXGate])
def test_two_qubit_gates(cls, pm, gate):
    for value, want in [(np.pi / 4, [-0.70710678]), (np.pi / 2, [-1])]:
        a = Parameter("a")
        qc = QuantumCircuit(2)
        if gate is RZZGate:
            qc.h([0, 1])
            qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
            qc.h([0, 1])
        else:
            qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
        got = _make(cls, pm).run([qc], [ZI], [[value]]).result().gradients[0]
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_parameter_coefficients(cls, pm):
    qc = real_amplitudes(num_qubits=2, reps=1)
    p = qc.parameters
    qc.rz(p[0].exp() + 2 * p[1], 0)
    qc.rx(3.0 * p[0] + p[1].sin(), 1)
    qc.u(p[0], p[1], p[3], 1)
    qc.p(2 * p[0] + 1, 0)
    qc.rxx(p[0] + 2, 0, 1)
    gradient = _make(cls, pm)
    for value, want in [
        (np.pi / 4, [-0.7266653, -0.4905135, -0.0068606, -0.9228880]),
        (np.pi / 2, [-3.5972095, 0.10237173, -0.3117748, 0]),
    ]:
        got = gradient.run([qc], [ZI], [[value] * qc.num_parameters]).result().gradients[0]
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_parameter_subsets_and_their_order(cls, pm):
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(1)
    qc.rx(a, 0)
    qc.rx(b, 0)
    got = _make(cls, pm).run([qc], [Z], [[np.pi / 4, np.pi / 2]], parameters=[[a]]).result().gradients[0]
    np.testing.assert_allclose(got, [-0.70710678], atol=1e-3)
    qc = QuantumCircuit(1)
    qc.rx(a, 0)
    qc.rz(b, 0)
    qc.rx(c, 0)
    values = [[np.pi / 4, np.pi / 2, np.pi / 3]]
    for params, want in [
        ([a, b, c], [-0.35355339, 0.61237244, -0.61237244]),
        ([c, b, a], [-0.61237244, 0.61237244, -0.35355339]),
        ([a, c], [-0.35355339, -0.61237244]),
        ([c, a], [-0.61237244, -0.35355339]),
    ]:
        got = _make(cls, pm).run([qc], [Z], values, parameters=[params]).result().gradients[0]
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_multiple_arguments(cls, pm):
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc, qc2, qc3 = QuantumCircuit(1), QuantumCircuit(1), QuantumCircuit(1)
    qc.rx(a, 0)
    qc2.rx(b, 0)
    qc3.rx(c, 0)
    qc3.ry(a, 0)
    gradient = _make(cls, pm)
    got = gradient.run([qc, qc2], [Z] * 2, [[np.pi / 4], [np.pi / 2]]).result().gradients
    np.testing.assert_allclose(got, [[-0.70710678], [-1]], atol=1e-3)
    values = [[np.pi / 4], [np.pi / 4, np.pi / 4], [np.pi / 4, np.pi / 4]]
    got = gradient.run([qc, qc3, qc3], [Z] * 3, values, parameters=[[a], [c], None]).result().gradients
    for g, want in zip(got, [[-0.70710678], [-0.5], [-0.5, -0.5]]):
        np.testing.assert_allclose(g, want, atol=1e-3)


@pytest.mark.parametrize("cls,pm", GRADIENTS)
def test_validation(cls, pm):
    a = Parameter("a")
    qc = QuantumCircuit(1)
    qc.rx(a, 0)
    gradient = _make(cls, pm)
    values = [[np.pi / 4], [np.pi / 2]]
    for args, kwargs in [
        (([qc], [Z], values), {}),
        (([qc, qc], [Z, Z], values), {"parameters": [[a]]}),
        (([qc, qc], [Z], values), {"parameters": [[a]]}),
        (([qc], [Z], [[np.pi / 4, np.pi / 4]]), {}),
    ]:
        with pytest.raises(ValueError):
            gradient.run(*args, **kwargs)


@pytest.mark.parametrize("cls", [AdjointEstimatorGradient, BatchedParamShiftEstimatorGradient])
def test_options(cls):
    a = Parameter("a")
    qc = QuantumCircuit(1)
    qc.rx(a, 0)
    est = BatchedStatevectorEstimator()
    gradient = cls(est, options={"shots": 200})
    assert gradient.options.get("shots") == 200
    assert gradient.run([qc], [Z], [[1]]).result().options.get("shots") == 200
    gradient.update_default_options(shots=100)
    assert gradient.options.get("shots") == 100
    assert gradient.run([qc], [Z], [[1]]).result().options.get("shots") == 100
    gradient = cls(est, options={"shots": 200})
    assert gradient.run([qc], [Z], [[1]], shots=300).result().options.get("shots") == 300
    assert gradient.options.get("shots") == 200  # run options do not stick


def test_operations_preserved():
    """Non-parametrized instructions reach the estimator as they are (initialize stays)."""
    x = Parameter("x")
    circuit = QuantumCircuit(2)
    circuit.initialize([0.5, 0.5, 0.5, 0.5])
    circuit.crx(x, 0, 1)
    seen = []

    class Logging(BatchedStatevectorEstimator):
        def run(self, pubs, *, precision=None):
            pubs = list(pubs)
            seen.extend(pub[0].count_ops() for pub in pubs)
            return super().run(pubs, precision=precision)

    for cls in (BatchedParamShiftEstimatorGradient, AdjointEstimatorGradient):
        result = cls(Logging()).run([circuit], [SparsePauliOp(["XX"])], [[np.pi / 2]]).result()
        assert result.gradients[0].item() == pytest.approx(-1 / (2 * np.sqrt(2)), abs=1e-5)
    assert seen and all("initialize" in ops for ops in seen)
