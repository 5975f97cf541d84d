"""``BatchedParamShiftEstimatorGradient`` on instructions beyond plain gates (annotated operations,
boxes, delays, gates without a decomposition, control flow), and on a noisy seeded estimator."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import (
    AnnotatedOperation,
    ControlModifier,
    Gate,
    InverseModifier,
    Parameter,
    PowerModifier,
)
from qiskit.circuit.library import RXXGate, RYGate, RZGate
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

A, B = Parameter("a"), Parameter("b")
VALUES = [[0.3, 0.7], [-1.1, 2.0]]


def _gradients(grad, circuit, observable, values=VALUES):
    return np.asarray(grad.run([circuit] * len(values), [observable] * len(values), values).result().gradients)


def _param_shift(estimator=None):
    return BatchedParamShiftEstimatorGradient(estimator or BatchedStatevectorEstimator())


def _flat(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with every box replaced by its body."""
    out = circuit.copy_empty_like()
    for inst in circuit.data:
        if inst.operation.name == "box":
            out.compose(_flat(inst.operation.blocks[0]), qubits=list(inst.qubits), inplace=True)
        else:
            out.append(inst)
    return out


class BoxRunningEstimator(BatchedStatevectorEstimator):
    """Stands in for an estimator that runs boxes (ours refuses them): runs each body in place."""

    def __init__(self):
        super().__init__()
        self.seen: list[dict] = []

    def run(self, pubs, *, precision=None):
        pubs = list(pubs)
        self.seen.extend(pub[0].count_ops() for pub in pubs)
        return super().run([(_flat(pub[0]), *pub[1:]) for pub in pubs], precision=precision)


def test_annotated_operations_are_synthesized():
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.append(AnnotatedOperation(RYGate(A), InverseModifier()), [0])
    qc.append(AnnotatedOperation(RZGate(B), ControlModifier(1)), [0, 1])
    qc.append(AnnotatedOperation(RYGate(2 * A + B), PowerModifier(2)), [1])
    qc.append(AnnotatedOperation(RXXGate(A * B), [InverseModifier(), PowerModifier(3)]), [0, 1])
    obs = SparsePauliOp(["ZZ", "XI"], [1.0, 0.5])
    ours = _gradients(_param_shift(), qc, obs)
    np.testing.assert_allclose(ours, _gradients(AdjointEstimatorGradient(), qc, obs), atol=1e-10)
    # against central differences of the reference estimator
    est, eps = StatevectorEstimator(), 1e-6
    for row, values in zip(ours, np.asarray(VALUES)):
        for j in range(2):
            step = np.eye(2)[j] * eps
            plus, minus = (est.run([(qc, obs, values + s)]).result()[0].data.evs for s in (step, -step))
            assert row[j] == pytest.approx((plus - minus) / (2 * eps), abs=1e-6)


def test_an_annotated_operation_that_cannot_be_synthesized_is_named_in_one_line():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.append(AnnotatedOperation(RXXGate(A), PowerModifier(0.5)), [0, 1])
    with pytest.raises(ValueError, match="annotated rxx.*PowerModifier") as info:
        _param_shift().run([qc], [SparsePauliOp("ZZ")], [[0.3]]).result()
    assert "\n" not in str(info.value)


def test_gates_inside_a_box_are_shifted_inside_it():
    qc = QuantumCircuit(3)
    qc.h([0, 1, 2])
    with qc.box():
        qc.ry(A, 0)
        qc.crx(2 * B, 0, 1)  # decomposed inside the box
        with qc.box():
            qc.rzz(A * B, 1, 2)
    qc.rx(B, 2)
    obs = SparsePauliOp(["ZZI", "IXZ"], [1.0, -0.7])
    estimator = BoxRunningEstimator()
    ours = _gradients(_param_shift(estimator), qc, obs)
    assert estimator.seen and all("box" in ops for ops in estimator.seen)  # the boxes reach the estimator
    flat = _flat(qc)
    np.testing.assert_allclose(ours, _gradients(_param_shift(), flat, obs), atol=1e-12)
    np.testing.assert_allclose(ours, _gradients(AdjointEstimatorGradient(), flat, obs), atol=1e-10)


def test_a_box_on_our_estimator_is_refused_in_one_line_naming_it():
    """Ours simulates no box (nor do Qiskit's reference estimator and Aer): the gradient gets as
    far as the estimator, whose refusal names the box (no 'Length of ...' from the rewrite)."""
    qc = QuantumCircuit(2)
    with qc.box():
        qc.ry(A, 0)
        qc.cx(0, 1)
    qc.rx(B, 1)
    with pytest.raises(ValueError, match="box") as info:
        _param_shift().run([qc], [SparsePauliOp("ZZ")], [[0.3, 0.7]]).result()
    assert "\n" not in str(info.value) and "Length of" not in str(info.value)


def test_a_parametrized_gate_without_a_decomposition_is_named_in_one_line():
    qc = QuantumCircuit(1)
    qc.append(Gate("mystery", 1, [A]), [0])
    with pytest.raises(ValueError, match="'mystery'") as info:
        _param_shift().run([qc], [SparsePauliOp("Z")], [[0.3]]).result()
    assert "\n" not in str(info.value)


def test_parameters_inside_other_control_flow_are_refused_naming_it():
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.rx(A, 0)
    with pytest.raises(ValueError, match="'if_else'") as info:
        _param_shift().run([qc], [SparsePauliOp("Z")], [[0.3]]).result()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [BatchedParamShiftEstimatorGradient, AdjointEstimatorGradient])
def test_delays_are_the_identity_in_the_gradients(cls):
    qc = QuantumCircuit(2)
    qc.ry(A, 0)
    qc.delay(100, 0)
    qc.cx(0, 1)
    qc.delay(50, 1, unit="ns")
    qc.rx(B, 1)
    bare = QuantumCircuit(2)
    bare.ry(A, 0)
    bare.cx(0, 1)
    bare.rx(B, 1)
    obs = SparsePauliOp(["ZZ", "XI"])
    got = _gradients(cls(BatchedStatevectorEstimator()), qc, obs)
    np.testing.assert_allclose(got, _gradients(cls(BatchedStatevectorEstimator()), bare, obs), atol=1e-12)


@pytest.mark.parametrize("estimator", [
    pytest.param(BatchedStatevectorEstimator(default_precision=0.01, seed=7), id="ours"),
    pytest.param(StatevectorEstimator(default_precision=0.01, seed=7), id="qiskit-reference"),
])
def test_a_seeded_estimators_noise_cancels_in_the_shifts(estimator):
    """Such estimators draw their noise afresh for every PUB; the + and − shifts go in two PUBs of
    one shape, so each pair carries the same noise, as with qml's one PUB per shift."""
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.ry(A, 0)
    qc.rzz(A + B, 0, 1)
    qc.rx(B, 1)
    values = np.random.default_rng(3).uniform(-np.pi, np.pi, (6, 2))
    obs = SparsePauliOp(["ZI", "IZ"])
    exact = _gradients(_param_shift(), qc, obs, values)
    noisy = _gradients(_param_shift(estimator), qc, obs, values)
    np.testing.assert_allclose(noisy, exact, atol=1e-12)
