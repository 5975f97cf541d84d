"""IBM Quantum's REST API, faked under qiskit-ibm-runtime's own client (as its unit tests do).

qiskit-ibm-runtime's unit tests replace ``RuntimeClient`` (``qiskit_ibm_runtime.api.client``,
the one class that sends HTTP requests) with a fake client and keep everything above it real.
:func:`install` does the same here: :class:`FakeRuntimeClient` takes the place of
``RuntimeClient`` where ``QiskitRuntimeService`` builds it, and ``Account.list_instances``
(IBM Cloud's global search, the other network call) answers from the fake's instances. So the
real ``QiskitRuntimeService`` (account lookup, instance and backend discovery, ``usage()``),
``IBMBackend`` (configuration, properties and target decoded from the server's JSON),
``Session`` / ``Batch`` (created, closed, details), ``RuntimeJobV2`` (status mapping, reason
codes, ``cancel``, ``usage``, ``metrics``) and the result decoders (the executor's JSON schema,
then the estimator's client-side post-processing) all run.

The "server" keeps its state in a folder (``HYBRID_QISKIT_FAKE_IBM``, or the one given to
:func:`install`), so a job submitted by one process is retrieved by id from another. A job's
parameters are the JSON the client POSTed; when it completes, the fake decodes them with the
runtime's own params converters, runs the quantum program on the fake device with the runtime's
local executor (Aer, the device's noise), and returns the executor's result JSON (schema v2.0),
which the client decodes as it would IBM's.

What tests steer (:func:`configure`, :func:`set_script`):

* each job's states, one per status request (``Queued``, ``Running``, ``Completed``,
  ``Failed``, ``Cancelled``), with a reason and reason code;
* refusals of ``program_run`` (HTTP status and message: rate limits, pending-job limits),
  consumed one per attempt; ``refuse_after``: every job after N accepted ones is refused;
* the instance's plan and usage (``usage_limit_seconds``, ``usage_consumed_seconds``): a job
  accepted while no usage is left stays ``Queued``, as on IBM Quantum; each completed job adds
  its usage;
* a batch's or session's time-to-live: its ``max_ttl`` and whether it has expired (its queued
  jobs are then cancelled, as the service does; ``expire_after``: once N jobs were accepted);
* ``die_after``: the submitting process is killed right after the server accepted job N.

Every request is logged (``requests.log``: one ``method args`` line), so tests can assert that
a dry run sent nothing.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

STORE_ENV = "HYBRID_QISKIT_FAKE_IBM"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/fakeaccount:fake-instance-0001::"
TOKEN = "fake-api-key-0000"
# Served name -> the fake device whose snapshot answers for it (ibm_* names: QPUs as users name them).
DEVICES = {"fake_manila": "fake_manila", "fake_quito": "fake_quito", "fake_fez": "fake_fez",
           "ibm_torino": "fake_torino"}
SEED = 11
DEFAULT_SCRIPT = ["Queued", "Running", "Completed"]
SECONDS_PER_JOB = 2.0  # the fake's usage of a job: this, plus its shots x 250 us

_STORE: Path | None = None


# ------------------------------------------------------------------ the server's state
def _store() -> Path:
    path = _STORE or (Path(os.environ[STORE_ENV]) if os.environ.get(STORE_ENV) else None)
    if path is None:
        raise RuntimeError("the fake IBM Quantum server has no store (tests.jobs.ibm_rest_fake.install)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


def _write(path: Path, data) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def server(store: Path | None = None) -> dict:
    """The server's settings (plan, usage, refusals, die_after, default script)."""
    default = {"plan": "open", "usage_limit_seconds": 600.0, "usage_consumed_seconds": 0.0, "refusals": [],
               "die_after": None, "script": DEFAULT_SCRIPT, "reason": None, "reason_code": None,
               "least_busy": "fake_manila", "expire_after": None, "refuse_after": None,
               "refusal": "Error code 1217; job refused"}
    return {**default, **_read((store or _store()) / "server.json", {})}


def configure(store: Path, **changes) -> None:
    """Change the server's settings (see :func:`server` for the keys)."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    _write(store / "server.json", {**server(store), **changes})


# The client's names for the API's states (either may be given to set_script).
API_STATES = {"QUEUED": "Queued", "RUNNING": "Running", "DONE": "Completed", "ERROR": "Failed",
              "CANCELLED": "Cancelled"}


def set_script(store: Path, job_id: str | None, script: list[str], reason: str | None = None,
               reason_code: int | None = None, error: str | None = None) -> None:
    """One job's remaining API states (``job_id=None``: the default for jobs accepted later), in
    the API's spelling or the client's (``DONE`` for ``Completed``, ...). ``error``: a reason as
    the client shows it, ``Error code 1517; ...`` (split into code and reason)."""
    store = Path(store)
    script = [API_STATES.get(state, state) for state in script]
    if error is not None:
        code, _, text = error.partition("; ")
        if code.startswith("Error code ") and code[11:].isdigit():
            reason, reason_code = text, int(code[11:])
        else:
            reason = error
    if job_id is None:
        configure(store, script=script, reason=reason, reason_code=reason_code)
        return
    job = _read(store / "jobs" / f"{job_id}.json")
    job.update(script=script, calls=0, reason=reason, reason_code=reason_code)
    _write(store / "jobs" / f"{job_id}.json", job)


def expire_session(store: Path, session_id: str) -> None:
    """A batch or session whose time-to-live ran out: closed, its queued jobs cancelled."""
    store = Path(store)
    sess = _read(store / "sessions" / f"{session_id}.json")
    now = datetime.now(UTC)
    sess.update(state="closed", accepting_jobs=False, closed_at=now.isoformat(), expired=True,
                started_at=(now - timedelta(seconds=sess["max_ttl"] + 1)).isoformat())
    _write(store / "sessions" / f"{session_id}.json", sess)
    for path in sorted((store / "jobs").glob("*.json")):
        job = _read(path)
        if job.get("session_id") == session_id and _current(job) in ("Queued", "Running"):
            job.update(script=["Cancelled"], calls=0, reason="Session has expired (max_ttl reached)",
                       reason_code=None)
            _write(path, job)


def accepted(store: Path) -> list[str]:
    """Ids of every job the server accepted, oldest first."""
    log = Path(store) / "accepted.log"
    return log.read_text().split() if log.exists() else []


def requests(store: Path) -> list[str]:
    """Every request a client made (``method arg``), oldest first."""
    log = Path(store) / "requests.log"
    return log.read_text().splitlines() if log.exists() else []


def job_state(store: Path, job_id: str) -> dict:
    return _read(Path(store) / "jobs" / f"{job_id}.json")


def sessions(store: Path) -> list[dict]:
    return [_read(p) for p in sorted((Path(store) / "sessions").glob("*.json"))]


def _current(job: dict) -> str:
    script = job["script"]
    return script[min(max(job["calls"] - 1, 0), len(script) - 1)] if job["calls"] else "Queued"


def _api_error(message: str, status: int):
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    return RequestsApiError(message, status_code=status)


def _n_qubits(name: str) -> int:
    from backends.devices import device_facts

    return device_facts(DEVICES.get(name, name))["num_qubits"]


def _fake_device(name: str):
    from backends.devices import get_fake_backend

    return get_fake_backend(DEVICES.get(name, name))


# ------------------------------------------------------------------ the client
class FakeRuntimeClient:
    """Stands in for ``qiskit_ibm_runtime.api.client.RuntimeClient``: the same methods, answered
    from the store instead of HTTP."""

    def __init__(self, params=None, *args, **kwargs):
        self._instance = getattr(params, "instance", None) or CRN
        self.store = _store()

    def _log(self, *parts) -> None:
        with open(self.store / "requests.log", "a") as fh:
            fh.write(" ".join(str(p) for p in parts) + "\n")

    # backends
    def list_backends(self, include_mocks: bool = False) -> list[dict]:
        self._log("list_backends")
        least = server(self.store)["least_busy"]
        return [{"name": name, "class": "real", "status": {"name": "online", "reason": "available"},
                 "queue_length": 0 if name == least else 5, "qubits": _n_qubits(name)} for name in DEVICES]

    def backend_configuration(self, backend_name: str, refresh: bool = False, calibration_id=None) -> dict:
        self._log("backend_configuration", backend_name)
        if backend_name not in DEVICES:
            raise _api_error(f"Backend {backend_name} not found", 404)
        device = _fake_device(backend_name)
        with open(os.path.join(device.dirname, device.conf_filename)) as fh:
            conf = json.load(fh)  # the server's JSON, as the fake device's snapshot keeps it
        conf["backend_name"] = backend_name  # served under the fake's name (the snapshot has ibmq_manila)
        return conf

    def backend_properties(self, backend_name: str, datetime=None, calibration_id=None) -> dict:
        self._log("backend_properties", backend_name)
        device = _fake_device(backend_name)
        with open(os.path.join(device.dirname, device.props_filename)) as fh:
            return json.load(fh)

    def backend_status(self, backend_name: str) -> dict:
        jobs = server(self.store).get("queue", {}).get(backend_name, 0)
        return {"backend_name": backend_name, "backend_version": "1.0.0", "operational": True,
                "pending_jobs": 0 if backend_name == server(self.store)["least_busy"] else jobs + 5,
                "status_msg": "active"}

    # usage
    def cloud_usage(self) -> dict:
        self._log("cloud_usage")
        s = server(self.store)
        return {"instance_id": CRN, "plan_id": s["plan"], "usage_consumed_seconds": s["usage_consumed_seconds"],
                "usage_limit_seconds": s["usage_limit_seconds"],
                "usage_limit_reached": s["usage_consumed_seconds"] >= s["usage_limit_seconds"],
                "usage_period": {"start_time": "2026-11-08T00:00:00Z", "end_time": "2026-12-06T00:00:00Z"}}

    # sessions and batches
    def create_session(self, backend=None, instance=None, max_time=None, mode=None, **kwargs) -> dict:
        self._log("create_session", backend, mode)
        sid = "s" + uuid.uuid4().hex[:19]
        (self.store / "sessions").mkdir(exist_ok=True)
        _write(self.store / "sessions" / f"{sid}.json", {
            "id": sid, "backend_name": backend, "mode": mode, "state": "open", "accepting_jobs": True,
            "max_ttl": max_time or (600 if server(self.store)["plan"] == "open" else 28800), "interactive_ttl": 60,
            "active_ttl": max_time, "started_at": _now(), "closed_at": None, "elapsed_time": 0, "expired": False})
        return {"id": sid}

    def close_session(self, session_id: str) -> None:
        self._log("close_session", session_id)
        path = self.store / "sessions" / f"{session_id}.json"
        sess = _read(path)
        if sess is None:
            raise _api_error(f"Session {session_id} not found", 404)
        if sess["state"] != "closed":
            sess.update(accepting_jobs=False, state="closed" if sess.get("expired") else sess["state"])
        _write(path, sess)

    def cancel_session(self, session_id: str) -> None:
        self._log("cancel_session", session_id)
        self.close_session(session_id)

    def session_details(self, session_id: str) -> dict:
        self._log("session_details", session_id)
        sess = _read(self.store / "sessions" / f"{session_id}.json")
        if sess is None:
            raise _api_error(f"Session {session_id} not found", 404)
        return sess

    # jobs
    def program_run(self, program_id: str, backend_name: str | None, params: dict, image=None, log_level=None,
                    session_id: str | None = None, job_tags: list[str] | None = None,
                    max_execution_time: int | None = None, start_session=False, session_time=None, private=False,
                    calibration_id=None) -> dict:
        self._log("program_run", backend_name, session_id or "-")
        s = server(self.store)
        if s["refusals"]:
            refusal, rest = s["refusals"][0], s["refusals"][1:]
            configure(self.store, refusals=rest)
            raise _api_error(refusal["message"], refusal.get("status", 400))
        if s["refuse_after"] is not None and len(accepted(self.store)) >= s["refuse_after"]:
            raise _api_error(s["refusal"], 400)  # every job from now on (not a limit that clears)
        if session_id and s.get("expire_after") is not None and len(accepted(self.store)) >= s["expire_after"]:
            expire_session(self.store, session_id)  # its time-to-live runs out while jobs are still being sent
        if session_id:
            sess = _read(self.store / "sessions" / f"{session_id}.json")
            if sess is None or not sess["accepting_jobs"]:
                raise _api_error(f"Session {session_id} is closed and not accepting jobs", 400)
        job_id = "d" + uuid.uuid4().hex[:19]  # IBM job ids are 20 characters
        (self.store / "jobs").mkdir(exist_ok=True)
        (self.store / "jobs" / f"{job_id}.params.json").write_text(json.dumps(params))
        exhausted = s["usage_consumed_seconds"] >= s["usage_limit_seconds"]
        _write(self.store / "jobs" / f"{job_id}.json", {
            "id": job_id, "backend": backend_name, "program_id": program_id, "tags": list(job_tags or []),
            "session_id": session_id, "created": _now(), "max_execution_time": max_execution_time,
            "script": ["Queued"] if exhausted else s["script"], "calls": 0, "reason": s["reason"],
            "reason_code": s["reason_code"], "waiting_for_usage": exhausted, "cancelled_by_user": False,
        })
        with open(self.store / "accepted.log", "a") as fh:
            fh.write(job_id + "\n")
        if s["die_after"] is not None and len(accepted(self.store)) == s["die_after"]:
            os._exit(137)  # killed after the server accepted the job, before the client heard back
        return {"id": job_id, "backend": backend_name}

    def _job(self, job_id: str) -> dict:
        job = _read(self.store / "jobs" / f"{job_id}.json")
        if job is None:
            raise _api_error(f"Job not found: {job_id}", 404)
        return job

    def job_get(self, job_id: str, exclude_params: bool = True) -> dict:
        self._log("job_get", job_id)
        job = self._job(job_id)
        if job.get("waiting_for_usage") and server(self.store)["usage_consumed_seconds"] < \
                server(self.store)["usage_limit_seconds"]:
            job.update(waiting_for_usage=False, script=server(self.store)["script"], calls=0)
        job["calls"] += 1
        status = _current(job)
        if status == "Completed" and "usage_seconds" not in job:
            job["usage_seconds"] = self._complete(job)
        _write(self.store / "jobs" / f"{job_id}.json", job)
        return self._job_dict(job, status)

    def _job_dict(self, job: dict, status: str) -> dict:
        return {"id": job["id"], "backend": job["backend"], "program": {"id": job["program_id"]},
                "state": {"status": status, "reason": job["reason"] if status in ("Failed", "Cancelled") else None,
                          "reasonCode": job["reason_code"] if status in ("Failed", "Cancelled") else None},
                "created": job["created"], "session_id": job["session_id"], "tags": job["tags"],
                "runtime": "", "private": False, "estimated_running_time_seconds": None}

    def _complete(self, job: dict) -> float:
        """Run the job's program (once) and charge its usage to the instance."""
        params = json.loads((self.store / "jobs" / f"{job['id']}.params.json").read_text())
        result, shots = _simulate(params, job["backend"])
        (self.store / "jobs" / f"{job['id']}.result.json").write_text(result)
        seconds = round(SECONDS_PER_JOB + shots * 250e-6, 3)
        s = server(self.store)
        configure(self.store, usage_consumed_seconds=s["usage_consumed_seconds"] + seconds)
        return seconds

    def jobs_get(self, limit=None, skip=None, backend_name=None, pending=None, program_id=None, job_tags=None,
                 session_id=None, created_after=None, created_before=None, descending=True, include_mocks=False):
        self._log("jobs_get", ",".join(job_tags or []))
        out = []
        for job_id in accepted(self.store):
            job = self._job(job_id)
            if job_tags and not set(job_tags) <= set(job["tags"]):
                continue
            if backend_name and job["backend"] != backend_name:
                continue
            if session_id and job["session_id"] != session_id:
                continue
            out.append(self._job_dict(job, _current(job)))
        out = out[::-1] if descending else out
        skip = skip or 0
        page = out[skip:] if limit is None else out[skip:skip + limit]
        return {"jobs": page, "count": len(out)}

    def job_results(self, job_id: str) -> str:
        self._log("job_results", job_id)
        job = self._job(job_id)
        status = _current(job)
        if status == "Completed":
            return (self.store / "jobs" / f"{job_id}.result.json").read_text()
        return f"Traceback (most recent call last):\nJobError: {job['reason'] or status.lower()}"

    def job_cancel(self, job_id: str) -> None:
        self._log("job_cancel", job_id)
        job = self._job(job_id)
        if _current(job) in ("Completed", "Failed", "Cancelled") and job["calls"]:
            raise _api_error(f"Job {job_id} is in a final state and cannot be cancelled", 409)
        job.update(script=["Cancelled"], calls=max(job["calls"], 1), reason="Cancelled by the user", reason_code=None,
                   cancelled_by_user=True, waiting_for_usage=False)
        _write(self.store / "jobs" / f"{job_id}.json", job)

    def job_metadata(self, job_id: str) -> dict:
        self._log("job_metadata", job_id)
        job = self._job(job_id)
        seconds = job.get("usage_seconds")
        done = seconds is not None
        return {"timestamps": {"created": job["created"], "finished": _now() if done else None,
                               "running": job["created"] if done else None},
                "bss": {"seconds": seconds or 0},
                "usage": {"quantum_seconds": seconds or 0, "seconds": seconds or 0,
                          "qpu_charge_time_seconds": seconds or 0, "status": "final" if done else "pending"},
                "qiskit_version": "fake", "caller": "qiskit_ibm_runtime"}

    def job_logs(self, job_id: str) -> str:
        return ""

    def job_delete(self, job_id: str) -> None:
        self._job(job_id)

    def update_tags(self, job_id: str, tags: list):
        job = self._job(job_id)
        job["tags"] = list(tags)
        _write(self.store / "jobs" / f"{job_id}.json", job)
        return type("Response", (), {"status_code": 204})()


# ------------------------------------------------------------------ the QPU: the runtime's local executor
def _simulate(params: dict, backend_name: str) -> tuple[str, int]:
    """The executor's result JSON (schema v2.0) for POSTed ``params``, and the shots it ran."""
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0.models import (
        ChunkPart,
        ChunkSpan,
        ItemMetadataModel,
        MetadataModel,
        QuantumProgramResultItemModel,
        QuantumProgramResultModel,
    )
    from qiskit_ibm_runtime.fake_provider.executor.run_quantum_program import run_quantum_program
    from qiskit_ibm_runtime.options_models.simulator import SimulatorOptions
    from qiskit_ibm_runtime.quantum_program.converters.converters_2_0 import passthrough_data_to_2_0
    from qiskit_ibm_runtime.quantum_program.params_converters import (
        QUANTUM_PROGRAM_PARAMS_CONVERTERS,
    )

    converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS[params["schema_version"]]
    program, _ = converter.decoder(converter.model.model_validate(params))
    for item in program.items:  # decoding leaves the samplexes unfinalized; the server finalizes them
        samplex = getattr(item, "samplex", None)
        if samplex is not None:
            samplex.finalize()
    start = datetime.now(UTC)
    result = run_quantum_program(_fake_device(backend_name), program, SimulatorOptions(seed_simulator=SEED))
    stop = datetime.now(UTC) + timedelta(milliseconds=1)
    items, parts, shots = [], [], 0
    for index, (item, out) in enumerate(zip(program.items, result, strict=True)):
        size = int(np.prod(item.shape)) if getattr(item, "shape", None) else int(item.size())
        shots += program.shots * max(1, size)
        items.append(QuantumProgramResultItemModel(
            results={name: CompressedTensorModel.from_numpy(np.asarray(value)) for name, value in out.items()},
            metadata=ItemMetadataModel()))
        parts.append(ChunkPart(idx_item=index, size=size, permutation=list(range(max(1, len(item.shape or (1,))))),
                               element_range=(0, size, 1)))
    model = QuantumProgramResultModel(
        data=items, metadata=MetadataModel(chunk_timing=[ChunkSpan(start=start, stop=stop, parts=parts)]),
        passthrough_data=passthrough_data_to_2_0(program.passthrough_data),
        semantic_role=params["quantum_program"].get("semantic_role"))
    return model.model_dump_json(), shots


# ------------------------------------------------------------------ installing it
def _list_instances(self) -> list[dict]:
    return [{"crn": CRN, "plan": server()["plan"], "name": "fake-instance", "tags": [], "pricing_type": "free"}]


def install_for_test(tmp_path: Path, monkeypatch, folder: str) -> Path:
    """:func:`install` on a fresh store ``tmp_path/folder``, with the test's own job index
    (``HYBRID_QISKIT_HOME``); returns the store."""
    store = tmp_path / folder
    install(store, monkeypatch)
    monkeypatch.setenv("HYBRID_QISKIT_HOME", str(tmp_path / "home"))
    return store


def install(store: Path | None = None, monkeypatch=None) -> None:
    """Route qiskit-ibm-runtime's REST calls to the fake server on ``store`` (default: the folder
    in ``$HYBRID_QISKIT_FAKE_IBM``), and give the environment an account (token and instance) as
    a user's ``QISKIT_IBM_TOKEN`` would."""
    import qiskit_ibm_runtime.qiskit_runtime_service as service_module
    from qiskit_ibm_runtime.accounts.account import Account

    global _STORE
    patches = [(service_module, "RuntimeClient", FakeRuntimeClient),
               (Account, "list_instances", _list_instances)]
    env = {"QISKIT_IBM_TOKEN": TOKEN, "QISKIT_IBM_INSTANCE": CRN, "QISKIT_IBM_CHANNEL": "ibm_quantum_platform"}
    if store is not None:
        env[STORE_ENV] = str(Path(store).resolve())
    if monkeypatch is not None:
        for obj, name, value in patches:
            monkeypatch.setattr(obj, name, value)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(__import__(__name__, fromlist=["_STORE"]), "_STORE",
                            Path(store).resolve() if store is not None else None)
        return
    for obj, name, value in patches:
        setattr(obj, name, value)
    os.environ.update(env)
    _STORE = Path(store).resolve() if store is not None else None


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
