"""Noise sweeps: the CLI end to end on the tiny run, resuming, readout mitigation, and errors."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.cli import main
from hybrid_qiskit.noise import cell
from hybrid_qiskit.noise.mitigation import ReadoutMitigatedEstimator, calibrate_readout, mitigate_z
from hybrid_qiskit.noise.store import CellStore
from tests.conftest import train_tiny

FAST = ["--limit", "24", "--quiet"]


@pytest.fixture
def run(tmp_path, tiny_run):
    """A writable copy of the tiny run (the shared one must stay untouched)."""
    return shutil.copytree(tiny_run, tmp_path / "tiny")


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    """The tiny recipe on digits 0 and 1: accurate after two epochs, so noise has room to hurt
    (the ten-class tiny run is near chance)."""
    return train_tiny(tmp_path_factory.mktemp("noise"), "zero-one", "--classes", "0,1")


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _sweep_dir(run):
    """The one sweep folder of ``run`` (default names carry the settings' fingerprint)."""
    (out,) = (run / "noise").iterdir()
    return out


def test_accuracy_and_signal_fall_as_depolarizing_noise_rises(two_class_run, tmp_path):
    run = shutil.copytree(two_class_run, tmp_path / "zero-one")
    argv = ["noise-sweep", str(run), "--levels", "0,0.3,1", "--shots", "exact,256", "--repeats", "2", *FAST]
    assert main(argv) == 0
    out = _sweep_dir(run)
    assert out.name.startswith("depolarizing-all_to_all-")
    for name in ("cells.jsonl", "table.csv", "summary.csv", "summary.md", "summary.json",
                 "accuracy_vs_noise.png", "accuracy_vs_shots.png"):
        assert (out / name).exists(), name
    # 1 exact reference + 3 levels x (1 exact cell + 2 repeats at 256 shots)
    assert len(_rows(out / "table.csv")) == 10
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classical_baseline"] is None and "--baseline" in summary["classical_baseline_note"]
    exact = summary["exact_accuracy"]["zero-one"]
    assert exact > 0.9
    row = {(r["level"], r["shots"]): r for r in summary["rows"] if r["noise"] == "depolarizing"}
    assert row["0", "exact"]["accuracy_mean"] == exact  # no noise, no shots: the exact simulation
    for shots in ("exact", "256"):
        acc = [row[p, shots]["accuracy_mean"] for p in ("0", "0.3", "1")]
        z = [row[p, shots]["mean_abs_z_mean"] for p in ("0", "0.3", "1")]
        assert z[0] > 2 * z[1] and z[1] > z[2]  # the signal shrinks (to the shot-noise floor)...
        assert acc[0] >= acc[1] and acc[2] < acc[0] - 0.2  # ...and, once it is gone, so is accuracy
    assert row["0.3", "256"]["repeats"] == 2 and row["0.3", "exact"]["repeats"] == 1


def test_a_killed_sweep_resumes_without_recomputing_finished_cells(run, monkeypatch):
    real, calls = cell.evaluate_cell, []

    def dies_on_third_cell(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    argv = ["noise-sweep", str(run), "--levels", "0,0.01,0.1", "--shots", "128", "--repeats", "2", *FAST]
    monkeypatch.setattr(cell, "evaluate_cell", dies_on_third_cell)
    assert main(argv) == 130
    cells = _sweep_dir(run) / "cells.jsonl"
    assert len(cells.read_text().splitlines()) == 2
    with open(cells, "a") as fh:  # and a line torn by the kill
        fh.write('{"identity": {"spl')

    calls.clear()
    monkeypatch.setattr(cell, "evaluate_cell", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert main(argv) == 0
    total = 1 + 3 * 2  # the exact reference + 3 levels x 2 repeats
    assert len(calls) == total - 2
    assert len(_rows(_sweep_dir(run) / "table.csv")) == total

    calls.clear()
    assert main(argv) == 0 and not calls  # all done: nothing runs again


def test_cell_store_skips_torn_lines(tmp_path):
    path = tmp_path / "cells.jsonl"
    path.write_text('{"identity": {"a": 1}, "accuracy": 0.5}\n{"identity": {"a"')
    store = CellStore(path)
    store.append({"identity": {"a": 2}, "accuracy": 0.7})
    again = CellStore(path)
    assert again.get({"a": 1})["accuracy"] == 0.5 and again.get({"a": 2})["accuracy"] == 0.7


def test_mitigate_z_inverts_asymmetric_flips():
    z, a, b = np.array([-1.0, -0.3, 0.0, 0.8, 1.0]), 0.04, 0.12
    measured = (b - a) + (1 - a - b) * z  # the mean of a ±1 outcome with those flips
    assert np.allclose(mitigate_z(measured, a, b), z)


def test_readout_mitigation_removes_the_bias_of_a_known_expectation():
    from qiskit.primitives import BackendEstimatorV2
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, ReadoutError

    flips = {0: (0.05, 0.15), 1: (0.10, 0.02)}  # qubit -> P(1|0), P(0|1): asymmetric
    model = NoiseModel()
    for q, (a, b) in flips.items():
        model.add_readout_error(ReadoutError([[1 - a, a], [b, 1 - b]]), [q])
    shots = 40_000
    # Qiskit's reference shot estimator: it measures, so the readout error is in its counts.
    raw = BackendEstimatorV2(backend=AerSimulator(noise_model=model, seed_simulator=11),
                             options={"default_precision": shots**-0.5})
    angles = (2.5, 0.6)  # where these flips bias ⟨Z⟩ by +0.26 and -0.18
    qc = QuantumCircuit(2)
    for q, theta in enumerate(angles):
        qc.ry(theta, q)
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 2) for q in (0, 1)]
    truth = np.cos(angles)

    biased = raw.run([(qc, observables)]).result()[0].data.evs
    mitigated_estimator = ReadoutMitigatedEstimator(raw)
    mitigated = mitigated_estimator.run([(qc, observables)]).result()[0].data.evs
    tol = 4 * 2 / math.sqrt(shots) / 0.8  # a few shot-noise sigmas, inflated by the inversion
    assert np.all(np.abs(biased - truth) > 0.1)
    assert np.allclose(mitigated, truth, atol=tol)
    for q, (a, b) in flips.items():  # the calibration circuits measured the flip rates
        assert mitigated_estimator.calibration[q] == pytest.approx((a, b), abs=0.01)


def test_exact_calibration_recovers_the_readout_error():
    from backends import create_backend

    handle = create_backend("aer_noisy_exact", device="all_to_all", readout_error=0.07, seed=0)
    cal = calibrate_readout(handle.estimator, [0, 2], 3)
    assert cal[0] == pytest.approx((0.07, 0.07), abs=1e-9) and cal[2] == pytest.approx((0.07, 0.07), abs=1e-9)


def test_a_nearly_random_readout_is_left_uncorrected():
    from backends import create_backend

    handle = create_backend("aer_noisy_exact", device="all_to_all", readout_error=0.49, seed=0)
    qc = QuantumCircuit(1)
    qc.ry(0.3, 0)
    z = SparsePauliOp("Z")
    raw = handle.estimator.run([(qc, z)]).result()[0].data.evs
    mitigated = ReadoutMitigatedEstimator(handle.estimator)
    assert mitigated.run([(qc, z)]).result()[0].data.evs == pytest.approx(raw)  # not x50
    assert mitigated.uncorrected == [0]


def test_compare_and_baseline_on_one_plot(run, tmp_path):
    baseline = train_tiny(tmp_path, "classical", "--model", "classical")
    other = shutil.copytree(run, tmp_path / "other" / "tiny")  # same name: labels must stay apart
    assert main(["noise-sweep", str(run), "--levels", "0,0.05", "--shots", "exact", "--compare", str(other),
                 "--baseline", str(baseline), "--name", "cmp", *FAST]) == 0
    summary = json.loads((run / "noise" / "cmp" / "summary.json").read_text())
    assert set(summary["models"]) == {"tiny", "tiny#1"}
    assert 0 <= summary["classical_baseline"]["accuracy"] <= 1 and summary["classical_baseline_note"] is None
    models = {r["model"] for r in summary["rows"] if r["noise"] == "depolarizing"}
    assert models == {"tiny", "tiny#1"}


def test_compare_refuses_a_run_trained_on_other_images(run, tmp_path, capsys):
    other = shutil.copytree(run, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["seed"] += 1  # digits' train/test split follows the seed
    (other / "config.json").write_text(json.dumps(config))
    assert main(["noise-sweep", str(run), "--compare", str(other), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seed" in err


@pytest.mark.parametrize("flags, message", [
    (["--levels", "0,abc"], "not a number"),
    (["--levels", "0,-0.1"], "must be >= 0"),
    (["--levels", "0,1.5"], "a probability"),
    (["--noise", "thermal", "--levels", "0"], "T1 must be > 0"),
    (["--noise", "cosmic"], "known: depolarizing"),
    (["--shots", "0"], "positive integer or 'exact'"),
    (["--mitigation", "magic"], "known: none"),
    (["--mitigation", "trex"], "--noise device"),
    (["--noise-scale", "1", "--noise", "readout"], "--noise device"),
    (["--noise", "device", "--devices", "fake_nowhere"], "unknown fake device"),
    (["--repeats", "0"], "--repeats"),
])
def test_bad_sweep_settings_are_one_line_errors(run, capsys, flags, message):
    assert main(["noise-sweep", str(run), *flags, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and message in err, err
    assert not (run / "noise").exists()


def test_sweeping_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["noise-sweep", str(tmp_path), *FAST]) == 2
    assert "not a run directory" in capsys.readouterr().err
