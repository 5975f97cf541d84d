"""Compile a parametrized QuantumCircuit into a program for the batched statevector simulator.

The stock primitives bind and simulate one parameter set at a time; here a circuit is compiled
ONCE into a short list of layers that are then applied to a whole batch of parameter sets.
Angles may be any ParameterExpression (the ZZ feature map uses products of inputs): each is
turned into a vectorized numpy function of the parameter array, together with its partial
derivatives, for the adjoint gradient's chain rule.

Gates are grouped into four kinds of layer, chosen so that every layer is one or two passes over
the state and every gate inside a layer commutes with the others (so the adjoint method can take
all of a layer's derivatives at one point of its sweep):

* :class:`LocalLayer` -- one-qubit gates on distinct qubits (an RY layer, H on every qubit).
* :class:`DiagonalLayer` -- any number of diagonal gates (RZ, P, CZ, RZZ, ...): one phase vector.
* :class:`Permutation` -- a basis permutation (X, CX, SWAP): a whole CX entangling layer is one.
* :class:`DenseGate` -- anything else (RXX, CRY, ECR, ...), applied as a k-qubit matrix.

A gate is moved back past layers that do not touch its qubits, into the earliest layer of its
kind that can take it; a diagonal gate is also moved back through a permutation into the
diagonal layer before it (``D·P = P·(P⁻¹DP)``). The ZZ feature map's CX·P·CX ladders become one
diagonal layer that way, and angle encoding followed by an RY layer becomes one RY layer
(``RY(x)·RY(θ) = RY(x + θ)``, keeping both partial derivatives).

Conventions: qubit q is bit q of the basis index (Qiskit's little-endian order); a k-qubit
gate matrix is indexed little-endian over its qargs, as ``Gate.to_matrix()`` returns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter, ParameterExpression

# Gates applied natively. Anything else is first rewritten into these by the transpiler.
_ROTATIONS = {"rx", "ry", "rz", "p", "rzz", "rxx", "ryy", "crx", "cry", "crz", "cp"}
_FIXED = {"id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "ecr"}
SUPPORTED_GATES = sorted(_ROTATIONS | _FIXED)

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
DIAGONAL_GENERATORS = {
    name: np.diag(g).real.copy() for name, g in _GENERATORS.items() if np.allclose(g, np.diag(np.diag(g)))
}
# Rotations that are real matrices for every angle, and whose -iG is real too.
_REAL_ROTATIONS = {"ry", "cry"}


def generator(name: str) -> np.ndarray:
    """The generator G of rotation ``name`` (dU/dθ = -i G U)."""
    return _GENERATORS[name]


def rotation_matrices(name: str, theta: np.ndarray) -> np.ndarray:
    """U(θ) = exp(-iθG) for each angle in ``theta``: shape theta.shape + (d, d).

    Real (float64) for the real rotations (RY, CRY), complex otherwise.
    """
    if np.ndim(theta) == 0:  # one matrix for the whole batch: skip the array machinery
        c, s = math.cos(theta / 2), math.sin(theta / 2)
        if name == "ry":
            return np.array([[c, -s], [s, c]])
        if name == "rx":
            return np.array([[c, -1j * s], [-1j * s, c]])
    theta = np.asarray(theta, dtype=float)
    if name in ("ry", "rx"):  # the workhorses: closed form
        c, s = np.cos(theta / 2), np.sin(theta / 2)
        if name == "ry":
            return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
        s = -1j * s
        return np.stack([np.stack([c + 0j, s], -1), np.stack([s, c + 0j], -1)], -2)
    w, v = _EIGEN[name]
    phases = np.exp(-1j * np.multiply.outer(theta, w))  # (..., d)
    mats = np.einsum("ij,...j,kj->...ik", v, phases, v.conj())
    return mats.real.copy() if name in _REAL_ROTATIONS else mats


# --------------------------------------------------------------------------- angles


class _Const:
    """A constant function of the parameter array (a callable, so that it can stand wherever an
    angle or partial derivative function can; ``value`` lets callers skip the multiply)."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.full(values.shape[0], self.value)


@dataclass(frozen=True)
class Angle:
    """A gate angle as a vectorized function of the circuit's parameter array (batch, P)."""

    value: Callable[[np.ndarray], np.ndarray]
    # (parameter index, d angle / d parameter as a function of the parameter array)
    partials: tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]

    @property
    def columns(self) -> tuple[int, ...]:
        """The parameter columns this angle depends on."""
        return tuple(j for j, _ in self.partials)


def _column(j: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: v[:, j]


def compile_angle(expr, index: dict[Parameter, int]) -> Angle:
    """Turn a gate parameter (float or ParameterExpression) into an :class:`Angle`.

    Partial derivatives are taken by sympy on ``expr.sympify()``: qiskit's own
    ``ParameterExpression.gradient`` sympifies wrongly for plain products (d(a·b)/db came back
    as ``b``, qiskit 2.6).
    """
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        return Angle(_Const(float(expr)), ())
    if isinstance(expr, Parameter):
        j = index[expr]
        return Angle(_column(j), ((j, _Const(1.0)),))
    import sympy

    params = sorted(expr.parameters, key=lambda p: index[p])
    symbols = {p: sympy.Symbol(p.name) for p in params}
    body = expr.sympify()
    partials = []
    for p in params:
        d = sympy.diff(body, symbols[p])
        partials.append((index[p], _Const(float(d)) if not d.free_symbols else _lambdify(d, symbols, index)))
    if all(isinstance(f, _Const) for _, f in partials):
        # a·x + b: evaluated as a dot product, with no symbolic machinery per call.
        cols = np.array([j for j, _ in partials])
        coeffs = np.array([f.value for _, f in partials])
        offset = float(body.subs({s: 0 for s in symbols.values()}))
        return Angle(lambda v, c=cols, a=coeffs, b=offset: v[:, c] @ a + b, tuple(partials))
    return Angle(_lambdify(body, symbols, index), tuple(partials))


def _lambdify(body, symbols: dict, index: dict[Parameter, int]):
    """A sympy expression of the parameters as a vectorized function of the parameter array."""
    import sympy

    used = [p for p, s in symbols.items() if s in body.free_symbols]
    fn = sympy.lambdify([symbols[p] for p in used], body, modules="numpy", dummify=True)
    cols = [index[p] for p in used]

    def value(v: np.ndarray) -> np.ndarray:
        out = fn(*(v[:, j] for j in cols))
        return np.broadcast_to(np.asarray(out, dtype=float), (v.shape[0],))

    return value


def _sum_angles(a: Angle, b: Angle) -> Angle:
    if isinstance(a.value, _Const) and isinstance(b.value, _Const):
        return Angle(_Const(a.value.value + b.value.value), ())
    return Angle(lambda v, f=a.value, g=b.value: f(v) + g(v), a.partials + b.partials)


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Rotation:
    """exp(-iθG) for generator ``name``, θ = ``angle(values)``."""

    name: str
    angle: Angle


@dataclass(frozen=True)
class LocalGate:
    """A one-qubit gate of a :class:`LocalLayer`: a fixed 2x2 ``matrix`` or a ``rotation``
    (RX or RY: the one-qubit rotations with an off-diagonal generator)."""

    qubit: int
    matrix: np.ndarray | None = None
    rotation: Rotation | None = None


@dataclass(frozen=True)
class LocalLayer:
    """One-qubit gates on distinct qubits (they commute)."""

    gates: tuple[LocalGate, ...]
    kind: str = field(default="local", init=False)

    @property
    def qubits(self) -> tuple[int, ...]:
        return tuple(g.qubit for g in self.gates)

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        return tuple(g.rotation for g in self.gates if g.rotation is not None)


@dataclass(frozen=True)
class DiagonalLayer:
    """``diag(phase) · exp(-i Σ_g θ_g diag(generators[g]))``: diagonal gates (they commute).

    ``phase`` (N,) is the product of the fixed diagonal gates (None: all ones); row g of
    ``generators`` (G, N) is the full diagonal of rotation g's generator.
    """

    qubits: tuple[int, ...]
    phase: np.ndarray | None
    generators: np.ndarray  # (G, N) real
    rotations: tuple[Rotation, ...]
    kind: str = field(default="diag", init=False)


@dataclass(frozen=True)
class Permutation:
    """A basis permutation: new_state = state[perm]."""

    qubits: tuple[int, ...]
    perm: np.ndarray
    inv_perm: np.ndarray
    kind: str = field(default="perm", init=False)
    rotations: tuple = field(default=(), init=False)


@dataclass(frozen=True)
class DenseGate:
    """A k-qubit gate: a fixed ``matrix`` (d, d) or a ``rotation`` (RXX, CRY, ...)."""

    name: str
    qubits: tuple[int, ...]
    matrix: np.ndarray | None = None
    rotation: Rotation | None = None
    kind: str = field(default="dense", init=False)

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        return () if self.rotation is None else (self.rotation,)


Op = LocalLayer | DiagonalLayer | Permutation | DenseGate


@dataclass(frozen=True)
class Program:
    num_qubits: int
    parameters: tuple[Parameter, ...]  # column order of the parameter arrays
    ops: tuple[Op, ...]

    @cached_property
    def is_real(self) -> bool:
        """True when every gate is a real matrix (RY rotations, CX, H, Z, ...): the state then
        stays real, and the simulator works in float64 (half the memory traffic of complex)."""
        return all(_is_real(op) for op in self.ops)

    @cached_property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @cached_property
    def rotations(self) -> tuple[Rotation, ...]:
        """Every rotation, in program order."""
        return tuple(r for op in self.ops for r in op.rotations)

    @cached_property
    def angle_table(self) -> AngleTable:
        """Every rotation angle at once: linear ones are one matrix product (see AngleTable)."""
        return _angle_table(self.rotations, len(self.parameters))

    @cached_property
    def chain_rules(self) -> tuple[ChainRule | None, ...]:
        """Per op, how its rotation angles depend on the parameters (None: they do not)."""
        return tuple(_chain_rule(op, len(self.parameters)) for op in self.ops)


@dataclass(frozen=True)
class AngleTable:
    """The angles of all rotations (columns g, in ``Program.rotations`` order) for a parameter
    array (B, P): ``values @ linear + offset``, then the ``nonlinear`` ones overwritten."""

    index: dict[int, int]  # id(rotation) -> g
    linear: np.ndarray  # (P, G)
    offset: np.ndarray  # (G,)
    nonlinear: tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]
    depends: np.ndarray  # (G, P) bool: angle g depends on parameter j

    def angles(self, values: np.ndarray) -> np.ndarray:
        theta = values @ self.linear + self.offset
        for g, fn in self.nonlinear:
            theta[:, g] = fn(values)
        return theta


def _angle_table(rotations: Sequence[Rotation], num_parameters: int) -> AngleTable:
    G, P = len(rotations), num_parameters
    linear, offset = np.zeros((P, G)), np.zeros(G)
    depends = np.zeros((G, P), dtype=bool)
    nonlinear = []
    for g, rot in enumerate(rotations):
        angle = rot.angle
        for j, _ in angle.partials:
            depends[g, j] = True
        if all(isinstance(f, _Const) for _, f in angle.partials):
            for j, f in angle.partials:
                linear[j, g] += f.value
            offset[g] = float(angle.value(np.zeros((1, P)))[0])
        else:
            nonlinear.append((g, angle.value))
    return AngleTable({id(r): g for g, r in enumerate(rotations)}, linear, offset, tuple(nonlinear), depends)


@dataclass(frozen=True)
class ChainRule:
    """d(angle_r)/d(parameter_j) for one layer's rotations that depend on parameters.

    Constant partials (every angle the head circuits use is linear in the parameters) form the
    matrix ``constant`` (R, P), so the chain rule is one matrix product; others are ``varying``
    (r, j, partial), evaluated per call (the ZZ feature map's products of inputs).
    """

    rotations: tuple[Rotation, ...]
    constant: np.ndarray
    varying: tuple[tuple[int, int, Callable[[np.ndarray], np.ndarray]], ...]


def _chain_rule(op, num_parameters: int) -> ChainRule | None:
    rotations = tuple(r for r in op.rotations if r.angle.partials)
    if not rotations:
        return None
    constant = np.zeros((len(rotations), num_parameters))
    varying = []
    for r, rot in enumerate(rotations):
        for j, partial in rot.angle.partials:
            if isinstance(partial, _Const):
                constant[r, j] += partial.value
            else:
                varying.append((r, j, partial))
    return ChainRule(rotations, constant, tuple(varying))


def _is_real(op) -> bool:
    if op.kind == "perm":
        return True
    if op.kind == "diag":
        return not op.rotations and (op.phase is None or np.isrealobj(op.phase))
    if op.kind == "local":
        return all(
            (g.rotation is not None and g.rotation.name in _REAL_ROTATIONS)
            or (g.matrix is not None and np.isrealobj(g.matrix))
            for g in op.gates
        )
    return (op.rotation is not None and op.rotation.name in _REAL_ROTATIONS) or (
        op.matrix is not None and np.isrealobj(op.matrix)
    )


# --------------------------------------------------------------------------- compilation


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
    if names & {"measure", "reset"} or any(inst.clbits for inst in circuit.data):
        raise ValueError("cannot simulate measurements, resets or classical control: estimator circuits must be unitary")
    if names - set(SUPPORTED_GATES) - {"barrier"}:
        circuit = transpile(circuit, basis_gates=SUPPORTED_GATES, optimization_level=0)
    n = circuit.num_qubits
    layers: list[_Builder] = []
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        if name in ("barrier", "id"):
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if name in _ROTATIONS:
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
    return Program(n, params, tuple(op for b in layers if (op := _freeze(b, n)) is not None))


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
            gates[q] = LocalGate(q, rotation=Rotation(rot.name, _sum_angles(prev.rotation.angle, rot.angle)))
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
        target, conj = layers[i - 1], layers[i].data["inv_perm"]
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


def _add_permutation(layers: list[_Builder], qubits, perm: np.ndarray) -> None:
    i = _blocker(layers, qubits)
    target = layers[i] if i >= 0 and layers[i].kind == "perm" else None
    if target is None:
        target = next((layers[j] for j in range(i + 1, len(layers)) if layers[j].kind == "perm"), None)
    if target is None:
        layers.append(_Builder("perm", set(qubits), perm=perm, inv_perm=np.argsort(perm)))
        return
    composed = target.data["perm"][perm]  # state[p1] then [p2] == state[p1[p2]]
    target.data.update(perm=composed, inv_perm=np.argsort(composed))
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
        return Permutation(q, b.data["perm"], b.data["inv_perm"])
    if b.kind == "diag":
        phase, terms = b.data["phase"], b.data["terms"]
        if phase is not None and np.allclose(phase, 1):
            phase = None
        if phase is None and not terms:
            return None
        gens = np.array([t[0] for t in terms]).reshape(len(terms), 1 << n)
        return DiagonalLayer(q, phase, gens, tuple(t[1] for t in terms))
    return DenseGate(b.data["name"], tuple(b.data["order"]), b.data["matrix"], b.data["rotation"])
