"""Diagonal two-qubit blocks fused into one gate before a circuit becomes a chain.

Why: on a matrix-product chain the bond across a cut is the product of the operator-Schmidt
ranks of the gates that cross it. The ZZ feature map writes each of its entanglers as
CX·P(φ)·CX: two CX of rank 2 each, so bond 4 per cut, where the block itself is the diagonal gate
diag(1, e^{iφ}, e^{iφ}, 1) = e^{iφ/2}·RZZ(φ) of rank 2. Fused, every ZZ head's bond halves per
cut (ZZ map + RealAmplitudes reps 2: bond 16 -> 8).

:func:`fuse_diagonal_blocks` finds C · D · C⁻¹ where C is a fixed two-qubit permutation (CX,
SWAP, ...), D any run of diagonal gates on the same two qubits with at most one rotation among
them (gates on other qubits in between commute with the block and are left in place), and
writes the block as the diagonal gate it is: C⁻¹ D C is D with its entries permuted. The result
takes the existing chain gates: an ``rzz`` (or ``rz`` on one qubit) whose generator is the block's
up to a constant (a global phase, which no ⟨Z⟩ sees and the shift rule ignores), beside one-qubit
fixed diagonals for the block's constant part. A block that does not reduce to those (a
rotation whose permuted generator is a projector, a non-product constant part) is left as it
was.

Where it applies: the exact chain (:mod:`.mps`) and the noisy chain (:mod:`.noisy_chain`),
which both build through :func:`~.mps.build_chain`. Under noise, a Pauli slot after a noisy
gate is not diagonal, so a block is fused only when no error sits inside it (noiseless gates:
the noise model's errors stay attached to the gates that carry them). The statevector
simulator already runs such a block as one diagonal layer (:mod:`.compiler` moves diagonals
through permutations), and the statevector trajectories (:mod:`.trajectories`) keep every gate,
since each carries its own error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .angles import Angle, Const

# Diagonals of the diagonal rotations' generators (dU/dθ = -iGU), little-endian over their qubits.
_DIAGONAL_GENERATORS = {
    "rz": np.array([0.5, -0.5]),
    "p": np.array([0.0, -1.0]),
    "rzz": np.array([0.5, -0.5, -0.5, 0.5]),
    "cp": np.array([0.0, 0.0, 0.0, -1.0]),
}
_BITS = np.array([[0, 1, 0, 1], [0, 0, 1, 1]])  # bit of qubit a (row 0) and b (row 1) of basis k
_SIGN_A, _SIGN_B = 1.0 - 2 * _BITS[0], 1.0 - 2 * _BITS[1]  # Z's eigenvalue on qubit a, b
_Z_A, _Z_B, _ZZ = _SIGN_A / 2, _SIGN_B / 2, _SIGN_A * _SIGN_B / 2
_X = np.array([[0.0, 1.0], [1.0, 0.0]])


def fuse_diagonal_blocks(specs: Sequence) -> list:
    """``specs`` (:class:`~.mps.GateSpec`) with every fusable C·D·C⁻¹ block replaced by its
    diagonal gates, at the position of its first C."""
    out, used = [], set()
    for i, spec in enumerate(specs):
        if i in used:
            continue
        fused = _block_at(specs, i) if _permutation(spec) is not None else None
        if fused is None:
            out.append(spec)
            continue
        members, gates = fused
        used.update(members)
        out.extend(gates)
    return out


def _permutation(spec) -> np.ndarray | None:
    """For a fixed two-qubit permutation gate, π with C|k⟩ = |π(k)⟩ (little-endian over its
    qubits); else None."""
    m = spec.matrix
    if m is None or spec.slot >= 0 or len(spec.qubits) != 2 or m.shape != (4, 4):
        return None
    if not (np.allclose(np.abs(m).sum(0), 1) and np.allclose(np.abs(m).sum(1), 1) and np.allclose(m[np.abs(m) > 0.5], 1)):
        return None
    return np.argmax(np.abs(m), axis=0)


def _oriented(spec, a: int, b: int) -> np.ndarray:
    """A two-qubit gate's matrix little-endian over (a, b)."""
    if spec.qubits == (a, b):
        return spec.matrix
    order = [0, 2, 1, 3]
    return spec.matrix[order][:, order]


def _diagonal(spec, a: int, b: int) -> tuple[np.ndarray | None, np.ndarray | None] | None:
    """(fixed diagonal (4,), rotation generator (4,)) of a gate inside {a, b}, over (a, b);
    None when it is not diagonal."""
    if spec.slot >= 0:
        return None
    which = [0 if q == a else 1 for q in spec.qubits]
    if spec.angle is not None:
        gen = _DIAGONAL_GENERATORS.get(spec.name)
        if gen is None:
            return None
        index = sum(_BITS[w] << k for k, w in enumerate(which))
        return None, gen[index]
    m = spec.matrix
    if not np.allclose(m, np.diag(np.diag(m))):
        return None
    index = sum(_BITS[w] << k for k, w in enumerate(which))
    return np.diag(m)[index], None


def _block_at(specs: Sequence, i: int):
    """(indices, replacement specs) of the block C·D·C⁻¹ that opens at ``i``, or None."""
    opening = specs[i]
    a, b = opening.qubits
    pi = _permutation(opening)
    inverse = _oriented(opening, a, b).conj().T
    fixed, rotation, members = np.ones(4, dtype=complex), None, [i]
    for j in range(i + 1, len(specs)):
        spec = specs[j]
        if not set(spec.qubits) & {a, b}:
            continue  # another pair's gate commutes with the block
        if not set(spec.qubits) <= {a, b}:
            return None
        if spec.matrix is not None and len(spec.qubits) == 2 and spec.slot < 0 and \
                np.allclose(_oriented(spec, a, b), inverse):
            gates = _replacement(opening, a, b, fixed[pi], rotation, pi)
            return None if gates is None else (members + [j], gates)
        parts = _diagonal(spec, a, b)
        if parts is None:
            return None
        if parts[1] is not None:
            if rotation is not None:
                return None  # two angles in one block: not one rotation
            rotation = (spec, parts[1])
        else:
            fixed = fixed * parts[0]
        members.append(j)
    return None


def _replacement(opening, a: int, b: int, fixed: np.ndarray, rotation, pi: np.ndarray) -> list | None:
    """The block's gates. Any diagonal on two qubits is a phase times one-qubit diagonals times
    exp(iγ·Z⊗Z) (its log-phases in the basis 1, Z_a, Z_b, Z_aZ_b): the one-qubit parts are
    ``diag`` gates of rank 1, and γ goes into the rotation: the angle of an ``rzz``, the fixed
    factor of a ``cp`` (between X gates, for a generator that projects on one basis state), or,
    beside an ``rz``, one fixed rank-2 gate. Every block is then one gate of rank 2 at most."""
    phases = np.angle(fixed)
    ca, cb, gamma = phases @ _SIGN_A / 4, phases @ _SIGN_B / 4, phases @ (_SIGN_A * _SIGN_B) / 4
    gates = [replace(opening, name="diag", qubits=(q,), matrix=np.diag(np.exp(1j * c * np.array([1.0, -1.0]))),
                     angle=None) for q, c in ((a, ca), (b, cb)) if not np.isclose(np.cos(c), 1)]
    if rotation is not None:
        spec, gen = rotation
        gen = gen[pi]
        gen = gen - (gen.max() + gen.min()) / 2  # a constant is a global phase
        for pattern, name, qubits in ((_ZZ, "rzz", (a, b)), (_Z_A, "rz", (a,)), (_Z_B, "rz", (b,))):
            for sign in (1, -1):
                if np.allclose(gen, sign * pattern):
                    angle = spec.angle if sign == 1 else _negated(spec.angle)
                    if name == "rzz":  # exp(iγ Z⊗Z) = RZZ(-2γ): one gate
                        angle, gamma = _shifted(angle, -2 * gamma), 0.0
                    rotated = [replace(spec, name=name, qubits=qubits, angle=angle, matrix=None)]
                    break
            else:
                continue
            break
        else:
            if np.allclose(gen, 0):
                rotated = []  # the rotation is a global phase here
            else:  # ±(projector on basis state k) up to a constant: CP conjugated by X's
                lone = np.flatnonzero(~np.isclose(gen, np.median(gen)))
                if len(lone) != 1:
                    return None
                k = int(lone[0])
                flips = [replace(opening, name="x", qubits=(q,), matrix=_X, angle=None)
                         for q, bit in ((a, _BITS[0][k]), (b, _BITS[1][k])) if bit == 0]
                angle = spec.angle if gen[k] < 0 else _negated(spec.angle)  # CP's generator is -P11
                # exp(iγ Z⊗Z) rides on the CP as its fixed factor (between the X's, γ changes sign
                # per flip): one rank-2 gate for the whole block.
                inner = gamma * (-1) ** len(flips)
                factor = None if np.isclose(np.sin(2 * inner), 0) and np.isclose(np.cos(inner), 1) else \
                    np.diag(np.exp(1j * inner * _SIGN_A * _SIGN_B))
                gamma = 0.0
                rotated = flips + [replace(spec, name="cp", qubits=(a, b), angle=angle, matrix=factor)] + flips
        gates += rotated
    if not np.isclose(np.sin(2 * gamma), 0):  # exp(iγ Z⊗Z), rank 2
        gates.append(replace(opening, name="diag", qubits=(a, b), matrix=np.diag(np.exp(1j * gamma * _SIGN_A * _SIGN_B)),
                             angle=None))
    elif not np.isclose(np.cos(gamma), 1) and not np.isclose(np.cos(gamma), -1):  # ±i Z⊗Z: two Z gates
        gates += [replace(opening, name="z", qubits=(q,), matrix=np.diag([1.0, -1.0]), angle=None) for q in (a, b)]
    return gates


def _shifted(angle: Angle, offset: float) -> Angle:
    if isinstance(angle.value, Const):
        return Angle(Const(angle.value.value + offset), angle.partials)
    return Angle(lambda v, f=angle.value: f(v) + offset, angle.partials)


def _negated(angle: Angle) -> Angle:
    def negate(f):
        return Const(-f.value) if isinstance(f, Const) else (lambda v, f=f: -f(v))

    return Angle(negate(angle.value), tuple((j, negate(p)) for j, p in angle.partials))
