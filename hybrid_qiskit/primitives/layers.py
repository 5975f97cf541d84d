"""The program the batched simulator runs: native gates, and the four kinds of layer.

Gates are grouped (by :mod:`.compiler`) into four kinds of layer, chosen so that every layer is
one or two passes over the state and every gate inside a layer commutes with the others (so the
adjoint method can take all of a layer's derivatives at one point of its sweep):

* :class:`LocalLayer` -- one-qubit gates on distinct qubits (an RY layer, H on every qubit).
* :class:`DiagonalLayer` -- any number of diagonal gates (RZ, P, CZ, RZZ, ...): one phase vector.
* :class:`Permutation` -- a basis permutation (X, CX, SWAP): a whole CX entangling layer is one.
* :class:`DenseGate` -- anything else (RXX, CRY, ECR, ...), applied as a k-qubit matrix.

Conventions: qubit q is bit q of the basis index (Qiskit's little-endian order); a k-qubit
gate matrix is indexed little-endian over its qargs, as ``Gate.to_matrix()`` returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from qiskit.circuit import Parameter

from .rotations import REAL_ROTATIONS, AngleTable, Rotation, angle_table, split_partials

if TYPE_CHECKING:
    from .mps import Chain

# Gates applied natively. Anything else is first rewritten into these by the transpiler.
ROTATIONS = {"rx", "ry", "rz", "p", "rzz", "rxx", "ryy", "crx", "cry", "crz", "cp"}
_FIXED = {"id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "ecr"}
SUPPORTED_GATES = sorted(ROTATIONS | _FIXED)


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
    # The layers, or a function that builds them on first use of :attr:`ops`: a circuit that
    # runs as a chain never needs them, and at 28 qubits their index maps are gigabytes.
    build: tuple[Op, ...] | Callable[[], tuple[Op, ...]] = field(repr=False, compare=False)
    # The same circuit as a matrix-product-state chain (:mod:`.mps`), where one applies.
    chain: Chain | None = field(default=None, compare=False, repr=False)

    @cached_property
    def ops(self) -> tuple[Op, ...]:
        return self.build() if callable(self.build) else self.build

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
        return angle_table(self.rotations, len(self.parameters))

    @cached_property
    def angle_jacobians(self) -> tuple[AngleJacobian | None, ...]:
        """Per op, how its rotation angles depend on the parameters (None: they do not)."""
        return tuple(_angle_jacobian(op, len(self.parameters)) for op in self.ops)


@dataclass(frozen=True)
class AngleJacobian:
    """d(angle_r)/d(parameter_j) for one layer's rotations that depend on parameters: what the
    gradients multiply a layer's angle derivatives by (the chain rule) to get parameter derivatives.

    Constant partials (every angle the head circuits use is linear in the parameters) form the
    matrix ``constant`` (R, P), so the chain rule is one matrix product; others are ``varying``
    (r, j, partial), evaluated per call (the ZZ feature map's products of inputs).
    """

    rotations: tuple[Rotation, ...]
    constant: np.ndarray
    varying: tuple[tuple[int, int, Callable[[np.ndarray], np.ndarray]], ...]


def _angle_jacobian(op, num_parameters: int) -> AngleJacobian | None:
    rotations = tuple(r for r in op.rotations if r.angle.partials)
    if not rotations:
        return None
    return AngleJacobian(rotations, *split_partials(rotations, num_parameters))


def _is_real(op) -> bool:
    if op.kind == "perm":
        return True
    if op.kind == "diag":
        return not op.rotations and (op.phase is None or np.isrealobj(op.phase))
    if op.kind == "local":
        return all(
            (g.rotation is not None and g.rotation.name in REAL_ROTATIONS)
            or (g.matrix is not None and np.isrealobj(g.matrix))
            for g in op.gates
        )
    return (op.rotation is not None and op.rotation.name in REAL_ROTATIONS) or (
        op.matrix is not None and np.isrealobj(op.matrix)
    )

