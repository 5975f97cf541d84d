"""Every registered backend builds a QNN and runs forward and backward (a new entry is tested free)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from backends import backend_spec, create_backend, list_backends
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import MissingCredentialsError
from hybrid_qiskit.qnn import build_quantum_layer

# Small and fast where a backend takes these; the rest keep their defaults.
FAST = {"shots": 256, "resilience_level": 0, "seed": 5}
HAVE_TOKEN = bool(os.environ.get("QISKIT_IBM_TOKEN"))


def _cases():
    for name in list_backends():
        if backend_spec(name).needs_credentials:
            marks = [
                pytest.mark.hardware,
                pytest.mark.skipif(not HAVE_TOKEN, reason="needs QISKIT_IBM_TOKEN"),
            ]
            yield pytest.param(name, marks=marks, id=name)
        else:
            yield pytest.param(name, id=name)


@pytest.mark.parametrize("name", list(_cases()))
def test_forward_and_backward(name):
    settings = {k: v for k, v in FAST.items() if k in backend_spec(name).settings}
    handle = create_backend(name, **settings)
    assert handle.name == name
    json.dumps(handle.description)  # written into every run's metadata
    layer = build_quantum_layer(build_head_circuit(2, reps=1), handle, seed=0)
    x = torch.tensor([[0.3, 1.2], [2.0, 0.1], [1.0, 2.5]], requires_grad=True)
    y = layer(x)
    assert y.shape == (3, 2)
    assert np.all(np.abs(y.detach().numpy()) <= 1 + 1e-9)
    y.pow(2).sum().backward()
    assert x.grad.shape == (3, 2) and torch.isfinite(x.grad).all()
    assert layer.weight.grad.shape == (4,) and torch.isfinite(layer.weight.grad).all()


CREDENTIALED = [name for name in list_backends() if backend_spec(name).needs_credentials]


@pytest.mark.parametrize("name", CREDENTIALED)
def test_credentialed_backends_without_account_fail_clearly(name, monkeypatch, tmp_path):
    import qiskit_ibm_runtime.accounts.management as management

    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(
        management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "none.json")
    )
    with pytest.raises(MissingCredentialsError, match="save_account") as info:
        create_backend(name)
    assert "\n" not in str(info.value)



def aer_shot_draws() -> list[float]:
    """Three shot-sampled ⟨Z⟩ of H|0⟩ from one seeded ``aer_statevector`` handle."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    qc = QuantumCircuit(1)
    qc.h(0)
    est = create_backend("aer_statevector", shots=64, seed=11).estimator
    return [float(est.run([(qc, SparsePauliOp("Z"))]).result()[0].data.evs) for _ in range(3)]


def test_aer_statevector_shots_draw_afresh_each_call_and_reproducibly():
    """Shot noise differs from call to call (a fixed simulator seed repeated the same noise on
    every training step), and the same seed gives the same sequence in another process."""
    import subprocess
    import sys
    from pathlib import Path

    draws = aer_shot_draws()
    assert len(set(draws)) > 1
    assert aer_shot_draws() == draws  # a new handle with the same seed
    root = Path(__file__).resolve().parents[2]
    code = "from tests.backends.test_all_backends import aer_shot_draws; print(aer_shot_draws())"
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "123"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, env=env)
    assert json.loads(there.stdout) == draws
