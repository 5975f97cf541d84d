"""The native rotation gates: their generators and matrices, and their angles over a batch.

A rotation is exp(-iθG) for a generator G of :data:`GENERATORS`, with θ an
:class:`~.angles.Angle` of the circuit's parameters. Both simulators take their rotations from
here: the batched statevector's layers (:mod:`.layers`) and the matrix-product-state chain
(:mod:`.mps`), which share the :class:`AngleTable` (every angle of a circuit at once) and the
partial derivatives (:func:`split_partials`) their gradients multiply by.

Conventions: a k-qubit generator or gate matrix is indexed little-endian over its qargs, as
``Gate.to_matrix()`` returns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .angles import Angle, Const

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
GENERATORS: dict[str, np.ndarray] = {
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
_EIGEN = {name: np.linalg.eigh(g) for name, g in GENERATORS.items()}
DIAGONAL_GENERATORS = {
    name: np.diag(g).real.copy() for name, g in GENERATORS.items() if np.allclose(g, np.diag(np.diag(g)))
}
# Rotations that are real matrices for every angle, and whose -iG is real too.
REAL_ROTATIONS = {"ry", "cry"}


def generator(name: str) -> np.ndarray:
    """The generator G of rotation ``name`` (dU/dθ = -i G U)."""
    return GENERATORS[name]


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
    return mats.real.copy() if name in REAL_ROTATIONS else mats


@dataclass(frozen=True)
class Rotation:
    """exp(-iθG) for generator ``name``, θ = ``angle(values)``."""

    name: str
    angle: Angle


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


def angle_table(rotations: Sequence[Rotation], num_parameters: int) -> AngleTable:
    """The :class:`AngleTable` of ``rotations`` (column g: ``rotations[g]``) over ``num_parameters``
    parameters: the angles whose partials are all constant go into ``linear`` and ``offset``."""
    G, P = len(rotations), num_parameters
    linear, offset = np.zeros((P, G)), np.zeros(G)
    depends = np.zeros((G, P), dtype=bool)
    nonlinear = []
    for g, rot in enumerate(rotations):
        angle = rot.angle
        for j, _ in angle.partials:
            depends[g, j] = True
        if all(isinstance(f, Const) for _, f in angle.partials):
            for j, f in angle.partials:
                linear[j, g] += f.value
            offset[g] = float(angle.value(np.zeros((1, P)))[0])
        else:
            nonlinear.append((g, angle.value))
    return AngleTable({id(r): g for g, r in enumerate(rotations)}, linear, offset, tuple(nonlinear), depends)


def split_partials(rotations: Sequence[Rotation], num_parameters: int) -> tuple[np.ndarray, tuple]:
    """d angle_r / d parameter_j for ``rotations``: the constant entries (R, P), and the varying
    ones (r, j, partial) evaluated per call."""
    constant = np.zeros((len(rotations), num_parameters))
    varying = []
    for r, rot in enumerate(rotations):
        for j, partial in rot.angle.partials:
            if isinstance(partial, Const):
                constant[r, j] += partial.value
            else:
                varying.append((r, j, partial))
    return constant, tuple(varying)
