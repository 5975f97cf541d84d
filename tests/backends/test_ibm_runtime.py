"""ibm_runtime: the missing-account path, the factory's plumbing with a stand-in service, hardware."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from backends import backend_spec, create_backend
from backends.devices import get_fake_backend
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError, MissingCredentialsError
from hybrid_qiskit.qnn import build_quantum_layer

ENV_VARS = ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL")


@pytest.fixture
def no_ibm_account(monkeypatch, tmp_path):
    """No token in the environment and the account file pointed at an empty folder."""
    import qiskit_ibm_runtime.accounts.management as management

    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(
        management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json")
    )


def test_registered_as_needing_credentials():
    spec = backend_spec("ibm_runtime")
    assert spec.needs_credentials
    assert {
        "device",
        "shots",
        "mode",
        "resilience_level",
        "twirling",
        "dynamical_decoupling",
        "instance",
        "channel",
        "seed",
    } <= set(spec.settings)


def test_missing_account_is_one_clear_line(no_ibm_account):
    with pytest.raises(MissingCredentialsError) as info:
        create_backend("ibm_runtime")
    message = str(info.value)
    assert "\n" not in message
    assert "save_account(" in message and "hybrid-qiskit account save" in message and "QISKIT_IBM_TOKEN" in message


class StandInService:
    """What the factory uses of QiskitRuntimeService, answering with a fake device (offline)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def backend(self, name):
        return get_fake_backend(name)

    def least_busy(self, **filters):
        return get_fake_backend("fake_lima")

    plan = "premium"

    def active_account(self):
        return {"channel": "ibm_quantum_platform", "instance": "crn:test", "token": "secret"}

    def active_instance(self):
        return "crn:test"

    def instances(self):
        return [{"crn": "crn:test", "plan": self.plan, "name": "test"}]


@pytest.fixture
def stand_in_service(monkeypatch):
    import qiskit_ibm_runtime

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "not-a-real-token")
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", StandInService)


def test_unreachable_service_is_one_line(monkeypatch):
    import qiskit_ibm_runtime

    def unreachable(**kwargs):
        raise ConnectionError("Max retries exceeded with url\nsecond line")

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "not-a-real-token")
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", unreachable)
    with pytest.raises(
        HybridQiskitError, match="^could not connect to IBM Quantum: Max retries exceeded with url$"
    ):
        create_backend("ibm_runtime")


@pytest.mark.parametrize("mode", ["job", "session", "batch"])
def test_factory_plumbing_with_stand_in_service(stand_in_service, mode):
    handle = create_backend(
        "ibm_runtime",
        device="fake_manila",
        shots=300,
        mode=mode,
        resilience_level=0,
        twirling=True,
        dynamical_decoupling="XY4",
        seed=2,
    )
    options = handle.estimator.options
    assert options.resilience_level == 0 and options.twirling.enable_gates is True
    assert (
        options.dynamical_decoupling.enable and options.dynamical_decoupling.sequence_type == "XY4"
    )
    assert options.simulator.seed_simulator is None  # simulator seed is for local mode only
    assert handle.estimator.backend().name == "fake_manila" and handle.remote
    assert handle.estimator.mode is None  # a Session / Batch opens with the first job, not before
    d = json.loads(json.dumps(handle.description))
    assert d["mode"] == mode and d["device"] == "fake_manila" and d["shots"] == 300
    assert d["instance"] == "crn:test" and "token" not in json.dumps(d)
    if handle.estimator.mode is not None:
        handle.estimator.mode.close()


def test_session_on_the_open_plan_suggests_batch(stand_in_service, monkeypatch):
    monkeypatch.setattr(StandInService, "plan", "open")
    with pytest.raises(HybridQiskitError) as info:
        create_backend("ibm_runtime", device="fake_manila", mode="session")
    assert "\n" not in str(info.value) and "Open Plan" in str(info.value) and "--mode batch" in str(info.value)
    handle = create_backend("ibm_runtime", device="fake_manila", mode="batch")  # batch is fine there
    handle.close()
    handle.close()  # closing twice is harmless


def test_a_session_the_service_refuses_is_one_line(stand_in_service, monkeypatch):
    import qiskit_ibm_runtime

    def refuse(*args, **kwargs):
        raise RuntimeError("403 Client Error: Forbidden\nYou are not authorized to run a session")

    monkeypatch.setattr(qiskit_ibm_runtime, "Session", refuse)
    handle = create_backend("ibm_runtime", device="fake_manila", mode="session")  # nothing sent yet
    with pytest.raises(HybridQiskitError, match="^could not open a session on fake_manila: 403 Client Error: "
                                                "Forbidden; Open Plan accounts cannot open sessions: use --mode batch"):
        handle.estimator.run([])  # the first job opens it


def test_least_busy_when_no_device(stand_in_service):
    assert create_backend("ibm_runtime", resilience_level=0).description["device"] == "fake_lima"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"mode": "stream"}, "mode"),
        ({"resilience_level": 3}, "resilience_level"),
        ({"dynamical_decoupling": "XZ"}, "dynamical_decoupling"),
        ({"shots": -5}, "shots"),
    ],
)
def test_bad_settings(stand_in_service, settings, message):
    with pytest.raises(HybridQiskitError, match=message):
        create_backend("ibm_runtime", device="fake_manila", **settings)


@pytest.mark.parametrize("name", ["aer_noisy", "aer_noisy_exact", "ibm_local", "statevector"])
def test_simulator_paths_never_ask_for_an_account(monkeypatch, name):
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountManager

    def refuse(*args, **kwargs):
        raise AssertionError("a simulator backend asked for an IBM Quantum account")

    monkeypatch.setattr(AccountManager, "get", refuse)
    monkeypatch.setattr(QiskitRuntimeService, "__init__", refuse)
    handle = create_backend(
        name, seed=0, **({"shots": 100} if name in ("aer_noisy", "ibm_local") else {})
    )
    layer = build_quantum_layer(build_head_circuit(1, reps=0), handle, seed=0)
    x = torch.tensor([[0.3]], requires_grad=True)
    layer(x).sum().backward()


@pytest.mark.hardware
@pytest.mark.skipif(not os.environ.get("QISKIT_IBM_TOKEN"), reason="needs QISKIT_IBM_TOKEN")
def test_hardware_forward_and_backward():
    """One tiny batch on a real QPU (least busy unless QISKIT_IBM_DEVICE names one)."""
    handle = create_backend(
        "ibm_runtime",
        device=os.environ.get("QISKIT_IBM_DEVICE"),
        shots=256,
        resilience_level=0,
        seed=1,
    )
    layer = build_quantum_layer(build_head_circuit(1, reps=0), handle, seed=0)
    x = torch.tensor([[0.3]], requires_grad=True)
    y = layer(x)
    assert y.shape == (1, 1) and np.all(np.abs(y.detach().numpy()) <= 1)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
