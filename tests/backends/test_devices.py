"""Fake-device lookup by name, the fleet table, and reduced devices."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from backends.devices import (
    describe_device,
    device_table,
    fake_device_names,
    get_fake_backend,
    list_fake_devices,
    normalize_device_name,
)
from backends.reduced import (
    ReducedDeviceEstimator,
    active_qubits,
    compact_circuit,
    compact_label,
    reduce_device,
)
from hybrid_qiskit.errors import HybridQiskitError


def test_list_has_todays_fleet_with_facts():
    names = fake_device_names()
    assert {"fake_fez", "fake_marrakesh", "fake_kingston", "fake_miami", "fake_torino"} <= set(names)
    assert names == sorted(names)
    facts = {d["name"]: d for d in list_fake_devices()}
    assert list(facts) == names
    fez, miami, brisbane = facts["fake_fez"], facts["fake_miami"], facts["fake_brisbane"]
    assert (fez["num_qubits"], fez["processor"], fez["status"]) == (156, "Heron r2", "current")
    assert (miami["num_qubits"], miami["processor"], miami["status"]) == (120, "Nighthawk r1", "current")
    assert (brisbane["processor"], brisbane["status"]) == ("Eagle r3", "retired")
    assert facts["fake_manila"]["status"] == "retired"
    assert 0 < fez["median_error_2q"] < 0.05 and 0 < fez["median_readout_error"] < 0.1
    assert fez["calibrated"][:4].isdigit()
    table = device_table(list(facts.values()))
    assert "1 qubits" not in table
    first = table.splitlines()[2]
    assert first.endswith("current")  # current devices listed first


@pytest.mark.parametrize("spelling", ["fake_fez", "FakeFezV2", "fez", "fake-fez"])
def test_spellings_resolve(spelling):
    assert normalize_device_name(spelling) == "fake_fez"
    assert get_fake_backend(spelling).name == "fake_fez"


def test_fresh_instance_each_time():
    assert get_fake_backend("fake_fez") is not get_fake_backend("fake_fez")


def test_unknown_device_lists_known_names():
    with pytest.raises(HybridQiskitError, match="unknown fake device 'fake_fezz'.*fake_fez"):
        get_fake_backend("fake_fezz")
    with pytest.raises(HybridQiskitError, match="e.g. fake_fez, fake_marrakesh"):
        get_fake_backend("nothing_like_it")


def test_describe_device():
    info = describe_device(get_fake_backend("fake_fez"))
    assert info["name"] == "fake_fez" and info["num_qubits"] == 156
    assert "cz" in info["two_qubit_gates"]
    assert {"rz", "sx", "x", "cz"} <= set(info["basis_gates"])
    assert "measure" not in info["basis_gates"]


def test_reduced_device_keeps_the_calibration_of_its_qubits():
    full = get_fake_backend("fake_fez")
    qubits = (3, 4, 16, 23)
    small = reduce_device(full, qubits)
    assert small.num_qubits == 4 and small.name == "fake_fez" and small.parent_qubits == qubits
    assert reduce_device(get_fake_backend("fake_fez"), qubits) is small  # cached by content
    edges = {tuple(e) for e in small.coupling_map.get_edges()}
    expected = {
        (qubits.index(a), qubits.index(b))
        for a, b in full.coupling_map.get_edges()
        if a in qubits and b in qubits
    }
    assert edges == expected and edges
    for i, q in enumerate(qubits):
        mine, theirs = small.target.qubit_properties[i], full.target.qubit_properties[q]
        assert (mine.t1, mine.t2) == (theirs.t1, theirs.t2)
        for gate in ("measure", "sx"):
            assert _facts(small.target[gate][(i,)]) == _facts(full.target[gate][(q,)])
    for a, b in expected:
        assert _facts(small.target["cz"][(a, b)]) == _facts(full.target["cz"][(qubits[a], qubits[b])])
    assert small.configuration().default_rep_delay == full.configuration().default_rep_delay


def _facts(props):
    return props.error, props.duration


def test_reduce_refuses_what_it_cannot_do():
    with pytest.raises(HybridQiskitError, match="not all on fake_fez"):
        reduce_device(get_fake_backend("fake_fez"), (0, 156))


def test_compaction_of_circuits_and_labels():
    qc = QuantumCircuit(6)
    qc.rx(0.3, 1)
    qc.cz(1, 4)
    qc.barrier()
    qc.delay(100, 5)
    assert active_qubits(qc) == (1, 4)
    assert active_qubits(qc, ["ZIIIII"]) == (1, 4, 5)
    small = compact_circuit(qc, (1, 4))
    assert small.num_qubits == 2 and [i.operation.name for i in small.data] == ["rx", "cz", "barrier"]
    assert compact_label("IZIIXI", (1, 4)) == "ZX"
    with pytest.raises(HybridQiskitError, match="outside"):
        compact_label("ZIIIII", (1, 4))


def _laid_out_pub(device, seed=3):
    """A 3-qubit circuit laid out on non-adjacent-index physical qubits of ``device``."""
    from qiskit.circuit.library import real_amplitudes
    from qiskit.transpiler import generate_preset_pass_manager

    ansatz = real_amplitudes(3, reps=2, entanglement="linear")
    pm = generate_preset_pass_manager(optimization_level=1, backend=device, seed_transpiler=seed,
                                      initial_layout=[2, 1, 0])
    isa = pm.run(ansatz)
    obs = [SparsePauliOp(p).apply_layout(isa.layout) for p in ("IIZ", "IZI", "ZZI")]
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (4, ansatz.num_parameters))
    return isa, obs, values


def test_reduced_device_noise_equals_the_full_device_on_the_qubits_used():
    """The issue's check: aer_noisy_exact on the whole (small) device and on its reduced device
    give the same expectation values, to 1e-6."""
    from backends.aer_estimators import ExactNoisyEstimator
    from backends.noise import device_noise

    full = get_fake_backend("fake_lima")  # 5 qubits: small enough to simulate whole
    isa, obs, values = _laid_out_pub(full)
    pub = (isa, [[o] for o in obs], values)
    whole = ExactNoisyEstimator(device_noise(full, 2.0)).run([pub]).result()[0].data.evs
    reduced = ReducedDeviceEstimator(full, lambda small: ExactNoisyEstimator(device_noise(small, 2.0)))
    part = reduced.run([pub]).result()[0].data.evs
    assert reduced.last_qubits == (0, 1, 2)
    assert np.abs(whole).max() > 0.05
    np.testing.assert_allclose(part, whole, atol=1e-6)


def test_a_156_qubit_device_runs_at_the_width_of_its_circuit():
    """A full-width fake_fez ISA circuit through the reduced-device estimator: the inner
    estimator sees only the active qubits, and values match the exact noiseless ones."""
    from qiskit.circuit.library import real_amplitudes
    from qiskit.primitives import StatevectorEstimator

    from backends.aer_estimators import ExactNoisyEstimator
    from backends.noise import NoiseSpec

    fez = get_fake_backend("fake_fez")
    isa, obs, values = _laid_out_pub(fez)
    assert isa.num_qubits == 156
    seen = []

    def make(small):
        seen.append(small.num_qubits)
        return ExactNoisyEstimator(NoiseSpec(None))

    evs = ReducedDeviceEstimator(fez, make).run([(isa, [[o] for o in obs], values)]).result()[0].data.evs
    assert seen == [3]
    logical = real_amplitudes(3, reps=2, entanglement="linear")
    observables = [[SparsePauliOp(p)] for p in ("IIZ", "IZI", "ZZI")]
    expected = StatevectorEstimator().run([(logical, observables, values)]).result()[0].data.evs
    np.testing.assert_allclose(evs, expected, atol=1e-6)
