"""ibm_local: the runtime's executor Estimator in local testing mode on a fake device."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from backends import create_backend
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.qnn import build_qnn

Z2 = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 2) for q in range(2)]


def run(handle, circuit, observables, values=None):
    isa = handle.pass_manager.run(circuit)
    mapped = [[o.apply_layout(isa.layout)] for o in observables]
    pub = (isa, mapped) if values is None else (isa, mapped, values)
    result = handle.estimator.run([pub], precision=handle.precision).result()[0]
    return np.asarray(result.data.evs).ravel(), np.asarray(result.data.stds).ravel()


def test_unmitigated_local_mode_matches_exact_device_noise():
    # Same device noise model (Aer's from_backend), same ISA circuit: the means agree.
    head = build_head_circuit(2, reps=1)
    x = np.array([[0.4, 2.0], [1.3, 0.7]])
    w = np.random.default_rng(0).uniform(-1, 1, 4)
    local = build_qnn(
        head, create_backend("ibm_local", shots=20_000, resilience_level=0, seed=1)
    ).forward(x, w)
    exact = build_qnn(head, create_backend("aer_noisy_exact", seed=1)).forward(x, w)
    assert np.all(np.abs(local - exact) <= 4 * np.sqrt((1 - exact**2) / 20_000))


def test_resilience_level_one_mitigates_readout():
    # Qubits 0 and 1 of fake_fez (readout errors 2.1% and 1.0%): the noise-aware layout would
    # pick the device's best two, where readout error hides under the shot noise.
    raw, raw_std = run(
        create_backend("ibm_local", shots=8000, resilience_level=0, seed=2, layout="trivial"),
        QuantumCircuit(2), Z2,
    )
    mitigated, _ = run(
        create_backend("ibm_local", shots=8000, resilience_level=1, seed=2, layout="trivial"),
        QuantumCircuit(2), Z2,
    )
    assert np.all(raw < 1 - 4 * raw_std)  # readout error shows without mitigation
    assert np.all(np.abs(1 - mitigated) < np.abs(1 - raw))


@pytest.mark.parametrize("mode", ["session", "batch"])
def test_session_and_batch_modes(mode):
    handle = create_backend("ibm_local", shots=200, resilience_level=0, mode=mode, seed=3)
    evs, _ = run(handle, QuantumCircuit(2), Z2)
    assert evs.shape == (2,) and np.all(evs > 0.5)
    assert handle.description["mode"] == mode and handle.estimator.mode is not None
    handle.estimator.mode.close()


def test_description_and_options():
    handle = create_backend(
        "ibm_local", device="fake_lima", shots=512, dynamical_decoupling=True, seed=4
    )
    d = json.loads(json.dumps(handle.description))
    assert d["device"] == "fake_lima" and d["shots"] == 512 and d["resilience_level"] == 1
    assert d["dynamical_decoupling"] == "XX" and "local testing mode" in d["estimator"]
    assert handle.estimator.options.simulator.seed_simulator == 4
    assert handle.precision == pytest.approx(512**-0.5) and not handle.remote


def test_unknown_device():
    with pytest.raises(HybridQiskitError, match="unknown fake device"):
        create_backend("ibm_local", device="fake_atlantis")
