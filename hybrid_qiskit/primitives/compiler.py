"""Compile a parametrized QuantumCircuit into a :class:`~.layers.Program` for the batched simulator.

The stock primitives bind and simulate one parameter set at a time; here a circuit is compiled
ONCE into a short list of layers (see :mod:`.layers`) that are then applied to a whole batch of
parameter sets.

A gate is moved back past layers that do not touch its qubits, into the earliest layer of its
kind that can take it; a diagonal gate is also moved back through a permutation into the
diagonal layer before it (``D·P = P·(P⁻¹DP)``). The ZZ feature map's CX·P·CX ladders become one
diagonal layer that way, and angle encoding followed by an RY layer becomes one RY layer
(``RY(x)·RY(θ) = RY(x + θ)``, keeping both partial derivatives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter

from .angles import compile_angle, sum_angles
from .layers import (
    ROTATIONS,
    SUPPORTED_GATES,
    DenseGate,
    DiagonalLayer,
    LocalGate,
    LocalLayer,
    Op,
    Permutation,
    Program,
)
from .mps import compile_chain
from .rotations import DIAGONAL_GENERATORS, Rotation


def _local_index(qubits: Sequence[int], n: int) -> np.ndarray:
    """For every basis state, the index of its bits on ``qubits`` (little-endian)."""
    idx = np.arange(1 << n)
    local = np.zeros_like(idx)
    for k, q in enumerate(qubits):
        local |= ((idx >> q) & 1) << k
    return local


def _permutation(matrix: np.ndarray, qubits: Sequence[int], n: int) -> np.ndarray | None:
    """If ``matrix`` is a permutation with unit entries, the full-state index map; else None."""
    absm = np.abs(matrix)
    if not (np.allclose(absm.sum(0), 1) and np.allclose(absm.sum(1), 1)):
        return None
    if not np.allclose(matrix[absm > 0.5], 1):
        return None
    dest = np.argmax(absm, axis=0)  # local basis j -> dest[j]
    idx = np.arange(1 << n)
    new_local = dest[_local_index(qubits, n)]
    out = idx.copy()
    for k, q in enumerate(qubits):
        out &= ~(1 << q)
        out |= ((new_local >> k) & 1) << q
    # new_state[out[i]] = state[i]  =>  new_state = state[perm] with perm = inverse(out)
    perm = np.empty_like(out)
    perm[out] = idx
    return perm


def _real_if_possible(m: np.ndarray) -> np.ndarray:
    return m.real.copy() if np.allclose(m.imag, 0) else m


class _Builder:
    """Mutable layers while compiling; frozen into ops at the end."""

    def __init__(self, kind: str, qubits: set[int], **data):
        self.kind = kind
        self.qubits = set(qubits)
        self.data = data


def native_circuit(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` in the simulators' native gates (transpiled only if it needs to be), with
    resets and initializes on untouched qubits resolved (see :func:`compile_circuit`).

    Raises:
        ValueError: for non-unitary instructions.
    """
    names = {inst.operation.name for inst in circuit.data}
    if "measure" in names or any(inst.clbits for inst in circuit.data):
        raise ValueError("cannot simulate measurements or classical control: estimator circuits must be unitary")
    if "delay" in names:  # idle time is the identity without noise, as Qiskit's reference takes it
        kept = [inst for inst in circuit.data if inst.operation.name != "delay"]
        circuit = circuit.copy_empty_like()
        for inst in kept:
            circuit.append(inst)
        names.discard("delay")
    if names & _RESETTING:
        circuit = _without_initial_resets(circuit)
        names = {inst.operation.name for inst in circuit.data}
    if names - set(SUPPORTED_GATES) - {"barrier"}:
        circuit = transpile(circuit, basis_gates=SUPPORTED_GATES, optimization_level=0)
        left = {inst.operation.name for inst in circuit.data} - set(SUPPORTED_GATES) - {"barrier"}
        if left:
            raise ValueError(f"cannot simulate {', '.join(sorted(left))}: not reducible to the simulator's "
                             f"gates ({', '.join(SUPPORTED_GATES)}); measurements, resets mid-circuit, boxes "
                             f"and control flow are not simulated here")
    return circuit


def compile_circuit(circuit: QuantumCircuit, parameters: Sequence[Parameter] | None = None) -> Program:
    """Compile ``circuit`` for the batched simulator (:mod:`.simulate`).

    Args:
        circuit: a circuit without measurements or classical control.
        parameters: the column order of the parameter arrays (default: ``circuit.parameters``,
            the order the V2 primitives use for a PUB's parameter values).

    ``initialize`` and ``reset`` on qubits that no gate has touched yet act on |0⟩: an
    initialize is then its state preparation, a reset nothing. Anywhere else they are not
    unitary, and refused.

    Raises:
        ValueError: for non-unitary instructions (measure, conditionals, a reset or initialize
            after gates on its qubits).
    """
    params = tuple(circuit.parameters if parameters is None else parameters)
    index = {p: i for i, p in enumerate(params)}
    circuit = native_circuit(circuit)

    def build() -> tuple[Op, ...]:
        n = circuit.num_qubits
        layers: list[_Builder] = []
        for inst in circuit.data:
            op = inst.operation
            name = op.name
            if name in ("barrier", "id"):
                continue
            qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
            if name in ROTATIONS:
                rot = Rotation(name, compile_angle(op.params[0], index))
                if name in DIAGONAL_GENERATORS:
                    gen = DIAGONAL_GENERATORS[name][_local_index(qubits, n)]
                    _add_diagonal(layers, qubits, None, (gen, rot))
                elif len(qubits) == 1:
                    _add_local(layers, qubits[0], None, rot)
                else:
                    layers.append(_Builder("dense", set(qubits), name=name, order=qubits, matrix=None, rotation=rot))
                continue
            matrix = np.asarray(op.to_matrix(), dtype=complex)
            perm = _permutation(matrix, qubits, n)
            if perm is not None:
                _add_permutation(layers, qubits, perm)
            elif np.allclose(matrix, np.diag(np.diag(matrix))):
                phase = _real_if_possible(np.diag(matrix)[_local_index(qubits, n)])
                _add_diagonal(layers, qubits, phase, None)
            elif len(qubits) == 1:
                _add_local(layers, qubits[0], _real_if_possible(matrix), None)
            else:
                layers.append(
                    _Builder("dense", set(qubits), name=name, order=qubits, matrix=_real_if_possible(matrix), rotation=None)
                )
        return tuple(op for b in layers if (op := _freeze(b, n)) is not None)

    chain = compile_chain(circuit, params)
    # Only a chain may never need its layers; anything else is built now, so that whatever
    # cannot be compiled is refused at once.
    return Program(circuit.num_qubits, params, build if chain is not None else build(), chain=chain)


def _blocker(layers: list[_Builder], qubits: Sequence[int]) -> int:
    """Index of the last layer touching any of ``qubits`` (-1 if none): a gate on ``qubits``
    commutes with every layer after it."""
    for i in range(len(layers) - 1, -1, -1):
        if layers[i].qubits.intersection(qubits):
            return i
    return -1


def _add_local(layers: list[_Builder], q: int, matrix: np.ndarray | None, rot: Rotation | None) -> None:
    i = _blocker(layers, (q,))
    if i >= 0 and layers[i].kind == "local":
        gates = layers[i].data["gates"]
        prev = gates[q]  # the blocker touches q, and a local layer touches only its gates' qubits
        if matrix is not None and prev.matrix is not None:
            gates[q] = LocalGate(q, matrix=_real_if_possible(matrix @ prev.matrix))
            return
        if rot is not None and prev.rotation is not None and prev.rotation.name == rot.name:
            gates[q] = LocalGate(q, rotation=Rotation(rot.name, sum_angles(prev.rotation.angle, rot.angle)))
            return
    gate = LocalGate(q, matrix=matrix, rotation=rot)
    for j in range(i + 1, len(layers)):
        if layers[j].kind == "local":
            layers[j].data["gates"][q] = gate
            layers[j].qubits.add(q)
            return
    layers.append(_Builder("local", {q}, gates={q: gate}))


def _add_diagonal(layers: list[_Builder], qubits, phase: np.ndarray | None, term) -> None:
    i = _blocker(layers, qubits)
    target, conj = None, None
    if i >= 0 and layers[i].kind == "diag":
        target = layers[i]
    elif i >= 1 and layers[i].kind == "perm" and layers[i - 1].kind == "diag":
        # D·P = P·(P⁻¹DP): move the diagonal back through the permutation; d' = d[inv_perm].
        target, conj = layers[i - 1], _inverse(layers[i].data["perm"])
        target.qubits |= layers[i].qubits
    else:
        target = next((layers[j] for j in range(i + 1, len(layers)) if layers[j].kind == "diag"), None)
    if target is None:
        target = _Builder("diag", set(), phase=None, terms=[])
        layers.append(target)
    target.qubits |= set(qubits)
    if conj is not None:
        phase = None if phase is None else phase[conj]
        term = None if term is None else (term[0][conj], term[1])
    if phase is not None:
        old = target.data["phase"]
        target.data["phase"] = phase if old is None else old * phase
    if term is not None:
        target.data["terms"].append(term)


def _inverse(perm: np.ndarray) -> np.ndarray:
    # A scatter, not np.argsort: at 20 qubits an argsort per CX (38 per head) took seconds.
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    return inv


def _add_permutation(layers: list[_Builder], qubits, perm: np.ndarray) -> None:
    i = _blocker(layers, qubits)
    target = layers[i] if i >= 0 and layers[i].kind == "perm" else None
    if target is None:
        target = next((layers[j] for j in range(i + 1, len(layers)) if layers[j].kind == "perm"), None)
    if target is None:
        layers.append(_Builder("perm", set(qubits), perm=perm))
        return
    composed = target.data["perm"][perm]  # state[p1] then [p2] == state[p1[p2]]
    target.data.update(perm=composed)
    target.qubits |= set(qubits)


def _freeze(b: _Builder, n: int) -> Op | None:
    q = tuple(sorted(b.qubits))
    if b.kind == "local":
        gates = tuple(b.data["gates"][k] for k in sorted(b.data["gates"]))
        gates = tuple(g for g in gates if g.rotation is not None or not np.allclose(g.matrix, np.eye(2)))
        return LocalLayer(gates) if gates else None
    if b.kind == "perm":
        if np.array_equal(b.data["perm"], np.arange(1 << n)):
            return None  # CX·CX ladders around diagonals compose to the identity
        return Permutation(q, b.data["perm"], _inverse(b.data["perm"]))
    if b.kind == "diag":
        phase, terms = b.data["phase"], b.data["terms"]
        if phase is not None and np.allclose(phase, 1):
            phase = None
        if phase is None and not terms:
            return None
        gens = np.array([t[0] for t in terms]).reshape(len(terms), 1 << n)
        return DiagonalLayer(q, phase, gens, tuple(t[1] for t in terms))
    return DenseGate(b.data["name"], tuple(b.data["order"]), b.data["matrix"], b.data["rotation"])


_RESETTING = {"initialize", "reset"}


def _without_initial_resets(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with resets on untouched qubits dropped (they act on |0⟩) and each
    ``initialize`` on untouched qubits replaced by its state preparation.

    Raises:
        ValueError: for a reset or initialize on a qubit that a gate has already touched.
    """
    out = circuit.copy_empty_like()
    touched: set[int] = set()
    for inst in circuit.data:
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        name = inst.operation.name
        if name in _RESETTING:
            if touched.intersection(qubits):
                raise ValueError(
                    f"cannot simulate {name} on qubit(s) {sorted(touched.intersection(qubits))} after gates on them: "
                    "a reset there is not unitary (put initialize first, or use an Aer backend)"
                )
            if name == "initialize":  # its definition: resets, then the state preparation
                for sub in inst.operation.definition.data:
                    if sub.operation.name != "reset":
                        mapped = [inst.qubits[inst.operation.definition.find_bit(q).index] for q in sub.qubits]
                        out.append(sub.operation, mapped)
        else:
            out.append(inst)
        if name != "barrier":
            touched.update(qubits)
    return out
