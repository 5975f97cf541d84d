import pytest
import torch

from backends import create_backend
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.models import ModelConfig, build_model, count_parameters, quantum_weight_count


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("kind", ["hybrid", "classical"])
def test_lenet_models_give_logits(kind, channels, size):
    cfg = ModelConfig(kind=kind, num_qubits=4, reps=1, in_channels=channels, image_size=size, num_classes=10)
    model = build_model(cfg, create_backend("statevector"))
    logits = model(torch.randn(3, channels, size, size))
    assert logits.shape == (3, 10)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    assert loss.item() > 0  # a loss that goes negative is a bug
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_quantum_head_outputs_are_expectation_values():
    cfg = ModelConfig(num_qubits=4, reps=1)
    model = build_model(cfg, create_backend("statevector"))
    z = model.quantum(model.encode(torch.randn(5, 1, 28, 28)))
    assert z.shape == (5, 4) and z.abs().max() <= 1 + 1e-6
    angles = model.encode(torch.randn(5, 1, 28, 28))
    assert angles.min() > 0 and angles.max() < torch.pi


def test_classical_baseline_matches_the_hybrid_parameter_count():
    for n, reps in [(4, 1), (8, 2)]:
        hybrid = build_model(ModelConfig(num_qubits=n, reps=reps), create_backend("statevector"))
        classical = build_model(ModelConfig(kind="classical", num_qubits=n, reps=reps))
        gap = abs(count_parameters(hybrid) - count_parameters(classical))
        # The closest matching width is within one bottleneck unit (~85 + m + C parameters).
        assert gap <= 85 + n + 10 + quantum_weight_count(ModelConfig(num_qubits=n, reps=reps))


def test_quantum_only_model_on_pooled_pixels():
    cfg = ModelConfig(kind="quantum", num_qubits=4, reps=2, num_classes=2)
    model = build_model(cfg, create_backend("statevector"))
    assert model(torch.randn(6, 1, 28, 28)).shape == (6, 2)
    with pytest.raises(HybridQiskitError):
        build_model(ModelConfig(kind="quantum", num_qubits=5), create_backend("statevector"))


def test_unknown_model_kind():
    with pytest.raises(HybridQiskitError):
        ModelConfig(kind="transformer")
