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


def test_a_wider_lenet_keeps_the_baseline_matched_and_old_checkpoints_load_as_lenet5():
    wide = ModelConfig(num_qubits=8, reps=2, cnn_width=3)
    hybrid = build_model(wide, create_backend("statevector"))
    classical = build_model(ModelConfig(**{**wide.to_dict(), "kind": "classical"}))
    assert hybrid.features.conv[0].out_channels == 18 and hybrid.features.out_features == 252
    assert classical.features.conv[3].out_channels == 48
    gap = abs(count_parameters(hybrid) - count_parameters(classical))
    assert gap <= 253 + 8 + 10 + quantum_weight_count(wide)  # within one bottleneck unit of the wider CNN
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "cnn_width"}  # a checkpoint from before
    assert ModelConfig.from_dict(old).cnn_width == 1


def test_batch_norm_follows_each_convolution_and_keeps_the_baseline_matched():
    config = ModelConfig(num_qubits=8, reps=2, batch_norm=True)
    hybrid = build_model(config, create_backend("statevector"))
    classical = build_model(ModelConfig(**{**config.to_dict(), "kind": "classical"}))
    kinds = [type(m).__name__ for m in hybrid.features.conv]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2 + ["Flatten"]
    plain = build_model(ModelConfig(num_qubits=8, reps=2), create_backend("statevector"))
    assert count_parameters(hybrid) - count_parameters(plain) == 2 * (6 + 16)  # a scale and a shift per channel
    assert abs(count_parameters(hybrid) - count_parameters(classical)) <= 85 + 8 + 10 + quantum_weight_count(config)
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "batch_norm"}  # a checkpoint from before
    assert ModelConfig.from_dict(old).batch_norm is False


def test_quantum_only_model_on_pooled_pixels():
    cfg = ModelConfig(kind="quantum", num_qubits=4, reps=2, num_classes=2)
    model = build_model(cfg, create_backend("statevector"))
    assert model(torch.randn(6, 1, 28, 28)).shape == (6, 2)
    with pytest.raises(HybridQiskitError):
        build_model(ModelConfig(kind="quantum", num_qubits=5), create_backend("statevector"))


def test_unknown_model_kind():
    with pytest.raises(HybridQiskitError):
        ModelConfig(kind="transformer")


def test_each_model_kind_knows_whether_it_is_quantum():
    from qiskit_machine_learning.connectors import TorchConnector

    from hybrid_qiskit.models import MODEL_KINDS, is_quantum

    assert {k for k in MODEL_KINDS if is_quantum(k)} == {"hybrid", "quantum"}
    for kind in MODEL_KINDS:
        cfg = ModelConfig(kind=kind, num_qubits=4, reps=1)
        model = build_model(cfg, create_backend("statevector") if is_quantum(kind) else None)
        assert isinstance(model.head, TorchConnector) == is_quantum(kind)  # a QNN, or tanh(Linear)
    with pytest.raises(HybridQiskitError):
        is_quantum("transformer")


def test_matched_width_widens_the_baseline_for_a_head_with_many_weights():
    from hybrid_qiskit.models import matched_width

    # 312 quantum weights: a 4-wide tanh head would leave the baseline ~290 parameters short.
    many = ModelConfig(num_qubits=4, reps=12, ansatz="efficient_su2", reuploads=3, num_classes=10)
    width = matched_width(many)
    assert width > many.num_qubits
    hybrid = build_model(many, create_backend("statevector"))
    classical = build_model(ModelConfig(**{**many.to_dict(), "kind": "classical"}))
    gap = abs(count_parameters(hybrid) - count_parameters(classical))
    assert gap <= 85 + width + 10  # within one bottleneck unit


def test_a_pixel_classical_run_is_a_sweep_baseline_not_a_swept_model(tmp_path, capsys):
    import json

    from hybrid_qiskit.cli import main
    from tests.conftest import train_tiny

    quantum = train_tiny(tmp_path, "q", "--model", "quantum", "--epochs", "1")
    pixels = train_tiny(tmp_path, "px", "--model", "pixel_classical", "--epochs", "1")
    assert main(["noise-sweep", str(pixels), "--levels", "0", "--shots", "exact", "--limit", "8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "classical" in err and "--baseline" in err and "\n" not in err
    argv = ["noise-sweep", str(quantum), "--levels", "0", "--shots", "exact", "--baseline", str(pixels),
            "--name", "px", "--limit", "8", "--quiet"]
    assert main(argv) == 0
    summary = json.loads((quantum / "noise" / "px" / "summary.json").read_text())
    assert 0 <= summary["classical_baseline"]["accuracy"] <= 1
    assert {r["model"] for r in summary["rows"] if r["noise"] == "depolarizing"} == {"q"}


def test_quantum_models_use_quantum_head_and_keep_the_checkpoint_keys():
    from hybrid_qiskit.qnn import QuantumHead

    model = build_model(ModelConfig(num_qubits=4, reps=1), create_backend("statevector"))
    assert isinstance(model.head, QuantumHead)
    # The keys every checkpoint saved so far holds (the head was a bare TorchConnector).
    assert sorted(model.state_dict()) == [
        "features.conv.0.bias", "features.conv.0.weight", "features.conv.3.bias", "features.conv.3.weight",
        "features.fc.0.bias", "features.fc.0.weight", "features.fc.2.bias", "features.fc.2.weight",
        "head._weights", "head.weight", "readout.bias", "readout.weight", "to_qubits.bias", "to_qubits.weight",
    ]
    quantum = build_model(ModelConfig(kind="quantum", num_qubits=4, reps=1), create_backend("statevector"))
    assert isinstance(quantum.head, QuantumHead)
