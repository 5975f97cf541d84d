"""Post-measurement normalization: the layer in training and evaluation, and the
re-estimation of per-qubit statistics on another backend (hybrid_qiskit/normalization.py)."""

import json
import shutil

import numpy as np
import pytest
import torch

from backends import create_backend
from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
from hybrid_qiskit.cli import main
from hybrid_qiskit.models import ModelConfig, build_model
from hybrid_qiskit.normalization import (
    EPS,
    QubitNorm,
    Stats,
    adapt_to_backend,
    calibration_set,
    head_outputs,
    restandardize,
)


def test_layer_uses_batch_statistics_in_training_and_running_ones_in_evaluation():
    torch.manual_seed(0)
    norm = QubitNorm(3)
    z = torch.randn(64, 3) * torch.tensor([0.1, 0.5, 2.0]) + torch.tensor([0.3, -0.2, 0.0])
    out = norm.train()(z)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(3), atol=1e-3)
    for _ in range(200):  # the running averages converge to the (unbiased) batch statistics
        norm(z)
    assert torch.allclose(norm.running_mean, z.mean(0), atol=1e-4)
    assert torch.allclose(norm.running_var, z.var(0), rtol=1e-3)
    norm.eval()
    one = norm(z[:1])  # evaluation: a sample's output does not depend on the rest of its batch
    assert torch.allclose(one, norm(z)[:1])
    assert torch.allclose(one, (z[:1] - norm.running_mean) / torch.sqrt(norm.running_var + EPS))
    before = norm.running_mean.clone()
    norm.train()(z[:1])  # a training batch of one image: running statistics, no crash, no update
    assert torch.equal(norm.running_mean, before)


def test_restandardize_undoes_a_known_per_qubit_scale_and_shift():
    rng = np.random.default_rng(0)
    exact = rng.normal([0.5, -0.3, 0.1, 0.8], [0.2, 0.4, 0.05, 0.1], size=(500, 4))
    scale, shift = np.array([0.3, 0.8, 0.5, 0.1]), np.array([0.05, -0.1, 0.02, 0.3])
    noisy = scale * exact + shift  # gate-noise shrink and readout offset, different on every qubit
    calib = slice(0, 64)  # statistics from a calibration subset only
    recovered = restandardize(noisy, Stats.of(noisy[calib]), Stats.of(exact[calib]))
    assert np.allclose(recovered, exact, atol=1e-3)


def _distorted(model, scale, shift):
    """``model`` whose head's ⟨Z⟩ come out scaled and shifted per qubit (a noisy backend)."""
    clean = model.quantum
    model.quantum = lambda angles: clean(angles) * scale + shift
    return model


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("stats", ["calibration", "batch"])
def test_reestimation_makes_the_logits_immune_to_a_per_qubit_scale_and_shift(normalize, stats):
    """Same weights, one with its head distorted: adapted to their own backends, both give the
    same logits (with the layer: it standardizes with the backend's statistics; without: ⟨Z⟩ is
    mapped back to the clean statistics)."""
    config = ModelConfig(kind="pixel_classical", num_qubits=4, num_classes=3, image_size=8, normalize=normalize)
    clean, noisy = build_model(config, seed=1).eval(), build_model(config, seed=1).eval()
    scale, shift = torch.tensor([0.2, 0.9, 0.5, 0.05]), torch.tensor([0.1, -0.2, 0.0, 0.3])
    _distorted(noisy, scale, shift)
    images = torch.rand(40, 1, 8, 8)
    calib = torch.rand(32, 1, 8, 8)
    reference = (Stats.of(head_outputs(clean, calib)), "clean")
    adapt_to_backend(clean, stats, reference, calib)
    adapt_to_backend(noisy, stats, reference, calib)
    with torch.no_grad():
        want, got = clean.decode(clean.quantum(clean.encode(images))), noisy.decode(noisy.quantum(noisy.encode(images)))
        unadapted = build_model(config, seed=1).eval()
        _distorted(unadapted, scale, shift)
        wrong = unadapted.decode(unadapted.quantum(unadapted.encode(images)))
    assert torch.allclose(got, want, atol=1e-3)
    assert not torch.allclose(wrong, want, atol=1e-1)  # the distortion does matter without it
    if stats == "batch":
        with pytest.raises(Exception, match="at least 2 images"):
            noisy.decode(noisy.quantum(noisy.encode(images[:1])))


def test_calibration_set_is_fixed_by_the_seed_and_drawn_from_the_training_split():
    from torch.utils.data import TensorDataset

    train = TensorDataset(torch.arange(100.0).reshape(100, 1), torch.zeros(100))
    a, ia = calibration_set(train, 8, seed=3)
    b, ib = calibration_set(train, 8, seed=3)
    assert ia == ib and torch.equal(a, b) and a.flatten().tolist() == [float(i) for i in ia]
    assert calibration_set(train, 8, seed=4)[1] != ia


def test_checkpoints_without_normalization_fields_still_load(tiny_run):
    payload = load_checkpoint(tiny_run / "model.pt")
    payload["model_config"].pop("normalize", None)  # a checkpoint written before normalization existed
    model = restore_model(payload, create_backend("statevector"))
    assert isinstance(model.norm, torch.nn.Identity) and not any(k.startswith("norm.") for k in model.state_dict())


def test_normalized_run_saves_its_statistics_and_evaluates_elsewhere_with_calibration(tiny_norm_run, tmp_path, capsys):
    run = shutil.copytree(tiny_norm_run, tmp_path / "run")
    payload = load_checkpoint(run / "model.pt")
    assert payload["model_config"]["normalize"] is True
    assert payload["state_dict"]["norm.num_batches_tracked"] > 0  # trained statistics, saved
    argv = ["evaluate", str(run), "--backend", "aer_noisy_exact", "--backend-setting", "readout_error=0.1",
            "--limit", "12", "--calibration-samples", "16", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    norm = result["normalization"]  # another backend: re-estimated from the calibration set by default
    assert norm["stats"] == "calibration" and norm["calibration_samples"] == 16 and norm["reference"] == "trained"
    assert len(norm["calibration_indices"]) == 16 and len(norm["backend_stats"]["mean"]) == 4
    assert list(run.glob("eval-*normcalibration16-test.json"))
    assert main(["evaluate", str(run), "--limit", "12", "--json"]) == 0  # its own backend: trained statistics
    assert json.loads(capsys.readouterr().out.split("\nwrote")[0])["normalization"] is None

