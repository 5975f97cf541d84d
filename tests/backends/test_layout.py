"""Where the head lands: the noise-aware layout avoids each device's worst qubits and couplings."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit

from backends import create_backend
from backends.layout import (
    LayoutPassManager,
    best_placement,
    calibration,
    parse_layout,
    physical_qubits,
)
from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError

HERON = ("fake_fez", "fake_torino", "fake_marrakesh")


def worst_decile(device):
    """(qubits whose readout error, couplings whose two-qubit error, is in the device's worst 10%)."""
    readout, _, two, _ = calibration(device.target)
    ro_cut = np.quantile([r for r in readout if r is not None], 0.9)
    known = {k: e for k, e in two.items() if e is not None}
    two_cut = np.quantile([e for e in known.values() if e < 1], 0.9)
    return ({q for q, r in enumerate(readout) if r is not None and r >= ro_cut},
            {k for k, e in known.items() if e >= two_cut})


def couplings(isa) -> set[tuple[int, int]]:
    return {tuple(sorted(isa.find_bit(q).index for q in inst.qubits)) for inst in isa.data
            if inst.operation.num_qubits == 2}


@pytest.mark.parametrize("device", HERON)
def test_default_layout_of_the_digits_head_avoids_the_worst_decile(device):
    """The 8-qubit digits head (angle encoding, real_amplitudes reps 2), on the backend's default
    layout: none of its qubits or couplings is among the device's worst 10% (readout error,
    two-qubit gate error), no swap is added, and rehearsal and submission agree on the qubits."""
    head = build_head_circuit(8, feature_map="angle", ansatz="real_amplitudes", reps=2)
    local = create_backend("ibm_local", device=device, shots=64, seed=0)
    noisy = create_backend("aer_noisy", device=device, shots=64, seed=0)
    isa = local.pass_manager.run(head.circuit)
    bad_qubits, bad_couplings = worst_decile(local.device)
    qubits = physical_qubits(isa)
    assert not set(qubits) & bad_qubits, (device, qubits)
    assert not couplings(isa) & bad_couplings, (device, couplings(isa))
    assert len(couplings(isa)) == 7 and sum(i.operation.num_qubits == 2 for i in isa.data) == 14  # a chain, no swaps
    assert physical_qubits(noisy.pass_manager.run(head.circuit)) == qubits  # aer_noisy rehearses the same
    assert local.description["layout"] == "noise_aware"


def test_the_old_default_landed_on_bad_qubits():
    """What the noise-aware default replaces: the transpiler's level-1 layout is qubits 0-7, with
    fake_torino's 16.7% readout error on qubit 0 and fake_fez's 1.5% cz(0,1)."""
    head = build_head_circuit(8).circuit
    for device, bad in (("fake_torino", lambda isa, q, c: 0 in q), ("fake_fez", lambda isa, q, c: (0, 1) in c)):
        handle = create_backend("ibm_local", device=device, shots=64, seed=0, layout="transpiler")
        isa = handle.pass_manager.run(head)
        bad_qubits, bad_couplings = worst_decile(handle.device)
        assert physical_qubits(isa) == tuple(range(8))
        assert bad(isa, physical_qubits(isa), couplings(isa))
        assert set(physical_qubits(isa)) & bad_qubits or couplings(isa) & bad_couplings


def test_pinned_trivial_and_fallback_layouts():
    from backends.devices import get_fake_backend

    fez = get_fake_backend("fake_fez")
    head = build_head_circuit(4).circuit
    pinned = LayoutPassManager(fez, optimization_level=1, seed=0, layout="126,125,124,123")
    assert physical_qubits(pinned.run(head)) == (126, 125, 124, 123)
    assert physical_qubits(LayoutPassManager(fez, optimization_level=1, seed=0, layout="trivial").run(head)) == (0, 1, 2, 3)
    triangle = QuantumCircuit(3)  # no triangle on a heavy-hex lattice: the transpiler places it (with swaps)
    triangle.cx(0, 1)
    triangle.cx(1, 2)
    triangle.cx(2, 0)
    assert best_placement(triangle, fez.target) is None
    pm = LayoutPassManager(fez, optimization_level=1, seed=0)
    assert pm.run(triangle).num_qubits == 156 and "no placement without swaps" in pm.note
    idle = QuantumCircuit(2)  # no two-qubit gate: the two best qubits for readout
    readout = calibration(fez.target)[0]
    assert sorted(best_placement(idle, fez.target).qubits) == sorted(np.argsort(readout)[:2].tolist())


def test_bad_layouts_are_one_line():
    assert parse_layout("3, 4,5") == (3, 4, 5) and parse_layout([1, 2]) == (1, 2) and parse_layout(None) == "noise_aware"
    for bad, words in (("best", "layout must be one of"), ("1,1", "twice"), ([1, -2], "layout must be")):
        with pytest.raises(HybridQiskitError, match=words):
            parse_layout(bad)
    with pytest.raises(HybridQiskitError, match="names 2 physical qubits but the circuit has 4"):
        create_backend("ibm_local", device="fake_fez", layout="1,2").pass_manager.run(build_head_circuit(4).circuit)
    with pytest.raises(HybridQiskitError, match="fake_manila has 5"):
        create_backend("ibm_local", device="fake_manila", layout="0,1,2,9").pass_manager.run(build_head_circuit(4).circuit)
