import numpy as np
import pytest
from qiskit import transpile
from qiskit.quantum_info import Pauli, Statevector

from hybrid_qiskit.circuits import (
    ANSATZE,
    ENTANGLEMENTS,
    FEATURE_MAPS,
    ansatz_num_parameters,
    build_head_circuit,
)
from hybrid_qiskit.errors import HybridQiskitError


@pytest.mark.parametrize("fm", FEATURE_MAPS)
@pytest.mark.parametrize("an", ANSATZE)
@pytest.mark.parametrize("n,reps,reuploads", [(2, 1, 1), (3, 2, 1), (4, 1, 2)])
def test_parameter_counts_and_order(fm, an, n, reps, reuploads):
    head = build_head_circuit(n, feature_map=fm, ansatz=an, reps=reps, reuploads=reuploads)
    per_layer = {"real_amplitudes": n * (reps + 1), "efficient_su2": 2 * n * (reps + 1)}[an]
    assert ansatz_num_parameters(an, n, reps) == per_layer
    assert [p.name for p in head.input_params] == [f"x[{i}]" for i in range(n)]
    assert [p.name for p in head.weight_params] == [f"θ[{i}]" for i in range(per_layer * reuploads)]
    assert set(head.circuit.parameters) == set(head.input_params) | set(head.weight_params)
    assert head.circuit.num_qubits == n
    assert [o.paulis[0] for o in head.observables] == [Pauli("I" * (n - 1 - q) + "Z" + "I" * q) for q in range(n)]


def test_angle_encoding_maps_each_input_to_its_qubit():
    # With all weights zero, real_amplitudes is only CNOTs on |x>; with reps=0 it is identity,
    # so <Z_q> = cos(x_q): input q drives qubit q, in order.
    head = build_head_circuit(3, feature_map="angle", ansatz="real_amplitudes", reps=0)
    x = np.array([0.3, 1.1, 2.5])
    bound = head.circuit.assign_parameters(dict(zip(head.input_params, x)) | dict.fromkeys(head.weight_params, 0.0))
    sv = Statevector(bound)
    got = [sv.expectation_value(o).real for o in head.observables]
    np.testing.assert_allclose(got, np.cos(x), atol=1e-12)


def test_ansatz_weight_order_follows_layers():
    # real_amplitudes, 2 qubits, reps 1: θ[0], θ[1] are the first RY layer on qubits 0 and 1.
    head = build_head_circuit(2, feature_map="angle", ansatz="real_amplitudes", reps=1)
    ry = [inst for inst in head.circuit.data if inst.operation.name == "ry"]
    weight_gates = [(str(i.operation.params[0]), head.circuit.find_bit(i.qubits[0]).index) for i in ry[2:]]
    assert weight_gates == [("θ[0]", 0), ("θ[1]", 1), ("θ[2]", 0), ("θ[3]", 1)]


@pytest.mark.parametrize("kwargs", [{"feature_map": "nope"}, {"ansatz": "nope"}, {"reuploads": 0},
                                    {"entanglement": "nope"}])
def test_bad_names_raise_clear_errors(kwargs):
    with pytest.raises(HybridQiskitError):
        build_head_circuit(2, **kwargs)


def _gates(circuit):
    circuit = transpile(circuit, basis_gates=["cx", "ry", "p", "h", "rz"], optimization_level=0)
    return [(inst.operation.name, tuple(circuit.find_bit(q).index for q in inst.qubits),
             tuple(map(str, inst.operation.params))) for inst in circuit.data]


@pytest.mark.parametrize("entanglement", ENTANGLEMENTS)
def test_entanglement_pairs(entanglement):
    """The ansatz's CX join the pairs Qiskit's names say (and the ZZ map's entanglers the same
    pairs, linear for reverse_linear); the default is reverse_linear, the head every run had
    before the setting existed."""
    head = build_head_circuit(4, reps=1, entanglement=entanglement)
    pairs = [q for name, q, _ in _gates(head.circuit) if name == "cx"]
    expected = {"reverse_linear": [(2, 3), (1, 2), (0, 1)], "linear": [(0, 1), (1, 2), (2, 3)],
                "circular": [(3, 0), (0, 1), (1, 2), (2, 3)],
                "full": [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]}[entanglement]
    assert pairs == expected
    default = build_head_circuit(4, reps=1)
    assert (_gates(default.circuit) == _gates(head.circuit)) == (entanglement == "reverse_linear")
    zz = build_head_circuit(4, feature_map="zz", reps=0, entanglement=entanglement)
    zz_pairs = {frozenset(q) for name, q, _ in _gates(zz.circuit) if name == "cx"}
    assert zz_pairs == {frozenset(p) for p in expected}
