"""The hardware path against IBM Quantum's REST API faked under qiskit-ibm-runtime's own client.

``tests/jobs/ibm_rest_fake.py`` replaces only the client's HTTP layer (``tests/jobs/test_jobs.py`` uses it
too), so the real ``QiskitRuntimeService``, ``IBMBackend``,
``Batch``/``Session``, ``RuntimeJobV2`` and result decoders run here: submission in job and
batch mode with tags, retrieval by id in a fresh process, ERROR and CANCELLED jobs, usage read
back and exhausted, the budget refusal, rate-limit backoff, cancellation, a batch that expired,
a dry run that sends nothing, and a legacy saved account.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_qiskit.cli import main
from hybrid_qiskit.jobs.ledger import Ledger
from tests.jobs import ibm_rest_fake as fake

DEVICE = ["--device", "fake_manila"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ibm(tmp_path, monkeypatch):
    """The fake server's store; the runtime's client talks to it; this test's own job index."""
    return fake.install_for_test(tmp_path, monkeypatch, "ibm")


def copy_run(tiny_run: Path, dest: Path) -> Path:
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("*.png", "last.pt"))
    return dest


def ibm_args(run: Path, *extra: str) -> list[str]:
    return ["submit", str(run), "--backend", "ibm_runtime", *DEVICE, "--shots", "200", *extra]


def sent(store: Path) -> list[str]:
    """Requests that change anything at IBM Quantum (a job, a session or batch)."""
    return [r for r in fake.requests(store) if r.split()[0] in ("program_run", "create_session", "close_session",
                                                                "job_cancel")]


@pytest.mark.parametrize("mode", ["job", "batch", "session"])
def test_dry_run_sends_nothing_in_any_mode(tiny_run, tmp_path, ibm, capsys, mode):
    """The plan shows the physical qubits with their errors and the instance's remaining usage;
    nothing is created at IBM Quantum (no batch, no session, no job) and nothing is written."""
    fake.configure(ibm, plan="premium")  # sessions are refused on the Open Plan
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(ibm_args(run, "--samples", "4", "--mode", mode, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "layout (noise_aware" in out and "readout error:" in out and "cx error:" in out
    assert "instance usage: 600 s left of 600 s" in out and "dry run: nothing sent" in out
    assert sent(ibm) == [] and not (run / "jobs.sqlite").exists()


def test_legacy_saved_account_is_one_line_and_account_save_reads_no_argv(tiny_run, tmp_path, monkeypatch, capsys):
    import qiskit_ibm_runtime.accounts.management as management

    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(var, raising=False)
    saved = tmp_path / "qiskit-ibm.json"
    saved.write_text(json.dumps({"default-ibm-quantum": {
        "channel": "ibm_quantum", "token": "old", "url": "https://auth.quantum-computing.ibm.com/api",
        "is_default_account": True, "private_endpoint": False}}))
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(saved))
    assert main(["submit", str(tiny_run), "--backend", "ibm_runtime", "--samples", "1", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ibm_quantum channel" in err[0] and "hybrid-qiskit account save" in err[0]

    key = tmp_path / "key.txt"
    key.write_text("  my-new-api-key\n")
    assert main(["account", "save", "--instance", fake.CRN, "--token-file", str(key)]) == 2  # a default exists
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["account", "save", "--instance", fake.CRN, "--token-file", str(key), "--overwrite"]) == 0
    assert "saved the IBM Quantum account" in capsys.readouterr().out
    accounts = json.loads(saved.read_text())
    (new,) = [a for a in accounts.values() if a["channel"] == "ibm_quantum_platform"]
    assert new["token"] == "my-new-api-key" and new["is_default_account"] and new["instance"] == fake.CRN
    from qiskit_ibm_runtime.accounts import AccountManager

    assert AccountManager.get().channel == "ibm_quantum_platform"  # the legacy one is no longer picked
    monkeypatch.setattr("sys.stdin", open(key))  # not a terminal: no prompt, one line
    assert main(["account", "save"]) == 2
    assert "no terminal to ask for the API key" in capsys.readouterr().err


def spawn(home: Path, store: Path, *cli: str) -> subprocess.CompletedProcess:
    """``hybrid-qiskit`` in a fresh process, on the same fake server."""
    env = {**os.environ, "HYBRID_QISKIT_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "tests.jobs.jobs_helper", "--fake-ibm", str(store), "--", *cli],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_batch_submission_tags_usage_and_a_fresh_process_fetch(tiny_run, tmp_path, ibm, capsys):
    """Batch mode through the real Batch and RuntimeJobV2: one batch for the submission, every job
    tagged with its submission and rows, capped by --max-execution-time; a fresh process
    retrieves the jobs by id and decodes them with the runtime's decoders; each job's actual usage
    and metrics land in the ledger and `jobs` shows them beside the estimate."""
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(ibm, script=["Queued", "Running", "Completed"])
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--mode", "batch",
                         "--max-execution-time", "90")) == 0
    out = capsys.readouterr().out
    assert "instance usage: 600 s left of 600 s" in out and "on physical qubits" in out
    ids = fake.accepted(ibm)
    assert len(ids) == 2
    (batch,) = fake.sessions(ibm)
    assert batch["mode"] == "batch" and not batch["accepting_jobs"]  # closed once the jobs were in
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        sub = ledger.submission(sid)
    for jid, rows in zip(ids, ((0, 2), (2, 4)), strict=True):
        state = fake.job_state(ibm, jid)
        assert state["session_id"] == batch["id"] and state["max_execution_time"] == 90
        assert {f"hybrid-qiskit-{sid}", f"hybrid-qiskit-rows-{rows[0]}-{rows[1]}"} <= set(state["tags"])
    assert sub["description"]["physical_qubits"] and sub["description"]["max_execution_time"] == 90

    done = spawn(tmp_path / "home", ibm, "fetch", "--all-pending", "--wait", "--poll", "0.05")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accuracy" in done.stdout
    with Ledger.for_run(run) as ledger:
        jobs = ledger.jobs(sid)
    assert [j["status"] for j in jobs] == ["DONE", "DONE"] and all(j["expvals"].shape == (2, 4) for j in jobs)
    for job in jobs:  # the fake charges 2 s + shots x 250 us per job; the client read it back
        assert job["usage_seconds"] == fake.job_state(ibm, job["job_id"])["usage_seconds"] > 2
        assert job["job_metrics"]["usage"]["status"] == "final"
    assert main(["jobs", str(run)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("usage: estimated ") == 2 and "actual " in listing and "%)" in listing


def test_error_cancelled_rate_limits_and_cancel(tiny_run, tmp_path, ibm, capsys, monkeypatch):
    """Job mode: two refusals for the rate limit are waited out and the rest of the rows go on by
    themselves; a FAILED job keeps the service's reason, `jobs cancel` cancels a queued job at
    IBM Quantum (RuntimeJobV2.cancel) and records it; a job already finished is left alone."""
    from hybrid_qiskit.jobs import limits

    slept = []
    monkeypatch.setattr(limits, "BACKOFF_S", (0.01, 0.01, 0.01))
    monkeypatch.setattr(limits.time, "sleep", lambda s: slept.append(s))
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(ibm, script=["Queued"], refusals=[
        {"status": 429, "message": "Too Many Requests: rate limit exceeded"},
        {"status": 400, "message": "Error code 3458; You have reached the maximum number of pending jobs"}])
    assert main(ibm_args(run, "--samples", "6", "--max-rows", "2")) == 0
    out = capsys.readouterr().out
    assert out.count("IBM Quantum refused rows 0-1 for now") == 2 and slept == [0.01, 0.01]
    ids = fake.accepted(ibm)
    assert len(ids) == 3  # every row sent, without --resume

    fake.set_script(ibm, ids[0], ["Failed"], reason="Internal error while running", reason_code=1517)
    assert main(["jobs", "cancel", ids[1]]) == 0
    assert f"job {ids[1]} cancelled (rows 2-3)" in capsys.readouterr().out
    assert fake.job_state(ibm, ids[1])["cancelled_by_user"] and "job_cancel " + ids[1] in fake.requests(ibm)
    assert main(["fetch", "--all-pending"]) == 1
    with Ledger.for_run(run) as ledger:
        jobs = {j["job_id"]: j for j in ledger.jobs()}
    assert jobs[ids[0]]["status"] == "ERROR" and "Error code 1517" in jobs[ids[0]]["reason"]
    assert jobs[ids[1]]["status"] == "CANCELLED" and "jobs cancel" in jobs[ids[1]]["reason"]
    assert jobs[ids[2]]["status"] == "QUEUED"
    capsys.readouterr()
    assert main(["jobs", "cancel", ids[0]]) == 0  # already final: nothing sent
    assert "already ERROR; nothing to cancel" in capsys.readouterr().out

    with Ledger.for_run(run) as ledger:
        sid = ledger.submission_ids()[0]
    assert main(["jobs", "cancel", "--submission", sid]) == 0  # the one still queued
    assert f"job {ids[2]} cancelled" in capsys.readouterr().out
    fake.configure(ibm, refusals=[{"status": 429, "message": "Too Many Requests"}] * 4)
    assert main(["fetch", "--rerun", ids[0]]) == 2  # refused past the last pause: one line
    assert "Too Many Requests" in capsys.readouterr().err


def test_usage_exhausted_budget_refusal_and_an_expired_batch(tiny_run, tmp_path, ibm, capsys):
    """The plan is refused when its estimate exceeds the instance's remaining usage (--yes sends
    it); a job accepted with no usage left waits queued and `fetch`/`jobs` say why; a batch that
    outlived its time-to-live gets that reason on its cancelled jobs."""
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(ibm, usage_consumed_seconds=599.0)
    assert main(ibm_args(run, "--samples", "4")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than the instance has left (1.0 s)" in err[0] and "--yes" in err[0]
    assert fake.accepted(ibm) == []
    fake.configure(ibm, usage_consumed_seconds=600.0)
    assert main(ibm_args(run, "--samples", "4", "--yes")) == 0
    (jid,) = fake.accepted(ibm)
    assert main(["fetch", jid]) == 3
    assert "the instance has no usage left (600 of 600 s used)" in capsys.readouterr().out
    assert main(["jobs", str(run)]) == 0
    assert "waiting: the instance has no usage left" in capsys.readouterr().out
    fake.configure(ibm, usage_consumed_seconds=0.0, script=["Running", "Completed"])  # the period reset
    assert main(["fetch", jid, "--wait", "--poll", "0.01"]) == 0

    fake.configure(ibm, script=["Queued"])
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--mode", "batch")) == 0
    batch = [s for s in fake.sessions(ibm) if s["mode"] == "batch"][0]
    fake.expire_session(ibm, batch["id"])
    capsys.readouterr()
    assert main(["fetch", "--all-pending"]) == 1
    out = capsys.readouterr().out
    assert out.count("ran past its time-to-live (600 s)") == 2 and "fetch --rerun" in out


def test_a_batch_that_expires_while_sending_is_one_line_and_resume_opens_a_new_one(tiny_run, tmp_path, ibm, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(ibm, script=["Completed"], expire_after=1)
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--mode", "batch")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its batch or session has ended" in err[0] and "--resume" in err[0]
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        assert ledger.unsubmitted(sid) == [(2, 4)]
    fake.configure(ibm, expire_after=None)
    assert main(["submit", str(run), "--resume", sid, "--wait", "--poll", "0.01"]) == 3  # job 1 not fetched yet
    assert len(fake.sessions(ibm)) == 2 and len(fake.accepted(ibm)) == 2  # a new batch for the rest
    capsys.readouterr()
    assert main(["fetch", "--all-pending"]) == 1  # the expiry cancelled the first batch's queued job
    assert "ran past its time-to-live (600 s)" in capsys.readouterr().out


def test_ibm_local_rehearses_on_the_qpus_live_calibration_and_layout(ibm):
    """``ibm_local --device ibm_torino``: the QPU's configuration and current calibration are read
    through the runtime's client (nothing sent); the rehearsal picks the qubits a submission made
    now picks, and runs the runtime's local mode on them."""
    import numpy as np

    from backends import create_backend
    from backends.layout import physical_qubits
    from hybrid_qiskit.circuits import build_head_circuit

    head = build_head_circuit(4, reps=1)
    local = create_backend("ibm_local", device="ibm_torino", shots=200, resilience_level=0, seed=1)
    remote = create_backend("ibm_runtime", device="ibm_torino", shots=200, resilience_level=0, seed=1)
    isa = local.pass_manager.run(head.circuit)
    assert physical_qubits(isa) == physical_qubits(remote.pass_manager.run(head.circuit))
    assert 0 not in physical_qubits(isa)  # torino's qubit 0 reads out wrong 16.7% of the time
    assert local.description["noise"]["calibration"].startswith("live, ") and local.device.name == "ibm_torino"
    obs = [[o.apply_layout(isa.layout)] for o in head.observables]
    values = np.full((2, isa.num_parameters), 0.3)
    evs = np.asarray(local.estimator.run([(isa, obs, values)]).result()[0].data.evs)
    assert evs.shape == (4, 2) and np.all(np.abs(evs) <= 1)
    assert sent(ibm) == []  # read, never sent
