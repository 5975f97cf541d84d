"""QuantumHead: the project's quantum layer as a PyTorch module (hybrid_qiskit.qnn)."""

import numpy as np
import pytest
import torch
from torch import nn

from backends import create_backend
from hybrid_qiskit import QuantumHead
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.primitives import mps
from hybrid_qiskit.qnn import build_quantum_layer


def _angles(batch=6, n=3, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(0, np.pi, (batch, n)), dtype=torch.float32)


def test_same_values_and_gradients_as_the_layer_the_models_had():
    x = _angles()
    head = QuantumHead(3, reps=1, seed=4)
    layer = build_quantum_layer(build_head_circuit(3, reps=1), create_backend("statevector"), seed=4)
    assert torch.equal(head.weight, layer.weight)
    for module in (head, layer):
        module.zero_grad()
        module(x).pow(2).sum().backward()
    assert torch.equal(head(x), layer(x))
    # The head's backward pass is one vector-Jacobian product summed in float64, the layer's
    # TorchConnector's float32 contraction of K Jacobians: equal to float32's precision.
    torch.testing.assert_close(head.weight.grad, layer.weight.grad, rtol=1e-5, atol=1e-6)
    # The project's fast exact estimator (statevector or MPS chain), not a stock one.
    assert type(head.neural_network.estimator).__name__ == "BatchedStatevectorEstimator"


def test_state_dict_round_trip():
    head = QuantumHead(3, reps=1, seed=1)
    saved = head.state_dict()
    assert set(saved) == {"weight", "_weights"}  # TorchConnector's: what checkpoints hold
    other = QuantumHead(3, reps=1, seed=2)
    assert not torch.equal(other.weight, head.weight)
    other.load_state_dict(saved)
    x = _angles()
    assert torch.equal(other(x), head(x))


def test_to_backend_keeps_the_weights_and_returns_the_head():
    x = _angles()
    head = QuantumHead(3, reps=1, seed=3)
    exact = head(x).detach()
    weights = head.weight.detach().clone()
    assert head.to_backend("aer_noisy_exact", noise_scale=5) is head
    assert torch.equal(head.weight, weights)
    assert head.backend.name == "aer_noisy_exact"
    noisy = head(x).detach()
    assert (noisy - exact).abs().max() > 1e-3  # the noise shows
    assert (noisy - exact).abs().max() < 0.5  # and it is the same model
    head.to_backend("statevector")
    assert torch.allclose(head(x), exact, atol=1e-6)


def test_a_failed_move_leaves_the_head_where_it_was():
    head = QuantumHead(2, reps=1)
    before = head(_angles(n=2)).detach()
    with pytest.raises(HybridQiskitError, match="unknown backend"):
        head.to_backend("no_such_backend")
    with pytest.raises(HybridQiskitError, match="does not take"):
        head.to_backend("statevector", shots=10)
    assert head.backend.name == "statevector"
    assert torch.equal(head(_angles(n=2)), before)


def test_settings_go_with_a_backend_name_not_a_handle():
    with pytest.raises(HybridQiskitError, match="backend name"):
        QuantumHead(2, backend=create_backend("statevector"), shots=100)
    with pytest.raises(HybridQiskitError, match="registry name"):
        QuantumHead(2, backend=42)


def test_trains_inside_a_plain_sequential_model():
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 2), nn.Sigmoid(), QuantumHead(2, reps=1), nn.Linear(2, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0
    assert losses[-1] < losses[0]


def test_calibrate_maps_the_backends_statistics_onto_the_exact_ones():
    calibration = _angles(batch=32, n=3, seed=5)
    head = QuantumHead(3, reps=1, seed=0)
    exact = head(calibration).detach().double()
    head.to_backend("aer_noisy_exact", noise_scale=10)
    info = head.calibrate(calibration)
    assert info["samples"] == 32
    adapted = head(calibration).detach().double()
    assert torch.allclose(adapted.mean(0), exact.mean(0), atol=1e-5)
    assert torch.allclose(adapted.std(0), exact.std(0), atol=1e-5)
    assert set(head.state_dict()) == {"weight", "_weights"}  # nothing of it is saved
    head.calibrate(None)
    assert isinstance(head.restandardize, nn.Identity)
    head.calibrate(calibration)
    head.to_backend("statevector")  # the calibration belonged to the noisy backend
    assert isinstance(head.restandardize, nn.Identity)


@pytest.mark.parametrize(("n", "head"), [(3, {"reps": 1}), (12, {"reps": 4}), (12, {"reps": 2, "entanglement": "circular"})])
def test_the_backward_pass_is_one_vector_jacobian_product(monkeypatch, n, head):
    """QuantumHead's backward pass asks the gradient for Σ_k g_k ∂⟨Z_k⟩/∂θ once (a statevector
    at 3 qubits, exact chains at 12) instead of TorchConnector's K Jacobians, and gets the
    same gradients: the QNN's own Jacobians contracted in float64, to float32's precision."""
    layer = QuantumHead(n, seed=2, **head)
    qnn = layer.neural_network
    calls = []
    vjp = qnn.gradient.vjp
    monkeypatch.setattr(qnn.gradient, "vjp", lambda *a: calls.append(a[0] is qnn._circuit) or vjp(*a))
    built = []
    sites = mps._sites_rows_first
    monkeypatch.setattr(mps, "_sites_rows_first", lambda *a, **k: built.append(1) or sites(*a, **k))
    x = _angles(batch=5, n=n, seed=3).requires_grad_()
    g = torch.as_tensor(np.random.default_rng(4).normal(size=(5, n)), dtype=torch.float32)
    out = layer(x)
    (out * g).sum().backward()
    assert calls == [True]  # the circuit the forward pass ran
    assert len(built) == (n >= 12)  # a chain's state is built once, in the forward pass
    w = layer.weight.detach().numpy()
    np.testing.assert_allclose(out.detach().numpy(), qnn.forward(x.detach().numpy(), w), atol=1e-7)
    input_jac, weight_jac = qnn.backward(x.detach().numpy(), w)  # (B, K, inputs), (B, K, weights)
    g64 = g.double().numpy()
    np.testing.assert_allclose(x.grad.numpy(), np.einsum("bk,bki->bi", g64, input_jac), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.weight.grad.numpy(), np.einsum("bk,bkw->w", g64, weight_jac), rtol=1e-5, atol=1e-5)
