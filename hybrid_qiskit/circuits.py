"""Circuits of the quantum head: feature maps, ansatze and observables.

A head circuit is ``[feature map -> ansatz] x reuploads`` on ``num_qubits`` qubits, read out by
Z on each qubit. Parameter order is fixed and documented:

* inputs ``x[0] … x[n-1]``: one per qubit, in qubit order (the same vector is re-uploaded in
  every layer);
* weights ``θ[0] … θ[m-1]``: the ansatz parameters of layer 0, then layer 1, …, each layer in the
  order Qiskit's library function assigns them (``real_amplitudes``: n per rotation layer,
  ``reps + 1`` layers; ``efficient_su2``: an RY layer then an RZ layer, ``reps + 1`` times).

Feature maps take angles. The models produce them with a bounded map, ``x = π·sigmoid(z)``,
so each input lies in (0, π): with angle encoding, ⟨Z⟩ of a lone qubit is cos x, which covers
(-1, 1) exactly once over that range.

Example:
    >>> head = build_head_circuit(4, feature_map="angle", ansatz="real_amplitudes", reps=2)
    >>> len(head.input_params), len(head.weight_params), len(head.observables)
    (4, 12, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import efficient_su2, real_amplitudes, zz_feature_map
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.errors import HybridQiskitError

FEATURE_MAPS = ("angle", "zz")
ANSATZE = ("real_amplitudes", "efficient_su2")
# Which pairs the entangling gates join, as Qiskit's library names them. reverse_linear is the
# default and what every head was before the choice existed (the same unitary as full for
# RealAmplitudes' CX, with n - 1 gates instead of n(n - 1)/2). circular adds (n-1, 0): one gate
# across every cut, so on the exact chain its bond is that of twice the reps (bond 16 at reps 2).
ENTANGLEMENTS = ("reverse_linear", "linear", "circular", "full")


@dataclass(frozen=True)
class HeadCircuit:
    """A head circuit with its parameters in the documented order and its observables."""

    circuit: QuantumCircuit
    input_params: tuple[Parameter, ...]
    weight_params: tuple[Parameter, ...]
    observables: tuple[SparsePauliOp, ...]


def angle_encoding(x: ParameterVector) -> QuantumCircuit:
    """One RY(x[i]) on qubit i: the state cos(x/2)|0> + sin(x/2)|1> per qubit."""
    qc = QuantumCircuit(len(x), name="angle")
    for i, xi in enumerate(x):
        qc.ry(xi, i)
    return qc


def make_feature_map(name: str, x: ParameterVector, entanglement: str = "linear") -> QuantumCircuit:
    """Feature map ``name`` on ``len(x)`` qubits with inputs ``x``.

    ``zz`` is Qiskit's ZZ feature map (H, P(2x_i), and P(2(π-x_i)(π-x_j)) entanglers, one rep,
    ``entanglement`` pairs: linear by default; reverse_linear is the same diagonal), with its
    parameters renamed to ``x``.
    """
    n = len(x)
    if name == "angle":
        return angle_encoding(x)
    if name == "zz":
        if n < 2:
            raise HybridQiskitError("the zz feature map needs at least 2 qubits")
        fm = zz_feature_map(n, reps=1, entanglement="linear" if entanglement == "reverse_linear" else entanglement)
        return fm.assign_parameters(dict(zip(fm.parameters, x)))
    raise HybridQiskitError(f"unknown feature map {name!r}; known: {', '.join(FEATURE_MAPS)}")


def ansatz_num_parameters(name: str, num_qubits: int, reps: int) -> int:
    """Weights in one layer of ansatz ``name``."""
    if name == "real_amplitudes":
        return num_qubits * (reps + 1)
    if name == "efficient_su2":
        return 2 * num_qubits * (reps + 1)
    raise HybridQiskitError(f"unknown ansatz {name!r}; known: {', '.join(ANSATZE)}")


def make_ansatz(name: str, num_qubits: int, reps: int, theta: ParameterVector | list,
                entanglement: str = "reverse_linear") -> QuantumCircuit:
    """Ansatz ``name`` (``entanglement`` pairs, ``reps`` repetitions) with weights ``theta``."""
    count = ansatz_num_parameters(name, num_qubits, reps)
    if len(theta) != count:
        raise ValueError(f"{name} with {num_qubits} qubits and reps={reps} takes {count} weights")
    build = real_amplitudes if name == "real_amplitudes" else efficient_su2
    qc = build(num_qubits, reps=reps, entanglement=entanglement)
    # The library orders parameters as its vector does (θ[0], θ[1], …); keep that order.
    return qc.assign_parameters(dict(zip(qc.parameters, theta)))


def z_observables(num_qubits: int) -> tuple[SparsePauliOp, ...]:
    """Z on each qubit, in qubit order (qubit 0 first)."""
    return tuple(
        SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], num_qubits=num_qubits)
        for q in range(num_qubits)
    )


def build_head_circuit(
    num_qubits: int,
    *,
    feature_map: str = "angle",
    ansatz: str = "real_amplitudes",
    reps: int = 2,
    reuploads: int = 1,
    entanglement: str = "reverse_linear",
) -> HeadCircuit:
    """The head circuit: ``reuploads`` layers of [feature map, ansatz], read out by Z per qubit.

    Args:
        num_qubits: width; also the number of inputs and of outputs.
        feature_map: one of :data:`FEATURE_MAPS`.
        ansatz: one of :data:`ANSATZE`.
        reps: ansatz repetitions per layer.
        reuploads: data re-uploading layers (Pérez-Salinas et al. 2020); 1 = plain encoding.
        entanglement: one of :data:`ENTANGLEMENTS`: the pairs of the ansatz's entangling gates,
            and of the ZZ map's (linear for reverse_linear: its gates are diagonal, so the order
            does not matter).

    Raises:
        HybridQiskitError: unknown names or non-positive sizes.
    """
    if num_qubits < 1 or reps < 0 or reuploads < 1:
        raise HybridQiskitError("need num_qubits >= 1, reps >= 0 and reuploads >= 1")
    if entanglement not in ENTANGLEMENTS:
        raise HybridQiskitError(f"unknown entanglement {entanglement!r}; known: {', '.join(ENTANGLEMENTS)}")
    per_layer = ansatz_num_parameters(ansatz, num_qubits, reps)
    x = ParameterVector("x", num_qubits)
    theta = ParameterVector("θ", per_layer * reuploads)
    qc = QuantumCircuit(num_qubits, name="head")
    for layer in range(reuploads):
        qc.compose(make_feature_map(feature_map, x, entanglement), inplace=True)
        qc.compose(
            make_ansatz(ansatz, num_qubits, reps, theta[layer * per_layer : (layer + 1) * per_layer], entanglement),
            inplace=True,
        )
    return HeadCircuit(qc, tuple(x), tuple(theta), z_observables(num_qubits))
