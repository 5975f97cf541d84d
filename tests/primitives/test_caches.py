"""Caches that can neither be reused by another object nor go stale: what is kept by id() must never
reach a new object at a freed one's address (silently wrong gradients), and a circuit or observable
edited in place is compiled again."""

from __future__ import annotations

import gc
import weakref

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

THETA = Parameter("θ")
Z = SparsePauliOp("Z")


def _ry_rx(alpha: float) -> QuantumCircuit:
    """RX(α)·RY(θ)|0⟩: ⟨Z⟩ = cos θ cos α."""
    qc = QuantumCircuit(1)
    qc.ry(THETA, 0)
    qc.rx(alpha, 0)
    return qc


def _varied(rng, theta: float) -> tuple[QuantumCircuit, float]:
    """RX(b)·RZ(φ_k)···RZ(φ_1)·RY(θ)|0⟩ with 1-4 RZ gates (programs of varied sizes, so that
    freed ones' memory is handed around), and its exact d⟨Z⟩/dθ."""
    phis, b = rng.uniform(-3, 3, int(rng.integers(1, 5))), rng.uniform(-3, 3)
    qc = QuantumCircuit(1)
    qc.ry(THETA, 0)
    for phi in phis:
        qc.rz(phi, 0)
    qc.rx(b, 0)
    phi = phis.sum()
    return qc, np.cos(theta) * np.sin(phi) * np.sin(b) - np.sin(theta) * np.cos(b)


def test_adjoint_gradient_survives_program_ids_being_reused():
    """A one-program compile cache and thousands of distinct circuits at the same parameter
    values: freed programs' ids come back, and a final-state cache keyed by id alone handed new
    circuits the final states of old ones (a wrong gradient, silently: 2-19 of these 900)."""
    est = BatchedStatevectorEstimator(cache_size=1)
    grad = AdjointEstimatorGradient(est)
    rng, theta = np.random.default_rng(0), 0.7
    wrong = 0
    for _ in range(30):
        est.run([(_varied(rng, theta)[0], Z, [[theta]]) for _ in range(16)]).result()
        cases = [_varied(rng, theta) for _ in range(30)]
        got = grad.run([c for c, _ in cases], [Z] * len(cases), [[theta]] * len(cases)).result()
        wrong += sum(not np.isclose(g[0], want, atol=1e-12) for g, (_, want) in zip(got.gradients, cases))
    assert wrong == 0


def test_a_cached_final_state_keeps_its_program_alive():
    """Why ids cannot come back: while a program's final states are cached, the program is held."""
    est = BatchedStatevectorEstimator(cache_size=1)
    first = _ry_rx(0.1)
    est.run([(first, Z, [[0.2]])]).result()
    program = weakref.ref(est.program(first))
    est.program(_ry_rx(0.5))  # evicts ``first`` from the compile cache
    gc.collect()
    assert program() is not None


def test_in_place_circuit_edits_are_seen_by_estimator_and_gradients():
    est = BatchedStatevectorEstimator()
    adjoint, shift = AdjointEstimatorGradient(est), BatchedParamShiftEstimatorGradient(est)
    qc = QuantumCircuit(1)
    qc.ry(THETA, 0)
    assert est.run([(qc, Z, [0.0])]).result()[0].data.evs == 1.0
    np.testing.assert_allclose(adjoint.run([qc], [Z], [[0.3]]).result().gradients[0], [-np.sin(0.3)])
    np.testing.assert_allclose(shift.run([qc], [Z], [[0.3]]).result().gradients[0], [-np.sin(0.3)])
    qc.x(0)  # the same object, now ending in X: every sign flips
    assert est.run([(qc, Z, [0.0])]).result()[0].data.evs == -1.0
    np.testing.assert_allclose(adjoint.run([qc], [Z], [[0.3]]).result().gradients[0], [np.sin(0.3)])
    np.testing.assert_allclose(shift.run([qc], [Z], [[0.3]]).result().gradients[0], [np.sin(0.3)])
    qc.data[1] = qc.data[1].replace(operation=qc.data[0].operation.copy())  # same length, new gate
    assert np.isclose(est.run([(qc, Z, [0.5])]).result()[0].data.evs, np.cos(1.0))


def test_in_place_observable_edits_are_seen_by_estimator_and_gradient():
    est = BatchedStatevectorEstimator()
    grad = AdjointEstimatorGradient(est)
    qc = QuantumCircuit(1)
    qc.ry(THETA, 0)
    obs = SparsePauliOp(["Z"], [1.0])
    assert est.run([(qc, obs, [0.0]), (qc, [obs, obs], [0.0])]).result()[0].data.evs == 1.0
    np.testing.assert_allclose(grad.run([qc], [obs], [[0.3]]).result().gradients[0], [-np.sin(0.3)])
    obs.coeffs[0] = -2.0  # in place: the same object
    res = est.run([(qc, obs, [0.0]), (qc, [obs, obs], [0.0])]).result()
    assert res[0].data.evs == -2.0
    np.testing.assert_array_equal(res[1].data.evs, [-2.0, -2.0])
    np.testing.assert_allclose(grad.run([qc], [obs], [[0.3]]).result().gradients[0], [2 * np.sin(0.3)])


def test_a_circuit_is_compiled_once_until_it_is_edited():
    est = BatchedStatevectorEstimator()
    qc = _ry_rx(0.4)
    program = est.program(qc)
    assert est.program(qc) is program
    qc.h(0)
    assert est.program(qc) is not program
    assert est.program(qc) is est.program(qc)
