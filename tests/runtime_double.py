"""A test double of ``QiskitRuntimeService``, at the network boundary only.

``install(store)`` replaces ``backends.ibm_runtime.runtime_service`` (the one function that
constructs the service, for the ``ibm_runtime`` backend and for ``fetch``) with a
:class:`FakeRuntimeService`. Everything above the network is the real code: the backend factory,
the runtime's client-side ``executor_estimator.Estimator`` (pre-processing, option handling),
the job ledger. Where the real client would send the job's JSON inputs to IBM Quantum
(``service._run``), the double keeps them in ``store`` (a folder, so a job submitted by one
process can be fetched by another) and, when asked for the result, decodes them with the
runtime's own converters and runs them in the runtime's local testing mode on the fake device,
the same client-side post-processing a hardware result goes through; the result is a real
``PrimitiveResult``.

Job states follow a per-job script (``QUEUED``, ``RUNNING``, ``DONE`` ... one step per
``status()`` call, the last one sticking); tests rewrite it with :func:`set_script` to release,
fail or cancel a job. ``service.jobs(job_tags=[...])`` answers from the stored jobs' tags, as the
service filters them. :func:`set_behaviour` makes the service refuse jobs after a number of
accepted ones (a chunk failing mid-submission), kill the submitting process right after it
accepted a job (the crash window before the ledger write), or put the account on the Open Plan
(``instances()`` reports plan ``open``). It leans on runtime internals (``IBMBackend`` fields, the params
converters), acceptable for a double; the ``hardware`` tests cover the real service.

``tests/jobs_helper.py`` installs it in a subprocess (``--fake-runtime STORE``).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DEFAULT_SCRIPT = ["QUEUED", "RUNNING", "DONE"]
SEED = 11
ACCOUNT = {"instance": "crn:fake-instance", "channel": "ibm_quantum_platform"}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def set_script(store: Path, job_id: str | None, script: list[str], error: str | None = None) -> None:
    """Set one job's remaining states (``job_id=None``: the default for jobs submitted later)."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    if job_id is None:
        _write(store / "default.json", {"script": script, "error": error})
        return
    state = json.loads((store / f"{job_id}.json").read_text())
    state.update(script=script, calls=0, error=error)
    _write(store / f"{job_id}.json", state)


def set_behaviour(store: Path, *, refuse_after: int | None = None, refusal: str = "Error code 1217; job refused",
                  die_after: int | None = None, plan: str = "premium", least_busy: str = "fake_manila") -> None:
    """How the service behaves from now on: refuse every job after ``refuse_after`` accepted
    ones; ``os._exit`` the submitting process just after accepting job number ``die_after``
    (counting every job accepted through this store); the account's plan; the device that
    ``least_busy`` answers."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    _write(store / "behaviour.json", {"refuse_after": refuse_after, "refusal": refusal, "die_after": die_after,
                                      "plan": plan, "least_busy": least_busy})


def _behaviour(store: Path) -> dict:
    path = Path(store) / "behaviour.json"
    return json.loads(path.read_text()) if path.exists() else {"plan": "premium"}


def accepted(store: Path) -> list[str]:
    """Ids of every job the service accepted, oldest first."""
    log = Path(store) / "accepted.log"
    return log.read_text().split() if log.exists() else []


def calls(store: Path) -> list[str]:
    """Every ``service.job(id)`` call made so far (one id per line)."""
    log = Path(store) / "job_calls.log"
    return log.read_text().split() if log.exists() else []


class FakeRuntimeService:
    """``QiskitRuntimeService`` with the network replaced by a folder."""

    is_local = False  # what the runtime's primitives ask before choosing local testing mode

    def __init__(self, store: Path, **account):
        self.store = Path(store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.account = account

    def active_account(self) -> dict:
        return dict(ACCOUNT)

    def active_instance(self) -> str:
        return ACCOUNT["instance"]

    def instances(self) -> list[dict]:
        return [{"crn": ACCOUNT["instance"], "plan": _behaviour(self.store).get("plan", "premium"), "name": "fake"}]

    def backend(self, name: str):
        return _fake_ibm_backend(name, self)

    def least_busy(self, **_):
        return self.backend(_behaviour(self.store).get("least_busy", "fake_manila"))

    def _run(self, *, program_id, options, inputs, calibration_id=None, dry_run=False, session_id=None, **_):
        """Where the client POSTs a job: keep its inputs, hand back a job."""
        behaviour = _behaviour(self.store)
        taken = accepted(self.store)
        if behaviour.get("refuse_after") is not None and len(taken) >= behaviour["refuse_after"]:
            from qiskit_ibm_runtime.exceptions import IBMRuntimeError

            raise IBMRuntimeError(f"Failed to run program: {behaviour['refusal']}")
        job_id = "d" + uuid.uuid4().hex[:19]  # IBM job ids are 20 characters
        default_path = self.store / "default.json"
        default = json.loads(default_path.read_text()) if default_path.exists() else {"script": DEFAULT_SCRIPT}
        (self.store / f"{job_id}.inputs.json").write_text(json.dumps(inputs))
        _write(self.store / f"{job_id}.json", {"backend": options["backend"], "tags": options.get("job_tags") or [],
                                               "program_id": program_id, "script": default["script"], "calls": 0,
                                               "error": default.get("error"), "session_id": session_id,
                                               "created": datetime.now(UTC).isoformat()})
        with open(self.store / "accepted.log", "a") as fh:
            fh.write(job_id + "\n")
        if behaviour.get("die_after") is not None and len(taken) + 1 == behaviour["die_after"]:
            os._exit(137)  # killed after the service accepted the job, before the client heard back
        return FakeRuntimeJob(self, job_id)

    def jobs(self, limit=10, skip=0, backend_name=None, pending=None, program_id=None, instance=None,
             job_tags=None, session_id=None, created_after=None, created_before=None, descending=True, **_):
        """The stored jobs carrying every tag in ``job_tags`` (newest first, like the service)."""
        out = []
        for job_id in accepted(self.store):
            state = json.loads((self.store / f"{job_id}.json").read_text())
            if job_tags and not set(job_tags) <= set(state["tags"]):
                continue
            if backend_name and state["backend"] != backend_name:
                continue
            out.append(FakeRuntimeJob(self, job_id))
        out = out[::-1] if descending else out
        return out[skip:] if limit is None else out[skip:skip + limit]

    def job(self, job_id: str):
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        with open(self.store / "job_calls.log", "a") as fh:
            fh.write(job_id + "\n")
        if not (self.store / f"{job_id}.json").exists():
            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return FakeRuntimeJob(self, job_id)


class FakeRuntimeJob:
    """The parts of ``RuntimeJobV2`` a client uses: id, status, error message, result."""

    def __init__(self, service: FakeRuntimeService, job_id: str):
        self.service = service
        self._job_id = job_id
        self.session_id = None

    def job_id(self) -> str:
        return self._job_id

    @property
    def tags(self) -> list:
        return list(self._state()["tags"])

    @property
    def creation_date(self):
        return datetime.fromisoformat(self._state()["created"])

    def _state(self) -> dict:
        return json.loads((self.service.store / f"{self._job_id}.json").read_text())

    def status(self) -> str:
        state = self._state()
        status = state["script"][min(state["calls"], len(state["script"]) - 1)]
        state["calls"] += 1
        _write(self.service.store / f"{self._job_id}.json", state)
        return status

    def error_message(self) -> str | None:
        state = self._state()
        current = state["script"][min(max(state["calls"] - 1, 0), len(state["script"]) - 1)]
        return state["error"] if current == "ERROR" else None

    def result(self):
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError, RuntimeJobFailureError

        state = self._state()
        current = state["script"][min(max(state["calls"] - 1, 0), len(state["script"]) - 1)]
        if current == "ERROR":
            raise RuntimeJobFailureError(f"Unable to retrieve job result. {state['error']}")
        if current == "CANCELLED":
            raise RuntimeInvalidStateError(f"Unable to retrieve result for job {self._job_id}. Job was cancelled.")
        if current != "DONE":
            raise AssertionError(f"test double: result() of job {self._job_id} before it finished ({current})")
        return self._simulate(state["backend"])

    def _simulate(self, backend_name: str):
        """Run the job's inputs as IBM Quantum would, with Aer and the fake device's noise."""
        from qiskit.primitives import DataBin, PrimitiveResult, PubResult

        cache = self.service.store / f"{self._job_id}.npz"
        if not cache.exists():
            result = _run_inputs(json.loads((self.service.store / f"{self._job_id}.inputs.json").read_text()),
                                 backend_name)
            data = result[0].data
            np.savez(cache, evs=data.evs, stds=data.stds)
        arrays = np.load(cache)
        data = DataBin(evs=arrays["evs"], stds=arrays["stds"], shape=arrays["evs"].shape)
        return PrimitiveResult([PubResult(data, metadata={"double": True})], metadata={})


def _run_inputs(inputs: dict, backend_name: str):
    from qiskit_ibm_runtime.fake_provider.local_service import QiskitRuntimeLocalService
    from qiskit_ibm_runtime.options_models.simulator import SimulatorOptions
    from qiskit_ibm_runtime.quantum_program.params_converters import (
        QUANTUM_PROGRAM_PARAMS_CONVERTERS,
    )

    from backends.devices import get_fake_backend

    converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS[inputs["schema_version"]]
    program, _ = converter.decoder(converter.model.model_validate(inputs))
    for item in program.items:  # decoding leaves the samplexes unfinalized; the server finalizes them
        samplex = getattr(item, "samplex", None)
        if samplex is not None:
            samplex.finalize()
    job = QiskitRuntimeLocalService()._run_executor(get_fake_backend(backend_name), SimulatorOptions(seed_simulator=SEED),
                                                    program)
    return job.result()


def _fake_ibm_backend(name: str, service: FakeRuntimeService):
    """An ``IBMBackend`` (so the runtime's client talks to ``service``) with a fake device's
    configuration, properties and target, so nothing is fetched from the network."""
    from qiskit_ibm_runtime import IBMBackend

    from backends.devices import get_fake_backend

    device = get_fake_backend(name)
    backend = IBMBackend(configuration=device.configuration(), service=service, api_client=None)
    backend._properties = device.properties()
    backend._target = device.target
    return backend


def install(store: Path, monkeypatch=None) -> None:
    """Make every ``runtime_service(...)`` call return a :class:`FakeRuntimeService` on ``store``."""
    from backends import ibm_runtime

    def runtime_service(**account):
        return FakeRuntimeService(store, **account)

    if monkeypatch is not None:
        monkeypatch.setattr(ibm_runtime, "runtime_service", runtime_service)
    else:
        ibm_runtime.runtime_service = runtime_service

