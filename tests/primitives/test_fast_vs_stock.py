"""The fast exact backend against the stock one, through EstimatorQNN.

``statevector`` (BatchedStatevectorEstimator + AdjointEstimatorGradient) must give the outputs and
the input and weight gradients of ``statevector_reference`` (StatevectorEstimator +
ParamShiftEstimatorGradient) for every feature map and ansatz we ship. Batches stay small: the
stock parameter-shift gradient simulates 2·P circuits per sample and observable.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backends import create_backend
from hybrid_qiskit.circuits import ANSATZE, FEATURE_MAPS, build_head_circuit
from hybrid_qiskit.qnn import build_qnn

# (qubits, reps, reuploads): every reps and reuploads value at least once per map x ansatz.
SHAPES = [(2, 1, 2), (3, 2, 1), (4, 1, 1), (2, 2, 2)]
CASES = [(fm, an, *shape) for fm, an in itertools.product(FEATURE_MAPS, ANSATZE) for shape in SHAPES]


def _qnns(fm, ansatz, n, reps, reuploads):
    head = build_head_circuit(n, feature_map=fm, ansatz=ansatz, reps=reps, reuploads=reuploads)
    return build_qnn(head, create_backend("statevector")), build_qnn(head, create_backend("statevector_reference"))


@pytest.mark.parametrize("fm,ansatz,n,reps,reuploads", CASES)
def test_outputs_and_gradients_match_stock(fm, ansatz, n, reps, reuploads):
    fast, stock = _qnns(fm, ansatz, n, reps, reuploads)
    rng = np.random.default_rng(hash((fm, ansatz, n, reps, reuploads)) % 2**32)
    x = rng.uniform(0, np.pi, (2, fast.num_inputs))
    w = rng.uniform(-np.pi, np.pi, fast.num_weights)

    np.testing.assert_allclose(fast.forward(x, w), stock.forward(x, w), rtol=0, atol=1e-6)
    fast_gx, fast_gw = fast.backward(x, w)
    stock_gx, stock_gw = stock.backward(x, w)
    assert fast_gx.shape == stock_gx.shape == (2, n, n)
    assert fast_gw.shape == stock_gw.shape == (2, n, fast.num_weights)
    np.testing.assert_allclose(fast_gx, stock_gx, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast_gw, stock_gw, rtol=0, atol=1e-6)


def test_backward_without_a_forward_first_and_with_new_values():
    """The gradient reuses the forward pass's final states when it can; it must not depend on
    whether there was a forward pass, nor pick up states of other values."""
    fast, stock = _qnns("angle", "real_amplitudes", 3, 1, 1)
    rng = np.random.default_rng(5)
    x1, x2 = rng.uniform(0, np.pi, (2, 3, 3))
    w = rng.uniform(-np.pi, np.pi, fast.num_weights)
    cold = fast.backward(x1, w)  # no forward yet
    fast.forward(x2, w)  # caches x2's states
    warm = fast.backward(x1, w)
    ref = stock.backward(x1, w)
    for a, b, c in zip(cold, warm, ref):
        np.testing.assert_allclose(a, c, atol=1e-6)
        np.testing.assert_allclose(b, c, atol=1e-6)


def test_batch_of_one_and_repeated_rows():
    fast, stock = _qnns("zz", "efficient_su2", 2, 1, 1)
    rng = np.random.default_rng(2)
    w = rng.uniform(-np.pi, np.pi, fast.num_weights)
    row = rng.uniform(0, np.pi, (1, 2))
    for x in (row, np.repeat(row, 3, axis=0)):
        np.testing.assert_allclose(fast.forward(x, w), stock.forward(x, w), atol=1e-6)
        for a, b in zip(fast.backward(x, w), stock.backward(x, w)):
            np.testing.assert_allclose(a, b, atol=1e-6)
