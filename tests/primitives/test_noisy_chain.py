"""The noisy chain against the statevector trajectories on the very same draws (values and
gradients to rounding), its shot sampler against exact values and joint statistics, and its
path ordering of a device's qubits."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit

from backends import create_backend
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.primitives import noisy_chain as nch
from hybrid_qiskit.primitives import trajectories as tj


def head_program(n: int, scale: float, reps: int = 2):
    """A digits-style head laid out on fake_fez, as noisy_trajectories compiles it, with its
    single-Z readouts on the program's qubits."""
    from backends.reduced import compact_label

    handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=scale, seed=1)
    head = build_head_circuit(n, reps=reps)
    isa = handle.pass_manager.run(head.circuit)
    layout = isa.layout.final_index_layout()
    labels = ["I" * (isa.num_qubits - 1 - layout[i]) + "Z" + "I" * layout[i] for i in range(n)]
    program, qubits = handle.estimator.compiled(isa, labels)
    small = [compact_label(label, qubits) for label in labels]
    readouts = [(len(label) - 1 - label.index("Z"), 0.5 + 0.1 * k) for k, label in enumerate(small)]
    return program, readouts


@pytest.mark.parametrize("n", [4, 10])
def test_same_trajectories_same_values_and_gradients_as_the_statevector(n):
    """At 30x fake_fez's noise most columns carry several Paulis, and readout errors fold in."""
    program, readouts = head_program(n, scale=30.0)
    chain = nch.compile_noisy_chain(program)
    assert chain is not None and chain.bond == 4
    rng = np.random.default_rng(n)
    values = rng.uniform(-np.pi, np.pi, (12, len(program.parameters)))
    traj = tj.sample_trajectories(program, len(values), rng)
    assert traj.count > len(values)
    codes = nch.slot_codes(chain, traj)

    diag = np.array([c * row for (q, c), row in zip(readouts, tj.diagonal_observables(
        [{"I" * (n - 1 - q) + "Z" + "I" * q: 1.0} for q, _ in readouts], n))])
    final = tj.simulate_trajectories(program, values, traj)
    want = diag @ tj.measured_probabilities(program, final)
    want_grad = tj.trajectory_gradient(program, values, traj, final, tj.fold_readout_diagonal(program, diag))

    got = nch.noisy_chain_values(chain, values, codes, readouts)
    got_values, got_grad = nch.noisy_chain_gradient(chain, values, codes, readouts)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got_values, want, atol=1e-12)
    np.testing.assert_allclose(got_grad, want_grad, atol=1e-11)
    assert np.abs(want_grad).max() > 0.1


def test_sampled_shots_match_exact_values_within_4_sigma():
    program, readouts = head_program(6, scale=4.0)
    chain = nch.compile_noisy_chain(program)
    rng = np.random.default_rng(3)
    values = rng.uniform(-np.pi, np.pi, (40, len(program.parameters)))
    codes = nch.slot_codes(chain, tj.sample_trajectories(program, len(values), rng))
    qubits = [q for q, _ in readouts]
    exact = nch.noisy_chain_values(chain, values, codes, [(q, 1.0) for q in qubits])
    shots = 4000
    z = nch.sample_readouts(chain, values, codes, np.full(len(values), shots), qubits, rng) / shots
    sigma = np.sqrt(np.maximum(1 - exact**2, 1e-6) / shots)
    assert np.all(np.abs(z - exact) <= 4.5 * sigma)  # 240 values: 4.5 sigma keeps false alarms < 1e-3
    # The spread is the binomial one: the standardized residuals have unit variance.
    assert 0.8 < np.std((z - exact) / sigma) < 1.2


def test_sampled_bits_are_joint_draws_not_independent_marginals():
    """A Bell pair: each shot reads both qubits alike, so per column the two sums are equal; with
    readout flips on one qubit they differ by exactly twice its flips."""
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    from qiskit import transpile

    qc = transpile(qc, basis_gates=["rz", "sx", "cz"], optimization_level=1)
    program = tj.compile_noisy_program(qc, lambda name, qubits: None)
    chain = nch.compile_noisy_chain(program)
    rng = np.random.default_rng(0)
    codes = np.zeros((0, 200), dtype=np.int8)
    sums = nch.sample_readouts(chain, np.zeros((200, 0)), codes, np.full(200, 7), [0, 1], rng)
    np.testing.assert_array_equal(sums[0], sums[1])
    assert 0 < (sums[0] > 0).mean() < 1  # not one fixed outcome
    np.testing.assert_allclose(sums.mean() / 7, 0, atol=0.1)


def test_uneven_shot_shares_and_zero_shots():
    program, readouts = head_program(4, scale=1.0)
    chain = nch.compile_noisy_chain(program)
    values = np.zeros((3, len(program.parameters)))
    codes = np.zeros((len(chain.slots), 3), dtype=np.int8)
    sums = nch.sample_readouts(chain, values, codes, np.array([5, 4, 0]), [readouts[0][0]], np.random.default_rng(1))
    assert abs(sums[0, 0]) <= 5 and abs(sums[0, 1]) <= 4 and sums[0, 2] == 0
    assert (sums[0, :2] % 2 == np.array([1, 0])).all()  # a sum of 5 (4) values of ±1 is odd (even)


def test_path_order_finds_the_path_or_refuses():
    assert nch.path_order(5, {frozenset(p) for p in [(3, 0), (0, 4), (4, 1)]}) in ((2, 3, 0, 4, 1), (1, 4, 0, 3, 2))
    assert nch.path_order(4, {frozenset(p) for p in [(0, 1), (1, 2), (2, 0)]}) is None  # a cycle
    assert nch.path_order(4, {frozenset(p) for p in [(0, 1), (0, 2), (0, 3)]}) is None  # a star
    assert nch.path_order(3, set()) == (0, 1, 2)


def test_not_a_chain_gives_none():
    qc = QuantumCircuit(3)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        qc.cz(a, b)
    assert nch.compile_noisy_chain(tj.compile_noisy_program(qc, lambda name, qubits: None)) is None


def test_vector_jacobian_product_with_pauli_draws_equals_the_contracted_gradient():
    """The training step's product (``mps.chain_vjp``) on rows that each drew their own Paulis:
    rotations read at their own qubit close against its density matrix, with the drawn Paulis
    after them on that qubit, and it must equal the contracted Jacobians."""
    from hybrid_qiskit.primitives import mps

    program, readouts = head_program(10, scale=30.0)
    chain = nch.compile_noisy_chain(program)
    assert chain.chain.local_rotations  # the last layer's rotations, Pauli slots after them
    rng = np.random.default_rng(5)
    values = rng.uniform(-np.pi, np.pi, (12, len(program.parameters)))
    codes = nch.slot_codes(chain, tj.sample_trajectories(program, len(values), rng))
    scaled, _ = nch._folded(chain, readouts)
    cotangent = rng.normal(size=(len(scaled), len(values)))
    _, grads = mps.chain_gradient(chain.chain, values, scaled, codes)
    got = mps.chain_vjp(chain.chain, values, scaled, cotangent, paulis=codes)
    np.testing.assert_allclose(got, np.einsum("kb,kbp->bp", cotangent, grads), atol=1e-12)
    assert np.abs(got).max() > 0.1
