"""The noisy chain (``noisy_trajectories`` with ``method=mps``) against Aer's density matrix on
the same reduced device, for digits heads of 4 and 10 qubits at fake_fez's noise x 1 and x 8.

Two references: Aer under our twirled Pauli channels (what the trajectories average to if the
simulator is right: within 4 sigma), and Aer's own device model, ``aer_noisy_exact`` (exact
thermal relaxation: the difference is the twirl's bias, bounded and stated here)."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp

from backends import create_backend
from backends.devices import get_fake_backend
from backends.noisy_trajectories import device_channels
from backends.reduced import active_qubits, compact_circuit, compact_label, reduce_device
from hybrid_qiskit.circuits import build_head_circuit


def head_case(n: int):
    """A head with fixed inputs and weights, laid out on fake_fez, its Z readouts there."""
    head = build_head_circuit(n, reps=2)
    values = np.random.default_rng(n).uniform(-np.pi, np.pi, head.circuit.num_parameters)
    handle = create_backend("aer_noisy_exact", device="fake_fez", seed=1)
    isa = handle.pass_manager.run(head.circuit)
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], n).apply_layout(isa.layout) for q in range(n)]
    return isa, observables, values


def twirled_aer(isa, observables, values, scale: float) -> np.ndarray:
    """Aer's density matrix, readout folded, under OUR Pauli channels on the reduced device."""
    from qiskit_aer.noise import NoiseModel, pauli_error

    from backends.aer_estimators import ExactNoisyEstimator
    from backends.noise import NoiseSpec

    qubits = active_qubits(isa, [label for o in observables for label in o.paulis.to_labels()])
    circuit = compact_circuit(isa, qubits).assign_parameters(values)
    small = [SparsePauliOp([compact_label(lb, qubits) for lb in o.paulis.to_labels()], o.coeffs) for o in observables]
    channel, readout = device_channels(reduce_device(get_fake_backend("fake_fez"), qubits), scale)
    model = NoiseModel(basis_gates=["cz", "sx", "x", "rz", "id"])
    done = set()
    for inst in circuit.data:
        q = tuple(circuit.find_bit(b).index for b in inst.qubits)
        probs = channel(inst.operation.name, q)
        if probs is None or (inst.operation.name, q) in done:
            continue
        done.add((inst.operation.name, q))
        terms = [("".join("IXZY"[(c >> 2 * j) & 3] for j in reversed(range(len(q)))), p)
                 for c, p in enumerate(probs) if p > 0]
        model.add_quantum_error(pauli_error(terms), inst.operation.name, list(q))
    spec = NoiseSpec(model, readout={k: tuple(r) for k, r in enumerate(readout)})
    result = ExactNoisyEstimator(spec).run([(circuit, [[o] for o in small])]).result()[0]
    return np.asarray(result.data.evs).ravel()


@pytest.mark.parametrize("n", [4, 10])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_noisy_chain_means_agree_with_aers_density_matrix(n, scale):
    isa, observables, values = head_case(n)
    rows = 4000
    handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=scale, seed=9, method="mps")
    result = handle.estimator.run([(isa, [[o] for o in observables], np.tile(values, (rows, 1)))],
                                  precision=0).result()[0]
    assert result.metadata["method"] == "mps"
    per_trajectory = np.asarray(result.data.evs)  # exact per trajectory: sigma is the trajectories' spread
    mean, sigma = per_trajectory.mean(axis=1), per_trajectory.std(axis=1, ddof=1) / np.sqrt(rows)
    twirled = twirled_aer(isa, observables, values, scale)
    assert np.all(np.abs(mean - twirled) <= 4 * sigma + 1e-9), (mean, twirled, sigma)
    assert np.max(sigma) > 0  # noise happened
    exact = create_backend("aer_noisy_exact", device="fake_fez", noise_scale=scale, seed=1).estimator.run(
        [(isa, [[o] for o in observables], values)]).result()[0]
    bias = np.abs(twirled - np.asarray(exact.data.evs).ravel())
    # The twirl's bias (relaxation's pull towards |0>, dropped), largest |difference| in <Z>:
    # measured 0.0013 (4 qubits) and 0.0016 (10) at scale 1, 0.0090 and 0.0077 at scale 8.
    assert bias.max() < (0.004 if scale == 1 else 0.02), bias.max()
