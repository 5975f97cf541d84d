"""The quantum head: gradients against finite differences, and exact backends against each other."""

import numpy as np
import pytest
import torch

from backends import create_backend
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.qnn import build_qnn, build_quantum_layer

HEADS = [
    dict(feature_map="angle", ansatz="real_amplitudes", reps=2),
    dict(feature_map="zz", ansatz="efficient_su2", reps=1),
    dict(feature_map="angle", ansatz="efficient_su2", reps=1, reuploads=2),
]


def _random(qnn, batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, np.pi, (batch, qnn.num_inputs)), rng.uniform(-np.pi, np.pi, qnn.num_weights)


@pytest.mark.parametrize("spec", HEADS)
def test_qnn_gradients_match_finite_differences(spec):
    qnn = build_qnn(build_head_circuit(3, **spec), create_backend("statevector"))
    x, w = _random(qnn, 4)
    gx, gw = qnn.backward(x, w)
    eps = 1e-6
    fd_x = np.stack([(qnn.forward(x + eps * e, w) - qnn.forward(x - eps * e, w)) / (2 * eps)
                     for e in np.eye(qnn.num_inputs)[:, None, :]], axis=-1)
    fd_w = np.stack([(qnn.forward(x, w + eps * e) - qnn.forward(x, w - eps * e)) / (2 * eps)
                     for e in np.eye(qnn.num_weights)], axis=-1)
    np.testing.assert_allclose(gx, fd_x, atol=1e-6)
    np.testing.assert_allclose(gw, fd_w, atol=1e-6)


def test_torch_connector_passes_gradients_to_inputs_and_weights():
    layer = build_quantum_layer(build_head_circuit(3, reps=1), create_backend("statevector"), seed=1)
    x = torch.rand(5, 3, dtype=torch.float64) * np.pi
    x.requires_grad_(True)
    coeffs = torch.linspace(-1, 1, 3)
    (layer(x) * coeffs).sum().backward()

    def f(xv, wv):
        return float((torch.as_tensor(layer.neural_network.forward(xv, wv)) * coeffs).sum())

    w = layer.weight.detach().numpy().astype(float)
    eps = 1e-5
    # TorchConnector returns float32: compare at float32 accuracy.
    xs = x.detach().numpy()
    fd_x = np.zeros_like(xs)
    for i in range(5):
        for j in range(3):
            d = np.zeros_like(xs)
            d[i, j] = eps
            fd_x[i, j] = (f(xs + d, w) - f(xs - d, w)) / (2 * eps)
    fd_w = np.array([(f(xs, w + eps * e) - f(xs, w - eps * e)) / (2 * eps) for e in np.eye(len(w))])
    np.testing.assert_allclose(x.grad.numpy(), fd_x, atol=1e-4)
    np.testing.assert_allclose(layer.weight.grad.numpy(), fd_w, atol=1e-4)


@pytest.mark.parametrize("spec", HEADS)
def test_statevector_and_aer_statevector_agree(spec):
    head = build_head_circuit(3, **spec)
    fast = build_qnn(head, create_backend("statevector"))
    aer = build_qnn(head, create_backend("aer_statevector", seed=1))
    x, w = _random(fast, 6, seed=2)
    np.testing.assert_allclose(fast.forward(x, w), aer.forward(x, w), atol=1e-6)
    for a, b in zip(fast.backward(x, w), aer.backward(x, w)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_exact_backends_have_zero_precision():
    # A positive precision would make the exact estimators add Gaussian noise.
    for name in ("statevector", "statevector_reference", "aer_statevector"):
        assert create_backend(name).precision == 0.0


def test_initial_weights_are_seeded():
    head = build_head_circuit(2, reps=1)
    a = build_quantum_layer(head, create_backend("statevector"), seed=5).weight.detach()
    b = build_quantum_layer(head, create_backend("statevector"), seed=5).weight.detach()
    c = build_quantum_layer(head, create_backend("statevector"), seed=6).weight.detach()
    assert torch.equal(a, b) and not torch.equal(a, c)
