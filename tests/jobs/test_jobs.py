"""Hardware inference jobs: submit, ledger, fetch; local jobs, IBM Quantum jobs (through IBM
Quantum's REST API faked under qiskit-ibm-runtime's own client: tests/jobs/ibm_rest_fake.py), crashes,
concurrent submitters.

Fresh processes are expensive (each imports torch and qiskit), so one module fixture starts
three submitters at once into one run: one finishes, two are killed while they wait. Its tests
fetch from this process, which never saw the jobs. Everything else runs in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hybrid_qiskit.cli import main
from hybrid_qiskit.jobs.ledger import Ledger, index_lookup, process_alive
from tests.jobs import ibm_rest_fake as fake
from tests.jobs.jobs_helper import fake_submission

REPO = Path(__file__).resolve().parents[2]
DEVICE = ["--device", "fake_manila"]


# ------------------------------------------------------------------ helpers and fixtures
@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user-level job index for this module (never the real ~/.local/share)."""
    return tmp_path_factory.mktemp("hybrid-qiskit-home")


@pytest.fixture(autouse=True)
def _home_env(home, monkeypatch):
    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(home))


def copy_run(tiny_run: Path, dest: Path) -> Path:
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("*.png", "last.pt"))
    return dest


def spawn(home: Path, *helper_args: str) -> subprocess.Popen:
    """``hybrid-qiskit`` in a fresh process, through tests/jobs/jobs_helper.py (for its hooks)."""
    env = {**os.environ, "HYBRID_QISKIT_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.jobs_helper", *helper_args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ledger_rows(run: Path) -> list[tuple]:
    """(job_id, status, has results) straight from the file, as another process sees it."""
    if not (run / "jobs.sqlite").exists():
        return []
    conn = sqlite3.connect(run / "jobs.sqlite", timeout=30)
    try:
        return conn.execute("SELECT job_id, status, expvals IS NOT NULL FROM jobs ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:  # the schema is being created right now
        return []
    finally:
        conn.close()


def wait_for_jobs(proc: subprocess.Popen, run: Path, count: int, timeout: float = 120) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = ledger_rows(run)
        if len(rows) >= count:
            return rows
        if proc.poll() is not None:
            pytest.fail(f"the submitting process exited ({proc.returncode}) first:\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no job in {run} after {timeout}s")


def submit_args(run: Path, *extra: str) -> list[str]:
    return ["submit", str(run), "--backend", "ibm_local", *DEVICE, "--shots", "1000", *extra]


# ------------------------------------------------------------------ the PUB is the model's head
def test_pub_values_follow_the_circuit_and_reproduce_model_quantum(tiny_run):
    """One PUB with (n, 1) observables and (N, P) values gives model.quantum's ⟨Z⟩, on the plain
    circuit (statevector) and on an ISA circuit with a layout (fake_manila, noise off)."""
    from backends import create_backend
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
    from hybrid_qiskit.jobs.pubs import expvals_of, head_pub

    payload = load_checkpoint(tiny_run / "model.pt")
    angles = torch.as_tensor(np.random.default_rng(0).uniform(0.1, 3.0, (5, 4)), dtype=torch.float32)
    for handle in (create_backend("statevector"),
                   create_backend("aer_noisy_exact", device="fake_manila", noise_scale=0.0, seed=1)):
        model = restore_model(payload, handle)
        pub = head_pub(model, angles.numpy())
        assert pub.values.shape == (5, len(pub.circuit.parameters))
        evs, _ = expvals_of(handle.estimator.run([pub.rows(0, 5)]).result()[0])
        with torch.no_grad():
            expected = model.quantum(angles).numpy()
        np.testing.assert_allclose(evs, expected, atol=1e-5, err_msg=handle.name)


def test_rows_are_split_evenly_within_the_job_limits(tiny_run):
    from backends import create_backend
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
    from hybrid_qiskit.jobs.cost import max_rows_per_job, overheads
    from hybrid_qiskit.jobs.pubs import MAX_EXECUTIONS, chunks, head_pub

    assert chunks(10, 4) == [(0, 3), (3, 7), (7, 10)]
    assert chunks(3, 100) == [(0, 3)]
    for shots in (4096, 100_000):
        handle = create_backend("ibm_local", device="fake_manila", shots=shots, resilience_level=0)
        pub = head_pub(restore_model(load_checkpoint(tiny_run / "model.pt"), handle), np.zeros((2, 4)))
        rows = max_rows_per_job(overheads(handle, pub))
        assert rows <= 1000 and rows * shots <= MAX_EXECUTIONS  # one measured basis: all Z


# ------------------------------------------------------------------ the ledger on its own
def test_ledger_keeps_arrays_exactly_and_first_results_win(tmp_path):
    from hybrid_qiskit.jobs.ledger import from_npy, to_npy

    a = np.random.default_rng(1).normal(size=(3, 4))
    assert np.array_equal(from_npy(to_npy(a), tmp_path / "jobs.sqlite", "a test array"), a)
    with Ledger(tmp_path / "jobs.sqlite") as ledger:
        ledger.add_submission(fake_submission("s1"))
        ledger.add_job("j1", "s1", (0, 3), remote=True)
        ledger.store_result("j1", a, None, {"k": 1})
        ledger.store_result("j1", a + 1, None, {})  # a second fetch changes nothing
        ledger.set_status("j1", "ERROR", "late")
        job = ledger.job("j1")
    assert job["status"] == "DONE" and np.array_equal(job["expvals"], a) and job["reason"] is None


def test_two_processes_hammering_one_ledger_lose_nothing(tmp_path):
    """The ledger's write path alone, 2 processes x 40 submissions at full speed."""
    script = (
        "import sys, numpy as np\n"
        "from tests.jobs.jobs_helper import fake_submission\n"
        "from hybrid_qiskit.jobs.ledger import Ledger\n"
        "tag = sys.argv[1]\n"
        "with Ledger(sys.argv[2]) as ledger:\n"
        "    for i in range(40):\n"
        "        sid = f'{tag}-{i}'\n"
        "        ledger.add_submission(fake_submission(sid))\n"
        "        ledger.add_job(f'job-{sid}', sid, (0, 3), remote=False)\n"
        "        ledger.store_result(f'job-{sid}', np.full((3, 4), i, float), None, {})\n"
    )
    path = tmp_path / "jobs.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", script, tag, str(path)], cwd=REPO) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with Ledger(path) as ledger:
        jobs = ledger.jobs()
        assert len(ledger.submission_ids()) == 80 and len(jobs) == 80
        for job in jobs:
            i = int(job["submission_id"].split("-")[1])
            assert job["status"] == "DONE" and np.array_equal(job["expvals"], np.full((3, 4), i, float))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_process_alive_tells_live_dead_and_foreign_processes():
    from hybrid_qiskit.jobs.ledger import process_start_time

    me, host = os.getpid(), socket.gethostname()
    assert process_alive(host, me, process_start_time(me)) is True
    assert process_alive(host, me, "1") is False  # same pid, another process (reused)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_alive(host, child.pid, None) is False
    assert process_alive("some-other-host", me, None) is None


# ------------------------------------------------------------------ three submitters at once
@pytest.fixture(scope="module")
def fleet(tiny_run, home, tmp_path_factory):
    """Three processes submit into the same run at the same moment:

    * ``done``: ibm_local, 12 samples in 2 jobs; it waits and finishes normally, noting what the
      ledger held when it first asked for each result;
    * ``local``: ibm_local in batch mode, its simulation stalled, SIGKILLed while waiting;
    * ``ibm``: ibm_runtime through the fake REST API, queued, SIGKILLed while waiting.
    """
    base = tmp_path_factory.mktemp("fleet")
    run, store, note = copy_run(tiny_run, base / "run"), base / "service", base / "observed.jsonl"
    fake.set_script(store, None, ["QUEUED"])  # queued until a test releases it
    procs = {
        "done": spawn(home, "--observe", str(note), "--", *submit_args(run, "--samples", "12", "--max-rows", "6")),
        "local": spawn(home, "--stall-local", "--", *submit_args(run, "--samples", "6", "--mode", "batch")),
        "ibm": spawn(home, "--fake-ibm", str(store), "--", "submit", str(run), "--backend", "ibm_runtime", *DEVICE,
                     "--shots", "1000", "--samples", "6", "--wait", "--poll", "0.1"),
    }
    output = procs["done"].communicate(timeout=300)[0]
    assert procs["done"].returncode == 0, output
    wait_for_jobs(procs["local"], run, 3)
    wait_for_jobs(procs["ibm"], run, 4)
    time.sleep(0.5)  # let both settle into their waiting loops
    pids = {}
    for name in ("local", "ibm"):
        pids[name] = procs[name].pid
        procs[name].send_signal(signal.SIGKILL)
        procs[name].communicate(timeout=30)
    with Ledger.for_run(run) as ledger:
        jobs = {name: [j for j in ledger.jobs() if j["pid"] == (pids.get(name) or procs["done"].pid)]
                for name in procs}
    return SimpleNamespace(run=run, store=store, note=note, jobs=jobs)


def test_three_processes_submitting_at_once_all_land_intact(fleet):
    from hybrid_qiskit.jobs.pubs import pub_from_ledger

    with Ledger.for_run(fleet.run) as ledger:
        subs = [ledger.submission(s) for s in ledger.submission_ids()]
        jobs = ledger.jobs()
        assert sorted(len(s["labels"]) for s in subs) == [6, 6, 12] and len(jobs) == 4
        for sub in subs:  # each submission can be run again from the ledger alone
            pub = pub_from_ledger(sub)
            assert pub.values.shape == (len(sub["labels"]), pub.circuit.num_parameters)
    assert [len(fleet.jobs[k]) for k in ("done", "local", "ibm")] == [2, 1, 1]
    for job in fleet.jobs["done"]:
        assert job["status"] == "DONE" and job["expvals"].shape == (6, 4) and np.isfinite(job["expvals"]).all()
    assert fleet.jobs["local"][0]["status"] in ("SUBMITTED", "RUNNING")
    assert fleet.jobs["ibm"][0]["status"] in ("SUBMITTED", "QUEUED")
    assert all(index_lookup(j["job_id"]) == str(fleet.run.resolve()) for j in jobs)
    assert sqlite3.connect(fleet.run / "jobs.sqlite").execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Each finished job was in the ledger, without results, when its result was first asked for.
    observed = [json.loads(line) for line in fleet.note.read_text().splitlines()]
    assert sorted(o["job_id"] for o in observed) == sorted(j["job_id"] for j in fleet.jobs["done"])
    assert all(o["recorded"] and not o["had_results"] for o in observed)


def test_fetch_in_a_fresh_process_matches_evaluate_on_the_same_device(fleet, capsys):
    """This process never saw the jobs: it fetches them by id and finishes the forward pass.
    The accuracy and ⟨Z⟩ match `evaluate` on the same noisy device and samples within shot noise;
    a second fetch changes nothing."""
    from torch.utils.data import TensorDataset

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.runs import load_run, load_splits
    from hybrid_qiskit.training import evaluate

    jobs = fleet.jobs["done"]
    with Ledger.for_run(fleet.run) as ledger:
        sub = ledger.submission(jobs[0]["submission_id"])
    out = fleet.run / "jobs" / sub["submission_id"]
    shutil.rmtree(out)  # written by the submitter; this process must produce it from the ledger
    assert main(["fetch", jobs[0]["job_id"]]) == 0
    first = {name: (out / name).read_bytes() for name in ("predictions.csv", "result.json")}
    result = json.loads(first["result.json"])
    assert "accuracy" in capsys.readouterr().out

    cfg, payload = load_run(str(fleet.run))
    handle = create_backend("ibm_local", device="fake_manila", shots=1000, seed=cfg.seed)
    images, labels = (t[:12] for t in load_splits(cfg).test.tensors)
    reference = evaluate(restore_model(payload, handle), TensorDataset(images, labels))
    fetched = np.concatenate([j["expvals"] for j in jobs])
    sigma = np.concatenate([j["stds"] for j in jobs])
    assert np.all(np.abs(fetched - reference.expvals) <= 5 * np.sqrt(2) * sigma + 1e-3)
    assert abs(result["accuracy"] - reference.accuracy) <= 2 / 12
    csv_rows = [line.split(",") for line in first["predictions.csv"].decode().splitlines()[1:]]
    predictions = np.array([int(r[3]) for r in csv_rows])
    assert result["accuracy"] == pytest.approx(float((predictions == np.array(sub["labels"])).mean()))
    assert result["agreement_with_exact"] == pytest.approx(
        float((predictions == np.array(sub["exact_predictions"])).mean()))

    assert main(["fetch", jobs[1]["job_id"], "--run-dir", str(fleet.run)]) == 0
    assert {name: (out / name).read_bytes() for name in first} == first
    with Ledger.for_run(fleet.run) as ledger:
        assert [ledger.job(j["job_id"])["finished_at"] for j in jobs] == [j["finished_at"] for j in jobs]


def test_local_job_killed_while_waiting_is_run_again_by_a_new_process(fleet, capsys):
    (killed,) = fleet.jobs["local"]
    job_id = killed["job_id"]
    assert main(["fetch", job_id]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id} LOST" in out and "re-ran rows 0-5 locally from the ledger" in out
    with Ledger.for_run(fleet.run) as ledger:
        old = ledger.job(job_id)
        (new,) = [j for j in ledger.jobs() if j["replaces"] == job_id]
    assert old["status"] == "LOST" and "ended before the result arrived" in old["reason"]
    assert new["status"] == "DONE" and new["expvals"].shape == (6, 4)
    assert (fleet.run / "jobs" / killed["submission_id"] / "predictions.csv").exists()
    assert main(["fetch", job_id]) == 0  # the old id still works: it leads to the re-run
    assert "was re-run as" in capsys.readouterr().out


def test_ibm_job_killed_while_waiting_is_fetched_by_id_from_a_new_process(fleet, monkeypatch, capsys):
    (killed,) = fleet.jobs["ibm"]
    job_id = killed["job_id"]
    fake.install(fleet.store, monkeypatch)
    sent = len(fake.accepted(fleet.store))
    assert main(["fetch", job_id]) == 3  # still queued at "IBM Quantum"
    assert "not finished yet" in capsys.readouterr().out
    fake.set_script(fleet.store, job_id, ["RUNNING", "DONE"])
    assert main(["fetch", job_id, "--wait", "--poll", "0.01"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert len(fake.accepted(fleet.store)) == sent  # fetched by id: nothing sent again
    with Ledger.for_run(fleet.run) as ledger:
        jobs = ledger.jobs(killed["submission_id"])
    assert [(j["job_id"], j["status"]) for j in jobs] == [(job_id, "DONE")]  # nothing re-submitted
    assert (fleet.run / "jobs" / killed["submission_id"] / "predictions.csv").exists()


def test_fetch_refuses_to_decode_with_a_changed_checkpoint(fleet, tmp_path, capsys):
    run = copy_run(fleet.run, tmp_path / "run")
    job_id = fleet.jobs["done"][0]["job_id"]
    with open(run / "model.pt", "ab") as fh:
        fh.write(b"retrained")
    assert main(["fetch", job_id, "--run-dir", str(run)]) == 1
    out = capsys.readouterr().out
    assert "changed since submission" in out and "kept in the ledger" in out


# ------------------------------------------------------------------ IBM Quantum statuses and errors
def test_ibm_jobs_statuses_failures_ctrl_c_and_rerun(tiny_run, tmp_path, monkeypatch, capsys):
    """Through the fake REST API: Ctrl-C while waiting leaves the jobs to fetch later; DONE,
    ERROR and CANCELLED are recorded with their reasons; --rerun submits failed rows again."""
    import hybrid_qiskit.jobs.tracking as tracking

    run, store = copy_run(tiny_run, tmp_path / "run"), tmp_path / "service"
    fake.install(store, monkeypatch)
    fake.set_script(store, None, ["QUEUED"])

    def ctrl_c(_):
        raise KeyboardInterrupt

    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))  # --all-pending sees only this test's jobs
    monkeypatch.setattr(tracking, "time", SimpleNamespace(sleep=ctrl_c, monotonic=time.monotonic))
    rc = main(["submit", str(run), "--backend", "ibm_runtime", *DEVICE, "--samples", "6", "--max-rows", "2",
               "--shots", "500", "--wait"])
    assert rc == 130
    ids = [r[0] for r in ledger_rows(run)]
    err = capsys.readouterr().err
    assert len(ids) == 3 and all(f"job {i} still queued; fetch it later with: hybrid-qiskit fetch {i}" in err for i in ids)
    monkeypatch.setattr(tracking, "time", time)

    fake.set_script(store, ids[0], ["DONE"])
    fake.set_script(store, ids[1], ["ERROR"], error="Error code 1517; the QPU needs calibration")
    fake.set_script(store, ids[2], ["CANCELLED"])
    assert main(["fetch", "--all-pending"]) == 1
    assert [r[1] for r in ledger_rows(run)] == ["DONE", "ERROR", "CANCELLED"]
    assert main(["jobs", str(run)]) == 0
    listing = capsys.readouterr().out
    assert "the QPU needs calibration" in listing and "cancelled" in listing
    assert not list(run.glob("jobs/*/predictions.csv"))  # two thirds missing: nothing decoded yet

    fake.set_script(store, None, ["RUNNING", "DONE"])
    assert main(["fetch", "--rerun", ids[1], ids[2], "--wait", "--poll", "0.01"]) == 0
    with Ledger.for_run(run) as ledger:
        jobs = ledger.jobs()
    assert [j["status"] for j in jobs] == ["DONE", "ERROR", "CANCELLED", "DONE", "DONE"]
    assert [j["replaces"] for j in jobs[3:]] == ids[1:] and "re-run as job" in jobs[1]["reason"]
    assert len(list(run.glob("jobs/*/predictions.csv"))) == 1


def test_ctrl_c_on_a_local_job_marks_it_lost_and_fetch_runs_it_again(tiny_run, tmp_path, monkeypatch, capsys):
    import hybrid_qiskit.jobs.commands as commands
    import hybrid_qiskit.jobs.tracking as tracking

    def ctrl_c(_):
        raise KeyboardInterrupt

    def leave(code):  # the CLI leaves at once (the simulation thread cannot be stopped)
        raise SystemExit(code)

    run = copy_run(tiny_run, tmp_path / "run")
    monkeypatch.setattr(tracking, "time", SimpleNamespace(sleep=ctrl_c, monotonic=time.monotonic))
    monkeypatch.setattr(commands.os, "_exit", leave)
    with pytest.raises(SystemExit) as stop:
        main(submit_args(run, "--samples", "4"))
    assert stop.value.code == 130
    ((job_id, status, has_results),) = ledger_rows(run)
    assert (status, has_results) == ("LOST", 0)
    assert f"`hybrid-qiskit fetch {job_id}` runs it again" in capsys.readouterr().err
    monkeypatch.setattr(tracking, "time", time)
    assert main(["fetch", job_id]) == 0
    with Ledger.for_run(run) as ledger:
        old, new = ledger.jobs()
    assert "interrupted (Ctrl-C)" in old["reason"] and new["replaces"] == job_id and new["status"] == "DONE"


def test_clear_one_line_errors(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "model.pt").unlink()
    cases = [
        (["fetch", "no-such-job"], "unknown job id 'no-such-job'"),
        (["fetch"], "--all-pending"),
        (["jobs", str(run)], "has no job ledger"),
        (["submit", str(run), "--samples", "2"], "submit needs --backend"),
        (["submit", str(run), "--backend", "ibm_local", "--samples", "2"], "no checkpoint at"),
        (["submit", str(tmp_path), "--backend", "ibm_local", "--samples", "2"], "not a run directory"),
        (["submit", str(copy_run(tiny_run, tmp_path / "ok")), "--backend", "ibm_local", "--samples", "100000"],
         "--samples must be between 1 and"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (argv, err)


# ------------------------------------------------------------------ the cost before anything is sent
def _head_pub(tiny_run, handle, rows: int):
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
    from hybrid_qiskit.jobs.pubs import head_pub

    model = restore_model(load_checkpoint(tiny_run / "model.pt"), handle)
    angles = np.random.default_rng(0).uniform(0.1, 3.0, (rows, 4))
    return head_pub(model, angles)


def test_cost_plan_counts_mitigation_and_estimates_qpu_time(tiny_run):
    """Executions per row and per job come from the runtime's own preparation: TREX adds a fixed
    set of calibration circuits per job, ZNE (1, 3, 5) triples the executions and folds the
    two-qubit gates 9x; QPU time is executions x (rep delay + circuit + readout)."""
    from backends import create_backend
    from hybrid_qiskit.jobs.cost import max_rows_per_job, overheads, plan_for, two_qubit_gates

    plans = {}
    for level in (0, 1, 2):
        handle = create_backend("ibm_local", device="fake_manila", shots=1024, resilience_level=level, seed=1)
        pub = _head_pub(tiny_run, handle, 100)
        ov = overheads(handle, pub)
        plans[level] = (ov, plan_for(handle, pub, [(0, 50), (50, 100)], ov), max_rows_per_job(ov))
        base_2q = two_qubit_gates(pub.circuit)
    (ov0, p0, rows0), (ov1, p1, _), (ov2, p2, rows2) = plans[0], plans[1], plans[2]
    assert (ov0.executions_per_row, ov0.executions_per_job, ov0.circuits_per_row) == (1024, 0, 1)
    assert p0.executions == 100 * 1024 and p0.jobs == 2 and p0.rows == 100 and p0.circuits == 100
    assert p0.rep_delay_us == pytest.approx(250.0)  # fake_manila's configured default_rep_delay
    assert 250 < p0.shot_us < 270 and p0.qpu_seconds == pytest.approx(p0.executions * p0.shot_us * 1e-6)
    assert ov1.executions_per_row == 1024 and ov1.executions_per_job > 0 and "TREX" in ov1.mitigation
    assert p1.executions == 100 * 1024 + 2 * ov1.executions_per_job
    assert ov2.executions_per_row == 3 * 1024 and ov2.zne_factors == (1.0, 3.0, 5.0)
    assert ov2.two_qubit_per_row == 9 * base_2q and "ZNE" in ov2.mitigation
    assert p2.overhead > 3.0 and rows2 < rows0  # chunks shrink with the folded gates
    assert "estimated QPU time" in "\n".join(p2.lines())


def test_cost_plan_on_heron_matches_the_rule_of_thumb(tiny_run):
    """2,000 images at 1,024 shots on a Heron (250 us repetition delay): about 8.5 QPU-minutes."""
    from backends import create_backend
    from hybrid_qiskit.jobs.cost import plan_for
    from hybrid_qiskit.jobs.pubs import chunks

    handle = create_backend("ibm_local", device="fake_fez", shots=1024, resilience_level=0, seed=1)
    pub = _head_pub(tiny_run, handle, 2000)
    plan = plan_for(handle, pub, chunks(2000, 1000))
    assert plan.executions == 2000 * 1024
    assert 8.4 * 60 < plan.qpu_seconds < 8.9 * 60, plan.lines()


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The fake IBM Quantum REST API, its store, and this test's own job index."""
    return fake.install_for_test(tmp_path, monkeypatch, "service")


def ibm_args(run: Path, *extra: str) -> list[str]:
    return ["submit", str(run), "--backend", "ibm_runtime", *DEVICE, "--shots", "500", *extra]


def test_dry_run_prints_the_plan_and_sends_nothing(tiny_run, tmp_path, service, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(ibm_args(run, "--samples", "6", "--max-rows", "2", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "plan: 3 job(s), 6 PUB row(s)" in out and "estimated QPU time" in out and "dry run: nothing sent" in out
    assert fake.accepted(service) == [] and not (run / "jobs.sqlite").exists()


def test_a_plan_above_the_threshold_asks_first(tiny_run, tmp_path, service, capsys):
    from hybrid_qiskit.jobs import submit

    run = copy_run(tiny_run, tmp_path / "run")
    assert main(ibm_args(run, "--samples", "2", "--confirm-above", "0")) == 2  # no terminal to ask on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "above --confirm-above 0 min" in err[0] and "--yes" in err[0]
    asked = []
    outcome = submit.submit(run, backend="ibm_runtime", settings={"device": "fake_manila", "shots": 500}, samples=2,
                            confirm_above=0, confirm=lambda plan: asked.append(plan) or False)
    assert not outcome.sent and len(asked) == 1 and asked[0].jobs == 1
    assert fake.accepted(service) == []
    assert main(ibm_args(run, "--samples", "2", "--confirm-above", "0", "--yes")) == 0
    assert len(fake.accepted(service)) == 1


# ------------------------------------------------------------------ no job orphaned
def test_a_chunk_refused_mid_submission_then_the_rest_resumed(tiny_run, tmp_path, service, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(service, refuse_after=1)
    assert main(ibm_args(run, "--samples", "6", "--max-rows", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "submitting rows 2-3 failed" in err[0] and "1 job(s) already accepted" in err[0]
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        assert ledger.unsubmitted(sid) == [(2, 4), (4, 6)]
    assert f"--resume {sid}" in err[0]

    assert main(["jobs", str(run)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("NOT SUBMITTED") == 2 and f"--resume {sid}" in listing
    fake.set_script(service, fake.accepted(service)[0], ["DONE"])
    assert main(["fetch", "--all-pending"]) == 1  # not "nothing to fetch": rows have no job
    out = capsys.readouterr().out
    assert "never submitted" in out and f"submit {run.resolve()} --resume {sid}" in out
    assert "nothing to fetch" not in out

    fake.configure(service, refuse_after=None)  # the service takes jobs again
    fake.set_script(service, None, ["DONE"])
    assert main(["submit", str(run), "--resume", sid, "--wait", "--poll", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "resuming 4 unsubmitted row(s) in 2 job(s)" in out and "accuracy" in out
    with Ledger.for_run(run) as ledger:
        assert ledger.unsubmitted(sid) == [] and [j["status"] for j in ledger.jobs()] == ["DONE"] * 3
    assert len(fake.accepted(service)) == 3
    assert (run / "jobs" / sid / "predictions.csv").exists()
    assert main(["submit", str(run), "--resume", sid]) == 0
    assert "nothing to resume" in capsys.readouterr().out


def test_a_job_accepted_just_before_a_crash_is_adopted_by_its_tag(tiny_run, tmp_path, service, capsys):
    """The submitting process dies right after the service accepted its second job, before the
    ledger write. `fetch` (and `jobs`) find that job by the submission's tag and record it;
    `submit --resume` then sends only the rows that truly have no job."""
    run = copy_run(tiny_run, tmp_path / "run")
    fake.configure(service, die_after=2)
    fake.set_script(service, None, ["DONE"])
    proc = spawn(tmp_path / "home", "--fake-ibm", str(service), "--",
                 *ibm_args(run, "--samples", "6", "--max-rows", "2"))
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 137, output
    accepted = fake.accepted(service)
    assert len(accepted) == 2 and [r[0] for r in ledger_rows(run)] == accepted[:1]
    fake.configure(service, die_after=None)

    listed = copy_run(run, tmp_path / "listed")  # `jobs` adopts too (in a copy of the run)
    assert main(["jobs", str(listed)]) == 0
    out = capsys.readouterr().out
    assert f"job {accepted[1]} (rows 2-3) was accepted by IBM Quantum but missing from the ledger" in out
    assert [r[0] for r in ledger_rows(listed)] == accepted

    assert main(["fetch", "--run-dir", str(run)]) == 1  # adopts, fetches; rows 4-5 still have no job
    out = capsys.readouterr().out
    assert "found by its tag and recorded" in out and "--resume" in out
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        assert [j["job_id"] for j in ledger.jobs()] == accepted and ledger.unsubmitted(sid) == [(4, 6)]
    assert main(["submit", str(run), "--resume", sid, "--wait", "--poll", "0.01"]) == 0
    assert len(fake.accepted(service)) == 3  # rows 2-3 were not sent twice
    assert (run / "jobs" / sid / "predictions.csv").exists()


def test_rerun_stays_on_the_recorded_device(tiny_run, tmp_path, service, capsys):
    """Submitted without --device (least busy: fake_manila); when the least busy QPU is another
    one later, --rerun still sends the ISA circuit to fake_manila."""
    run = copy_run(tiny_run, tmp_path / "run")
    fake.set_script(service, None, ["ERROR"], error="Error code 1517; calibration")
    assert main(["submit", str(run), "--backend", "ibm_runtime", "--shots", "500", "--samples", "4",
                 "--wait", "--poll", "0.01"]) == 1
    (failed,) = fake.accepted(service)
    with Ledger.for_run(run) as ledger:
        sub = ledger.submission(ledger.submission_ids()[0])
    assert sub["device"] == sub["backend_name"] == "fake_manila" and "device" not in sub["settings"]
    assert sub["runtime_version"] == __import__("qiskit_ibm_runtime").__version__ and sub["calibrated_at"]
    capsys.readouterr()

    fake.configure(service, least_busy="fake_quito")
    fake.set_script(service, None, ["DONE"])
    assert main(["fetch", "--rerun", failed, "--wait", "--poll", "0.01"]) == 0
    assert "as recorded" in capsys.readouterr().out
    (_, new) = fake.accepted(service)
    state = fake.job_state(service, new)
    assert state["backend"] == "fake_manila" and f"hybrid-qiskit-replaces-{failed}" in state["tags"]
    assert main(["fetch", "--rerun", new]) == 0
    assert f"job {new} is already DONE; --rerun sends nothing" in capsys.readouterr().out
    assert len(fake.accepted(service)) == 2


def test_sessions_and_batches_are_closed_on_error_paths(tiny_run, tmp_path, service, monkeypatch, capsys):
    from qiskit_ibm_runtime import Session

    import hybrid_qiskit.jobs.submit as submit_module
    from hybrid_qiskit.errors import HybridQiskitError

    closed = []
    original = Session.close
    monkeypatch.setattr(Session, "close", lambda self: closed.append(type(self).__name__) or original(self))
    run = copy_run(tiny_run, tmp_path / "run")

    def broken(*args):
        raise HybridQiskitError("the head could not be built")

    with monkeypatch.context() as m:  # preparation fails after the handle exists: no Batch was opened
        m.setattr(submit_module, "_head", broken)
        assert main(ibm_args(run, "--samples", "4", "--mode", "batch")) == 2
    assert closed == []
    fake.configure(service, refuse_after=0, plan="premium")  # refuses the first job; sessions allowed
    assert main(ibm_args(run, "--samples", "4", "--mode", "batch")) == 2
    assert closed == ["Batch"]  # opened for the first job, closed after the refusal
    assert main(ibm_args(run, "--samples", "4", "--mode", "session", "--dry-run")) == 0  # dry run: none opened
    assert closed == ["Batch"]
    capsys.readouterr()

    fake.configure(service, plan="open")
    assert main(ibm_args(run, "--samples", "4", "--mode", "session")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Open Plan" in err[0] and "--mode batch" in err[0]
    assert fake.accepted(service) == []


def test_a_local_chunk_failing_mid_submission_then_resumed(tiny_run, tmp_path, monkeypatch, capsys):
    """Local mode: the second chunk cannot be started; the first still finishes and is stored,
    and `submit --resume` runs the rest on the recorded device."""
    from qiskit_ibm_runtime.executor_estimator import Estimator

    run = copy_run(tiny_run, tmp_path / "run")
    original, calls = Estimator.run, []

    def flaky(self, pubs, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("simulator could not allocate")
        return original(self, pubs, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Estimator, "run", flaky)
        assert main(submit_args(run, "--samples", "6", "--max-rows", "2", "--shots", "200")) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("waiting ")]  # the live status line
    assert len(errors) == 1 and "submitting rows 2-3 failed: MemoryError" in errors[0] and "--resume" in errors[0]
    assert [r[1:] for r in ledger_rows(run)] == [("DONE", 1)]
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
    assert main(["submit", str(run), "--resume", sid]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert [r[1] for r in ledger_rows(run)] == ["DONE"] * 3
    assert (run / "jobs" / sid / "predictions.csv").exists()


def test_a_schema_1_ledger_is_read_as_it_is_and_upgraded_on_write(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with Ledger(path) as ledger:
        ledger.add_submission(fake_submission("s1"))
        ledger.add_job("j1", "s1", (0, 3), remote=False)
    conn = sqlite3.connect(path)
    for table, column in (("submissions", "runtime_version"), ("submissions", "backend_name"),
                          ("submissions", "calibrated_at"), ("submissions", "normalization"),
                          ("submissions", "calibration_values"), ("submissions", "estimate"),
                          ("jobs", "claimed_by"), ("jobs", "usage_seconds"), ("jobs", "job_metrics")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Ledger(path, readonly=True) as ledger:
        sub = ledger.submission("s1")
        assert sub.get("runtime_version") is None and ledger.unsubmitted("s1") == []
        assert sub["normalization"] is None and sub["calibration_values"] is None
    with Ledger(path) as ledger:
        assert ledger.claim("j1") is None and ledger.calibration_rows("s1") == 0
    from hybrid_qiskit.jobs.ledger import SCHEMA_VERSION

    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    with Ledger(path) as ledger:  # schema 4's columns arrived with the upgrade
        ledger.record_usage("j1", 2.5, {"usage": {"status": "final"}})
        assert ledger.job("j1")["usage_seconds"] == 2.5 and ledger.submission("s1")["estimate"] is None


@pytest.mark.slow
def test_submit_on_fake_fez_then_fetch_in_a_fresh_process(tiny_run, tmp_path, capsys):
    """A submission on a 156-qubit fake device, fetched by its job id alone in a fresh process with an
    empty home: the whole round trip a hardware job takes, offline (needs the reduced-device simulation)."""
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["submit", str(run), "--backend", "ibm_local", "--device", "fake_fez", "--shots", "1024",
                 "--resilience-level", "0", "--samples", "40"]) == 0
    ((job_id, *_), *_) = ledger_rows(run)
    sid = Ledger.for_run(run).submission_ids()[0]
    shutil.rmtree(run / "jobs" / sid)
    proc = spawn(tmp_path / "home", "--", "fetch", job_id, "--run-dir", str(run))
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    assert len((run / "jobs" / sid / "predictions.csv").read_text().splitlines()) == 41


def test_local_jobs_of_one_submission_run_in_a_bounded_pool(tiny_run, tmp_path, monkeypatch, capsys):
    import hybrid_qiskit.jobs.submit as submit_module
    import hybrid_qiskit.jobs.tracking as tracking

    run = copy_run(tiny_run, tmp_path / "run")
    monkeypatch.setattr(submit_module, "LOCAL_WORKERS", 2)
    finished, in_flight = [], []
    collect, send = tracking.collect, submit_module._Sender.one
    monkeypatch.setattr(tracking, "collect", lambda *a: finished.append(a[1]) or collect(*a))

    def one(self, a, b):
        in_flight.append(len(self.ids) - len(finished) + 1)
        return send(self, a, b)

    monkeypatch.setattr(submit_module._Sender, "one", one)
    assert main(submit_args(run, "--samples", "12", "--max-rows", "2", "--shots", "200")) == 0
    assert len(in_flight) == 6 and max(in_flight) <= 2
    assert [r[1] for r in ledger_rows(run)] == ["DONE"] * 6


# ------------------------------------------------------------------ damaged, read-only, concurrent
def test_a_read_only_run_directory_is_listed(fleet, tmp_path):
    """As a user who cannot write the folder (root drops to `nobody` for this)."""
    import tempfile

    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv cannot test a read-only folder")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        run = base / "run"
        run.mkdir()
        shutil.copy(fleet.run / "jobs.sqlite", run / "jobs.sqlite")
        for path in (run / "jobs.sqlite", run, base):
            path.chmod(0o444 if path.is_file() else 0o555)
        before = sorted(os.listdir(run))
        proc = subprocess.run([*prefix, sys.executable, "-m", "hybrid_qiskit.cli", "jobs", str(run), "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HYBRID_QISKIT_HOME": str(base)})
        assert proc.returncode == 0, proc.stderr
        assert len([r for r in json.loads(proc.stdout) if r["job_id"]]) == len(ledger_rows(fleet.run)) >= 4
        assert sorted(os.listdir(run)) == before
    finally:
        for path in (base, base / "run"):
            path.chmod(0o755)
        shutil.rmtree(base)


def test_damaged_or_empty_ledgers_and_index_are_one_line_and_never_replaced(tiny_run, tmp_path, monkeypatch, capsys):
    from hybrid_qiskit.jobs.ledger import index_add

    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))
    good, empty, junk = (tmp_path / name for name in ("good", "empty", "junk"))
    for run in (good, empty, junk):
        run.mkdir()
        with Ledger.for_run(run) as ledger:
            ledger.add_submission(fake_submission(f"s-{run.name}"))
            ledger.add_job(f"job-{run.name}", f"s-{run.name}", (0, 3), remote=False, status="DONE")
        assert index_add(f"job-{run.name}", run, f"s-{run.name}") is None
    (empty / "jobs.sqlite").write_bytes(b"")
    (junk / "jobs.sqlite").write_bytes(b"not a database, " * 100)
    for run, what in ((empty, "empty (0 bytes)"), (junk, "damaged (file is not a database)")):
        assert main(["jobs", str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(run / "jobs.sqlite") in err[0] and what in err[0] and "move it aside" in err[0]
    shutil.copytree(tiny_run, empty, ignore=shutil.ignore_patterns("*.png", "last.pt"), dirs_exist_ok=True)
    assert main(["submit", str(empty), "--backend", "ibm_local", *DEVICE, "--shots", "100", "--samples", "2"]) == 2
    assert "empty (0 bytes)" in capsys.readouterr().err
    assert (empty / "jobs.sqlite").stat().st_size == 0  # never silently replaced

    assert main(["jobs"]) == 1  # one bad ledger in the index: reported, the others listed
    captured = capsys.readouterr()
    assert "job-good" in captured.out and "SKIPPED" in captured.out
    assert len(captured.err.strip().splitlines()) == 2 and "Traceback" not in captured.err
    assert main(["fetch", "--all-pending"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("skipped ") == 2 and "Traceback" not in captured.out + captured.err

    (tmp_path / "home" / "index.sqlite").write_bytes(b"\0" * 4096)
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.sqlite" in err[0] and "not a usable job index" in err[0]


def test_bad_numbers_are_one_line(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    cases = [
        (submit_args(run, "--samples", "2", "--poll", "-1"), "--poll must be a positive number"),
        (submit_args(run, "--samples", "2", "--poll", "nan"), "--poll must be a positive number"),
        (["fetch", "--all-pending", "--poll", "-1"], "--poll must be a positive number"),
        (["fetch", "--all-pending", "--poll", "nan"], "--poll must be a positive number"),
        (submit_args(run, "--samples", "2", "--max-rows", "0"), "--max-rows must be at least 1, got 0"),
        (submit_args(run, "--samples", "2", "--confirm-above", "nan"), "--confirm-above must be"),
        (["submit", str(run), "--resume", "x", "--backend", "ibm_local"], "drop --backend"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (argv, err)


def test_two_processes_claiming_one_lost_job_get_it_once(tmp_path):
    """The claim that makes two concurrent `fetch` re-run a lost job once: many processes try
    at the same instant; exactly one wins, the others are told who holds it."""
    path = tmp_path / "jobs.sqlite"
    with Ledger(path) as ledger:
        ledger.add_submission(fake_submission("s1"))
        ledger.add_job("lost", "s1", (0, 3), remote=False, status="LOST")
    script = (
        "import sys, time\n"
        "from hybrid_qiskit.jobs.ledger import Ledger\n"
        "ledger = Ledger(sys.argv[1], create=False)\n"
        "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
        "print(ledger.claim('lost'))\n"
        "time.sleep(2)\n"  # stay alive: a live holder keeps its claim
    )
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), start], cwd=REPO, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    answers = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert answers.count("None") == 1, answers
    assert all("being re-run by process" in a for a in answers if a != "None")
    with Ledger(path) as ledger:  # its holder is gone: the claim can be taken over
        assert ledger.claim("lost") is None


def test_fetch_leaves_a_lost_job_claimed_by_a_live_process_alone(tiny_run, tmp_path, monkeypatch, capsys):
    import hybrid_qiskit.jobs.commands as commands
    import hybrid_qiskit.jobs.tracking as tracking
    from hybrid_qiskit.jobs.ledger import process_start_time

    def ctrl_c(_):
        raise KeyboardInterrupt

    def leave(code):
        raise SystemExit(code)

    run = copy_run(tiny_run, tmp_path / "run")
    monkeypatch.setattr(tracking, "time", SimpleNamespace(sleep=ctrl_c, monotonic=time.monotonic))
    monkeypatch.setattr(commands.os, "_exit", leave)
    with pytest.raises(SystemExit):
        main(submit_args(run, "--samples", "4", "--shots", "200"))
    monkeypatch.setattr(tracking, "time", time)
    ((job_id, status, _),) = ledger_rows(run)
    assert status == "LOST"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        conn = sqlite3.connect(run / "jobs.sqlite")
        with conn:
            conn.execute("UPDATE jobs SET claimed_by = ? WHERE job_id = ?",
                         (f"{socket.gethostname()}:{other.pid}:{process_start_time(other.pid)}", job_id))
        conn.close()
        capsys.readouterr()
        main(["fetch", job_id])
        assert f"being re-run by process {other.pid}" in capsys.readouterr().out
        assert len(ledger_rows(run)) == 1
    finally:
        other.kill()
        other.wait()
    assert main(["fetch", job_id]) == 0  # the holder died: this fetch takes the claim over
    assert [r[1] for r in ledger_rows(run)] == ["LOST", "DONE"]


# ------------------------------------------------------------------ real IBM Quantum
@pytest.mark.hardware
@pytest.mark.skipif(not os.environ.get("QISKIT_IBM_TOKEN"), reason="needs QISKIT_IBM_TOKEN")
def test_real_service_submit_then_fetch_by_id(tiny_run, tmp_path, capsys):
    """Against IBM Quantum: 4 samples on QISKIT_IBM_DEVICE (default: the least busy QPU). Set
    HYBRID_QISKIT_HARDWARE_WAIT=1 to wait for the result (queues can take hours)."""
    run = copy_run(tiny_run, tmp_path / "run")
    device = os.environ.get("QISKIT_IBM_DEVICE")
    argv = ["submit", str(run), "--backend", "ibm_runtime", "--samples", "4", "--shots", "1000"]
    assert main(argv + (["--device", device] if device else [])) == 0
    (job_id, status, _), = ledger_rows(run)
    assert status == "SUBMITTED"
    wait = ["--wait", "--poll", "30"] if os.environ.get("HYBRID_QISKIT_HARDWARE_WAIT") else []
    rc = main(["fetch", job_id, *wait])
    assert rc in ((0,) if wait else (0, 3)), capsys.readouterr()
    assert ledger_rows(run)[0][1] in ("QUEUED", "RUNNING", "DONE")
    with Ledger.for_run(run) as ledger:  # an id the service does not know: reported, not a crash
        ledger.add_job("d0000000000000000000", ledger.submission_ids()[0], (0, 4), remote=True)
    rc = main(["fetch", "d0000000000000000000", "--run-dir", str(run)])
    captured = capsys.readouterr()
    assert rc in (1, 2) and "d0000000000000000000" in captured.out + captured.err


def test_calibration_rows_travel_in_every_job_and_fetch_normalizes_with_them(tiny_norm_run, tmp_path, service,
                                                                             capsys):
    """A model trained with --normalize: each IBM job runs its samples and then the calibration
    set; fetch standardizes each job's ⟨Z⟩ with the statistics of that job's own calibration rows."""
    import csv

    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
    from hybrid_qiskit.normalization import Stats, restandardize

    run = copy_run(tiny_norm_run, tmp_path / "run")
    fake.set_script(service, None, ["DONE"])
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--calibration-samples", "8", "--dry-run")) == 0
    assert "20 PUB row(s) (images, 8 per job for normalization statistics)" in capsys.readouterr().out
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--calibration-samples", "8",
                         "--wait", "--poll", "0.01")) == 0
    capsys.readouterr()
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        sub, jobs = ledger.submission(sid), ledger.jobs(sid)
    assert sub["normalization"]["stats"] == "calibration" and sub["normalization"]["reference"] == "trained"
    assert sub["calibration_values"].shape == (8, sub["parameter_values"].shape[1])
    assert len(jobs) == 2 and all(j["expvals"].shape == (2 + 8, 4) for j in jobs)  # the rows came back

    result = json.loads((run / "jobs" / sid / "result.json").read_text())
    assert set(result["normalization"]["backend_stats_by_job"]) == {j["job_id"] for j in jobs}
    model = restore_model(load_checkpoint(run / "model.pt"), create_backend("statevector"))
    reference = Stats.from_dict(sub["normalization"]["reference_stats"])
    want = []
    for job in jobs:  # by hand: each job's samples, standardized with its own calibration rows
        z = restandardize(job["expvals"][:2], Stats.of(job["expvals"][2:]), reference)
        want += model.decode(torch.as_tensor(z, dtype=torch.float32)).argmax(1).tolist()
    with open(run / "jobs" / sid / "predictions.csv") as fh:
        assert [int(r["prediction"]) for r in csv.DictReader(fh)] == want


def test_refit_readout_learns_from_every_jobs_calibration_rows_at_fetch(tiny_run, tmp_path, service, capsys):
    """``submit --refit-readout``: the calibration rows travel in every job with their labels
    recorded; fetch re-standardizes each job's rows with its own statistics, pools them, re-fits
    the readout to them and decodes the samples with it."""
    import csv

    import numpy as np
    import torch

    from backends import create_backend
    from hybrid_qiskit.adaptation import refit_readout
    from hybrid_qiskit.checkpoints import load_checkpoint, restore_model
    from hybrid_qiskit.normalization import Stats, restandardize

    run = copy_run(tiny_run, tmp_path / "run")
    fake.set_script(service, None, ["DONE"])
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--refit-readout", "--normalize-stats", "batch",
                         "--yes")) != 0
    assert "--refit-readout learns from the calibration set" in capsys.readouterr().err
    assert main(ibm_args(run, "--samples", "4", "--max-rows", "2", "--calibration-samples", "8", "--refit-readout",
                         "--wait", "--poll", "0.01")) == 0
    capsys.readouterr()
    with Ledger.for_run(run) as ledger:
        (sid,) = ledger.submission_ids()
        sub, jobs = ledger.submission(sid), ledger.jobs(sid)
    norm = sub["normalization"]
    assert norm["stats"] == "calibration" and norm["refit"]["anchor"] > 0 and len(norm["calibration_labels"]) == 8
    result = json.loads((run / "jobs" / sid / "result.json").read_text())
    assert result["normalization"]["refit"] == norm["refit"] and "calibration_labels" not in result["normalization"]

    model = restore_model(load_checkpoint(run / "model.pt"), create_backend("statevector"))
    reference = Stats.from_dict(norm["reference_stats"])
    samples, calib = [], []
    for job in jobs:  # by hand: each job's rows standardized with its own calibration statistics
        source = Stats.of(job["expvals"][2:])
        samples.append(restandardize(job["expvals"][:2], source, reference))
        calib.append(restandardize(job["expvals"][2:], source, reference))
    refit_readout(model, np.concatenate(calib), norm["calibration_labels"] * len(jobs), anchor=norm["refit"]["anchor"])
    with torch.no_grad():
        want = model.decode(torch.as_tensor(np.concatenate(samples), dtype=torch.float32)).argmax(1).tolist()
    with open(run / "jobs" / sid / "predictions.csv") as fh:
        assert [int(r["prediction"]) for r in csv.DictReader(fh)] == want


def test_a_16_qubit_head_rehearses_on_ibm_local(tmp_path, capsys, monkeypatch):
    """The plan of a wide job counts its circuits and shots, and the local rehearsal runs it
    (Aer's matrix-product state on the reduced device, the runtime's own Estimator)."""
    from tests.conftest import train_tiny

    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))
    run = train_tiny(tmp_path, "wide", "--qubits", "16", "--epochs", "1")
    local = ["submit", str(run), "--backend", "ibm_local", "--device", "fake_fez", "--shots", "256"]
    assert main([*local, "--samples", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan: 1 job(s), 2 PUB row(s) (images)" in out and "256 shots per image" in out and "circuits" in out
    assert main([*local, "--samples", "1", "--resilience-level", "0", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 1 test samples (ibm_local fake_fez, 256 shots)" in out
