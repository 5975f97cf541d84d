"""Attacks, as a new and a careless user would make them: bad flags and names, damaged or edited
files, concurrent writers and senders, read-only folders, absurd sizes, models changed under a
sweep, killed drivers, long silent work. (Two attacks on `compare` live beside its fixtures in
tests/test_compare.py: another comparison into the same --out, and a resumed run's time.)

Every attack ends in exit code 2 with ONE line on stderr (``error: ...``) and no traceback, or in
the documented recovery. Commands run in-process through ``main()`` (an uncaught exception fails
the test, so "no traceback" is checked too); the concurrent and permission cases run real
processes. One tiny fixture run (2 qubits, 1 epoch, 24 digits) is trained once and copied.

Permissions: root ignores mode bits, so under root the permission cases drop CAP_DAC_OVERRIDE
and CAP_DAC_READ_SEARCH from the thread's effective capabilities while they run: the kernel then
checks the bits for root too, and the real EACCES path is exercised.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_qiskit.cli import main
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.jobs.ledger import Ledger
from hybrid_qiskit.noise.store import CellStore
from tests.jobs.jobs_helper import fake_submission
from tests.jobs.test_jobs import copy_run, spawn, submit_args

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "digits", "--classes", "0,1", "--qubits", "2", "--reps", "1", "--epochs", "1",
        "--limit-train", "24", "--limit-test", "8", "--batch-size", "8", "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attack-runs")
    assert main(["train", *TINY, "--out", str(out), "--name", "fixture"]) == 0
    return out / "fixture"


@pytest.fixture
def run(fixture_run, tmp_path) -> Path:
    """A private copy of the fixture run, free to damage."""
    return Path(shutil.copytree(fixture_run, tmp_path / "runs" / "fixture"))


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``argv``; assert exit code 2 and a single ``error:`` line on stderr; return it."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks exit from inside parse_args
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- bad flags

BAD_TRAIN_FLAGS = [
    (["--batch-size", "0"], "batch_size"),
    (["--batch-size", "-5"], "batch_size"),
    (["--lr", "nan"], "lr"),
    (["--lr", "-1"], "lr"),
    (["--lr", "inf"], "lr"),  # used to train and write NaN into metrics.json
    (["--seed", "-1"], "seed"),
    (["--seed", str(2**70)], "seed"),
    (["--backend", "aer_statevector", "--shots", "0"], "--shots"),
    (["--backend", "aer_statevector", "--shots", "-100"], "--shots"),
    (["--backend", "aer_noisy", "--noise-scale", "nan"], "--noise-scale"),
    (["--epochs", "0"], "epochs"),
    (["--qubits", "0"], "qubits"),
    (["--limit-train", "0"], "limit_train"),
    (["--name", "../../x"], "name"),
    (["--name", "/abs/path"], "name"),
    # Chain heads run as matrix-product states at any width; forced onto the statevector, or
    # with a bond too large for a chain (the ZZ map re-uploaded), wide heads do not fit.
    (["--qubits", "28", "--backend-setting", "method=statevector"], "needs about"),
    (["--qubits", "40", "--feature-map", "zz", "--reuploads", "5"], "needs about"),  # bond 4**5 at reps 1
]


@pytest.mark.parametrize("flags,named", BAD_TRAIN_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_train_flag_is_one_line_and_leaves_no_folder(tmp_path, capsys, flags, named):
    out = tmp_path / "runs"
    err = one_line_error(capsys, ["train", *TINY, "--out", str(out), "--name", "x", *flags])
    assert named in err
    assert not (out / "x").exists() and not (tmp_path / "x").exists() and not Path("/abs/path").exists()


def test_messages_name_the_value_and_the_allowed_range(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--out", str(tmp_path), "--batch-size", "0"])
    assert "batch_size (--batch-size) = 0" in err and "an integer >= 1" in err
    err = one_line_error(capsys, ["train", "--out", str(tmp_path), "--seed", "-1"])
    assert "0..4294967295" in err
    err = one_line_error(capsys, ["train", "--out", str(tmp_path), "--lr", "inf"])
    assert "lr (--lr) = inf" in err and "finite number > 0" in err


def test_memory_refusal_prints_the_estimate(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--out", str(tmp_path), "--qubits", "28", "--batch-size", "2",
                                  "--backend-setting", "method=statevector"])
    assert "28-qubit head" in err and "TiB" in err and "free" in err


def test_a_wide_chain_head_trains(tmp_path):
    """28 qubits (a statevector of 4 GiB per row) train on the chain in well under a GiB."""
    out = tmp_path / "runs"
    assert main(["train", *TINY, "--out", str(out), "--name", "wide", "--qubits", "28"]) == 0
    metrics = json.loads((out / "wide" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    """A 24-qubit chain head: wider than any density matrix or per-sample statevector here."""
    out = tmp_path_factory.mktemp("attack-wide")
    assert main(["train", *TINY, "--out", str(out), "--name", "wide", "--qubits", "24"]) == 0
    return out / "wide"


def test_a_wide_head_evaluates_under_device_noise_in_little_memory(wide_run, capsys):
    """noisy_trajectories runs it as a noisy chain: a few MB where the statevector per sample
    grew past 16 GB, at 1,024 shots or a million (a branch per distinct bitstring)."""
    for shots in ("1024", "1000000"):
        assert main(["evaluate", str(wide_run), "--backend", "noisy_trajectories", "--device", "fake_fez",
                     "--shots", shots, "--limit", "4"]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("flags,named", [
    (["--backend", "aer_noisy_exact"], "aer_noisy_exact: a 24-qubit circuit is a density matrix"),
    (["--backend", "aer_noisy", "--shots", "1024", "--limit", "8"], "noisy_trajectories"),  # 8 images: 2 hours of Aer
    (["--backend", "noisy_trajectories", "--shots", "1000000000", "--backend-setting", "trajectories=1000000000"],
     "trajectories (1,000,000,000 per image)"),
    (["--backend", "aer_noisy", "--backend-setting", "method=density_matrix"], "noisy_trajectories"),
])
def test_wide_noisy_evaluations_that_cannot_run_are_refused_up_front(wide_run, capsys, flags, named):
    err = one_line_error(capsys, ["evaluate", str(wide_run), "--device", "fake_fez", *flags])
    assert named in err


@pytest.mark.parametrize("backend,shots", [("aer_statevector", "2147483648"), ("aer_noisy", "10000000000"),
                                           ("ibm_local", "10000000000")])
def test_more_shots_than_memory_holds_are_refused_before_aer_allocates(fixture_run, capsys, monkeypatch, backend,
                                                                      shots):
    """2**31 shots on aer_statevector grew to 23.7 GB until the kernel killed it; 10**10 on aer_noisy
    was a std::bad_alloc traceback. (16 GiB free, whatever the machine has.)"""
    monkeypatch.setattr("hybrid_qiskit.memory.available_memory", lambda: 16 << 30)
    err = one_line_error(capsys, ["evaluate", str(fixture_run), "--backend", backend, "--shots", shots, "--limit", "2"])
    assert f"{backend}: {int(shots):,} shots need about" in err and "GiB" in err


@pytest.mark.parametrize("setting,named", [
    ("depolarizing=abc", "depolarizing must be a number, got 'abc'"),
    ("t1=abc", "t1 must be a number"),
    ("single_precision=no", "single_precision must be true or false, got 'no'"),
    ('single_precision="false"', "single_precision must be true or false, got 'false'"),
])
def test_a_setting_of_the_wrong_type_is_one_line(fixture_run, capsys, setting, named):
    backend = "statevector" if setting.startswith("single") else "aer_noisy"
    err = one_line_error(capsys, ["evaluate", str(fixture_run), "--backend", backend, "--backend-setting", setting])
    assert named in err


@pytest.mark.parametrize("name", ["a" * 300, "a\nb", "tab\there"])
def test_a_name_the_file_system_cannot_take_is_one_line_and_makes_no_folder(tmp_path, capsys, name):
    """A 300-character --name was an OSError (File name too long) from the run folder's check; a
    newline made a folder."""
    err = one_line_error(capsys, ["train", *TINY, "--out", str(tmp_path), "--name", name])
    assert "name (--name)" in err and "at most 200 bytes" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [["--shots", "-5"], ["--batch-size", "0"], ["--seed", "-1"],
                                   ["--noise-scale", "inf"], ["--limit", "-1"], ["--limit", "0"]])
def test_bad_evaluate_flag_is_one_line(fixture_run, capsys, flags):
    err = one_line_error(capsys, ["evaluate", str(fixture_run), *flags])
    assert flags[0] in err and "must be" in err


@pytest.mark.parametrize("text,named", [
    ('epochs = "ten"', "epochs = 'ten'"),
    ("backend_settings = 5", "backend_settings = 5"),
    ("lr = -0.1", "lr = -0.1"),
    ('name = "../up"', "name = '../up'"),
    ("[[broken", "not valid TOML"),
])
def test_bad_toml_value_is_one_line_naming_the_file(tmp_path, capsys, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    err = one_line_error(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert named in err and str(path) in err


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_binary_or_directory_as_config(tmp_path, capsys, kind):
    path = tmp_path / "cfg"
    path.mkdir() if kind == "directory" else path.write_bytes(bytes(range(256)))
    err = one_line_error(capsys, ["train", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert str(path) in err and ("directory" in err or "not text" in err)


# --------------------------------------------------------------------------- damaged run files

DAMAGED_CONFIG = {
    "empty": (b"", "is empty"),
    "half-written": (None, "not valid JSON"),
    "junk": (b"\x80\x81\xfe\xff" * 8, "not text"),
    "list": (b"[]", "JSON list"),
    "wrong type": (None, "qubits = 'four'"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_CONFIG))
@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_damaged_config_json(run, capsys, damage, command):
    path = run / "config.json"
    data, said = DAMAGED_CONFIG[damage]
    if damage == "half-written":
        data = path.read_bytes()[: len(path.read_bytes()) // 2]
    if damage == "wrong type":
        data = json.dumps({**json.loads(path.read_text()), "qubits": "four"}).encode()
    path.write_bytes(data)
    argv = (["evaluate", str(run)] if command == "evaluate" else
            ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    err = one_line_error(capsys, argv)
    assert said in err and "config.json" in err
    assert "--overwrite" in err or "fix" in err or "restore" in err  # and what to do


def test_deleted_config_json(run, capsys):
    (run / "config.json").unlink()
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    assert "config.json is missing" in err and "--overwrite" in err
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "not a run directory" in err


def test_resume_refuses_a_config_json_that_lacks_settings(run, capsys):
    """A run trained with --lr 0.02 --augment, lr and augment deleted from config.json, finished
    at the defaults without a word; now resuming names what is missing."""
    path = run / "config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in data.items() if k not in ("lr", "augment")}))
    (run / "metrics.json").unlink()  # unfinished, so resuming would train on
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    assert "lacks augment, lr" in err and "--overwrite" in err
    assert main(["evaluate", str(run), "--json"]) == 0  # evaluation still reads it (defaults)


@pytest.mark.parametrize("damage", ["junk", "empty", "directory"])
def test_damaged_checkpoint(run, capsys, damage):
    path = run / "model.pt"
    path.unlink()
    path.mkdir() if damage == "directory" else path.write_bytes(b"" if damage == "empty" else b"\x00junk" * 9)
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "model.pt" in err and "restore" in err


def test_bytes_flipped_inside_the_weights_are_caught_by_the_checksum(run, capsys):
    """64 bytes flipped in the middle of model.pt loaded (weights off by up to 1,329, accuracy 0)
    and the evaluation was written as if nothing were wrong."""
    path = run / "model.pt"
    data = bytearray(path.read_bytes())
    payload = torch.load(path, weights_only=True)
    tensor = max(payload["state_dict"].values(), key=lambda t: t.numel())  # the largest weights
    raw = tensor.numpy().tobytes()
    at = data.find(raw[:64])  # where those bytes sit in the file
    assert at > 0
    data[at + 64: at + 128] = bytes(b ^ 0xFF for b in data[at + 64: at + 128])
    path.write_bytes(bytes(data))
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "do not match their checksum" in err
    assert not list(run.glob("eval-*.json"))


def test_damaged_history_on_resume(run, capsys):
    (run / "history.json").write_text('[{"epoch": 1, "train_loss": 0.')
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    assert "history.json is not valid JSON" in err and "--overwrite" in err


@pytest.mark.parametrize("damage", ["truncated", "empty", "list", "object", "keys"])
def test_a_damaged_metrics_json_is_rewritten_from_the_best_checkpoint(run, capsys, damage):
    """train --resume (make train) and compare read a finished run's metrics.json: damaged, it was a
    JSONDecodeError, TypeError or KeyError; now the best checkpoint is tested again, with a note."""
    path = run / "metrics.json"
    original = json.loads(path.read_text())
    text = {"truncated": path.read_text()[:40], "empty": "", "list": "[]", "object": "{}",
            "keys": json.dumps({k: v for k, v in original.items() if k != "test_accuracy"})}[damage]
    path.write_text(text)
    assert main(["train", *TINY, "--resume", "--out", str(run.parent), "--name", run.name]) == 0
    assert "is damaged" in capsys.readouterr().out
    again = json.loads(path.read_text())
    assert again["test_accuracy"] == original["test_accuracy"] and again["test_loss"] == pytest.approx(original["test_loss"])


@pytest.mark.parametrize("text,named", [("baseline = 5", "baseline must be a run directory"),
                                        ("compare = 5", "compare must be a run directory"),
                                        ("compare = [1, 2]", "compare must be a run directory")])
def test_a_sweep_toml_of_the_wrong_types_is_one_line(fixture_run, tmp_path, capsys, text, named):
    config = tmp_path / "sweep.toml"
    config.write_text(text + "\n")
    err = one_line_error(capsys, ["noise-sweep", str(fixture_run), "--config", str(config)])
    assert named in err


SWEEP = ["--levels", "0,0.05", "--shots", "exact", "--limit", "8", "--quiet"]


def _during_first_cell(monkeypatch, action):
    """Run ``action()`` once, inside the sweep, just before its first cell is evaluated."""
    from hybrid_qiskit.noise import cell

    original, done = cell.evaluate_cell, []

    def evaluate_cell(*args, **kwargs):
        if not done:
            done.append(action())
        return original(*args, **kwargs)

    monkeypatch.setattr(cell, "evaluate_cell", evaluate_cell)
    return done


def test_train_resume_is_refused_while_a_sweep_reads_the_run(run, capsys, monkeypatch):
    """A sweep that ran while `train --resume` finished the same run completed on the old weights
    and wrote its summary beside the new model.pt; now the run is read-locked for the sweep."""
    (run / "metrics.json").unlink()  # unfinished: resuming would write a new model.pt
    argv = ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"]
    done = _during_first_cell(monkeypatch, lambda: (main(argv), capsys.readouterr().err))
    assert main(["noise-sweep", str(run), *SWEEP]) == 0
    code, err = done[0]
    assert code == 2 and "being read (a noise sweep?) or written" in err and err.count("\n") == 1
    assert not (run / "metrics.json").exists()  # the resume did nothing
    assert main(argv) == 0  # and runs once the sweep has ended


def test_a_model_that_changes_under_a_sweep_is_refused(run, capsys, monkeypatch):
    """Where no lock can hold the run (a file system without locks), the sweep still refuses to
    write its summary beside a model.pt that changed while its cells ran."""
    import hybrid_qiskit.noise.sweep as sweep
    from hybrid_qiskit.checkpoints import weights_sha256

    def retrain():
        payload = torch.load(run / "model.pt", weights_only=False)
        for tensor in payload["state_dict"].values():
            tensor.add_(0.01)
        payload["weights_sha256"] = weights_sha256(payload["state_dict"])
        torch.save(payload, run / "model.pt")

    monkeypatch.setattr(sweep, "ReaderLock", lambda *a, **k: contextlib.nullcontext())
    _during_first_cell(monkeypatch, retrain)
    err = one_line_error(capsys, ["noise-sweep", str(run), *SWEEP])
    assert "model.pt changed while the sweep ran" in err
    assert not list((run / "noise").glob("*/summary.json"))
    assert main(["noise-sweep", str(run), *SWEEP]) == 0  # a rerun evaluates the new model


def test_resume_refuses_files_of_two_runs(run, tmp_path, capsys):
    # Another run with the same settings: its last.pt dropped into our folder is refused by run id.
    other = tmp_path / "other"
    shutil.copytree(run, other)
    payload = torch.load(other / "last.pt", weights_only=False)
    payload["run_id"] = "someoneelse"
    torch.save(payload, run / "last.pt")
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    assert "different runs" in err and "someoneelse" in err


def test_evaluate_refuses_a_model_of_another_run(run, capsys):
    payload = torch.load(run / "model.pt", weights_only=False)
    payload["run_id"] = "someoneelse"
    torch.save(payload, run / "model.pt")
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "belongs to another run" in err


# --------------------------------------------------------------------------- ownership


def test_finished_run_is_never_overwritten_without_overwrite(run, capsys):
    before = {p: (run / p).read_bytes() for p in ("model.pt", "metrics.json", "history.json")}
    (run / "last.pt").unlink()  # used to be the only protection
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--epochs", "2"])
    assert "already holds a run" in err and "--overwrite" in err
    assert {p: (run / p).read_bytes() for p in before} == before


def test_overwrite_replaces_a_run_with_a_new_run_id(run, capsys):
    old = json.loads((run / "config.json").read_text())["run_id"]
    (run / ".model.pt.x1y2.tmp").write_bytes(b"left by a killed writer")
    assert main(["train", *TINY, "--out", str(run.parent), "--name", run.name, "--overwrite"]) == 0
    new = json.loads((run / "config.json").read_text())["run_id"]
    assert new != old and json.loads((run / "metrics.json").read_text())["run_id"] == new
    assert {h["run_id"] for h in json.loads((run / "history.json").read_text())} == {new}
    assert torch.load(run / "model.pt", weights_only=False)["run_id"] == new
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_overwrite_does_not_orphan_a_job_ledger(run, capsys):
    (run / "jobs.sqlite").write_bytes(b"")
    err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--overwrite"])
    assert "jobs.sqlite" in err and (run / "model.pt").exists()


def test_a_run_that_fails_before_starting_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    err = one_line_error(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
                                  "--out", str(out), "--name", "x", "--quiet"])
    assert "--download" in err and not (out / "x").exists()


def _wait_for_lock(lock: Path, alive) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and alive():
        if lock.exists() and lock.read_text().startswith("pid"):
            return
        time.sleep(0.02)


def test_two_concurrent_trains_one_runs_the_other_refuses(tmp_path, capsys):
    # The first `train` runs in a thread (flock locks belong to open files, so two trains in one
    # process exclude each other exactly as two processes do); the real-process twin is slow-tier.
    out = tmp_path / "runs"
    codes = []
    first = threading.Thread(target=lambda: codes.append(main(["train", *TINY, "--out", str(out), "--name", "same"])))
    first.start()
    _wait_for_lock(out / "same" / ".lock", first.is_alive)
    err = one_line_error(capsys, ["train", *TINY, "--out", str(out), "--name", "same"])
    first.join(timeout=120)
    assert codes == [0]
    # Refused while the first one held the folder (naming the holder's pid), or, had it already
    # finished, because a finished run is never overwritten: one line either way, one run.
    assert f"pid {os.getpid()} (train)" in err or "already holds a run" in err
    history = json.loads((out / "same" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1] and len({h["run_id"] for h in history}) == 1


@pytest.mark.slow
def test_two_concurrent_train_processes(tmp_path, capsys):
    out = tmp_path / "runs"
    first = subprocess.Popen(
        [sys.executable, "-m", "hybrid_qiskit.cli", "train", *TINY, "--epochs", "3", "--out", str(out),
         "--name", "same"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    _wait_for_lock(out / "same" / ".lock", lambda: first.poll() is None)
    second = subprocess.run(
        [sys.executable, "-m", "hybrid_qiskit.cli", "train", *TINY, "--epochs", "3", "--out", str(out),
         "--name", "same"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    err = second.stderr.strip()
    assert second.returncode == 2 and err.startswith("error: ") and "\n" not in err, err
    assert f"pid {first.pid} (train)" in err or "already holds a run" in err


# --------------------------------------------------------------------------- permissions


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


DAC_BYPASS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


@contextlib.contextmanager
def permission_bits_apply():
    """Make the kernel check mode bits for this thread, root included: root drops its DAC
    capabilities from the effective set (kept in the permitted set, restored on exit)."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capget failed: permission bits cannot be enforced")
    saved = data[0].effective
    data[0].effective = saved & ~DAC_BYPASS
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capset failed: permission bits cannot be enforced")
    try:
        yield
    finally:
        data[0].effective = saved
        assert libc.capset(ctypes.byref(header), data) == 0


@pytest.fixture
def read_only(tmp_path):
    """chmod-based restrictions that hold for the test, undone afterwards."""
    changed: list[tuple[Path, int]] = []

    def restrict(path: Path, mode: int) -> Path:
        changed.append((path, path.stat().st_mode & 0o777))
        path.chmod(mode)
        return path

    yield restrict
    for path, mode in reversed(changed):
        path.chmod(mode)


def test_permission_bits_really_apply(tmp_path, read_only):
    (tmp_path / "ro").mkdir()
    folder = read_only(tmp_path / "ro", 0o555)
    with permission_bits_apply(), pytest.raises(PermissionError):
        (folder / "f").write_text("x")


def test_evaluate_of_a_read_only_run_prints_and_does_not_save(run, read_only, capsys):
    read_only(run, 0o555)
    with permission_bits_apply():
        code = main(["evaluate", str(run), "--json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["samples"] == 8
    err = captured.err.strip()
    assert err.startswith("note:") and "not saved" in err and "\n" not in err
    assert not list(run.glob("eval-*.json"))


def test_resume_of_a_read_only_run(run, read_only, capsys):
    read_only(run, 0o555)
    with permission_bits_apply():
        err = one_line_error(capsys, ["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"])
    assert "cannot write" in err and str(run) in err


def test_unwritable_out(tmp_path, read_only, capsys):
    (tmp_path / "ro_out").mkdir()
    out = read_only(tmp_path / "ro_out", 0o555)
    with permission_bits_apply():
        err = one_line_error(capsys, ["train", *TINY, "--out", str(out / "runs"), "--name", "x"])
    assert "cannot write" in err and not (out / "runs").exists()


@pytest.mark.parametrize("what", ["files", "folder"])
def test_unreadable_mnist_folder(tmp_path, read_only, capsys, what):
    from tests.test_data import _write_mnist_like

    _write_mnist_like(tmp_path / "data", "MNIST")
    raw = tmp_path / "data" / "MNIST" / "raw"
    for f in raw.iterdir() if what == "files" else [raw]:
        read_only(f, 0o000)
    with permission_bits_apply():
        err = one_line_error(capsys, ["train", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "runs"), "--name", "m"])
    assert "cannot read MNIST" in err and "ermission denied" in err and not (tmp_path / "runs" / "m").exists()


def test_a_diverging_run_stops_before_writing_nan(tmp_path, capsys):
    # inf is refused up front; a finite rate this large turns the loss into NaN in the first epoch.
    out = tmp_path / "runs"
    err = one_line_error(capsys, ["train", *TINY, "--out", str(out), "--name", "x", "--lr", "1e30"])
    assert "diverged" in err and "--lr" in err
    assert not (out / "x" / "metrics.json").exists() and not (out / "x" / "model.pt").exists()


@pytest.mark.parametrize("left", [(), ("model.pt", "history.json")])
def test_resume_of_a_run_stopped_before_its_first_epoch_ended_starts_it_again(run, left):
    # A kill after config.json (and maybe model.pt, history.json) but before the first last.pt:
    # --resume restarts it under the same run id.
    run_id = json.loads((run / "config.json").read_text())["run_id"]
    for name in {"last.pt", "model.pt", "history.json", "metrics.json"} - set(left):
        (run / name).unlink()
    assert main(["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["run_id"] == run_id
    assert torch.load(run / "last.pt", weights_only=False)["run_id"] == run_id


def test_a_run_from_before_run_ids_still_resumes(run):
    # Files without a run id (written by an older version) are one run as far as anyone can tell.
    config = json.loads((run / "config.json").read_text())
    del config["run_id"]
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.json").write_text(json.dumps(
        [{k: v for k, v in h.items() if k != "run_id"} for h in json.loads((run / "history.json").read_text())]))
    for name in ("model.pt", "last.pt"):
        payload = torch.load(run / name, weights_only=False)
        payload.pop("run_id")
        torch.save(payload, run / name)
    for _ in range(2):  # the second resume sees what the first one wrote
        assert main(["train", *TINY, "--out", str(run.parent), "--name", run.name, "--resume"]) == 0


def test_more_calibration_samples_than_training_images_is_one_line(run, capsys):
    """--calibration-samples 100000 was clipped to the training split's size without a word."""
    err = one_line_error(capsys, ["evaluate", str(run), "--normalize-stats", "calibration",
                                  "--calibration-samples", "100000"])
    assert "--calibration-samples 100000 is more than the" in err and "pass at most" in err
    assert not list(run.glob("eval-*.json"))


def test_a_limit_past_the_split_is_the_whole_split_and_named_so(run, capsys):
    """--limit 100000 on 8 images named its file first100000."""
    assert main(["evaluate", str(run), "--limit", "100000"]) == 0
    assert "(8 images" in capsys.readouterr().out
    assert [p.name for p in run.glob("eval-*.json")] == ["eval-statevector-test.json"]


# --------------------------------------------------------------------------- ledgers, submissions, cells


def test_a_corrupt_array_in_a_ledger_row_is_one_line_naming_the_file(tmp_path):
    """An otherwise valid ledger row whose array blob is damaged gave numpy's ValueError from
    `jobs` and `fetch`."""
    import sqlite3

    from hybrid_qiskit.jobs.sqlitefile import LedgerDamaged

    path = tmp_path / "jobs.sqlite"
    with Ledger(path) as ledger:
        ledger.add_submission(fake_submission("s1"))
        ledger.add_job("j1", "s1", (0, 3), remote=True)
        ledger.store_result("j1", np.ones((3, 4)), None, {"k": 1})
    conn = sqlite3.connect(path)
    blob = conn.execute("SELECT expvals FROM jobs WHERE job_id = 'j1'").fetchone()[0]
    conn.execute("UPDATE jobs SET expvals = ? WHERE job_id = 'j1'", (blob[:20] + b"\x00" * 40,))
    conn.commit()
    conn.close()
    with Ledger(path) as ledger, pytest.raises(LedgerDamaged, match="job j1's expvals holds a damaged array") as info:
        ledger.jobs("s1")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_two_concurrent_resumes_of_one_submission_send_each_range_once(tiny_run, tmp_path, monkeypatch, capsys):
    """Two `submit --resume SID` at once both read the same unsubmitted rows and sent each twice
    (rows 20-39 ran as 8 jobs instead of 4: on a QPU, twice the spend). One sender per submission
    now: while another holds it, a resume is one line naming it; afterwards, two real processes
    started together send every range exactly once."""
    from qiskit_ibm_runtime.executor_estimator import Estimator

    from hybrid_qiskit.jobs.submit import sender_lock

    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))
    run = copy_run(tiny_run, tmp_path / "run")
    original, calls = Estimator.run, []

    def refuses_after_the_first(self, pubs, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise MemoryError("simulator could not allocate")
        return original(self, pubs, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Estimator, "run", refuses_after_the_first)
        assert main(submit_args(run, "--samples", "8", "--max-rows", "2", "--shots", "200")) == 2
    capsys.readouterr()
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        assert ledger.unsubmitted(sid) == [(2, 4), (4, 6), (6, 8)]
    with sender_lock(run, sid):  # another sender holds the submission
        assert main(["submit", str(run), "--resume", sid, "--max-rows", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"sending submission {sid}" in err
    home = tmp_path / "home"
    procs = [spawn(home, "--", "submit", str(run), "--resume", sid, "--max-rows", "2") for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode in (0, 2) for p in procs), outputs
    conn = sqlite3.connect(run / "jobs.sqlite")
    ranges = conn.execute("SELECT row_start, row_stop FROM jobs ORDER BY row_start").fetchall()
    conn.close()
    assert ranges == [(0, 2), (2, 4), (4, 6), (6, 8)], (ranges, outputs)


def test_one_cell_twice_with_other_results_is_an_error_naming_both_lines(tmp_path):
    """A duplicated line with another accuracy silently replaced the first (a summary row moved from
    0.817 ± 0.014 to 0.550 ± 0.476); an identical repeat is read once."""
    path = tmp_path / "cells.jsonl"
    first = {"identity": {"level": "1", "repeat": 0}, "accuracy": 0.8, "loss": 0.5, "seconds": 1.0}
    other = {**first, "accuracy": 0.1, "seconds": 2.0}
    path.write_text(json.dumps(first) + "\n" + json.dumps({**first, "seconds": 9.0}) + "\n")
    assert len(CellStore(path).records) == 1  # the same result again (timing aside): harmless
    path.write_text(json.dumps(first) + "\n" + json.dumps({"identity": {"level": "2"}, "accuracy": 0.5}) + "\n"
                    + json.dumps(other) + "\n")
    with pytest.raises(HybridQiskitError, match=r"lines 1 and 3 hold the same cell with other results") as info:
        CellStore(path)
    assert "0.8" in str(info.value) and "0.1" in str(info.value)


# --------------------------------------------------------------------------- feedback


def test_long_work_reports_while_it_runs(run, capsys, monkeypatch):
    """A 35-second evaluate printed nothing until it ended (one batch: no step to report after),
    nor did a sweep while a long cell ran. Now a heartbeat reports every progress.EVERY seconds."""
    from hybrid_qiskit import progress
    from hybrid_qiskit.models import StagedClassifier

    monkeypatch.setattr(progress, "EVERY", 0.02)
    quantum = StagedClassifier.quantum  # one slow batch
    monkeypatch.setattr(StagedClassifier, "quantum", lambda *a, **k: (time.sleep(0.2), quantum(*a, **k))[1])
    assert main(["evaluate", str(run), "--batch-size", "64", "--json"]) == 0
    assert "evaluate test: 0/1 batches" in capsys.readouterr().err
    assert main(["noise-sweep", str(run), *SWEEP[:-1]]) == 0
    assert "noise sweep: 0/3 cells finished" in capsys.readouterr().err


# --------------------------------------------------------------------------- processes


def _session_processes(sid: int) -> list[str]:
    """``pid command`` of every live process in session ``sid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            found.append(f"{stat.parent.name} {cmdline.strip()}")
    return found


def test_a_killed_parallel_sweep_leaves_no_process(fixture_run, tmp_path):
    """SIGKILL of `noise-sweep --workers 2` left the forkserver, both workers and the resource
    tracker (about 1.7 GB) running, idle, until someone found them."""
    import signal

    run = Path(shutil.copytree(fixture_run, tmp_path / "run"))
    argv = [sys.executable, "-m", "hybrid_qiskit.cli", "noise-sweep", str(run), "--workers", "2",
            "--levels", "0,0.01,0.02,0.05,0.1,0.2", "--shots", "64,128", "--repeats", "3", "--limit", "24"]
    driver = subprocess.Popen(argv, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        for line in driver.stdout:  # the first finished cell: the pool, its server and tracker are up
            if line.startswith("[1/"):
                break
        assert len(_session_processes(driver.pid)) >= 4, _session_processes(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
        deadline = time.monotonic() + 20
        while _session_processes(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _session_processes(driver.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.stdout.close()
