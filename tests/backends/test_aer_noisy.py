"""aer_noisy (real shots) and aer_noisy_exact (density matrix): noise, shots, ISA, layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from backends import create_backend
from backends.devices import get_fake_backend
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.qnn import build_qnn, build_quantum_layer


def run(handle, circuit, observables, values=None):
    """(evs, stds) of ``observables`` on ``circuit`` through the handle's ISA pass and estimator."""
    isa = handle.pass_manager.run(circuit)
    mapped = [[o.apply_layout(isa.layout)] for o in observables]
    pub = (isa, mapped) if values is None else (isa, mapped, values)
    result = handle.estimator.run([pub], precision=handle.precision).result()[0]
    return np.asarray(result.data.evs), np.asarray(result.data.stds)


def flips() -> QuantumCircuit:
    """X on qubit 0, then CX pairs that cancel: ideally ⟨Z0⟩ = -1, ⟨Z1⟩ = ⟨Z2⟩ = +1."""
    qc = QuantumCircuit(3)
    qc.x(0)
    for _ in range(3):
        qc.cx(0, 1)
        qc.cx(1, 2)
        qc.cx(1, 2)
        qc.cx(0, 1)
    return qc


Z3 = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 3) for q in range(3)]


def test_noiseless_shots_agree_with_exact_within_4_sigma():
    handle = create_backend("aer_noisy", device="fake_fez", noise_scale=0, shots=20_000, seed=3)
    head = build_head_circuit(3, reps=1)
    x = np.random.default_rng(0).uniform(0, np.pi, (4, 3))
    qnn, ref = build_qnn(head, handle), build_qnn(head, create_backend("statevector"))
    w = np.random.default_rng(1).uniform(-1, 1, qnn.num_weights)
    got, exact = qnn.forward(x, w), ref.forward(x, w)
    sigma = np.sqrt((1 - exact**2) / 20_000)
    assert np.all(np.abs(got - exact) <= 4 * sigma + 1e-12)


def test_abs_z_shrinks_as_noise_scale_rises():
    exact = [
        run(
            create_backend("aer_noisy_exact", device="fake_fez", noise_scale=s, seed=1),
            flips(),
            Z3,
        )[0].ravel()
        for s in (0, 1, 2, 4)
    ]
    np.testing.assert_allclose(exact[0], [-1, 1, 1], atol=1e-12)
    mags = np.abs(np.asarray(exact))  # (scales, qubits)
    assert np.all(np.diff(mags, axis=0) < -1e-3)
    # the same with real shots: noiseless is exact; twice the noise is clearly below the device
    shots = [
        run(
            create_backend("aer_noisy", device="fake_fez", noise_scale=s, shots=8000, seed=2),
            flips(),
            Z3,
        )
        for s in (0, 1, 4)
    ]
    np.testing.assert_allclose(shots[0][0].ravel(), [-1, 1, 1])
    (m1, s1), (m4, s4) = [(np.abs(e.ravel()), s.ravel()) for e, s in shots[1:]]
    assert np.all(m1 - m4 > 4 * np.hypot(s1, s4))


def test_readout_error_shows_in_shot_results():
    # Only readout error: the circuit is noiseless, so ⟨Z⟩ on |0> reads 1 - 2p.
    shots = create_backend(
        "aer_noisy", device="all_to_all", readout_error=0.1, shots=20_000, seed=4
    )
    evs, stds = run(shots, QuantumCircuit(3), Z3)
    assert np.all(np.abs(evs.ravel() - 0.8) <= 4 * stds.ravel())
    exact = create_backend("aer_noisy_exact", device="all_to_all", readout_error=0.1, seed=4)
    np.testing.assert_allclose(run(exact, QuantumCircuit(3), Z3)[0].ravel(), 0.8)


def test_readout_at_one_half_erases_the_observable_to_zero():
    # Flips of 1/2 (the cap a large noise scale reaches) leave the folded Z with no terms; the
    # exact estimator must report 0 for it, not refuse it, next to the observables that survive.
    exact = create_backend("aer_noisy_exact", device="fake_fez", noise_scale=48, seed=4)
    isa = exact.pass_manager.run(QuantumCircuit(2))
    device = exact.device
    erased = [q for q in range(device.num_qubits)
              if device.target["measure"][(q,)].error * 48 >= 0.5]
    kept = min(q for q in range(device.num_qubits) if device.target["measure"][(q,)].error * 48 < 0.1)
    n = isa.num_qubits
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], n) for q in (erased[0], kept)]
    evs = np.asarray(exact.estimator.run([(isa, observables)]).result()[0].data.evs)
    assert evs[0] == 0.0 and 0.8 < evs[1] <= 1.0


def test_shot_mean_matches_exact_noisy_under_device_noise():
    head = build_head_circuit(3, reps=1)
    x = np.random.default_rng(5).uniform(0, np.pi, (3, 3))
    w = np.random.default_rng(6).uniform(-1, 1, 6)
    shots = build_qnn(head, create_backend("aer_noisy", shots=40_000, seed=7)).forward(x, w)
    exact = build_qnn(head, create_backend("aer_noisy_exact", seed=7)).forward(x, w)
    assert np.all(np.abs(shots - exact) <= 4 * np.sqrt((1 - exact**2) / 40_000))


def test_pauli_bases_other_than_z_are_measured_right():
    qc = QuantumCircuit(2)
    qc.ry(0.7, 0)
    qc.rx(1.1, 1)
    qc.cx(0, 1)
    qc.rz(0.4, 1)
    observables = [SparsePauliOp(p) for p in ("XI", "IY", "YZ", "XX")] + [
        SparsePauliOp(["ZZ", "YY"], [1.0, 0.5])
    ]
    handle = create_backend("aer_noisy", device="fake_fez", noise_scale=0, shots=40_000, seed=8)
    evs, stds = run(handle, qc, observables)
    exact = np.array([Statevector(qc).expectation_value(o).real for o in observables])
    assert np.all(np.abs(evs.ravel() - exact) <= 4 * stds.ravel() + 1e-12)


def test_isa_basis_coupling_and_non_trivial_layout():
    handle = create_backend(
        "aer_noisy", device="fake_fez", noise_scale=0, shots=20_000, optimization_level=3, seed=0
    )
    head = build_head_circuit(4, reps=1)
    isa = handle.pass_manager.run(head.circuit)
    layout = isa.layout.initial_index_layout(filter_ancillas=True)
    assert layout != list(range(4)), "pick a seed whose layout is not the trivial one"
    ops = set(isa.count_ops())
    assert ops <= set(handle.description["target"]["basis_gates"])
    edges = set(get_fake_backend("fake_fez").coupling_map.get_edges())
    for inst in isa.data:
        if inst.operation.num_qubits == 2:
            assert tuple(isa.find_bit(q).index for q in inst.qubits) in edges
    # the observables follow the layout: the result still matches exact simulation
    x = np.random.default_rng(9).uniform(0, np.pi, (2, 4))
    qnn, ref = build_qnn(head, handle), build_qnn(head, create_backend("statevector"))
    w = np.random.default_rng(10).uniform(-1, 1, qnn.num_weights)
    got, exact = qnn.forward(x, w), ref.forward(x, w)
    assert np.all(np.abs(got - exact) <= 4 * np.sqrt((1 - exact**2) / 20_000) + 1e-12)


def test_exact_noiseless_gradients_match_statevector():
    head = build_head_circuit(
        3, feature_map="zz", reps=1
    )  # zz: input-dependent global phase on ISA
    x = torch.tensor(np.random.default_rng(11).uniform(0, np.pi, (2, 3)), requires_grad=True)
    grads = []
    for handle in (
        create_backend("aer_noisy_exact", noise_scale=0, seed=1),
        create_backend("statevector"),
    ):
        layer = build_quantum_layer(head, handle, seed=0)
        xi = x.detach().clone().requires_grad_(True)
        layer(xi).pow(2).sum().backward()
        grads.append((xi.grad.numpy(), layer.weight.grad.numpy()))
    assert np.abs(grads[1][0]).max() > 0.1 and np.abs(grads[1][1]).max() > 0.1  # not trivially 0
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-8)
    np.testing.assert_allclose(grads[0][1], grads[1][1], atol=1e-8)


def test_same_seed_reproduces_and_calls_differ():
    qc = QuantumCircuit(1)
    qc.ry(1.0, 0)
    obs = [SparsePauliOp("Z")]
    a = run(create_backend("aer_noisy", shots=500, seed=1), qc, obs)[0]
    b = run(create_backend("aer_noisy", shots=500, seed=1), qc, obs)[0]
    np.testing.assert_array_equal(a, b)
    handle = create_backend("aer_noisy", shots=500, seed=1)
    assert run(handle, qc, obs)[0] != run(handle, qc, obs)[0]  # fresh shot noise per call


def test_description_is_json_and_complete():
    handle = create_backend("aer_noisy", device="fake_lima", shots=100, noise_scale=2, seed=5)
    d = json.loads(json.dumps(handle.description))
    assert d["device"] == "fake_lima" and d["shots"] == 100 and d["seed"] == 5
    assert d["noise"]["kind"] == "device" and d["noise"]["noise_scale"] == 2
    assert d["optimization_level"] == 1 and "AerShotEstimator" in d["estimator"]
    p = create_backend("aer_noisy_exact", device="all_to_all", depolarizing=0.01, t1=50).description
    assert p["noise"]["kind"] == "parametric" and p["shots"] is None
    assert p["target"]["coupling"] == "all-to-all"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"shots": 0}, "shots"),
        ({"method": "tensor"}, "unknown Aer method"),
        ({"device": "fake_nowhere"}, "unknown fake device"),
        ({"noise_scale": -1}, "noise_scale"),
        ({"optimization_level": 4}, "optimization_level"),
        ({"t1": 10, "t2": 30}, "t2"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(HybridQiskitError, match=message) as info:
        create_backend("aer_noisy", **settings)
    assert "\n" not in str(info.value)


def test_head_wider_than_device_is_one_line_error():
    handle = create_backend("aer_noisy", device="fake_manila", shots=10)
    with pytest.raises(HybridQiskitError, match="6 qubits but fake_manila has 5") as info:
        build_qnn(build_head_circuit(6, reps=1), handle)
    assert "\n" not in str(info.value)


def test_shot_gradients_agree_with_exact_within_shot_noise():
    head = build_head_circuit(2, reps=1)
    x = np.random.default_rng(12).uniform(0, np.pi, (2, 2))
    w = np.random.default_rng(13).uniform(-1, 1, 4)
    shots = build_qnn(head, create_backend("aer_noisy", noise_scale=0, shots=8000, seed=3))
    exact = build_qnn(head, create_backend("statevector"))
    (gx, gw), (ex, ew) = shots.backward(x, w), exact.backward(x, w)
    # each entry is (E+ - E-)/2 of ~1 rotation: std <= 1/sqrt(2·shots) ≈ 0.008; 0.05 is 6σ
    np.testing.assert_allclose(gx, ex, atol=0.05)
    np.testing.assert_allclose(gw, ew, atol=0.05)
