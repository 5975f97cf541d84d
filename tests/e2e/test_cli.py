"""End to end through the CLI, as a user runs it, and its one-line errors."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from hybrid_qiskit.cli import main
from tests.conftest import train_tiny


def test_train_writes_a_complete_run_directory(tiny_run):
    for name in ("model.pt", "last.pt", "config.json", "backend.json", "versions.json", "history.json",
                 "metrics.json", "curves.png", "predictions.png", "confusion.png"):
        assert (tiny_run / name).exists(), name
    history = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["test_samples"] == 40
    assert metrics["test_accuracy"] > 0.4  # 4 classes: well above chance, the fixture is not degenerate
    assert json.loads((tiny_run / "backend.json").read_text())["name"] == "statevector"
    assert json.loads((tiny_run / "versions.json").read_text())["qiskit"]


def test_evaluate_reproduces_the_test_accuracy_from_the_checkpoint(tiny_run, capsys):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert main(["evaluate", str(tiny_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == metrics["test_accuracy"]
    assert result["loss"] == pytest.approx(metrics["test_loss"], abs=1e-6)


def test_evaluate_on_another_exact_backend_agrees(tiny_run, capsys):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert main(["evaluate", str(tiny_run), "--backend", "aer_statevector", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == metrics["test_accuracy"]
    assert result["backend"]["name"] == "aer_statevector"


def test_same_seed_same_numbers(tmp_path):
    a = train_tiny(tmp_path, "a")
    b = train_tiny(tmp_path, "b")
    ha = json.loads((a / "history.json").read_text())
    hb = json.loads((b / "history.json").read_text())
    for x, y in zip(ha, hb):
        assert x["train_loss"] == y["train_loss"] and x["val_accuracy"] == y["val_accuracy"]


def test_resume_continues_an_interrupted_run(tmp_path, tiny_run, monkeypatch):
    # Interrupt the tiny run's recipe during epoch 2, resume it, and get the uninterrupted numbers.
    import hybrid_qiskit.training as training

    real_epoch, calls = training._train_epoch, []

    def interrupt_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(training, "_train_epoch", interrupt_second_epoch)
    with pytest.raises(AssertionError):  # main() returns 130 on Ctrl-C
        train_tiny(tmp_path, "r")
    partial = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [h["epoch"] for h in partial] == [1]
    monkeypatch.setattr(training, "_train_epoch", real_epoch)

    train_tiny(tmp_path, "r", "--resume")
    resumed = json.loads((tmp_path / "r" / "history.json").read_text())
    full = json.loads((tiny_run / "history.json").read_text())
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in full]
    assert [h["val_accuracy"] for h in resumed] == [h["val_accuracy"] for h in full]


def test_resume_refuses_changed_settings(tmp_path, tiny_run, capsys):
    run = tmp_path / "runs"
    shutil.copytree(tiny_run, run / "tiny")
    assert main(["train", "--out", str(run), "--name", "tiny", "--resume", "--lr", "0.5", "--quiet"]) == 2
    assert "differ" in _err(capsys)


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_unknown_backend_lists_known_ones(tmp_path, capsys):
    assert main(["train", "--backend", "nope", "--out", str(tmp_path), "--quiet"]) == 2
    err = _err(capsys)
    assert err.count("\n") == 0 and "unknown backend 'nope'" in err and "statevector" in err


def test_missing_dataset_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path),
                 "--quiet"]) == 2
    err = _err(capsys)
    assert err.count("\n") == 0 and "nowhere" in err and "--download" in err


def test_missing_dataset_from_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hybrid_qiskit.cli", "train", "--dataset", "mnist", "--data-dir",
                           str(tmp_path / "nowhere"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:")


def test_corrupt_checkpoint(tmp_path, tiny_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(run)]) == 2
    err = _err(capsys)
    assert "corrupt" in err and err.count("\n") == 0


def test_checkpoint_that_does_not_fit_its_config(tmp_path, tiny_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["model_config"]["num_qubits"] = 6  # the weights are for 4 qubits
    torch.save(payload, run / "model.pt")
    assert main(["evaluate", str(run)]) == 2
    assert "do not fit" in _err(capsys)


def test_evaluate_without_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run directory" in _err(capsys)


def test_backends_lists_the_registry(capsys):
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"statevector", "statevector_reference", "aer_statevector"} <= names
    sv = next(r for r in rows if r["name"] == "statevector")
    assert sv["needs_credentials"] is False and "seed" in sv["settings"]


def test_setting_a_backend_does_not_take(tmp_path, capsys):
    assert main(["train", "--shots", "100", "--out", str(tmp_path), "--quiet"]) == 2
    assert "does not take setting(s) shots" in _err(capsys)


def test_train_on_mnist_files_in_torchvision_layout_offline(tmp_path, capsys):
    from tests.test_data import _write_mnist_like

    _write_mnist_like(tmp_path / "data", "MNIST")
    for model, qubits in (("quantum", "4"), ("pixel_classical", "4")):
        assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--classes", "0,1",
                     "--model", model, "--qubits", qubits, "--reps", "1", "--epochs", "1", "--batch-size", "16",
                     "--out", str(tmp_path / "runs"), "--name", model, "--quiet"]) == 0
        metrics = json.loads((tmp_path / "runs" / model / "metrics.json").read_text())
        assert metrics["model"] == model and 0 <= metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("backend_args", [
    ["--backend", "aer_noisy", "--device", "fake_fez", "--shots", "1024"],
    ["--backend", "ibm_local", "--device", "fake_fez", "--shots", "1024", "--resilience-level", "0"],
])
def test_exact_checkpoint_evaluates_on_noisy_and_local_runtime_backends(tiny_run, backend_args, capsys):
    # A checkpoint trained on exact simulation runs on a fake device: transpiled to its ISA,
    # observables laid out, and an accuracy reported.
    assert main(["evaluate", str(tiny_run), *backend_args, "--limit", "12", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 12 and 0 <= result["accuracy"] <= 1
    assert result["backend"]["name"] == backend_args[1]
    assert result["backend"]["device"] == "fake_fez"


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--model", "nope"])
    err = _err(capsys)
    assert stop.value.code == 2 and err.count("\n") == 0 and err.startswith("error: argument --model")


def test_evaluate_closes_the_session_it_opened(tiny_run, monkeypatch, capsys):
    # A Session or Batch opened for an evaluation ends with it, whether it succeeds or fails.
    from backends import BackendHandle

    closed = []
    monkeypatch.setattr(BackendHandle, "close", lambda self: closed.append(self.description["mode"]))
    args = ["evaluate", str(tiny_run), "--backend", "ibm_local", "--device", "fake_fez", "--shots", "100",
            "--resilience-level", "0", "--backend-setting", "mode=session", "--limit", "2"]
    assert main(args) == 0
    assert closed == ["session"]
    monkeypatch.setattr("hybrid_qiskit.training.evaluate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        main(args)
    assert closed == ["session", "session"]


def test_entanglement_flag_reaches_the_run_and_its_checkpoint(tmp_path, capsys):
    run = train_tiny(tmp_path, "circular", "--entanglement", "circular")
    assert json.loads((run / "config.json").read_text())["entanglement"] == "circular"
    assert torch.load(run / "model.pt", weights_only=True)["model_config"]["entanglement"] == "circular"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == json.loads((run / "metrics.json").read_text())["test_accuracy"]


def test_cnn_width_and_augmentation_flags_reach_the_run(tmp_path):
    run = train_tiny(tmp_path, "wide", "--cnn-width", "2", "--augment", "--augment-degrees", "0",
                     "--augment-shift", "1", "--augment-flip", "--augment-erase", "0.3")
    config = json.loads((run / "config.json").read_text())
    assert (config["cnn_width"], config["augment_degrees"], config["augment_shift"]) == (2, 0.0, 1.0)
    assert (config["augment_flip"], config["augment_erase"]) == (True, 0.3)
    assert torch.load(run / "model.pt", weights_only=True)["model_config"]["cnn_width"] == 2
    assert main(["train", "--dataset", "digits", "--augment-erase", "2", "--out", str(tmp_path)]) == 2


def test_batch_norm_and_label_smoothing_reach_the_run(tmp_path):
    """--batch-norm puts BatchNorm2d after both convolutions (running statistics in the
    checkpoint, evaluation in eval mode reproduces the run's test accuracy); --label-smoothing
    changes the training loss and nothing else of the run's shape."""
    run = train_tiny(tmp_path, "bn", "--batch-norm", "--label-smoothing", "0.2")
    config = json.loads((run / "config.json").read_text())
    assert (config["batch_norm"], config["label_smoothing"]) == (True, 0.2)
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["model_config"]["batch_norm"] is True
    assert {"features.conv.1.running_mean", "features.conv.5.running_var"} <= set(saved["state_dict"])
    plain = train_tiny(tmp_path, "plain", "--batch-norm")
    smoothed, unsmoothed = (json.loads((r / "history.json").read_text())[0]["train_loss"] for r in (run, plain))
    assert smoothed != unsmoothed
    assert main(["evaluate", str(run), "--json"]) == 0
    assert main(["train", "--dataset", "digits", "--label-smoothing", "1", "--out", str(tmp_path)]) == 2


def test_val_fraction_0_trains_on_every_image_and_keeps_the_last_epoch(tmp_path, capsys):
    """--val-fraction 0 (the final fit once a recipe is chosen): no validation images, so the
    best checkpoint is the last epoch's; what needs validation images says so in one line."""
    run = train_tiny(tmp_path, "all", "--val-fraction", "0")
    assert json.loads((run / "data.json").read_text())["val"] == 0
    history = json.loads((run / "history.json").read_text())
    assert [(h["val_loss"], h["val_accuracy"]) for h in history] == [(None, None), (None, None)]
    best, last = (torch.load(run / f, weights_only=True) for f in ("model.pt", "last.pt"))
    assert best["epoch"] == last["epoch"] == 2
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_val_accuracy"] is None and (run / "curves.png").exists()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["test_accuracy"]
    assert main(["evaluate", str(run), "--split", "val"]) == 2
    err = _err(capsys)
    assert "no images" in err and "val_fraction 0" in err and "\n" not in err
    assert main(["train", "--dataset", "digits", "--val-fraction", "0", "--patience", "3",
                 "--out", str(tmp_path)]) == 2
    assert "--patience" in _err(capsys)


def test_runs_from_before_the_later_settings_load_as_they_were_trained(tmp_path, tiny_run, capsys):
    """Runs written before a setting existed lack it everywhere: they were trained with its
    default (reverse_linear heads, LeNet-5's width, shifts and rotations only), and load (and
    resume) as such."""
    from hybrid_qiskit.config import LATER_SETTINGS
    from hybrid_qiskit.runs import missing_settings

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    assert config.pop("entanglement") == "reverse_linear"
    for key in LATER_SETTINGS - {"entanglement"}:
        config.pop(key)
    (run / "config.json").write_text(json.dumps(config))
    for name in ("model.pt", "last.pt"):
        payload = torch.load(run / name, weights_only=True)
        for key in ("entanglement", "cnn_width", "batch_norm"):
            del payload["model_config"][key]
        torch.save(payload, run / name)
    assert missing_settings(run) == []
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["test_accuracy"]
