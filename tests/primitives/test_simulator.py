"""The compiled program and the batched simulator against qiskit's Statevector."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp, Statevector

from hybrid_qiskit.circuits import ANSATZE, FEATURE_MAPS, build_head_circuit
from hybrid_qiskit.primitives.angles import compile_angle
from hybrid_qiskit.primitives.compiler import compile_circuit
from hybrid_qiskit.primitives.simulate import CompiledObservable, expectations, simulate

from ._circuits import random_circuit


def _check_states(qc: QuantumCircuit, values: np.ndarray):
    program = compile_circuit(qc)
    states = simulate(program, values)
    assert states.shape == (2**qc.num_qubits, len(values))
    for b, row in enumerate(values):
        expected = Statevector(qc.assign_parameters(row)).data
        np.testing.assert_allclose(states[:, b], expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_random_circuits_with_every_gate(seed):
    n = 1 + seed % 4
    qc = random_circuit(n, depth=40, seed=seed)
    rng = np.random.default_rng(seed)
    values = rng.uniform(-np.pi, np.pi, (3, qc.num_parameters))
    values[1] = values[0]  # repeated rows
    _check_states(qc, values)


@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_head_circuits_with_shared_weights(fm, ansatz):
    """Weights equal on every row (as EstimatorQNN sends them) take the constant-matrix path."""
    head = build_head_circuit(4, feature_map=fm, ansatz=ansatz, reps=2, reuploads=2)
    rng = np.random.default_rng(0)
    values = rng.uniform(0, np.pi, (5, head.circuit.num_parameters))
    values[:, 4:] = values[0, 4:]
    _check_states(head.circuit, values)
    values[:, :4] = values[0, :4]  # every row the same
    _check_states(head.circuit, values)


def test_layers_of_the_default_head():
    """Angle encoding fuses into the first RY layer; each CX ladder is one permutation; the ZZ
    feature map's CX·P·CX ladders become one diagonal layer."""
    kinds = lambda **kw: "".join(op.kind[0] for op in compile_circuit(build_head_circuit(4, **kw).circuit).ops)  # noqa: E731
    assert kinds(reps=2) == "lplpl"
    assert kinds(feature_map="zz", reps=1) == "ldlpl"
    assert compile_circuit(build_head_circuit(4).circuit).is_real
    assert not compile_circuit(build_head_circuit(4, ansatz="efficient_su2").circuit).is_real


def test_wider_circuit_uses_several_chunks():
    """9 qubits: three constant-matrix chunks per layer (an odd number of buffer swaps)."""
    values = np.random.default_rng(1).uniform(0, 3, (3, 9 + 18))
    values[:, 9:] = values[0, 9:]
    _check_states(build_head_circuit(9, reps=1).circuit, values)
    _check_states(build_head_circuit(9, feature_map="zz", ansatz="efficient_su2", reps=1).circuit,
                  np.random.default_rng(2).uniform(0, 3, (2, 9 + 36)))


def test_compile_angle_values_and_partials():
    a, b = Parameter("a"), Parameter("b")
    index = {a: 0, b: 1}
    v = np.array([[0.3, -1.2], [2.0, 0.5]])
    for expr, value, da, db in [
        (a, v[:, 0], 1.0, 0.0),
        (2 * a - 3 * b + 1, 2 * v[:, 0] - 3 * v[:, 1] + 1, 2.0, -3.0),
        (a * b, v[:, 0] * v[:, 1], v[:, 1], v[:, 0]),
    ]:
        angle = compile_angle(expr, index)
        np.testing.assert_allclose(angle.value(v), value)
        partials = {j: f(v) for j, f in angle.partials}
        np.testing.assert_allclose(partials.get(0, 0.0), da)
        np.testing.assert_allclose(partials.get(1, 0.0), db)
    const = compile_angle(0.25, index)
    assert const.partials == () and np.allclose(const.value(v), 0.25)


def test_observables_diagonal_and_sparse():
    qc = random_circuit(3, depth=30, seed=9)
    values = np.random.default_rng(9).uniform(-3, 3, (4, qc.num_parameters))
    states = simulate(compile_circuit(qc), values)
    ops = [SparsePauliOp.from_list([("ZIZ", 0.5), ("IZI", -1.0)]), SparsePauliOp.from_list([("XYZ", 0.3), ("YYI", 1j * 0 + 0.2)])]
    got = expectations(states, [CompiledObservable(o) for o in ops])
    for b in range(4):
        sv = Statevector(qc.assign_parameters(values[b]))
        for k, o in enumerate(ops):
            assert got[k, b] == pytest.approx(sv.expectation_value(o).real, abs=1e-12)


def test_measurements_are_rejected():
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    with pytest.raises(ValueError):
        compile_circuit(qc)
