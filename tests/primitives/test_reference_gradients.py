"""qiskit-machine-learning's estimator-gradient tests, with our gradients and estimator substituted.

Adapted from qiskit-machine-learning's ``test/gradients/test_estimator_gradient.py``
(Apache-2.0, (C) IBM 2019, 2025; the file of the 0.9 branch, unchanged since but for its
copyright lines; 0.9.1 is installed): the same circuits, values, assertions and tolerances,
under upstream's class and method names. ``assertAlmostEqual(a, b, places)`` is unittest's own.
Upstream runs each ``gradient_factories`` test with ``ParamShiftEstimatorGradient`` and with
``LinCombEstimatorGradient``; here with ``BatchedParamShiftEstimatorGradient`` in the first's
place and ``AdjointEstimatorGradient`` (exact, like LinComb) in the second's. Upstream's exact
estimator, ``QMLEstimator()`` (precision 0), is our ``BatchedStatevectorEstimator()``
(precision 0), its ``LoggingEstimator`` a logging subclass of ours, and SPSA stays qml's own
``SPSAEstimatorGradient``, run on our estimator. ``TestEstimatorGradientRuntime`` keeps
upstream's estimator: IBM Runtime's ``EstimatorV2`` in a local session on
``GenericBackendV2(num_qubits=3, seed=123)`` (Aer, shots, the fake backend's noise), with
upstream's pass manager and its looser tolerances.

47 upstream tests (ddt counts each ``@data`` case: 24 in ``TestEstimatorGradient``, 23 in
``TestEstimatorGradientRuntime``), 47 adapted here, 10 deviations:

* the 10 ``TestEstimatorGradientRuntime`` tests with ``LinCombEstimatorGradient``
  (``test_gradient_operators``, ``test_single_circuit_observable``, ``test_gradient_p``,
  ``test_gradient_u``, ``test_gradient_efficient_su2``, ``test_gradient_2qubit_gate``,
  ``test_gradient_parameter_coefficient``, ``test_gradient_parameters``,
  ``test_gradient_multi_arguments``, ``test_gradient_validation``): ``AdjointEstimatorGradient``
  simulates with our estimator only (it refuses any other), so it runs on our exact estimator,
  behind upstream's pass manager and with upstream's tolerances, not on the runtime estimator.

Not a deviation, but worth knowing: in ``test_operations_preserved`` the adjoint gradient sends
no PUB to the estimator (it simulates with the estimator's compiled programs), so upstream's
check that every PUB keeps its ``initialize`` holds for it trivially; the result check does not.
"""

from __future__ import annotations

import unittest

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import efficient_su2, real_amplitudes
from qiskit.circuit.library.standard_gates import RXXGate, RYYGate, RZXGate, RZZGate
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager
from qiskit_ibm_runtime import EstimatorV2, Session
from qiskit_ibm_runtime.options import EstimatorOptions, SimulatorOptions
from qiskit_machine_learning.gradients import SPSAEstimatorGradient

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

# upstream: gradient_factories = [ParamShiftEstimatorGradient, LinCombEstimatorGradient]
gradient_factories = [
    pytest.param(BatchedParamShiftEstimatorGradient, id="ParamShift=BatchedParamShift"),
    pytest.param(AdjointEstimatorGradient, id="LinComb=Adjoint"),
]
operations_preserved_factories = [
    pytest.param(BatchedParamShiftEstimatorGradient, id="ParamShift=BatchedParamShift"),
    pytest.param(AdjointEstimatorGradient, id="LinComb=Adjoint"),
    pytest.param(SPSAEstimatorGradient, id="SPSA"),
]
_unittest = unittest.TestCase()


def assert_almost_equal(first, second, places):
    """unittest's ``assertAlmostEqual(first, second, places)``: round(|first - second|, places) == 0."""
    _unittest.assertAlmostEqual(first, second, places)


class LoggingEstimator(BatchedStatevectorEstimator):
    """An estimator checking what operations were in the circuits it executed (as upstream's)."""

    def __init__(self, operations_callback=None):
        super().__init__()
        self.operations_callback = operations_callback

    def run(self, pubs, **run_options):
        pubs = list(pubs)
        if self.operations_callback is not None:
            ops = [pub[0].count_ops() for pub in pubs]
            self.operations_callback(ops)
        return super().run(pubs, **run_options)


def _operations_preserved(gradient_cls):
    """Upstream's ``test_operations_preserved``, the same in both classes."""
    x = Parameter("x")
    circuit = QuantumCircuit(2)
    circuit.initialize([0.5, 0.5, 0.5, 0.5])  # this should remain as initialize
    circuit.crx(x, 0, 1)  # this should get unrolled
    values = [np.pi / 2]
    expect = -1 / (2 * np.sqrt(2))
    observable = SparsePauliOp(["XX"])
    ops = []

    def operations_callback(op):
        ops.append(op)

    estimator = LoggingEstimator(operations_callback=operations_callback)
    if gradient_cls in [SPSAEstimatorGradient]:
        gradient = gradient_cls(estimator, epsilon=0.01)
    else:
        gradient = gradient_cls(estimator)
    result = gradient.run([circuit], [observable], [values]).result()
    # subTest "assert initialize is preserved"
    assert all("initialize" in ops_i[0].keys() for ops_i in ops)
    # subTest "assert result is correct"
    assert_almost_equal(result.gradients[0].item(), expect, places=5)


class TestEstimatorGradient:
    """Test Estimator Gradient"""

    @pytest.fixture(autouse=True)
    def _estimator(self):
        self.estimator = BatchedStatevectorEstimator()

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_operators(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = grad(self.estimator)
        op = SparsePauliOp.from_list([("Z", 1)])
        correct_result = -1 / np.sqrt(2)
        param = [np.pi / 4]
        value = gradient.run([qc], [op], [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 3)
        op = SparsePauliOp.from_list([("Z", 1)])
        value = gradient.run([qc], [op], [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_single_circuit_observable(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = grad(self.estimator)
        op = SparsePauliOp.from_list([("Z", 1)])
        correct_result = -1 / np.sqrt(2)
        param = [np.pi / 4]
        value = gradient.run(qc, op, [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_p(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = grad(self.estimator)
        op = SparsePauliOp.from_list([("Z", 1)])
        param_list = [[np.pi / 4], [0], [np.pi / 2]]
        correct_results = [[-1 / np.sqrt(2)], [0], [-1]]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            for j, value in enumerate(gradients):
                assert_almost_equal(value, correct_results[i][j], 3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_u(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        c = Parameter("c")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.u(a, b, c, 0)
        qc.h(0)
        gradient = grad(self.estimator)
        op = SparsePauliOp.from_list([("Z", 1)])
        param_list = [[np.pi / 4, 0, 0], [np.pi / 4, np.pi / 4, np.pi / 4]]
        correct_results = [[-0.70710678, 0.0, 0.0], [-0.35355339, -0.85355339, -0.85355339]]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            for j, value in enumerate(gradients):
                assert_almost_equal(value, correct_results[i][j], 3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_efficient_su2(self, grad):
        qc = efficient_su2(2, reps=1)
        op = SparsePauliOp.from_list([("ZI", 1)])
        gradient = grad(self.estimator)
        param_list = [[np.pi / 4 for param in qc.parameters], [np.pi / 2 for param in qc.parameters]]
        correct_results = [
            [-0.35355339, -0.70710678, 0, 0.35355339, 0, -0.70710678, 0, 0],
            [0, 0, 0, 1, 0, 0, 0, 0],
        ]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_2qubit_gate(self, grad):
        for gate in [RXXGate, RYYGate, RZZGate, RZXGate]:
            param_list = [[np.pi / 4], [np.pi / 2]]
            correct_results = [[-0.70710678], [-1]]
            op = SparsePauliOp.from_list([("ZI", 1)])
            for i, param in enumerate(param_list):
                a = Parameter("a")
                qc = QuantumCircuit(2)
                gradient = grad(self.estimator)
                if gate is RZZGate:
                    qc.h([0, 1])
                    qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
                    qc.h([0, 1])
                else:
                    qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
                gradients = gradient.run([qc], [op], [param]).result().gradients[0]
                np.testing.assert_allclose(gradients, correct_results[i], atol=1e-3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_parameter_coefficient(self, grad):
        qc = real_amplitudes(num_qubits=2, reps=1)
        qc.rz(qc.parameters[0].exp() + 2 * qc.parameters[1], 0)
        qc.rx(3.0 * qc.parameters[0] + qc.parameters[1].sin(), 1)
        qc.u(qc.parameters[0], qc.parameters[1], qc.parameters[3], 1)
        qc.p(2 * qc.parameters[0] + 1, 0)
        qc.rxx(qc.parameters[0] + 2, 0, 1)
        gradient = grad(self.estimator)
        param_list = [[np.pi / 4 for _ in qc.parameters], [np.pi / 2 for _ in qc.parameters]]
        correct_results = [
            [-0.7266653, -0.4905135, -0.0068606, -0.9228880],
            [-3.5972095, 0.10237173, -0.3117748, 0],
        ]
        op = SparsePauliOp.from_list([("ZI", 1)])
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_parameters(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc.rx(b, 0)
        gradient = grad(self.estimator)
        param_list = [[np.pi / 4, np.pi / 2]]
        correct_results = [[-0.70710678]]
        op = SparsePauliOp.from_list([("Z", 1)])
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param], parameters=[[a]]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-3)
        # subTest "The order of gradients"
        c = Parameter("c")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc.rz(b, 0)
        qc.rx(c, 0)
        param_list = [[np.pi / 4, np.pi / 2, np.pi / 3]]
        correct_results = [
            [-0.35355339, 0.61237244, -0.61237244],
            [-0.61237244, 0.61237244, -0.35355339],
            [-0.35355339, -0.61237244],
            [-0.61237244, -0.35355339],
        ]
        param = [[a, b, c], [c, b, a], [a, c], [c, a]]
        op = SparsePauliOp.from_list([("Z", 1)])
        for i, p in enumerate(param):
            gradient = grad(self.estimator)
            gradients = gradient.run([qc], [op], param_list, parameters=[p]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_multi_arguments(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc2 = QuantumCircuit(1)
        qc2.rx(b, 0)
        gradient = grad(self.estimator)
        param_list = [[np.pi / 4], [np.pi / 2]]
        correct_results = [[-0.70710678], [-1]]
        op = SparsePauliOp.from_list([("Z", 1)])
        gradients = gradient.run([qc, qc2], [op] * 2, param_list).result().gradients
        np.testing.assert_allclose(gradients, correct_results, atol=1e-3)
        c = Parameter("c")
        qc3 = QuantumCircuit(1)
        qc3.rx(c, 0)
        qc3.ry(a, 0)
        param_list2 = [[np.pi / 4], [np.pi / 4, np.pi / 4], [np.pi / 4, np.pi / 4]]
        correct_results2 = [[-0.70710678], [-0.5], [-0.5, -0.5]]
        gradients2 = (
            gradient.run([qc, qc3, qc3], [op] * 3, param_list2, parameters=[[a], [c], None]).result().gradients
        )
        np.testing.assert_allclose(gradients2[0], correct_results2[0], atol=1e-3)
        np.testing.assert_allclose(gradients2[1], correct_results2[1], atol=1e-3)
        np.testing.assert_allclose(gradients2[2], correct_results2[2], atol=1e-3)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_validation(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        gradient = grad(self.estimator)
        param_list = [[np.pi / 4], [np.pi / 2]]
        op = SparsePauliOp.from_list([("Z", 1)])
        with pytest.raises(ValueError):
            gradient.run([qc], [op], param_list)
        with pytest.raises(ValueError):
            gradient.run([qc, qc], [op, op], param_list, parameters=[[a]])
        with pytest.raises(ValueError):
            gradient.run([qc, qc], [op], param_list, parameters=[[a]])
        with pytest.raises(ValueError):
            gradient.run([qc], [op], [[np.pi / 4, np.pi / 4]])

    def test_spsa_gradient(self):
        with pytest.raises(ValueError):
            _ = SPSAEstimatorGradient(self.estimator, epsilon=-0.1)
        a = Parameter("a")
        b = Parameter("b")
        qc = QuantumCircuit(2)
        qc.rx(b, 0)
        qc.rx(a, 1)
        param_list = [[1, 1]]
        correct_results = [[-0.84147098, 0.84147098]]
        op = SparsePauliOp.from_list([("ZI", 1)])
        gradient = SPSAEstimatorGradient(self.estimator, epsilon=1e-6, seed=123)
        gradients = gradient.run([qc], [op], param_list).result().gradients
        np.testing.assert_allclose(gradients, correct_results, atol=1e-3)
        # subTest "Multiple parameters"
        gradient = SPSAEstimatorGradient(self.estimator, epsilon=1e-6, seed=123)
        param_list2 = [[1, 1], [1, 1], [3, 3]]
        gradients2 = (
            gradient.run([qc] * 3, [op] * 3, param_list2, parameters=[None, [b], None]).result().gradients
        )
        correct_results2 = [[-0.84147098, 0.84147098], [0.84147098], [-0.14112001, 0.14112001]]
        for grad, correct in zip(gradients2, correct_results2):
            np.testing.assert_allclose(grad, correct, atol=1e-3)
        # subTest "Batch size"
        correct_results = [[-0.84147098, 0.1682942]]
        gradient = SPSAEstimatorGradient(self.estimator, epsilon=1e-6, batch_size=5, seed=123)
        gradients = gradient.run([qc], [op], param_list).result().gradients
        np.testing.assert_allclose(gradients, correct_results, atol=1e-3)
        # subTest "The order of gradients"
        gradient = SPSAEstimatorGradient(self.estimator, epsilon=1e-6, seed=123)
        c = Parameter("c")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc.rz(b, 0)
        qc.rx(c, 0)
        op = SparsePauliOp.from_list([("Z", 1)])
        param_list3 = [[np.pi / 4, np.pi / 2, np.pi / 3]]
        param = [[a, b, c], [c, b, a], [a, c], [c, a]]
        expected = [
            [-0.3535525, 0.3535525, 0.3535525],
            [0.3535525, 0.3535525, -0.3535525],
            [-0.3535525, 0.3535525],
            [0.3535525, -0.3535525],
        ]
        for i, p in enumerate(param):
            gradient = SPSAEstimatorGradient(self.estimator, epsilon=1e-6, seed=123)
            gradients = gradient.run([qc], [op], param_list3, parameters=[p]).result().gradients[0]
            np.testing.assert_allclose(gradients, expected[i], atol=1e-3)

    @pytest.mark.parametrize("gradient_cls", operations_preserved_factories)
    def test_operations_preserved(self, gradient_cls):
        _operations_preserved(gradient_cls)


@pytest.mark.filterwarnings("ignore:The EstimatorV2 class is deprecated:DeprecationWarning")
class TestEstimatorGradientRuntime:
    """Test Estimator Gradient for IBM Runtime"""

    @pytest.fixture(autouse=True)
    def _estimator(self):
        backend = GenericBackendV2(num_qubits=3, seed=123)
        session = Session(backend=backend)
        simopts = SimulatorOptions(seed_simulator=123)
        estopts = EstimatorOptions(simulator=simopts)
        self.estimator = EstimatorV2(mode=session, options=estopts)
        self.pass_manager = generate_preset_pass_manager(optimization_level=1, backend=backend)

    def _gradient(self, grad):
        if grad is AdjointEstimatorGradient:  # DEVIATION (module docstring): ours, not the runtime's
            return grad(estimator=BatchedStatevectorEstimator(), pass_manager=self.pass_manager)
        return grad(estimator=self.estimator, pass_manager=self.pass_manager)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_operators(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = self._gradient(grad)
        op = SparsePauliOp.from_list([("Z", 1)])
        correct_result = -1 / np.sqrt(2)
        param = [np.pi / 4]
        value = gradient.run([qc], [op], [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 1)
        op = SparsePauliOp.from_list([("Z", 1)])
        value = gradient.run([qc], [op], [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_single_circuit_observable(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = self._gradient(grad)
        op = SparsePauliOp.from_list([("Z", 1)])
        correct_result = -1 / np.sqrt(2)
        param = [np.pi / 4]
        value = gradient.run(qc, op, [param]).result().gradients[0]
        assert_almost_equal(value[0], correct_result, 1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_p(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.p(a, 0)
        qc.h(0)
        gradient = self._gradient(grad)
        op = SparsePauliOp.from_list([("Z", 1)])
        param_list = [[np.pi / 4], [0], [np.pi / 2]]
        correct_results = [[-1 / np.sqrt(2)], [0], [-1]]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            for j, value in enumerate(gradients):
                assert_almost_equal(value, correct_results[i][j], 1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_u(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        c = Parameter("c")
        qc = QuantumCircuit(1)
        qc.h(0)
        qc.u(a, b, c, 0)
        qc.h(0)
        gradient = self._gradient(grad)
        op = SparsePauliOp.from_list([("Z", 1)])
        param_list = [[np.pi / 4, 0, 0], [np.pi / 4, np.pi / 4, np.pi / 4]]
        correct_results = [[-0.70710678, 0.0, 0.0], [-0.35355339, -0.85355339, -0.85355339]]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            for j, value in enumerate(gradients):
                assert_almost_equal(value, correct_results[i][j], 1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_efficient_su2(self, grad):
        qc = efficient_su2(2, reps=1)
        op = SparsePauliOp.from_list([("ZI", 1)])
        gradient = self._gradient(grad)
        param_list = [[np.pi / 4 for param in qc.parameters], [np.pi / 2 for param in qc.parameters]]
        correct_results = [
            [-0.35355339, -0.70710678, 0, 0.35355339, 0, -0.70710678, 0, 0],
            [0, 0, 0, 1, 0, 0, 0, 0],
        ]
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-1, rtol=1e-1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_2qubit_gate(self, grad):
        for gate in [RXXGate, RYYGate, RZZGate, RZXGate]:
            param_list = [[np.pi / 4], [np.pi / 2]]
            correct_results = [[-0.70710678], [-1]]
            op = SparsePauliOp.from_list([("ZI", 1)])
            for i, param in enumerate(param_list):
                a = Parameter("a")
                qc = QuantumCircuit(2)
                gradient = self._gradient(grad)
                if gate is RZZGate:
                    qc.h([0, 1])
                    qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
                    qc.h([0, 1])
                else:
                    qc.append(gate(a), [qc.qubits[0], qc.qubits[1]], [])
                gradients = gradient.run([qc], [op], [param]).result().gradients[0]
                np.testing.assert_allclose(gradients, correct_results[i], atol=1e-1, rtol=1e-1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_parameter_coefficient(self, grad):
        qc = real_amplitudes(num_qubits=2, reps=1)
        qc.rz(qc.parameters[0].exp() + 2 * qc.parameters[1], 0)
        qc.rx(3.0 * qc.parameters[0] + qc.parameters[1].sin(), 1)
        qc.u(qc.parameters[0], qc.parameters[1], qc.parameters[3], 1)
        qc.p(2 * qc.parameters[0] + 1, 0)
        qc.rxx(qc.parameters[0] + 2, 0, 1)
        gradient = self._gradient(grad)
        param_list = [[np.pi / 4 for _ in qc.parameters], [np.pi / 2 for _ in qc.parameters]]
        correct_results = [
            [-0.7266653, -0.4905135, -0.0068606, -0.9228880],
            [-3.5972095, 0.10237173, -0.3117748, 0],
        ]
        op = SparsePauliOp.from_list([("ZI", 1)])
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-1, rtol=1e-1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_parameters(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc.rx(b, 0)
        gradient = self._gradient(grad)
        param_list = [[np.pi / 4, np.pi / 2]]
        correct_results = [[-0.70710678]]
        op = SparsePauliOp.from_list([("Z", 1)])
        for i, param in enumerate(param_list):
            gradients = gradient.run([qc], [op], [param], parameters=[[a]]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-1, rtol=1e-1)
        # subTest "The order of gradients"
        c = Parameter("c")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc.rz(b, 0)
        qc.rx(c, 0)
        param_list = [[np.pi / 4, np.pi / 2, np.pi / 3]]
        correct_results = [
            [-0.35355339, 0.61237244, -0.61237244],
            [-0.61237244, 0.61237244, -0.35355339],
            [-0.35355339, -0.61237244],
            [-0.61237244, -0.35355339],
        ]
        param = [[a, b, c], [c, b, a], [a, c], [c, a]]
        op = SparsePauliOp.from_list([("Z", 1)])
        for i, p in enumerate(param):
            gradient = self._gradient(grad)
            gradients = gradient.run([qc], [op], param_list, parameters=[p]).result().gradients[0]
            np.testing.assert_allclose(gradients, correct_results[i], atol=1e-1, rtol=1e-1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_multi_arguments(self, grad):
        a = Parameter("a")
        b = Parameter("b")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        qc2 = QuantumCircuit(1)
        qc2.rx(b, 0)
        gradient = self._gradient(grad)
        param_list = [[np.pi / 4], [np.pi / 2]]
        correct_results = [[-0.70710678], [-1]]
        op = SparsePauliOp.from_list([("Z", 1)])
        gradients = gradient.run([qc, qc2], [op] * 2, param_list).result().gradients
        np.testing.assert_allclose(gradients, correct_results, atol=1e-1, rtol=1e-1)
        c = Parameter("c")
        qc3 = QuantumCircuit(1)
        qc3.rx(c, 0)
        qc3.ry(a, 0)
        param_list2 = [[np.pi / 4], [np.pi / 4, np.pi / 4], [np.pi / 4, np.pi / 4]]
        correct_results2 = [[-0.70710678], [-0.5], [-0.5, -0.5]]
        gradients2 = (
            gradient.run([qc, qc3, qc3], [op] * 3, param_list2, parameters=[[a], [c], None]).result().gradients
        )
        np.testing.assert_allclose(gradients2[0], correct_results2[0], atol=1e-1, rtol=1e-1)
        np.testing.assert_allclose(gradients2[1], correct_results2[1], atol=1e-1, rtol=1e-1)
        np.testing.assert_allclose(gradients2[2], correct_results2[2], atol=1e-1, rtol=1e-1)

    @pytest.mark.parametrize("grad", gradient_factories)
    def test_gradient_validation(self, grad):
        a = Parameter("a")
        qc = QuantumCircuit(1)
        qc.rx(a, 0)
        gradient = self._gradient(grad)
        param_list = [[np.pi / 4], [np.pi / 2]]
        op = SparsePauliOp.from_list([("Z", 1)])
        with pytest.raises(ValueError):
            gradient.run([qc], [op], param_list)
        with pytest.raises(ValueError):
            gradient.run([qc, qc], [op, op], param_list, parameters=[[a]])
        with pytest.raises(ValueError):
            gradient.run([qc, qc], [op], param_list, parameters=[[a]])
        with pytest.raises(ValueError):
            gradient.run([qc], [op], [[np.pi / 4, np.pi / 4]])

    @pytest.mark.parametrize("gradient_cls", operations_preserved_factories)
    def test_operations_preserved(self, gradient_cls):
        _operations_preserved(gradient_cls)
