"""The adjoint sweep's end-layer shortcuts (:mod:`hybrid_qiskit.primitives.adjoint_ends`) give
the general sweep's gradients: forced on at small widths, against the same sweep without them."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.circuits import ANSATZE, FEATURE_MAPS, build_head_circuit
from hybrid_qiskit.primitives import adjoint_sweep, rows
from hybrid_qiskit.primitives.adjoint_ends import last_layer
from hybrid_qiskit.primitives.compiler import compile_circuit
from hybrid_qiskit.primitives.simulate import CompiledObservable


def _both(monkeypatch, program, values, observables):
    """Gradients with the shortcuts forced on, and with them off."""
    monkeypatch.setattr(adjoint_sweep, "SHORTCUT_QUBITS", 0)
    on = adjoint_sweep.adjoint_gradient(program, values, observables)
    monkeypatch.setattr(adjoint_sweep, "SHORTCUT_QUBITS", 10**6)
    off = adjoint_sweep.adjoint_gradient(program, values, observables)
    return on, off


def _values(program, n_inputs, rows_, seed=0, shared=True):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-np.pi, np.pi, (rows_, len(program.parameters)))
    if shared:
        values[:, n_inputs:] = values[0, n_inputs:]  # weights shared by every row, as in the QNN
    return values


@pytest.mark.parametrize("block_rows", [1, 3])  # one-row blocks take the matrix-vector path
@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_heads(monkeypatch, fm, ansatz, block_rows):
    head = build_head_circuit(5, feature_map=fm, ansatz=ansatz, reps=2)
    program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
    observables = [CompiledObservable(o) for o in head.observables]
    assert last_layer(program, observables) is not None  # the shortcut applies to every head
    monkeypatch.setattr(adjoint_sweep, "SWEEP_BYTES", block_rows * (1 << 5) * 6 * 16)
    monkeypatch.setattr(rows, "PARALLEL_BYTES", 0)
    (ev_on, g_on), (ev_off, g_off) = _both(monkeypatch, program, _values(program, 5, 7), observables)
    np.testing.assert_allclose(ev_on, ev_off, atol=1e-12)
    np.testing.assert_allclose(g_on, g_off, atol=1e-10)


def _custom(last_gate: str, per_row: bool) -> tuple[QuantumCircuit, list]:
    """An RY product layer, a CX ladder, an RZ layer, and a last one-qubit layer ``last_gate``
    on qubits 0-2 only (qubit 3 has none); per_row: the last angles depend on the inputs."""
    x, w = ParameterVector("x", 4), ParameterVector("w", 8)
    qc = QuantumCircuit(4)
    for q in range(4):
        qc.ry(x[q] + w[q], q)
    for q in range(3):
        qc.cx(q, q + 1)
    for q in range(4):
        qc.rz(w[4 + q], q)
    qc.h(2)
    for q in range(3):
        getattr(qc, last_gate)(x[q] * w[q] if per_row else w[q] + 0.3, q)
    qc.p(w[7], 1)  # a trailing diagonal layer
    return qc, list(x) + list(w)


@pytest.mark.parametrize("last_gate", ["ry", "rx"])
@pytest.mark.parametrize("per_row", [False, True])
def test_general_last_layers(monkeypatch, last_gate, per_row):
    qc, params = _custom(last_gate, per_row)
    program = compile_circuit(qc, params)
    ops = [SparsePauliOp.from_sparse_list([("Z", [q], c)], 4) for q, c in [(0, 1.0), (1, -0.5), (3, 2.0), (2, 1.0)]]
    observables = [CompiledObservable(o) for o in ops]
    assert last_layer(program, observables) is not None
    (ev_on, g_on), (ev_off, g_off) = _both(monkeypatch, program, _values(program, 4, 5, shared=not per_row), observables)
    np.testing.assert_allclose(ev_on, ev_off, atol=1e-12)
    np.testing.assert_allclose(g_on, g_off, atol=1e-10)


def test_other_observables_fall_back(monkeypatch):
    qc, params = _custom("ry", False)
    program = compile_circuit(qc, params)
    zz = CompiledObservable(SparsePauliOp("ZZII"))
    assert zz.single_z is None and CompiledObservable(SparsePauliOp("IIZI")).single_z == (1, 1.0)
    observables = [zz, CompiledObservable(SparsePauliOp("IIIZ"))]
    assert last_layer(program, observables) is None
    (_, g_on), (_, g_off) = _both(monkeypatch, program, _values(program, 4, 3), observables)
    np.testing.assert_allclose(g_on, g_off, atol=1e-12)
