"""Compile a parametrized QuantumCircuit into a program for the batched statevector simulator.

The stock primitives bind and simulate one parameter set at a time; here a circuit is compiled
ONCE into a list of :class:`Op` and then applied to a whole batch of parameter sets as numpy
arrays of shape ``(batch, 2**n)``. Angles may be any ParameterExpression (the ZZ feature map
uses products of inputs): each is turned into a vectorized numpy function of the parameter
array, together with its partial derivatives, for the adjoint gradient's chain rule.

Conventions: qubit q is bit q of the basis index (Qiskit's little-endian order); a k-qubit
gate matrix is indexed little-endian over its qargs, as ``Gate.to_matrix()`` returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter, ParameterExpression

# Gates applied natively. Anything else is first rewritten into these by the transpiler.
_ROTATIONS = {"rx", "ry", "rz", "p", "rzz", "rxx", "ryy", "crx", "cry", "crz", "cp"}
_FIXED = {"id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "ecr"}
SUPPORTED_GATES = sorted(_ROTATIONS | _FIXED)

_I2 = np.eye(2, dtype=complex)
_X = np.array([[0, 1], [1, 0]], dtype=complex)
_Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
_Z = np.diag([1.0, -1.0]).astype(complex)
_P1 = np.diag([0.0, 1.0]).astype(complex)


def _kron_le(*mats: np.ndarray) -> np.ndarray:
    """Kronecker product for little-endian qargs: mats[0] acts on qargs[0] (least significant)."""
    out = np.array([[1.0 + 0j]])
    for m in mats:
        out = np.kron(m, out)
    return out


# d U(θ)/dθ = -i G U(θ) for each rotation: the generator G (little-endian over qargs).
# Rotations exp(-iθ/2 P) have G = P/2; phase gates p/cp = exp(iθ P1) have G = -P1.
_GENERATORS: dict[str, np.ndarray] = {
    "rx": _X / 2,
    "ry": _Y / 2,
    "rz": _Z / 2,
    "p": -_P1,
    "rzz": _kron_le(_Z, _Z) / 2,
    "rxx": _kron_le(_X, _X) / 2,
    "ryy": _kron_le(_Y, _Y) / 2,
    "crx": _kron_le(_P1, _X / 2),
    "cry": _kron_le(_P1, _Y / 2),
    "crz": _kron_le(_P1, _Z / 2),
    "cp": -_kron_le(_P1, _P1),
}


_EIGEN = {name: np.linalg.eigh(g) for name, g in _GENERATORS.items()}
# Rotations whose generator is diagonal (rz, p, rzz, cp, crz) are applied as phase vectors.
DIAGONAL_GENERATORS = {
    name: np.diag(g).real.copy() for name, g in _GENERATORS.items() if np.allclose(g, np.diag(np.diag(g)))
}


def rotation_matrices(name: str, theta: np.ndarray) -> np.ndarray:
    """U(θ) = exp(-iθG) for each angle in ``theta``: shape (len(theta), d, d)."""
    if name == "ry":  # the workhorse of every ansatz we ship: real, closed form
        c, s = np.cos(theta / 2), np.sin(theta / 2)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).astype(complex)
    if name == "rx":
        c, s = np.cos(theta / 2), -1j * np.sin(theta / 2)
        return np.stack([np.stack([c + 0j, s], -1), np.stack([s, c + 0j], -1)], -2)
    w, v = _EIGEN[name]
    phases = np.exp(-1j * np.multiply.outer(theta, w))  # (batch, d)
    return np.einsum("ij,bj,kj->bik", v, phases, v.conj())


def rotation_phases(name: str, theta: np.ndarray) -> np.ndarray:
    """The diagonal of U(θ) = exp(-iθG) for a diagonal generator: shape (len(theta), d)."""
    return np.exp(-1j * np.multiply.outer(theta, DIAGONAL_GENERATORS[name]))


@dataclass(frozen=True)
class Angle:
    """A gate angle as a vectorized function of the circuit's parameter array (batch, P)."""

    value: Callable[[np.ndarray], np.ndarray]
    # (parameter index, d angle / d parameter as a function of the parameter array)
    partials: tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]


@dataclass(frozen=True)
class Op:
    """One gate of a compiled program.

    kind: "perm" (a permutation of basis states: x, cx, swap), "diag" (a fixed diagonal),
    "fixed" (a fixed dense matrix), or "rot" (a parametrized rotation exp(-iθG)).
    """

    kind: str
    name: str
    qubits: tuple[int, ...]
    matrix: np.ndarray | None = None  # fixed gates: the (d, d) matrix
    perm: np.ndarray | None = None  # "perm": new_state = state[:, perm]
    inv_perm: np.ndarray | None = None
    diag: np.ndarray | None = None  # "diag": full-length phase vector
    angle: Angle | None = None  # "rot"


@dataclass(frozen=True)
class Program:
    num_qubits: int
    parameters: tuple[Parameter, ...]  # column order of the parameter arrays
    ops: tuple[Op, ...]

    @property
    def is_real(self) -> bool:
        """True when every gate is a real matrix (RY rotations, CX, H, Z, ...): the state then
        stays real, and the simulator works in float64 (half the memory traffic of complex)."""
        return all(
            (op.kind == "rot" and op.name in _REAL_ROTATIONS)
            or op.kind == "perm"
            or (op.kind in ("diag", "fixed") and np.allclose(op.matrix.imag, 0))
            for op in self.ops
        )


# Rotations that are real matrices for every angle, and whose -iG is real too.
_REAL_ROTATIONS = {"ry", "cry"}


def _const(c: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda values: np.full(values.shape[0], c)


def compile_angle(expr, index: dict[Parameter, int]) -> Angle:
    """Turn a gate parameter (float or ParameterExpression) into an :class:`Angle`."""
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        return Angle(_const(float(expr)), ())
    params = list(expr.parameters)
    if isinstance(expr, Parameter):
        j = index[expr]
        return Angle(lambda v, j=j: v[:, j], ((j, _const(1.0)),))
    partials = []
    linear = True
    for p in params:
        g = expr.gradient(p)
        if isinstance(g, ParameterExpression) and g.parameters:
            linear = False
            partials.append((index[p], _lambdify(g, index)))
        else:
            partials.append((index[p], _const(float(g))))
    if linear:
        # a·x + b: evaluated as a dot product, with no symbolic machinery per call.
        cols = np.array([j for j, _ in partials])
        coeffs = np.array([float(expr.gradient(p)) for p in params])
        offset = float(expr.bind({p: 0.0 for p in params}))
        return Angle(lambda v, c=cols, a=coeffs, b=offset: v[:, c] @ a + b, tuple(partials))
    return Angle(_lambdify(expr, index), tuple(partials))


def _lambdify(expr: ParameterExpression, index: dict[Parameter, int]):
    import sympy

    params = list(expr.parameters)
    symbols = [sympy.Symbol(p.name) for p in params]
    fn = sympy.lambdify(symbols, expr.sympify(), modules="numpy", dummify=True)
    cols = [index[p] for p in params]

    def value(v: np.ndarray) -> np.ndarray:
        out = fn(*(v[:, j] for j in cols))
        return np.broadcast_to(np.asarray(out, dtype=float), (v.shape[0],))

    return value


def _permutation(matrix: np.ndarray, qubits: Sequence[int], n: int) -> np.ndarray | None:
    """If ``matrix`` is a permutation with unit entries, the full-state index map; else None."""
    absm = np.abs(matrix)
    if not (np.allclose(absm.sum(0), 1) and np.allclose(absm.sum(1), 1)):
        return None
    if not np.allclose(matrix[absm > 0.5], 1):
        return None
    dest = np.argmax(absm, axis=0)  # local basis j -> dest[j]
    idx = np.arange(2**n)
    local = np.zeros_like(idx)
    for k, q in enumerate(qubits):
        local |= ((idx >> q) & 1) << k
    new_local = dest[local]
    out = idx.copy()
    for k, q in enumerate(qubits):
        out &= ~(1 << q)
        out |= ((new_local >> k) & 1) << q
    # new_state[out[i]] = state[i]  =>  new_state = state[:, inverse(out)]
    perm = np.empty_like(out)
    perm[out] = idx
    return perm


def _full_diagonal(diag: np.ndarray, qubits: Sequence[int], n: int) -> np.ndarray:
    idx = np.arange(2**n)
    local = np.zeros_like(idx)
    for k, q in enumerate(qubits):
        local |= ((idx >> q) & 1) << k
    return diag[local]


def compile_circuit(circuit: QuantumCircuit, parameters: Sequence[Parameter] | None = None) -> Program:
    """Compile ``circuit`` for :mod:`.batched_statevector`.

    Args:
        circuit: a circuit without measurements or classical control.
        parameters: the column order of the parameter arrays (default: ``circuit.parameters``,
            the order the V2 primitives use for a PUB's parameter values).

    Raises:
        ValueError: for non-unitary instructions (measure, reset, conditionals).
    """
    params = tuple(circuit.parameters if parameters is None else parameters)
    index = {p: i for i, p in enumerate(params)}
    names = {inst.operation.name for inst in circuit.data}
    if names - set(SUPPORTED_GATES) - {"barrier"}:
        circuit = transpile(circuit, basis_gates=SUPPORTED_GATES, optimization_level=0)
    n = circuit.num_qubits
    ops: list[Op] = []
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        if name == "barrier":
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if inst.clbits or name in ("measure", "reset"):
            raise ValueError(f"cannot simulate {name!r}: estimator circuits must be unitary")
        if name in _ROTATIONS:
            ops.append(Op("rot", name, qubits, angle=compile_angle(op.params[0], index)))
            continue
        matrix = np.asarray(op.to_matrix(), dtype=complex)
        if name == "id":
            continue
        perm = _permutation(matrix, qubits, n)
        if perm is not None:
            inv = np.argsort(perm)
            ops.append(Op("perm", name, qubits, matrix=matrix, perm=perm, inv_perm=inv))
        elif np.allclose(matrix, np.diag(np.diag(matrix))):
            ops.append(Op("diag", name, qubits, matrix=matrix, diag=_full_diagonal(np.diag(matrix), qubits, n)))
        else:
            ops.append(Op("fixed", name, qubits, matrix=matrix))
    return Program(n, params, tuple(_fuse(ops)))


def _fuse(ops: list[Op]) -> list[Op]:
    """Merge gates without changing the circuit's unitary, so that fewer passes touch the state.

    * A rotation directly following the same rotation on the same qubits (nothing in between
      touches them) becomes one rotation whose angle is the sum: RY(x)·RY(θ) = RY(x + θ). The
      angle keeps both partial derivatives, so gradients are unchanged. Angle encoding followed
      by an RY ansatz layer is the common case.
    * Consecutive permutations (a CX entangling layer) compose into one index map.
    """
    fused: list[Op] = []
    last: dict[int, int] = {}  # qubit -> index in ``fused`` of the last op touching it
    for op in ops:
        prev = {last.get(q) for q in op.qubits}
        if op.kind == "rot" and len(prev) == 1 and None not in prev:
            i = prev.pop()
            before = fused[i]
            if before.kind == "rot" and before.name == op.name and before.qubits == op.qubits:
                fused[i] = Op("rot", op.name, op.qubits, angle=_sum_angles(before.angle, op.angle))
                continue
        if op.kind == "perm" and fused and fused[-1].kind == "perm":
            before = fused[-1]
            perm = before.perm[op.perm]  # state[p1] then [p2] == state[p1[p2]]
            qubits = tuple(sorted(set(before.qubits) | set(op.qubits)))
            fused[-1] = Op("perm", f"{before.name}+{op.name}", qubits, perm=perm, inv_perm=np.argsort(perm))
            for q in qubits:
                last[q] = len(fused) - 1
            continue
        fused.append(op)
        for q in op.qubits:
            last[q] = len(fused) - 1
    return fused


def _sum_angles(a: Angle, b: Angle) -> Angle:
    return Angle(lambda v, f=a.value, g=b.value: f(v) + g(v), a.partials + b.partials)


def generator(name: str) -> np.ndarray:
    """The generator G of rotation ``name`` (dU/dθ = -i G U)."""
    return _GENERATORS[name]
