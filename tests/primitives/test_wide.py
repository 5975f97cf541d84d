"""Wide heads: rows in blocks on worker threads, bounded memory, and the float32 option.

Blocks are forced small here, so that a 5-qubit head goes through every path a 20-qubit one
takes (several blocks, two workers, states not kept) in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import create_backend
from hybrid_qiskit.circuits import ANSATZE, FEATURE_MAPS, build_head_circuit
from hybrid_qiskit.primitives import rows, simulate
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_gradient
from hybrid_qiskit.primitives.compiler import compile_circuit
from hybrid_qiskit.primitives.simulate import (
    CompiledObservable,
    expectations,
    simulate_expectations,
)
from hybrid_qiskit.qnn import build_qnn


def _head(fm="angle", ansatz="real_amplitudes", n=5, rows_=7, seed=0):
    head = build_head_circuit(n, feature_map=fm, ansatz=ansatz, reps=1)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    rng = np.random.default_rng(seed)
    values = np.empty((rows_, len(program.parameters)))
    values[:, :n] = rng.uniform(0, np.pi, (rows_, n))
    values[:, n:] = rng.uniform(-np.pi, np.pi, len(program.parameters) - n)  # shared weights
    return program, values, [CompiledObservable(o) for o in head.observables]


@pytest.mark.parametrize("block_rows", [1, 3])
def test_row_blocks_cover_the_batch_in_even_shares(block_rows):
    blocks = rows.row_blocks(7, 100, 100 * block_rows)
    covered = [i for b in blocks for i in range(b.start, b.stop)]
    assert covered == list(range(7))
    assert len(blocks) % rows.WORKERS == 0 or len(blocks) == 7
    assert max(b.stop - b.start for b in blocks) - min(b.stop - b.start for b in blocks) <= 1


@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_blocks_and_workers_change_nothing(monkeypatch, fm, ansatz):
    program, values, obs = _head(fm, ansatz)
    whole_states = simulate.simulate(program, values)
    whole = adjoint_gradient(program, values, obs)
    monkeypatch.setattr(rows, "WORKERS", 2)
    monkeypatch.setattr(rows, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(simulate, "FORWARD_BYTES", 1)  # one row per block
    monkeypatch.setattr("hybrid_qiskit.primitives.adjoint_sweep.SWEEP_BYTES", 1)
    np.testing.assert_allclose(simulate.simulate(program, values), whole_states, atol=1e-14)
    for given in (None, whole_states):
        evs, grads = adjoint_gradient(program, values, obs, state=given)
        np.testing.assert_allclose(evs, whole[0], atol=1e-13)
        np.testing.assert_allclose(grads, whole[1], atol=1e-13)


def test_wide_batches_are_not_kept(monkeypatch):
    """Past KEEP_STATES_BYTES only expectation values come back, computed a block at a time."""
    program, values, obs = _head(rows_=9)
    expected = expectations(simulate.simulate(program, values), obs)
    evs, states = simulate_expectations(program, values, obs)
    assert states is not None and states.shape == (32, 9)
    monkeypatch.setattr(simulate, "KEEP_STATES_BYTES", 32 * 8 * 4)
    monkeypatch.setattr(simulate, "FORWARD_BYTES", 32 * 8 * 2)
    evs, states = simulate_expectations(program, values, obs)
    assert states is None
    np.testing.assert_allclose(evs, expected, atol=1e-14)


def test_estimator_without_kept_states_still_gives_exact_gradients(monkeypatch):
    monkeypatch.setattr(simulate, "KEEP_STATES_BYTES", 0)
    head = build_head_circuit(3, feature_map="zz", reps=1)
    fast = build_qnn(head, create_backend("statevector"))
    ref = build_qnn(head, create_backend("statevector_reference"))
    rng = np.random.default_rng(4)
    x, w = rng.uniform(0, np.pi, (3, 3)), rng.uniform(-np.pi, np.pi, fast.num_weights)
    np.testing.assert_allclose(fast.forward(x, w), ref.forward(x, w), atol=1e-6)
    for a, b in zip(fast.backward(x, w), ref.backward(x, w)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("fm,ansatz", [("angle", "real_amplitudes"), ("zz", "efficient_su2")])
def test_single_precision_is_float32_and_close(fm, ansatz):
    """float32 states, float64 sums: within the documented ~2e-7 (values) and ~1.5e-6 (gradients)."""
    program, values, obs = _head(fm, ansatz)
    states = simulate.simulate(program, values, single=True)
    assert states.dtype == (np.float32 if program.is_real else np.complex64)
    evs64, grads64 = adjoint_gradient(program, values, obs, method="statevector")  # auto may take the chain
    evs32, grads32 = adjoint_gradient(program, values, obs, single=True, method="statevector")
    assert evs32.dtype == grads32.dtype == np.float64
    np.testing.assert_allclose(evs32, evs64, atol=5e-7)
    np.testing.assert_allclose(grads32, grads64, atol=3e-6)
    assert np.abs(grads32 - grads64).max() > 0  # it did run in float32


def test_backend_setting_single_precision():
    handle = create_backend("statevector", single_precision=True)
    assert handle.estimator.single_precision and handle.description["single_precision"]
    assert not create_backend("statevector").estimator.single_precision
