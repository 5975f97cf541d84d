"""QuantumHead: the project's quantum layer as a PyTorch module (hybrid_qiskit.qnn)."""

import numpy as np
import pytest
import torch
from torch import nn

from backends import create_backend
from hybrid_qiskit import QuantumHead
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
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
    assert torch.equal(head.weight.grad, layer.weight.grad)
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
