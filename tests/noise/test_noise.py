"""Noise sweeps: the CLI end to end on the tiny run, resuming, readout mitigation, and errors."""

import csv
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit import resources
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


# ---------------------------------------------------------------- executors, one writer, damaged logs
SMALL = ["--levels", "0,0.2", "--shots", "64,exact", "--repeats", "2", "--limit", "16", "--quiet"]


def _table(out, name="table.csv"):
    """A table without its timing column (the only thing that may differ between two runs)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(out / name)]


def test_two_workers_give_the_serial_table_and_a_killed_pool_sweep_resumes(run, tmp_path, monkeypatch, capsys):
    serial = shutil.copytree(run, tmp_path / "serial" / "tiny")
    assert main(["noise-sweep", str(serial), *SMALL]) == 0

    appended, real_append = [], CellStore.append

    def killed_after_three_cells(self, record):  # the driver dies while both workers are busy
        if len(appended) == 3:
            raise KeyboardInterrupt
        appended.append(1)
        real_append(self, record)

    monkeypatch.setattr(CellStore, "append", killed_after_three_cells)
    assert main(["noise-sweep", str(run), *SMALL, "--workers", "2"]) == 130
    cells = _sweep_dir(run) / "cells.jsonl"
    first = cells.read_text()
    assert len(first.splitlines()) == 3
    monkeypatch.setattr(CellStore, "append", real_append)
    capsys.readouterr()
    assert main(["noise-sweep", str(run), *SMALL, "--workers", "2"]) == 0
    total = 1 + 2 * (2 + 1)  # the exact reference + 2 levels x (2 repeats at 64 shots + exact)
    assert cells.read_text().startswith(first)  # finished cells kept as they were...
    assert len(cells.read_text().splitlines()) == total  # ...and none computed twice
    for name in ("table.csv", "summary.csv"):
        assert _table(_sweep_dir(run), name) == _table(_sweep_dir(serial), name)


@pytest.mark.ray
def test_ray_gives_the_serial_table(run, tmp_path):
    pytest.importorskip("ray")
    serial = shutil.copytree(run, tmp_path / "serial" / "tiny")
    assert main(["noise-sweep", str(serial), *SMALL]) == 0
    assert main(["noise-sweep", str(run), *SMALL, "--ray"]) == 0
    assert _table(_sweep_dir(run)) == _table(_sweep_dir(serial))


def test_ray_missing_says_how_to_install_it(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["noise-sweep", str(run), *SMALL, "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'hybrid-qiskit[cluster]'" in err


def test_a_pool_that_would_not_fit_in_memory_is_refused(run, monkeypatch, capsys):
    monkeypatch.setattr(resources, "available_memory", lambda: 5 * 2**29)  # 2.5 GB free
    assert main(["noise-sweep", str(run), *SMALL, "--workers", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--workers 3 needs about" in err and "--workers 2 or fewer" in err
    assert not (_sweep_dir(run) / "cells.jsonl").exists()
    assert main(["noise-sweep", str(run), *SMALL, "--workers", "0"]) == 2
    assert "--workers must be an integer >= 1" in capsys.readouterr().err


def test_a_second_identical_sweep_refuses_while_the_first_writes(run, capsys):
    from hybrid_qiskit.fileio import WriterLock

    argv = ["noise-sweep", str(run), *SMALL, "--name", "twin"]
    with WriterLock(run / "noise" / "twin", what="noise-sweep"):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"pid {os.getpid()}" in err
    assert not (run / "noise" / "twin" / "cells.jsonl").exists()


def test_damaged_cell_logs(run, capsys):
    argv = ["noise-sweep", str(run), "--levels", "0.1", "--shots", "exact", "--limit", "16", "--quiet"]
    assert main(argv) == 0
    cells = _sweep_dir(run) / "cells.jsonl"
    lines = cells.read_text().splitlines()
    damaged = json.loads(lines[1])
    del damaged["accuracy"]
    cells.write_text("\n".join([lines[0], json.dumps(damaged)]) + "\n")
    capsys.readouterr()
    assert main(argv) == 0  # the damaged line's cell runs again, with one warning line
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cells) in err and "line(s) 2 (no valid 'accuracy')" in err
    assert len(_rows(cells.parent / "table.csv")) == 2

    cells.write_bytes(bytes(range(256)) * 4)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cells) in err and "binary" in err and "move it away" in err


@pytest.mark.parametrize("name", ["/abs/path", "../x", "a/b", ".hidden", ".."])
def test_a_sweep_name_stays_inside_the_run_folder(run, tmp_path, capsys, name):
    assert main(["noise-sweep", str(run), *SMALL, "--name", name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad --name" in err
    assert not (run / "noise").exists() and not (run.parent / "x").exists()


def test_an_unwritable_noise_folder_is_one_line(run, capsys):
    (run / "noise").write_text("not a folder")  # as root, a read-only folder is still writable
    assert main(["noise-sweep", str(run), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write to" in err


def test_sweeps_with_other_devices_keep_their_own_tables(run, capsys):
    common = ["noise-sweep", str(run), "--noise", "readout", "--levels", "0.05", "--shots", "exact",
              "--limit", "16"]
    assert main([*common, "--devices", "all_to_all", "--quiet"]) == 0
    capsys.readouterr()
    assert main([*common, "--devices", "fake_manila"]) == 0
    out = capsys.readouterr().out
    assert "1 reused from the run's other sweeps" in out  # the exact reference is the same cell
    folders = sorted(p.name for p in (run / "noise").iterdir())
    assert len(folders) == 2 and any("manila" in f for f in folders) and any("all_to_all" in f for f in folders)
    for folder in folders:
        devices = {r["device"] for r in _rows(run / "noise" / folder / "table.csv")} - {"-"}
        assert devices == ({"fake_manila"} if "manila" in folder else {"all_to_all"})
        assert f"outputs in {run / 'noise' / folder}" in out or "all_to_all" in folder
        # one shot count: no accuracy-vs-shots figure (it would be one point per line)
        assert not (run / "noise" / folder / "accuracy_vs_shots.png").exists()


def test_normalize_and_refit_mitigations_add_their_rows_and_reestimate_per_cell(two_class_run, tmp_path):
    """``--mitigation none,normalize,refit``: one table, three rows per setting. Strong relaxation
    pulls every ⟨Z⟩ towards +1 (a per-qubit shift the readout Linear cannot absorb);
    re-standardizing with the noisy backend's own statistics takes the shift out, and the re-fit
    readout (from the same calibration images and their labels) loses nothing against it."""
    run = shutil.copytree(two_class_run, tmp_path / "zero-one")
    argv = ["noise-sweep", str(run), "--noise", "thermal", "--levels", "inf,0.2", "--shots", "exact",
            "--mitigation", "none,normalize,refit", "--calibration-samples", "16", *FAST]
    assert main(argv) == 0
    out = _sweep_dir(run)
    summary = json.loads((out / "summary.json").read_text())
    row = {(r["level"], r["mitigation"]): r for r in summary["rows"] if r["noise"] == "thermal"}
    assert set(row) == {(lv, m) for lv in ("inf", "0.2") for m in ("none", "normalize", "refit")}
    assert "refit" in (out / "summary.md").read_text() and (out / "accuracy_vs_noise.png").exists()
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    for mitigation in ("normalize", "refit"):
        done = [c for c in cells if c["mitigation"] == mitigation]
        assert len(done) == 2 and all(c["identity"]["calibration_samples"] == 16 for c in done)
        assert all({k: v for k, v in c["normalization"].items() if k != "refit"} == {
            "stats": "calibration", "reference": "exact simulation of the calibration set",
            "calibration_samples": 16} for c in done)
        assert all(("refit" in c["normalization"]) == (mitigation == "refit") for c in done)
    refits = [c["normalization"]["refit"] for c in cells if c["mitigation"] == "refit"]
    assert all(r["samples"] == 16 and r["calibration_accuracy_after"] >= r["calibration_accuracy_before"]
               for r in refits)
    assert row["0.2", "none"]["accuracy_mean"] < row["inf", "none"]["accuracy_mean"] - 0.1  # the noise hurts...
    assert row["0.2", "normalize"]["accuracy_mean"] > row["0.2", "none"]["accuracy_mean"]  # ...less once normalized
    # Far above the unmitigated 0.42; fitted to 16 images, the re-fit may move one of the 12 test images.
    assert row["0.2", "refit"]["accuracy_mean"] >= row["0.2", "normalize"]["accuracy_mean"] - 0.09
    assert row["inf", "refit"]["accuracy_mean"] >= row["inf", "none"]["accuracy_mean"] - 0.09


def test_wide_heads_sweep_on_noisy_trajectories_with_one_trajectory_per_shot():
    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.noise.grid import Cell, backend_for_cell

    def pick(width, shots=1024, mitigation="none", simulator="auto"):
        return backend_for_cell(Cell("device", "fake_fez", "4", shots, mitigation, 0), seed=0, optimization_level=1,
                                two_qubit_factor=1.0, width=width, simulator=simulator)

    assert pick(8)[0] == "aer_noisy" and pick(8, shots=None)[0] == "aer_noisy_exact"
    name, settings = pick(16)
    assert name == "noisy_trajectories" and settings["shots"] == settings["trajectories"] == 1024
    assert settings["noise_scale"] == 4.0
    assert pick(8, simulator="trajectories")[0] == "noisy_trajectories"
    assert pick(24, simulator="aer")[0] == "aer_noisy"  # forced: Aer then says per call what it takes
    with pytest.raises(HybridQiskitError, match="finite --shots"):
        pick(16, shots=None)
    with pytest.raises(HybridQiskitError, match="--mitigation trex.*at most 12 qubits"):
        pick(16, mitigation="trex")


def test_a_16_qubit_head_sweeps_device_noise(tmp_path, capsys):
    """End to end: the sweep routes the wide head to the noisy chain, and its memory plan knows it."""
    run_dir = train_tiny(tmp_path, "wide", "--qubits", "16", "--epochs", "1")
    code = main(["noise-sweep", str(run_dir), "--noise", "device", "--devices", "fake_fez", "--levels", "0,16",
                 "--shots", "256", "--repeats", "1", "--limit", "12", "--name", "wide", "--quiet"])
    assert code == 0, capsys.readouterr().err
    cells = [json.loads(line) for line in (run_dir / "noise" / "wide" / "cells.jsonl").read_text().splitlines()]
    noisy = [c for c in cells if c["noise"] == "device"]
    assert len(noisy) == 2 and all(c["backend"] == "noisy_trajectories" for c in noisy)
    assert noisy[1]["mean_abs_z"] < noisy[0]["mean_abs_z"]  # 16x the device's noise shrinks the signal
