"""noisy_trajectories: its noise is Aer's (twirled), its means and spreads are Aer's, its
gradient is each trajectory's own, and it trains."""

from __future__ import annotations

import numpy as np
import pytest
import qiskit.quantum_info as qi
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp, Statevector

from backends import backend_spec, create_backend
from backends.devices import get_fake_backend
from backends.noise import device_noise, fold_readout
from backends.noisy_trajectories import device_channels
from backends.reduced import reduce_device
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.primitives import trajectories as tj
from hybrid_qiskit.qnn import build_qnn

# The statistics below were sized on qubits 0-2 of fake_fez (frequent errors, light tails); the
# noise-aware layout would move the circuit to the device's best qubits.
PINNED = "trivial"
PAULI = {0: np.eye(2), 1: np.array([[0, 1], [1, 0]]), 2: np.diag([1, -1]), 3: np.array([[0, -1j], [1j, 0]])}


def pauli_ptm_diagonal(probs: np.ndarray, k: int) -> np.ndarray:
    kraus = []
    for code, p in enumerate(probs):
        m = np.eye(1)
        for q in range(k):
            m = np.kron(PAULI[(code >> 2 * q) & 3], m)
        kraus.append(np.sqrt(p) * m)
    return np.diag(qi.PTM(qi.Kraus(kraus)).data).real


def test_every_gate_channel_is_the_pauli_twirl_of_aers_error():
    """Channel by channel: the Pauli eigenvalues (PTM diagonal, what twirling keeps) of Aer's
    from_backend error on the scaled reduced device, and its readout errors."""
    device = reduce_device(get_fake_backend("fake_fez"), (3, 4, 16))
    spec = device_noise(device, 3.0)
    channel, readout = device_channels(device, 3.0)
    checked = 0
    for name, by_qubits in spec.model._local_quantum_errors.items():
        if name == "reset":  # never in an estimator circuit
            continue
        for qubits, error in by_qubits.items():
            aer = np.diag(qi.PTM(error.to_quantumchannel()).data).real
            ours = pauli_ptm_diagonal(channel(name, tuple(qubits)), len(qubits))
            np.testing.assert_allclose(ours, aer, atol=1e-12)
            checked += 1
    assert checked >= 10
    for q, (a, b) in spec.readout.items():
        np.testing.assert_allclose(readout[q], (a, b))


def test_unitary_part_matches_statevector_for_every_kind_of_gate():
    """Phase (merged rz), diagonal, permutation, 2x2 and dense two-qubit (ecr) gates."""
    a = Parameter("a")
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.rz(a, 1)
    qc.rz(0.3, 1)
    qc.sx(1)
    qc.ecr(0, 2)
    qc.cx(2, 1)
    qc.cz(0, 1)
    qc.swap(0, 2)
    qc.t(2)
    qc.p(2 * a + 0.1, 0)
    qc.ry(0.7, 1)
    prog = tj.compile_noisy_program(qc, lambda name, qubits: None)
    assert sum(o.kind == "phase" for o in prog.ops) == 2  # rz(a)·rz(0.3) merged
    values = np.array([[0.4], [1.9]])
    final = tj.simulate_trajectories(prog, values, tj.sample_trajectories(prog, 2, np.random.default_rng(0)))
    for col, v in enumerate(values[:, 0]):
        ref = Statevector(qc.assign_parameters([v])).data
        overlap = abs(np.vdot(ref, final[:, col]))
        assert overlap == pytest.approx(1.0, abs=1e-12)


def test_noiseless_values_and_gradients_equal_the_exact_backend():
    head = build_head_circuit(4, reps=1)
    handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=0, seed=1)
    qnn, ref = build_qnn(head, handle), build_qnn(head, create_backend("statevector"))
    x = np.random.default_rng(0).uniform(0, np.pi, (5, 4))
    w = np.random.default_rng(1).uniform(-1, 1, qnn.num_weights)
    values = np.hstack([x, np.tile(w, (5, 1))])
    obs = [[o] for o in qnn.observables]
    exact = handle.estimator.run([(qnn.circuit, obs, values)], precision=0).result()[0].data.evs
    np.testing.assert_allclose(exact.T, ref.forward(x, w), atol=1e-12)
    for got, want in zip(qnn.backward(x, w), ref.backward(x, w)):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_gradient_is_each_trajectorys_own_gradient():
    """After a forward pass the gradient replays the very trajectories it drew: it equals finite
    differences of those trajectories' readout-folded expectations."""
    head = build_head_circuit(3, reps=1)
    handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=30, seed=4)
    qnn = build_qnn(head, handle)
    est, isa = handle.estimator, qnn.circuit  # (the property returns a new copy each time)
    x = np.random.default_rng(2).uniform(0, np.pi, (6, 3))
    w = np.random.default_rng(3).uniform(-1, 1, qnn.num_weights)
    values = np.hstack([x, np.tile(w, (6, 1))])
    obs = [[o] for o in qnn.observables]
    evs = est.run([(isa, obs, values)], precision=0).result()[0].data.evs  # (K, rows)
    drawn = next(reversed(est._drawn.values()))
    assert drawn.traj.count > 0  # noise did happen
    labels = [dict(zip(o.paulis.to_labels(), o.coeffs)) for o in qnn.observables]
    program, qubits = est.compiled(isa, [label for terms in labels for label in terms])
    assert program is drawn.plan.program
    folded = tj.fold_readout_diagonal(program, drawn.plan.diagonals)

    def f(v):
        return folded @ np.abs(tj.simulate_trajectories(program, v, drawn.traj)) ** 2

    np.testing.assert_allclose(f(values), evs, atol=1e-12)  # the forward pass's own trajectories
    grads = handle.gradient.run([isa] * 6, [qnn.observables[0]] * 6, values).result().gradients
    eps = 1e-6
    for j in range(values.shape[1]):
        step = np.zeros_like(values)
        step[:, j] = eps
        fd = (f(values + step) - f(values - step))[0] / (2 * eps)
        np.testing.assert_allclose([g[j] for g in grads], fd, atol=1e-7)


def noisy_circuit() -> QuantumCircuit:
    """A 3-qubit circuit where every qubit ends far from Z = 0 and CX chains carry noise."""
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(3)
    qc.x(0)
    qc.ry(a, 1)
    qc.rx(b, 2)
    for _ in range(3):
        qc.cx(0, 1)
        qc.cx(1, 2)
        qc.cx(2, 1)
        qc.cx(0, 1)
    return qc


OBSERVABLES = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 3) for q in range(3)] + [SparsePauliOp("ZZZ")]
VALUES = np.array([[0.4, 2.0]])


def run(handle, rows: int, precision=None):
    isa = handle.pass_manager.run(noisy_circuit())
    obs = [[o.apply_layout(isa.layout)] for o in OBSERVABLES]
    pub = (isa, obs, np.repeat(VALUES, rows, axis=0))
    result = handle.estimator.run([pub], precision=handle.precision if precision is None else precision)
    return np.asarray(result.result()[0].data.evs)  # (observables, rows)


def aer_exact(scale: float) -> np.ndarray:
    return run(create_backend("aer_noisy_exact", device="fake_fez", layout=PINNED, noise_scale=scale, seed=1), 1).ravel()


def on_reduced_device(scale: float):
    """The ISA circuit compacted to its qubits, its observables there, and that device's noise."""
    from backends.reduced import active_qubits, compact_circuit, compact_label

    isa = create_backend("aer_noisy_exact", device="fake_fez", layout=PINNED, seed=1).pass_manager.run(noisy_circuit())
    obs = [o.apply_layout(isa.layout) for o in OBSERVABLES]
    qubits = active_qubits(isa, [label for o in obs for label in o.paulis.to_labels()])
    small = [SparsePauliOp([compact_label(lb, qubits) for lb in o.paulis.to_labels()], o.coeffs) for o in obs]
    device = reduce_device(get_fake_backend("fake_fez"), qubits)
    return compact_circuit(isa, qubits).assign_parameters(VALUES[0]), small, device


def twirled_aer_exact(scale: float) -> np.ndarray:
    """Aer's exact (density-matrix, readout-folded) means under OUR Pauli channels: what the
    trajectories average to if the simulator is right, whatever the twirl approximates."""
    from qiskit_aer.noise import NoiseModel, pauli_error

    from backends.aer_estimators import ExactNoisyEstimator
    from backends.noise import NoiseSpec

    circuit, observables, device = on_reduced_device(scale)
    channel, readout = device_channels(device, scale)
    model = NoiseModel(basis_gates=["cz", "sx", "x", "rz", "id"])
    for inst in circuit.data:
        qubits = tuple(circuit.find_bit(b).index for b in inst.qubits)
        probs = channel(inst.operation.name, qubits)
        if probs is None or inst.operation.name in model._local_quantum_errors and qubits in model._local_quantum_errors[inst.operation.name]:
            continue
        k = len(qubits)
        terms = [("".join("IXZY"[(c >> 2 * j) & 3] for j in reversed(range(k))), p) for c, p in enumerate(probs) if p > 0]
        model.add_quantum_error(pauli_error(terms), inst.operation.name, list(qubits))
    spec = NoiseSpec(model, readout={q: tuple(r) for q, r in enumerate(readout)})
    result = ExactNoisyEstimator(spec).run([(circuit, [[o] for o in observables])]).result()[0]
    return np.asarray(result.data.evs).ravel()


def test_means_agree_with_aer_within_4_sigma_where_gate_noise_readout_and_shots_matter():
    """Against aer_noisy_exact, Aer's own device model (exact thermal relaxation), at twice the
    device's noise, where errors are frequent enough for the sample sigma to be trusted (at
    scale 1 only a few percent of rows carry an error: heavy tails need 10x the rows)."""
    scale, shots, rows = 2.0, 256, 4000
    handle = create_backend("noisy_trajectories", device="fake_fez", layout=PINNED, noise_scale=scale, shots=shots, seed=7)
    values = run(handle, rows)
    mean, sigma = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(rows)
    exact = aer_exact(scale)
    assert np.all(np.abs(mean - exact) <= 4 * sigma), (mean, exact, sigma)
    # On this circuit each ingredient moves the means by far more than 4 sigma:
    circuit, observables, device = on_reduced_device(scale)
    state = Statevector(circuit)
    spec = device_noise(device, scale)
    ideal = np.array([state.expectation_value(o).real for o in observables])
    readout_only = np.array([state.expectation_value(fold_readout(o, spec)).real for o in observables])
    assert np.max(np.abs(readout_only - ideal) / sigma) > 8  # readout matters
    assert np.all(np.abs(exact - readout_only) > 8 * sigma)  # gate noise matters, beyond readout
    spread = values.std(axis=1)
    assert np.all(spread > 0.8 * np.sqrt((1 - exact**2) / shots))  # shots: most of each row's spread


def test_the_simulator_is_exact_for_its_pauli_channels_at_high_noise():
    """At 8x the device's noise the trajectories' means equal Aer's density matrix under the very
    same (twirled) channels within 4 sigma; the twirl's own bias against Aer's exact relaxation
    (about -0.024 on the qubit that sits in |1>) is a property of the model, not the simulator."""
    scale, shots, rows = 8.0, 256, 4000
    handle = create_backend("noisy_trajectories", device="fake_fez", layout=PINNED, noise_scale=scale, shots=shots, seed=5)
    values = run(handle, rows)
    mean, sigma = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(rows)
    twirled = twirled_aer_exact(scale)
    assert np.all(np.abs(mean - twirled) <= 4 * sigma), (mean, twirled, sigma)
    assert np.all(np.abs(twirled - aer_exact(scale)) < 0.03)  # what the twirl costs here


def test_spreads_agree_with_aer_shots_when_every_shot_is_a_trajectory():
    """trajectories = shots gives a QPU's (and aer_noisy's) shot statistics, variance (1-m²)/N;
    one trajectory per sample adds the trajectory variance, as documented."""
    scale, shots, rows = 4.0, 16, 3000
    mean = twirled_aer_exact(scale)
    per_shot = run(create_backend("noisy_trajectories", device="fake_fez", layout=PINNED, noise_scale=scale, shots=shots,
                                  trajectories=shots, seed=3), rows)
    want = (1 - mean**2) / shots
    bound = 4 * np.sqrt(2 / (rows - 1))  # 4 sigma of a sample variance, relative
    np.testing.assert_array_less(np.abs(per_shot.var(axis=1, ddof=1) / want - 1), bound)
    assert np.all(np.abs(per_shot.mean(axis=1) - mean) <= 4 * np.sqrt(want / rows))
    aer = run(create_backend("aer_noisy", device="fake_fez", layout=PINNED, noise_scale=scale, shots=shots, seed=3), 400)
    aer_want = (1 - aer_exact(scale) ** 2) / shots
    np.testing.assert_array_less(np.abs(aer.var(axis=1, ddof=1) / aer_want - 1), 4 * np.sqrt(2 / 399))
    handle = create_backend("noisy_trajectories", device="fake_fez", layout=PINNED, noise_scale=scale, shots=shots, seed=3)
    one = run(handle, rows)
    trajectory_var = run(handle, rows, precision=0).var(axis=1, ddof=1)
    predicted = want + trajectory_var * (1 - 1 / shots)
    np.testing.assert_array_less(np.abs(one.var(axis=1, ddof=1) / predicted - 1), bound)
    assert np.all(predicted > 1.5 * want)  # here one trajectory per sample is clearly wider


def test_parametric_noise_agrees_with_aer():
    """Means within 4 sigma of aer_noisy_exact under depolarizing and readout noise; with T1/T2
    too, every channel is the Pauli twirl of Aer's (the twirl's bias at T1 = 20 µs against
    300 ns gates is several percent here, so means are compared without relaxation)."""
    from backends.noise_source import NoiseSource
    from backends.noisy_trajectories import parametric_channels
    from backends.settings import NoiseSettings

    settings = dict(device="all_to_all", depolarizing=0.02, depolarizing_2q=0.04, readout_error=0.03, noise_scale=2.0)
    exact = run(create_backend("aer_noisy_exact", seed=1, **settings), 1).ravel()
    rows = 3000
    values = run(create_backend("noisy_trajectories", shots=128, seed=2, **settings), rows)
    sigma = values.std(axis=1, ddof=1) / np.sqrt(rows)
    assert np.all(np.abs(values.mean(axis=1) - exact) <= 4 * sigma), (values.mean(axis=1), exact, sigma)

    full = NoiseSettings(**settings, t1=40.0, t2=30.0).model_dump()
    model = NoiseSource(full).fixed.model
    channel, readout = parametric_channels(full, 2.0, ["rz", "sx", "x"], ["cx"], 2)
    np.testing.assert_allclose(readout, 0.06)
    assert channel("rz", (0,)) is None
    for name, k in (("sx", 1), ("x", 1), ("cx", 2)):
        aer = np.diag(qi.PTM(model._default_quantum_errors[name].to_quantumchannel()).data).real
        np.testing.assert_allclose(pauli_ptm_diagonal(channel(name, tuple(range(k))), k), aer, atol=1e-12)


def test_seeded_runs_repeat_and_every_call_draws_afresh():
    def draws():
        handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=8, shots=64, seed=11)
        return [run(handle, 4) for _ in range(2)]

    first, again = draws(), draws()
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])


def test_settings_are_listed_and_bad_input_fails_clearly():
    settings = backend_spec("noisy_trajectories").settings
    assert {"device", "noise_scale", "shots", "trajectories", "seed", "optimization_level"} <= set(settings)
    with pytest.raises(HybridQiskitError, match="shots"):
        create_backend("noisy_trajectories", shots=0)
    with pytest.raises(HybridQiskitError, match="trajectories"):
        create_backend("noisy_trajectories", shots=8, trajectories=9)
    handle = create_backend("noisy_trajectories", device="all_to_all", depolarizing=0.01)
    qc = QuantumCircuit(1)
    qc.sx(0)
    with pytest.raises(HybridQiskitError, match="Z-type"):
        handle.estimator.run([(qc, SparsePauliOp("X"))])


@pytest.mark.slow
def test_trains_from_the_cli(tmp_path):
    import json

    from tests.conftest import train_tiny

    run_dir = train_tiny(tmp_path, "noisy", "--backend", "noisy_trajectories", "--device", "fake_fez",
                         "--noise-scale", "2", "--shots", "256")
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(e["train_loss"]) for e in history)
    assert json.loads((run_dir / "backend.json").read_text())["name"] == "noisy_trajectories"


# ------------------------------------------------------------------------ the noisy chain (method=mps)


def test_auto_takes_the_chain_from_its_threshold_and_both_methods_agree():
    """A 10-qubit head: auto runs it as a chain; forced statevector gives the same gradient on
    the same seed's draws."""
    from backends.noisy_trajectories import NOISY_CHAIN_QUBITS

    head = build_head_circuit(10, reps=1)
    x = np.random.default_rng(0).uniform(0, np.pi, (4, 10))
    out = {}
    for method in ("auto", "statevector"):
        handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=20, seed=2, method=method)
        qnn = build_qnn(head, handle)
        w = np.random.default_rng(1).uniform(-1, 1, qnn.num_weights)
        values = np.hstack([x, np.tile(w, (4, 1))])
        result = handle.estimator.run([(qnn.circuit, [[o] for o in qnn.observables], values)], precision=0).result()
        out[method] = (result[0].metadata["method"], np.asarray(result[0].data.evs), qnn.backward(x, w)[1])
    assert 10 >= NOISY_CHAIN_QUBITS and out["auto"][0] == "mps" and out["statevector"][0] == "statevector"
    np.testing.assert_allclose(out["auto"][1], out["statevector"][1], atol=1e-10)
    np.testing.assert_allclose(out["auto"][2], out["statevector"][2], atol=1e-10)


def test_mps_refuses_what_is_not_a_chain_and_wide_statevector_refuses_before_allocating():
    from backends.noisy_trajectories import check_statevector_memory

    handle = create_backend("noisy_trajectories", device="all_to_all", depolarizing=0.01, method="mps")
    qc = QuantumCircuit(3)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        qc.cx(a, b)
    with pytest.raises(HybridQiskitError, match="not a chain"):
        handle.estimator.run([(qc, SparsePauliOp("IIZ"))])
    with pytest.raises(HybridQiskitError, match="noisy_trajectories: a 30-qubit circuit that is not a chain"):
        check_statevector_memory(30, 30, available=24 << 30)
    check_statevector_memory(20, 20, available=24 << 30)
    with pytest.raises(HybridQiskitError, match="x 1024 trajectories"):  # one per shot: 1,024 states per image
        check_statevector_memory(20, 20, trajectories=1024, available=24 << 30)
    with pytest.raises(HybridQiskitError, match="unknown method 'dense'.*auto, statevector, mps"):
        create_backend("noisy_trajectories", method="dense")
