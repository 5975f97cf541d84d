"""The matrix-product-state chain (:mod:`hybrid_qiskit.primitives.mps`) against the statevector
path (itself tested against Qiskit's stock primitives), Qiskit's Statevector, and finite
differences; and when the chain is taken."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp, Statevector

from backends import create_backend
from hybrid_qiskit.circuits import ANSATZE, FEATURE_MAPS, build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.primitives import BatchedStatevectorEstimator, mps
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_gradient, adjoint_vjp
from hybrid_qiskit.primitives.compiler import compile_circuit
from hybrid_qiskit.primitives.simulate import CompiledObservable, expectations, simulate
from hybrid_qiskit.qnn import build_qnn

from ._circuits import FIXED_1Q, FIXED_2Q, ROT_1Q

CHAIN_ROT_2Q = ["rzz", "rxx", "ryy", "cp"]  # the controlled rotations need a four-term shift rule


def _both(program, values, observables):
    chain = adjoint_gradient(program, values, observables, method="mps")
    plain = adjoint_gradient(program, values, observables, method="statevector")
    return chain, plain


def _z(n: int, q: int, c: float = 1.0) -> CompiledObservable:
    return CompiledObservable(SparsePauliOp.from_sparse_list([("Z", [q], c)], num_qubits=n))


@pytest.mark.parametrize("reuploads", [1, 2])
@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_every_head_matches_the_statevector(fm, ansatz, reuploads):
    head = build_head_circuit(5, feature_map=fm, ansatz=ansatz, reps=2, reuploads=reuploads)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    # Every head is a chain; the ZZ map re-uploaded twice crosses each cut 6 times (bond 64, its
    # CX·P·CX fused).
    assert program.chain is not None
    rng = np.random.default_rng(3)
    values = rng.uniform(-np.pi, np.pi, (6, len(program.parameters)))
    values[:, 5:] = values[0, 5:]  # weights shared by the rows, as in the QNN
    observables = [CompiledObservable(o) for o in head.observables]
    (ev_c, g_c), (ev_s, g_s) = _both(program, values, observables)
    np.testing.assert_allclose(ev_c, ev_s, atol=1e-12)
    np.testing.assert_allclose(g_c, g_s, atol=1e-10)


@pytest.mark.parametrize(("entanglement", "bond"), [("linear", 4), ("circular", 16), ("full", None)])
def test_entanglements_on_the_chain(entanglement, bond):
    """Circular entanglement's CX(n-1, 0) rides along the chain (bond 16 at reps 2, every cut
    crossed twice per layer); full crosses the middle cut 4 times per layer at 5 qubits and is
    left to the statevector (bond 4096 > MAX_BOND)."""
    head = build_head_circuit(5, reps=2, entanglement=entanglement)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    assert (program.chain and program.chain.bond) == bond
    if bond is None:
        return
    values = np.random.default_rng(4).uniform(-np.pi, np.pi, (4, len(program.parameters)))
    observables = [CompiledObservable(o) for o in head.observables]
    (ev_c, g_c), (ev_s, g_s) = _both(program, values, observables)
    np.testing.assert_allclose(ev_c, ev_s, atol=1e-12)
    np.testing.assert_allclose(g_c, g_s, atol=1e-10)


def _random_chain(n: int, depth: int, seed: int, reach: int = 1) -> QuantumCircuit:
    """Random gates on single qubits and on pairs up to ``reach`` apart (in either order), with
    angles that are parameters, linear combinations, products of two parameters, or constants."""
    rng = np.random.default_rng(seed)
    t = ParameterVector("t", 4)
    qc = QuantumCircuit(n)

    def angle():
        i, j = rng.choice(4, 2, replace=False)
        return [t[i], 0.5 * t[i] - 1.5 * t[j] + 0.3, t[i] * t[j], float(rng.uniform(-3, 3))][rng.integers(4)]

    for _ in range(depth):
        d = int(rng.integers(1, reach + 1))
        q = int(rng.integers(n - d))
        a, b = (q, q + d) if rng.integers(2) else (q + d, q)
        kind = rng.integers(4)
        if kind == 0:
            getattr(qc, str(rng.choice(ROT_1Q)))(angle(), a)
        elif kind == 1:
            getattr(qc, str(rng.choice(FIXED_1Q)))(a)
        elif kind == 2:
            getattr(qc, str(rng.choice(CHAIN_ROT_2Q)))(angle(), a, b)
        else:
            getattr(qc, str(rng.choice(FIXED_2Q)))(a, b)
    for i in range(4):
        qc.ry(t[i], i % n)
    return qc


@pytest.mark.parametrize("seed", range(4))
def test_gates_between_distant_qubits_match_the_statevector_and_finite_differences(monkeypatch, seed):
    """A gate on qubits d apart crosses d cuts: its Schmidt terms ride through the sites between
    (exact, as a swap network would be), so the bond grows on those cuts only."""
    monkeypatch.setattr(mps, "MAX_BOND", 1 << 12)
    qc = _random_chain(5, 10, 10 + seed, reach=4)
    program = compile_circuit(qc)
    assert any(g.width > 2 for g in program.chain.gates)
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (3, 4))
    observables = [_z(5, 0), _z(5, 4, 0.5), _z(5, 2, -1.0)]
    (ev_c, g_c), (ev_s, g_s) = _both(program, values, observables)
    np.testing.assert_allclose(ev_c, ev_s, atol=1e-11)
    np.testing.assert_allclose(g_c, g_s, atol=1e-9)
    readouts = [(0, 1.0), (4, 0.5), (2, -1.0)]
    h = 1e-6
    for j in range(4):
        step = np.zeros(4)
        step[j] = h
        fd = (mps.chain_expectations(program.chain, values + step, readouts)
              - mps.chain_expectations(program.chain, values - step, readouts)) / (2 * h)
        np.testing.assert_allclose(g_c[:, :, j], fd, atol=1e-7)


def test_a_distant_gate_grows_the_bond_on_the_cuts_it_crosses_only():
    qc = QuantumCircuit(5)
    qc.cx(3, 1)
    program = compile_circuit(qc)
    (gate,) = program.chain.gates
    assert (gate.lo, gate.hi, program.chain.bond) == (1, 3, 2)
    assert [len(ops) for ops in program.chain.site_ops] == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("seed", range(6))
def test_random_chains_match_the_statevector(monkeypatch, seed):
    monkeypatch.setattr(mps, "MAX_BOND", 1 << 12)
    qc = _random_chain(4, 16, seed)
    program = compile_circuit(qc)
    assert program.chain is not None
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (5, 4))
    observables = [_z(4, 2, 0.5), _z(4, 0), _z(4, 3, -2.0), _z(4, 2)]
    (ev_c, g_c), (ev_s, g_s) = _both(program, values, observables)
    np.testing.assert_allclose(ev_c, ev_s, atol=1e-11)
    np.testing.assert_allclose(g_c, g_s, atol=1e-9)


def test_values_match_qiskit_and_gradients_match_finite_differences():
    head = build_head_circuit(6, feature_map="zz", ansatz="efficient_su2", reps=1)
    params = list(head.input_params) + list(head.weight_params)
    program = compile_circuit(head.circuit, params)
    readouts = [(q, 1.0) for q in range(6)]
    values = np.random.default_rng(0).uniform(0, np.pi, (2, len(params)))
    evs, grads = mps.chain_gradient(program.chain, values, readouts)
    for b in range(2):
        state = Statevector(head.circuit.assign_parameters(dict(zip(params, values[b]))))
        np.testing.assert_allclose(evs[:, b], [state.expectation_value(o).real for o in head.observables], atol=1e-12)
    h = 1e-6
    for j in range(len(params)):
        step = np.zeros(len(params))
        step[j] = h
        fd = (mps.chain_expectations(program.chain, values + step, readouts)
              - mps.chain_expectations(program.chain, values - step, readouts)) / (2 * h)
        np.testing.assert_allclose(grads[:, :, j], fd, atol=1e-7)


def test_what_is_not_a_chain():
    x = ParameterVector("x", 2)
    controlled = QuantumCircuit(2)  # its shift rule has four terms
    controlled.crx(x[0], 0, 1)
    assert compile_circuit(controlled).chain is None
    deep = QuantumCircuit(2)  # SWAP has four operator-Schmidt terms: 4, 16, ..., 1024 > MAX_BOND
    for _ in range(5):
        deep.ry(x[1], 0)
        deep.swap(0, 1)
    assert compile_circuit(deep).chain is None


def test_other_observables_and_narrow_circuits_take_the_statevector():
    head = build_head_circuit(12)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    zs = [CompiledObservable(o) for o in head.observables]
    assert mps.chain_readouts(program, zs) is not None  # auto: where the chain costs less
    assert mps.chain_readouts(program, zs, "statevector") is None
    assert mps.chain_readouts(program, zs + [CompiledObservable(SparsePauliOp("X" + "I" * 11))]) is None
    narrow = compile_circuit(build_head_circuit(4).circuit)
    assert mps.chain_readouts(narrow, zs[:4]) is None
    assert mps.chain_readouts(narrow, [_z(4, q) for q in range(4)], "mps") is not None
    with pytest.raises(ValueError, match="known: auto, statevector, mps"):
        BatchedStatevectorEstimator(method="tensor")


def _same_qnn(head, backend, other, *, rows, seed, forward_atol, backward_atol):
    """EstimatorQNN on ``backend`` and on ``other``: the same outputs and gradients."""
    a, b = build_qnn(head, backend), build_qnn(head, other)
    rng = np.random.default_rng(seed)
    n = head.circuit.num_qubits
    x, w = rng.uniform(0, np.pi, (rows, n)), rng.uniform(-np.pi, np.pi, a.num_weights)
    np.testing.assert_allclose(a.forward(x, w), b.forward(x, w), atol=forward_atol)
    for ga, gb in zip(a.backward(x, w), b.backward(x, w)):
        np.testing.assert_allclose(ga, gb, atol=backward_atol)


def test_qnn_at_width_is_the_same_through_either_method():
    """A 12-qubit head through EstimatorQNN: auto (the chain) against the forced statevector."""
    head = build_head_circuit(12)
    _same_qnn(head, create_backend("statevector"), create_backend("statevector", method="statevector"),
              rows=4, seed=1, forward_atol=1e-12, backward_atol=1e-10)


def test_backend_setting_method():
    assert create_backend("statevector", method="mps").description["method"] == "mps"
    with pytest.raises(HybridQiskitError, match="unknown method 'tensor' for statevector; known: auto"):
        create_backend("statevector", method="tensor")


@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_chain_qnn_matches_the_stock_stack(fm, ansatz):
    """EstimatorQNN on the chain against Qiskit's StatevectorEstimator + parameter shift."""
    head = build_head_circuit(4, feature_map=fm, ansatz=ansatz, reps=1)
    _same_qnn(head, create_backend("statevector", method="mps"), create_backend("statevector_reference"),
              rows=2, seed=2, forward_atol=1e-6, backward_atol=1e-6)


def test_real_and_complex_chains_agree():
    """RealAmplitudes after angle encoding is real; the same chain forced complex gives the same."""
    head = build_head_circuit(6)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    assert program.chain.is_real
    as_complex = dataclasses.replace(program.chain, is_real=False)
    readouts = [(q, 1.0) for q in range(6)]
    values = np.random.default_rng(5).uniform(-np.pi, np.pi, (4, len(program.parameters)))
    for a, b in zip(mps.chain_gradient(program.chain, values, readouts),
                    mps.chain_gradient(as_complex, values, readouts)):
        np.testing.assert_allclose(a, b, atol=1e-13)


def test_blocks_of_rows_change_nothing(monkeypatch):
    head = build_head_circuit(6, feature_map="zz", ansatz="efficient_su2", reps=1)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    readouts = [(q, 1.0) for q in range(6)]
    values = np.random.default_rng(6).uniform(0, np.pi, (7, len(program.parameters)))
    whole = mps.chain_gradient(program.chain, values, readouts)
    monkeypatch.setattr(mps, "BLOCK_BYTES", 1)  # one row per block
    monkeypatch.setattr(mps, "GRADIENT_BLOCK_BYTES", 1)
    np.testing.assert_allclose(mps.chain_expectations(program.chain, values, readouts), whole[0], atol=1e-14)
    for a, b in zip(mps.chain_gradient(program.chain, values, readouts), whole):
        np.testing.assert_allclose(a, b, atol=1e-14)


def test_the_backward_pass_starts_from_the_forward_passs_state(monkeypatch):
    """EstimatorQNN's forward then backward on the same rows: the chain's site tensors are
    built once (the estimator keeps them for the gradient), and the gradient is unchanged."""
    head = build_head_circuit(12, reps=1)
    qnn = build_qnn(head, create_backend("statevector"))
    x = np.random.default_rng(8).uniform(0, np.pi, (5, 12))
    w = np.random.default_rng(9).uniform(-np.pi, np.pi, qnn.num_weights)
    built = []
    sites = mps._sites_rows_first
    monkeypatch.setattr(mps, "_sites_rows_first", lambda *a, **k: built.append(1) or sites(*a, **k))
    qnn.forward(x, w)
    cached = qnn.backward(x, w)
    assert len(built) == 1
    fresh = build_qnn(head, create_backend("statevector")).backward(x, w)  # builds its own state
    assert len(built) == 2
    for a, b in zip(cached, fresh):
        np.testing.assert_allclose(a, b, atol=1e-13)


def test_a_wide_evaluation_stays_small():
    """20 qubits, 4,000 rows: the statevectors alone would be 34 GB; the chain needs megabytes."""
    head = build_head_circuit(20)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    values = np.random.default_rng(7).uniform(0, np.pi, (4000, len(program.parameters)))
    tracemalloc.start()
    try:
        evs = mps.chain_expectations(program.chain, values, [(q, 1.0) for q in range(20)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * mps.BLOCK_BYTES
    observables = [CompiledObservable(o) for o in head.observables]
    exact = expectations(simulate(program, values[:2]), observables)  # two 8 MB statevectors
    np.testing.assert_allclose(evs[:, :2], exact, atol=1e-12)


def test_auto_takes_the_chain_where_it_pays():
    """``auto`` compares estimated costs (:mod:`.chain_cost`), at any bond: the default head (bond
    4) on the statevector at 8 qubits and on the chain from 11 (whole training steps: level at
    10, 14.1 against 9.7 ms at 11); RealAmplitudes reps 6 (bond 64) on the statevector at 10 and
    12 qubits (48.5 against 59.6 ms per step at 12) and on the chain at 16, where the statevector's
    2**n outgrows the chain's n²·χ³ (``experiments/bench_crossover.py``, figures in
    :mod:`.chain_cost`)."""
    for n, reps, ent, chain in [(8, 2, "reverse_linear", False), (11, 2, "reverse_linear", True),
                                (20, 2, "reverse_linear", True), (12, 2, "circular", True),
                                (10, 6, "reverse_linear", False), (12, 6, "reverse_linear", False),
                                (16, 6, "reverse_linear", True)]:
        head = build_head_circuit(n, reps=reps, entanglement=ent)
        program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
        assert mps.takes_chain(program.chain, n) is chain, (n, reps, ent)
        assert mps.takes_chain(program.chain, n, "mps") and not mps.takes_chain(program.chain, n, "statevector")


@pytest.mark.parametrize(("n", "head"), [
    (6, {"feature_map": "zz", "ansatz": "efficient_su2", "reps": 1}),  # complex, fused ZZ blocks
    (8, {"reps": 6}),  # bond 64: compressed ends, local last-layer rotations
    (7, {"reps": 2, "entanglement": "circular"}),  # a gate between distant qubits
])
def test_the_vector_jacobian_product_is_the_contracted_jacobian(monkeypatch, n, head):
    """chain_vjp's one weighted sweep gives Σ_k g_k ∂⟨c_k Z_k⟩/∂θ per row as chain_gradient's K
    Jacobians contracted with g: with readouts of unequal coefficients, a qubit read twice and
    one not read, from the forward pass's state and without it, in one block and a row at a time."""
    circuit = build_head_circuit(n, **head)
    program = compile_circuit(circuit.circuit, list(circuit.input_params) + list(circuit.weight_params))
    readouts = [(q, 1.0 + 0.25 * q) for q in range(n - 1)] + [(0, -0.5)]
    rng = np.random.default_rng(n)
    values = rng.uniform(0, np.pi, (5, len(program.parameters)))
    values[:, n:] = values[0, n:]
    cotangent = rng.normal(size=(len(readouts), 5))
    _, grads = mps.chain_gradient(program.chain, values, readouts)
    want = np.einsum("kb,kbp->bp", cotangent, grads)
    kept: list = []
    mps.chain_expectations(program.chain, values, readouts, keep=kept)
    np.testing.assert_allclose(mps.chain_vjp(program.chain, values, readouts, cotangent, state=kept[0]), want,
                               atol=1e-12)
    monkeypatch.setattr(mps, "GRADIENT_BLOCK_BYTES", 1)  # one row per block
    np.testing.assert_allclose(mps.chain_vjp(program.chain, values, readouts, cotangent), want, atol=1e-12)
    observables = [_z(n, q, c) for q, c in readouts]  # the statevector's adjoint sweep, contracted
    plain = adjoint_vjp(program, values, observables, cotangent, method="statevector")
    np.testing.assert_allclose(adjoint_vjp(program, values, observables, cotangent, method="mps"), plain, atol=1e-10)


def test_the_vector_jacobian_product_matches_finite_differences():
    circuit = build_head_circuit(6, reps=4, entanglement="circular")
    params = list(circuit.input_params) + list(circuit.weight_params)
    program = compile_circuit(circuit.circuit, params)
    readouts = [(q, 1.0) for q in range(6)]
    rng = np.random.default_rng(11)
    values = rng.uniform(0, np.pi, (3, len(params)))
    cotangent = rng.normal(size=(6, 3))
    vjp = mps.chain_vjp(program.chain, values, readouts, cotangent)
    h = 1e-6

    def loss(v):  # Σ_k g_k ⟨Z_k⟩ per row
        return (cotangent * mps.chain_expectations(program.chain, v, readouts)).sum(axis=0)

    for j in range(len(params)):
        step = np.zeros(len(params))
        step[j] = h
        np.testing.assert_allclose(vjp[:, j], (loss(values + step) - loss(values - step)) / (2 * h), atol=1e-7)
