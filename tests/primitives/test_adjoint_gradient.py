"""AdjointEstimatorGradient: finite differences, the stock parameter-shift gradient, subsets."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.circuit import Parameter
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.gradients import BaseEstimatorGradient, ParamShiftEstimatorGradient

from hybrid_qiskit.primitives import AdjointEstimatorGradient, BatchedStatevectorEstimator
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_gradient
from hybrid_qiskit.primitives.compiler import compile_circuit
from hybrid_qiskit.primitives.simulate import CompiledObservable, expectations, simulate

from ._circuits import random_circuit


def _observables(n):
    labels = ["Z" * n, "X" + "I" * (n - 1), "Y" * n]
    return [SparsePauliOp(label) for label in labels] + [
        SparsePauliOp.from_list([("X" * n, 0.4), ("Z" + "Y" * (n - 1), -0.7), ("I" * n, 0.2)])
    ]


@pytest.mark.parametrize("seed", range(6))
def test_matches_central_finite_differences(seed):
    n = 1 + seed % 3
    qc = random_circuit(n, depth=30, seed=100 + seed)
    program = compile_circuit(qc)
    obs = [CompiledObservable(o) for o in _observables(n)]
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (3, qc.num_parameters))
    evs, grads = adjoint_gradient(program, values, obs)
    np.testing.assert_allclose(evs, expectations(simulate(program, values), obs), atol=1e-12)
    eps = 1e-6
    for j in range(qc.num_parameters):
        step = np.zeros(qc.num_parameters)
        step[j] = eps
        fd = (expectations(simulate(program, values + step), obs) - expectations(simulate(program, values - step), obs)) / (2 * eps)
        np.testing.assert_allclose(grads[:, :, j], fd, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_matches_stock_parameter_shift(seed):
    n = 2 + seed % 2
    qc = random_circuit(n, depth=14, seed=200 + seed, num_params=3)
    obs = _observables(n)[:2]
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (2, qc.num_parameters))
    circuits = [qc] * 4
    observables = [o for o in obs for _ in range(2)]
    params = np.tile(values, (2, 1))
    fast = AdjointEstimatorGradient().run(circuits, observables, params).result()
    stock = ParamShiftEstimatorGradient(StatevectorEstimator()).run(circuits, observables, params).result()
    for a, b in zip(fast.gradients, stock.gradients):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_parameter_subsets_keep_their_order():
    qc = random_circuit(2, depth=20, seed=7, num_params=4)
    p = list(qc.parameters)
    values = np.random.default_rng(7).uniform(-np.pi, np.pi, (2, len(p)))
    obs = [SparsePauliOp("ZI"), SparsePauliOp("XY")]
    subsets = [[p[3], p[0]], None]
    grad = AdjointEstimatorGradient()
    assert isinstance(grad, BaseEstimatorGradient)
    res = grad.run([qc, qc], obs, values, parameters=subsets).result()
    full = grad.run([qc, qc], obs, values).result()
    np.testing.assert_allclose(res.gradients[0], full.gradients[0][[3, 0]])
    np.testing.assert_allclose(res.gradients[1], full.gradients[1])
    assert res.metadata[0]["parameters"] == [p[3], p[0]]
    assert list(res.metadata[1]["parameters"]) == p
    stock = ParamShiftEstimatorGradient(StatevectorEstimator()).run([qc], obs[:1], values[:1], parameters=subsets[:1])
    np.testing.assert_allclose(res.gradients[0], stock.result().gradients[0], atol=1e-6)
    with pytest.raises(ValueError):
        grad.run([qc], obs[:1], values[:1], parameters=[[p[0], Parameter("not_in_circuit")]]).result()


def test_several_circuits_in_one_call_and_the_forward_cache():
    est = BatchedStatevectorEstimator()
    grad = AdjointEstimatorGradient(est)
    a, b = random_circuit(2, 20, seed=1, num_params=3), random_circuit(3, 20, seed=2, num_params=3)
    rng = np.random.default_rng(0)
    va, vb = rng.uniform(-3, 3, (2, 3)), rng.uniform(-3, 3, (2, 3))
    oa, ob = SparsePauliOp("ZX"), SparsePauliOp("YZI")
    circuits, observables, values = [a, b, a, b], [oa, ob, oa, ob], [va[0], vb[0], va[1], vb[1]]
    cold = grad.run(circuits, observables, values).result().gradients
    est.run([(a, oa, va), (b, ob, vb)]).result()  # fills the final-state cache
    warm = grad.run(circuits, observables, values).result().gradients
    stock = ParamShiftEstimatorGradient(StatevectorEstimator()).run(circuits, observables, values).result().gradients
    for c, w, s in zip(cold, warm, stock):
        np.testing.assert_allclose(c, s, atol=1e-6)
        np.testing.assert_allclose(w, s, atol=1e-6)


def test_mismatched_lengths_and_widths_raise():
    qc = random_circuit(2, 10, seed=3, num_params=2)
    grad = AdjointEstimatorGradient()
    with pytest.raises(ValueError):
        grad.run([qc, qc], [SparsePauliOp("ZZ")], np.zeros((2, 2)))
    with pytest.raises(ValueError):
        grad.run([qc], [SparsePauliOp("ZZZ")], np.zeros((1, 2))).result()


@pytest.mark.parametrize("fm,ansatz", [("angle", "real_amplitudes"), ("zz", "efficient_su2")])
def test_wide_head_with_reuploads_matches_finite_differences(fm, ansatz):
    """9 qubits x 8 rows takes the large-state kernels (strided derivative copies, several
    constant-matrix chunks) and re-uploading puts a per-row layer inside the adjoint sweep."""
    from hybrid_qiskit.circuits import build_head_circuit

    head = build_head_circuit(9, feature_map=fm, ansatz=ansatz, reps=1, reuploads=2)
    program = compile_circuit(head.circuit)
    obs = [CompiledObservable(o) for o in head.observables[:3]]
    rng = np.random.default_rng(4)
    values = rng.uniform(0, np.pi, (8, len(program.parameters)))
    values[:, 9:] = values[0, 9:]  # shared weights, as EstimatorQNN sends them
    _, grads = adjoint_gradient(program, values, obs)
    eps = 1e-6
    for j in rng.choice(len(program.parameters), 12, replace=False):
        step = np.zeros(len(program.parameters))
        step[j] = eps
        fd = (expectations(simulate(program, values + step), obs) - expectations(simulate(program, values - step), obs)) / (2 * eps)
        np.testing.assert_allclose(grads[:, :, j], fd, atol=1e-7)


def test_slabbed_sweep_gives_the_same_gradients(monkeypatch):
    """Wide states are swept a few rows at a time; force one row per slab and compare."""
    from hybrid_qiskit.circuits import build_head_circuit
    from hybrid_qiskit.primitives import adjoint_sweep

    for qc in (random_circuit(3, 30, seed=11), build_head_circuit(4, feature_map="zz", reuploads=2).circuit):
        program = compile_circuit(qc)
        obs = [CompiledObservable(o) for o in _observables(qc.num_qubits)]
        values = np.random.default_rng(0).uniform(-3, 3, (5, qc.num_parameters))
        whole = adjoint_gradient(program, values, obs)
        monkeypatch.setattr(adjoint_sweep, "SWEEP_BYTES", 1)
        monkeypatch.setattr(adjoint_sweep, "SLAB_BYTES", 1)
        slabbed = adjoint_gradient(program, values, obs)
        monkeypatch.undo()
        np.testing.assert_allclose(slabbed[0], whole[0], atol=1e-14)
        np.testing.assert_allclose(slabbed[1], whole[1], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_vector_jacobian_product_is_the_contracted_jacobian(seed):
    """adjoint_vjp on the statevector: with diagonal observables one co-state (Σ_k g_k O_k)ψ per
    row replaces K, and equals the contracted Jacobians; with others it contracts them. Random
    circuits of every gate, real and complex, a row per block and with the forward pass's states."""
    from hybrid_qiskit.primitives import adjoint_sweep
    from hybrid_qiskit.primitives.adjoint_sweep import adjoint_vjp

    n = 2 + seed % 3
    qc = random_circuit(n, depth=30, seed=200 + seed)
    program = compile_circuit(qc)
    rng = np.random.default_rng(seed)
    values = rng.uniform(-np.pi, np.pi, (4, qc.num_parameters))
    diagonal = [CompiledObservable(SparsePauliOp.from_sparse_list([("Z", [q], 1.0 + q)], num_qubits=n))
                for q in range(n)] + [CompiledObservable(SparsePauliOp("Z" * n))]
    for obs in (diagonal, [CompiledObservable(o) for o in _observables(n)]):
        cotangent = rng.normal(size=(len(obs), 4))
        _, grads = adjoint_gradient(program, values, obs, method="statevector")
        want = np.einsum("kb,kbp->bp", cotangent, grads)
        np.testing.assert_allclose(adjoint_vjp(program, values, obs, cotangent, method="statevector"), want, atol=1e-12)
        states = simulate(program, values)
        np.testing.assert_allclose(adjoint_vjp(program, values, obs, cotangent, state=states, method="statevector"),
                                   want, atol=1e-12)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adjoint_sweep, "SWEEP_BYTES", 1)  # one row per block
        cotangent = rng.normal(size=(len(diagonal), 4))
        _, grads = adjoint_gradient(program, values, diagonal, method="statevector")
        np.testing.assert_allclose(adjoint_vjp(program, values, diagonal, cotangent, method="statevector"),
                                   np.einsum("kb,kbp->bp", cotangent, grads), atol=1e-12)
