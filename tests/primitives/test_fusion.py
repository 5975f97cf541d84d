"""Diagonal two-qubit blocks (CX·P·CX and the like) fused into one gate on the chain
(:mod:`hybrid_qiskit.primitives.fusion`): the bond they cost, and the same values and gradients
as the statevector and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import CXGate, PhaseGate

from hybrid_qiskit.circuits import build_head_circuit
from hybrid_qiskit.primitives import mps
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_gradient
from hybrid_qiskit.primitives.angles import compile_angle
from hybrid_qiskit.primitives.compiler import compile_circuit

from .test_mps import _z


def _program(head):
    return compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))


@pytest.mark.parametrize(("ansatz", "bond"), [("real_amplitudes", 8), ("efficient_su2", 8)])
def test_the_zz_map_costs_one_cut_term_per_entangler(ansatz, bond):
    """CX·P·CX is diag(1, e^{iφ}, e^{iφ}, 1): rank 2 per cut instead of CX·CX's 4."""
    assert _program(build_head_circuit(6, feature_map="zz", ansatz=ansatz, reps=2)).chain.bond == bond
    assert _program(build_head_circuit(6, feature_map="zz", reps=0)).chain.bond == 2


def _permute(qc: QuantumCircuit, kind: str, a: int, b: int) -> None:
    if kind == "swap":
        qc.swap(a, b)
    else:
        qc.cx(*((a, b) if kind == "cx" else (b, a)))


def _random_blocks(n: int, blocks: int, seed: int) -> QuantumCircuit:
    """RY layers between random diagonal blocks C·D·C⁻¹ (C: CX either way or SWAP; D: one
    rotation among fixed diagonals, on one or both qubits), with gates on other qubits inside."""
    rng = np.random.default_rng(seed)
    t = ParameterVector("t", 4)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(t[q % 4], q)
    for _ in range(blocks):
        q = int(rng.integers(n - 1))
        a, b = (q, q + 1) if rng.integers(2) else (q + 1, q)
        opener = ["cx", "cx_back", "swap"][rng.integers(3)]
        _permute(qc, opener, a, b)
        i, j = rng.choice(4, 2, replace=False)
        angle = [t[i], 0.7 * t[i] - t[j], t[i] * t[j]][rng.integers(3)]
        kind = rng.integers(4)
        if kind == 0:
            qc.p(angle, b)
        elif kind == 1:
            qc.rz(angle, a)
        elif kind == 2:
            qc.rzz(angle, a, b)
        else:
            qc.cp(angle, a, b)
        for name in rng.choice(["z", "s", "t", "sdg"], 2):
            getattr(qc, str(name))(int(rng.choice([a, b])))
        other = (max(a, b) + 1) % n
        if other not in (a, b):
            qc.ry(t[int(i)], other)  # another qubit's gate inside the block
        _permute(qc, opener, a, b)
        qc.ry(t[int(j)], a)
    return qc


@pytest.mark.parametrize("seed", range(4))
def test_fused_blocks_match_the_statevector_and_finite_differences(monkeypatch, seed):
    monkeypatch.setattr(mps, "MAX_BOND", 1 << 12)
    qc = _random_blocks(4, 6, seed)
    program = compile_circuit(qc)
    pairs = [g for g in program.chain.gates if g.width == 2]
    assert len(pairs) <= 6  # every block fused: one two-qubit gate each, and it is diagonal
    assert all(g.rotation is not None or np.allclose(g.matrix, np.diag(np.diag(g.matrix))) for g in pairs)
    rng = np.random.default_rng(seed)
    values = rng.uniform(-np.pi, np.pi, (3, 4))
    observables = [_z(4, 0), _z(4, 1, 0.5), _z(4, 2), _z(4, 3, -1.5)]
    ev_c, g_c = adjoint_gradient(program, values, observables, method="mps")
    ev_s, g_s = adjoint_gradient(program, values, observables, method="statevector")
    np.testing.assert_allclose(ev_c, ev_s, atol=1e-12)
    np.testing.assert_allclose(g_c, g_s, atol=1e-10)
    readouts = [(0, 1.0), (1, 0.5), (2, 1.0), (3, -1.5)]
    h = 1e-6
    for j in range(4):
        step = np.zeros(4)
        step[j] = h
        fd = (mps.chain_expectations(program.chain, values + step, readouts)
              - mps.chain_expectations(program.chain, values - step, readouts)) / (2 * h)
        np.testing.assert_allclose(g_c[:, :, j], fd, atol=1e-7)


def test_blocks_with_an_error_inside_are_not_fused():
    """A Pauli slot (a gate error's draw, :mod:`.noisy_chain`) inside CX·P·CX keeps both CX."""
    x = ParameterVector("x", 1)
    cx = np.asarray(CXGate().to_matrix(), dtype=complex)
    angle = compile_angle(x[0], {x[0]: 0})

    def chain(slot: bool):
        specs = [mps.GateSpec("cx", (0, 1), matrix=cx)]
        if slot:
            specs.append(mps.GateSpec("pauli", (1,), slot=0))
        specs += [mps.GateSpec("p", (1,), angle=angle), mps.GateSpec("cx", (0, 1), matrix=cx)]
        return mps.build_chain(2, (x[0],), specs)

    assert chain(False).bond == 2 and chain(True).bond == 4


def test_what_is_not_fused():
    """Two angles in one block, a non-diagonal gate inside, or a closing gate that is not the
    opening one's inverse: the gates stay as they are."""
    x = ParameterVector("x", 2)
    two_angles, non_diagonal, other_close = QuantumCircuit(2), QuantumCircuit(2), QuantumCircuit(2)
    for qc in (two_angles, non_diagonal, other_close):
        qc.cx(0, 1)
        qc.append(PhaseGate(x[0]), [1])
    two_angles.rz(x[1], 0)
    non_diagonal.ry(x[1], 1)
    for qc in (two_angles, non_diagonal):
        qc.cx(0, 1)
    other_close.cx(1, 0)
    for qc in (two_angles, non_diagonal, other_close):
        assert compile_circuit(qc).chain.bond == 4
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (2, 2))
    for qc in (two_angles, non_diagonal):
        program = compile_circuit(qc)
        observables = [_z(2, 0), _z(2, 1)]
        a = adjoint_gradient(program, values, observables, method="mps")
        b = adjoint_gradient(program, values, observables, method="statevector")
        np.testing.assert_allclose(a[1], b[1], atol=1e-10)
