"""Exact matrix-product-state simulation of circuits of one- and two-qubit gates.

Why: the statevector costs 2**n amplitudes per row, so at 16-20 qubits a training step is
seconds, whatever the constant factors. But every head circuit we ship is a chain: angle or ZZ
feature map, RealAmplitudes or EfficientSU2 with linear entanglement, so every two-qubit gate
acts on qubits q and q+1. As a matrix product state, qubit q holds a tensor A_q (l, 2, r), and a
two-qubit gate on (q, q+1) is split exactly into Σ_s L_s ⊗ R_s (its operator-Schmidt terms,
blocks of its matrix: 2 for CX, CZ, CP, RZZ), which multiplies the bond between them by the
number of terms. Nothing is truncated, so the result is the exact state: the bond dimension is
the product of the terms of the gates across each cut, 4 for RealAmplitudes reps 2 after angle
encoding. A gate between distant qubits (circular entanglement's CX(n-1, 0)) is split the same
way, its term index carried through the sites between them: the bond grows by its number of
terms on the cuts it crosses, exactly what a swap network would give without the swaps' own
terms. Diagonal blocks such as the ZZ map's CX·P·CX are first fused into one gate of rank 2
(:mod:`.fusion`). A row then costs O(n·χ³) instead of O(2**n): at 20 qubits a few thousand operations
instead of a million amplitudes per gate.

Readouts are c·Z_q (the QNN's): all of them come from one left and one right sweep of
environment matrices.

Gradients are exact. Every rotation taken here has a generator with two eigenvalues one apart
(RX, RY, RZ, P, RZZ, RXX, RYY, CP), so its derivative is the same gate at θ + π up to a factor,
and d⟨Z⟩/dθ = Re⟨ψ|Z|ψ(θ + π)⟩ (Im for P and CP). Because every step above touches only its own
sites, ψ(θ + π) differs from ψ only in the tensor of one of that gate's qubits (the other holds
fixed factors), and each derivative is a few small products against ψ's environments
(:func:`_angle_derivatives`, :mod:`.mps_sweeps`). The chain rule
through each angle's expression then gives the derivative per circuit parameter.

:func:`compile_chain` returns None where this does not apply (a gate on three qubits, a
controlled rotation, whose derivative needs more than one shifted gate) or would not pay (a bond
above :data:`MAX_BOND`); the statevector simulator takes those circuits.
"""

from __future__ import annotations

import ctypes
import math
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from .angles import compile_angle, sum_angles
from .chain_cost import chain_seconds, statevector_seconds
from .fusion import fuse_diagonal_blocks
from .mps_sweeps import ChainState, gradient_overlaps, rows_first, z_values
from .rotations import AngleTable, Rotation, angle_table, rotation_matrices, split_partials

# Rotations whose generator has two eigenvalues one apart: dU/dθ is U(θ + π) up to a factor.
SHIFT_ROTATIONS = ("rx", "ry", "rz", "p", "rzz", "rxx", "ryy", "cp")
_REAL = ("ry",)
# The largest bond built: a guard on memory, not on cost (``auto`` compares costs, see
# :mod:`.chain_cost`). A bond-256 site is 1 MB per row (2 MB complex); such chains are slower
# than the statevector below ~18 qubits anyway.
MAX_BOND = 256
# Row evaluations per block: about 32 MB of site tensors at χ = 4, 20 qubits. Blocks run on
# the calling thread: each numpy call here is tens of microseconds, and two threads measured
# no faster than one (they wait on the interpreter lock between calls).
BLOCK_BYTES = 32 << 20
# The gradient's blocks: its right stacks hold ~n/2 environments per site, so at 32 MB a bond-16,
# 20-qubit batch of 32 would run in two blocks (each numpy call then covers half the rows); at
# 256 MB a bond-64, 16-qubit batch of 32 runs in one, from the forward pass's state (peak 0.2 GB).
GRADIENT_BLOCK_BYTES = 256 << 20
METHODS = ("auto", "statevector", "mps")
# glibc's malloc maps every block over 128 KB from the kernel afresh and hands it back when it is
# freed; a bond-16, 20-qubit gradient allocates ~20 MB in such blocks, so each call took ~5,700
# page faults (40 ms instead of 25, and the faults grow with other processes' memory traffic).
# On the first chain evaluation, blocks below MMAP_THRESHOLD are taken from the heap and up to
# TRIM_THRESHOLD of freed heap is kept for the next call: process-wide, and only where the C
# library is glibc. Set KEEP_FREED_MEMORY to False before the first evaluation to leave malloc be.
KEEP_FREED_MEMORY = True
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit
TRIM_THRESHOLD = 64 << 20
_malloc_tuned: list[bool] = []
_PROJECTOR = ("p", "cp")  # generators −P1, −P11: derivatives from the imaginary part


@dataclass(frozen=True)
class ChainGate:
    """A gate on site ``lo`` (``width`` 1) or on sites ``lo`` and ``hi = lo + width - 1``.

    ``matrix`` (fixed) or ``rotation`` (with ``matrix``, when given, a fixed factor after it);
    two-qubit matrices are little-endian over (lo, hi) (``swapped``: the circuit gave them over
    (hi, lo), and computed ones are reordered). A two-qubit gate is applied as its nonzero 2x2
    ``blocks`` (a, a'): over the lo site's indices when ``split_lo`` (L = |a⟩⟨a'| on lo, R = the
    block on hi), else over hi's. Sites between lo and hi (a gate between distant qubits) pass
    the term index through on both bonds.
    """

    lo: int
    width: int
    matrix: np.ndarray | None
    rotation: Rotation | None
    swapped: bool = False
    split_lo: bool = True
    blocks: tuple[tuple[int, int], ...] = ()
    # Per block of a fixed gate, its 2x2 operator when it is "i" (identity) or "x" (a bit
    # flip, as CX's is): applied as a copy instead of a product.
    kinds: tuple[str, ...] = ()
    # A Pauli slot (one-qubit, ``slot`` >= 0): the Pauli each row drew there, given per call
    # (noisy trajectories, :mod:`.noisy_chain`); the identity for rows that drew none.
    slot: int = -1

    @property
    def varied_site(self) -> int:
        """The site whose factor of this gate depends on its angle: the other site's factors are
        the fixed |x⟩⟨y| of the split (see :func:`_site_tensor`), so a rotation's shift changes
        one site tensor."""
        return self.lo if self.width == 1 or not self.split_lo else self.hi

    @property
    def hi(self) -> int:
        """The last site it acts on (``lo`` for a one-qubit gate)."""
        return self.lo + self.width - 1


@dataclass(frozen=True)
class Chain:
    """A circuit compiled for :func:`chain_expectations` and :func:`chain_gradient`."""

    num_qubits: int
    parameters: tuple[Parameter, ...]
    gates: tuple[ChainGate, ...]
    rotations: tuple[Rotation, ...]  # in gate order: column g of the angle table
    table: AngleTable
    bond: int  # the largest bond dimension reached
    is_real: bool
    # d angle_g / d parameter_j: constant entries (G, P), and varying ones (g, j, partial).
    constant_partials: np.ndarray
    varying_partials: tuple
    # Per site q, the gates acting on it in order: (gate index, "one" | "lo" | "hi").
    site_ops: tuple[tuple[tuple[int, str], ...], ...]
    rotation_gate: tuple[int, ...]  # rotation g -> index of its gate
    gate_rotation: dict[int, int]  # and back
    cut_bonds: tuple[int, ...] = ()  # the bond of each cut (q, q + 1): what every contraction costs

    @cached_property
    def local_rotations(self) -> frozenset[int]:
        """The one-qubit rotations after which no two-qubit gate acts on their qubit (the last
        RealAmplitudes layer): such a rotation and everything after it on its qubit commute with
        every other gate after it, so it can be moved to the end, where it commutes with Z_q for
        every other q: ⟨Z_q⟩ does not depend on its angle, and its derivative is read at its own
        qubit alone (a third of the default head's rotations, a fifth of reps 4's)."""
        out = set()
        for ops in self.site_ops:
            for i, role in reversed(ops):
                if role not in ("one", "pass"):
                    break
                if self.gates[i].rotation is not None:
                    out.add(self.gate_rotation[i])
        return frozenset(out)


def _swap_qubits(m: np.ndarray) -> np.ndarray:
    """A two-qubit matrix (..., 4, 4) with its two qubits exchanged."""
    order = [0, 2, 1, 3]
    return m[..., order, :][..., :, order]


def _tensor(m: np.ndarray) -> np.ndarray:
    """(..., 4, 4) little-endian over (lo, hi) -> (..., p_hi, p_lo, p'_hi, p'_lo)."""
    return m.reshape(*m.shape[:-2], 2, 2, 2, 2)


def _blocks(samples: Sequence[np.ndarray]) -> tuple[bool, tuple[tuple[int, int], ...]]:
    """The operator-Schmidt split with fewer terms: (split over lo, nonzero blocks)."""
    pairs = [(a, b) for a in (0, 1) for b in (0, 1)]
    on_lo = [p for p in pairs if any(np.any(abs(_tensor(m)[..., :, p[0], :, p[1]]) > 1e-14) for m in samples)]
    on_hi = [p for p in pairs if any(np.any(abs(_tensor(m)[..., p[0], :, p[1], :]) > 1e-14) for m in samples)]
    return (True, tuple(on_lo)) if len(on_lo) <= len(on_hi) else (False, tuple(on_hi))


@dataclass(frozen=True)
class GateSpec:
    """A gate to place on a chain: ``name`` and ``qubits`` (sites), and either a fixed
    ``matrix``, a rotation ``angle`` (``name`` one of :data:`SHIFT_ROTATIONS`), or a Pauli
    ``slot`` (one qubit, the Pauli given per row at run time)."""

    name: str
    qubits: tuple[int, ...]
    matrix: np.ndarray | None = None
    angle: object = None
    slot: int = -1


def compile_chain(circuit: QuantumCircuit, parameters: Sequence[Parameter]) -> Chain | None:
    """``circuit`` (already in the simulator's native gates, see :mod:`.compiler`) as a chain,
    or None where a chain does not apply or its bond would exceed :data:`MAX_BOND`."""
    params = tuple(parameters)
    index = {p: i for i, p in enumerate(params)}
    specs = []
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        if name in ("barrier", "id"):
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if op.params and name in SHIFT_ROTATIONS:
            specs.append(GateSpec(name, qubits, angle=compile_angle(op.params[0], index)))
        elif op.params and any(getattr(p, "parameters", None) for p in op.params):
            return None  # a parametrized gate without an exact two-term shift rule
        else:
            specs.append(GateSpec(name, qubits, matrix=np.asarray(op.to_matrix(), dtype=complex)))
    return build_chain(circuit.num_qubits, params, specs)


def build_chain(n: int, params: tuple[Parameter, ...], specs: Sequence[GateSpec]) -> Chain | None:
    """A :class:`Chain` of ``specs`` in order, or None where a gate is on more than two sites or
    the bond would exceed :data:`MAX_BOND`."""
    gates: list[ChainGate] = []
    last: dict[int, int] = {}  # qubit -> index of the last gate on it
    bonds = [1] * max(n - 1, 0)
    rng = np.random.default_rng(0)
    for spec in fuse_diagonal_blocks(specs):  # CX·P·CX and the like: one rank-2 gate, not two CX
        name, qubits, is_rotation = spec.name, list(spec.qubits), spec.angle is not None
        if len(qubits) == 1:
            q = qubits[0]
            if spec.slot >= 0:
                gate = ChainGate(q, 1, None, None, slot=spec.slot)
            elif is_rotation:
                prev = gates[last[q]] if q in last else None
                if prev is not None and prev.width == 1 and prev.rotation is not None and prev.rotation.name == name:
                    # RY(a)·RY(b) = RY(a + b): one shift per qubit and layer, not two.
                    gates[last[q]] = ChainGate(q, 1, None, Rotation(name, sum_angles(prev.rotation.angle, spec.angle)))
                    continue
                gate = ChainGate(q, 1, None, Rotation(name, spec.angle))
            else:
                gate = ChainGate(q, 1, spec.matrix, None)
        elif len(qubits) == 2 and qubits[0] != qubits[1]:
            lo, hi, swapped = min(qubits), max(qubits), qubits[0] > qubits[1]
            # A rotation's ``matrix``, when given, is a fixed factor applied after it (a fused
            # block's constant part, :mod:`.fusion`).
            rotation, matrix = (Rotation(name, spec.angle) if is_rotation else None), spec.matrix
            if is_rotation:
                samples = [rotation_matrices(name, rng.uniform(-3, 3, 2)) for _ in range(2)]
                samples = samples if matrix is None else [matrix @ m for m in samples]
            else:
                samples = [matrix]
            if swapped:
                samples = [_swap_qubits(m) for m in samples]
                matrix = None if matrix is None else _swap_qubits(matrix)
            split_lo, blocks = _blocks(samples)
            # A gate between distant sites: its Schmidt terms cross every cut between them (the
            # sites in between carry the term index through, as a swap network would, exactly).
            for cut in range(lo, hi):
                bonds[cut] *= len(blocks)
                if bonds[cut] > MAX_BOND:
                    return None
            kinds = _kinds(None if is_rotation else matrix, split_lo, blocks)
            gate = ChainGate(lo, hi - lo + 1, matrix, rotation, swapped, split_lo, blocks, kinds)
        else:
            return None
        for q in qubits:
            last[q] = len(gates)
        gates.append(gate)
    gates = [_real_if_possible(g) for g in gates]
    rotations = tuple(g.rotation for g in gates if g.rotation is not None)
    constant, varying = split_partials(rotations, len(params))
    # Pauli slots count as real: Y is applied as i·Y = Z·X, its phase shared by bra and ket.
    is_real = all(g.slot >= 0 or ((g.rotation is None or g.rotation.name in _REAL) and
                                  (g.matrix is None or np.isrealobj(g.matrix))) for g in gates)
    rotation_gate = tuple(i for i, g in enumerate(gates) if g.rotation is not None)
    site_ops: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for i, gate in enumerate(gates):
        if gate.width == 1:
            site_ops[gate.lo].append((i, "one"))
        else:
            site_ops[gate.lo].append((i, "lo"))
            for q in range(gate.lo + 1, gate.hi):
                site_ops[q].append((i, "pass"))
            site_ops[gate.hi].append((i, "hi"))
    return Chain(n, params, tuple(gates), rotations, angle_table(rotations, len(params)), max(bonds, default=1),
                 is_real, constant, varying, tuple(tuple(ops) for ops in site_ops),
                 rotation_gate, {i: g for g, i in enumerate(rotation_gate)}, tuple(bonds))


def _real_if_possible(gate: ChainGate) -> ChainGate:
    if gate.matrix is not None and np.allclose(gate.matrix.imag, 0):
        return replace(gate, matrix=gate.matrix.real.copy())
    return gate


def _kinds(matrix: np.ndarray | None, split_lo: bool, blocks) -> tuple[str, ...]:
    if matrix is None:
        return ("",) * len(blocks)
    t = _tensor(matrix)
    ops = [t[:, x, :, y] if split_lo else t[x, :, y, :] for x, y in blocks]
    return tuple("i" if np.array_equal(o, np.eye(2)) else "x" if np.array_equal(o, [[0, 1], [1, 0]]) else ""
                 for o in ops)


def takes_chain(chain: Chain | None, num_qubits: int, method: str = "auto", readouts: int | None = None) -> bool:
    """Whether a circuit of ``num_qubits`` with ``chain`` (None: not a chain) runs as one under
    ``method`` (one of :data:`METHODS`; the estimator and the backend refuse any other): under
    "auto" where its estimated cost is below the statevector's (:mod:`.chain_cost`; ``readouts``
    Z readouts, default one per qubit), at any bond."""
    if chain is None or method == "statevector":
        return False
    if method == "mps":
        return True
    k = num_qubits if readouts is None else readouts
    return chain_seconds(chain, k) < statevector_seconds(num_qubits, len(chain.gates), k, chain.is_real)


def chain_readouts(program, observables, method: str = "auto") -> list[tuple[int, float]] | None:
    """The readouts (q, c) of ``observables`` when ``program`` is to run as a chain, else None.

    ``method``: "statevector" never, "mps" wherever a chain applies (a chain circuit and every
    observable c·Z_q), "auto" there too where it pays (:func:`takes_chain`)."""
    if not observables or program.chain is None or method == "statevector":
        return None
    readouts = [o.single_z for o in observables]
    if any(r is None for r in readouts) or not takes_chain(program.chain, program.num_qubits, method, len(readouts)):
        return None
    return readouts


# --------------------------------------------------------------------------- evaluation


_CLOSED = ("ry", "rx", "rz", "p", "rzz", "cp")  # rotations built by _rotation's closed forms


def _rotation(name: str, theta: np.ndarray) -> np.ndarray:
    """exp(-iθG) per row with rows last: (d, d, R), or (d, d, *theta.shape) for the closed forms
    (:data:`_CLOSED`). Those are built in place: stacking (R, 2, 2) matrices and moving their
    axis cost a fifth of a step."""
    if name in ("ry", "rx", "rz", "p"):
        out = np.zeros((2, 2, *theta.shape), dtype=float if name == "ry" else complex)
        if name == "p":
            out[0, 0], out[1, 1] = 1.0, np.exp(1j * theta)
            return out
        c, s = np.cos(theta / 2), np.sin(theta / 2)
        if name == "ry":
            out[0, 0], out[0, 1], out[1, 0], out[1, 1] = c, -s, s, c
        elif name == "rx":
            out[0, 0], out[0, 1], out[1, 0], out[1, 1] = c, -1j * s, -1j * s, c
        else:
            out[0, 0], out[1, 1] = c - 1j * s, c + 1j * s
        return out
    if name in ("rzz", "cp"):  # diagonal: the ZZ map's fused entanglers
        out = np.zeros((4, 4, *theta.shape), dtype=complex)
        if name == "cp":
            out[0, 0] = out[1, 1] = out[2, 2] = 1.0
            out[3, 3] = np.exp(1j * theta)
        else:
            out[0, 0] = out[3, 3] = np.exp(-0.5j * theta)
            out[1, 1] = out[2, 2] = np.exp(0.5j * theta)
        return out
    return np.moveaxis(rotation_matrices(name, theta), 0, -1)


# The Paulis of a slot, by code (x = bit 0, z = bit 1), as real matrices: code 3 is Z·X = i·Y.
PAULIS = np.array([np.eye(2), [[0, 1], [1, 0]], [[1, 0], [0, -1]], [[0, 1], [-1, 0]]], dtype=float)


def _matrices(chain: Chain, angles: np.ndarray, dtype, only: set[int] | None = None,
              paulis: np.ndarray | None = None) -> list[np.ndarray | None]:
    """Each gate's matrix with rows last: fixed (d, d, 1), or per row (d, d, R) from its angle
    or, for a Pauli slot, from ``paulis`` (S, R) codes (None where no row drew one). Gates outside
    ``only``, when given, are left None."""
    out: list[np.ndarray | None] = [None] * len(chain.gates)
    plain: dict[str, list[int]] = {}  # closed-form rotations as given: built together, per name
    for i in range(len(chain.gates)) if only is None else only:
        gate = chain.gates[i]
        if gate.slot >= 0:
            codes = None if paulis is None else paulis[gate.slot]
            if codes is not None and codes.any():
                out[i] = np.ascontiguousarray(np.moveaxis(PAULIS[codes], 0, -1), dtype=dtype)
            continue
        if gate.rotation is None:
            out[i] = gate.matrix.astype(dtype, copy=False)[:, :, None]
            continue
        if gate.rotation.name in _CLOSED and not gate.swapped and gate.matrix is None:
            plain.setdefault(gate.rotation.name, []).append(i)
            continue
        m = _rotation(gate.rotation.name, angles[:, chain.gate_rotation[i]])
        if gate.swapped:
            m = np.moveaxis(_swap_qubits(np.moveaxis(m, -1, 0)), 0, -1)
        if gate.matrix is not None:  # a fixed factor after the rotation
            m = np.einsum("ij,jkr->ikr", gate.matrix, m)
        out[i] = np.ascontiguousarray(m, dtype=dtype)
    # One call per name, not per gate (a hundred rotations cost a millisecond one by one).
    for name, gates in plain.items():
        m = _rotation(name, angles[:, [chain.gate_rotation[i] for i in gates]].T).astype(dtype, copy=False)
        for k, i in enumerate(gates):
            out[i] = m[:, :, k]  # (d, d, R): each row of the matrix contiguous over the rows
    return out


def _apply(site: np.ndarray, m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A one-qubit matrix (2, 2, R or 1) applied to site tensors (l, 2, r, R) (into ``out``)."""
    a0, a1 = site[:, 0], site[:, 1]
    if out is None:
        out = np.empty((*site.shape[:3], max(site.shape[-1], m.shape[-1])), dtype=np.result_type(site, m))
    for p in (0, 1):
        _row(a0, a1, m[p], out[:, p])
    return out


def _row(a0: np.ndarray, a1: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out = v[0]·a0 + v[1]·a1`` (one row of a one-qubit matrix, per row of the batch)."""
    np.multiply(a0, v[0], out=out)
    out += a1 * v[1]


def _apply_block(a: np.ndarray, m: np.ndarray, kind: str, out: np.ndarray, pending: np.ndarray | None) -> None:
    """``out[...] = m · pending`` applied to ``a`` (l, 2, r, R): a copy for the "i" and "x" kinds
    when nothing is pending (the pending one-qubit gates ride on the block: one pass, not two)."""
    if pending is None:
        if kind == "i":
            out[...] = a
        elif kind == "x":
            out[...] = a[:, ::-1]
        else:
            _apply(a, m, out)
    elif kind == "i":
        _apply(a, pending, out)
    elif kind == "x":
        _apply(a, pending[::-1], out)
    else:
        _apply(a, _product(m, pending), out)


def _product(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """m·k for one-qubit matrices with rows last (2, 2, R or 1)."""
    return (m[:, :, None, :] * k[None, :, :, :]).sum(axis=1)


def _site_tensor(chain: Chain, q: int, mats: Sequence[np.ndarray | None], R: int, dtype,
                 first: int = 0, start: np.ndarray | None = None, stop: int | None = None) -> np.ndarray:
    """Site q's tensor (l, 2, r, R) in the final state.

    Every step acts on this site alone: a one-qubit gate on its physical index, a two-qubit
    gate through its operator-Schmidt terms (L_s on the lower site, R_s on the upper one, the
    term index s appended to the bond between them). So each site is computed on its own, and a
    change to one gate changes only the tensors of the sites it acts on.

    ``first``, ``start``, ``stop``: apply the site's operations ``first:stop`` to ``start``
    (l, 2, r, R) instead of all of them to |0⟩."""
    if start is None:
        a = np.zeros((1, 2, 1, R), dtype=dtype)
        a[0, 0, 0] = 1.0
    else:
        a = start
    pending = None  # one-qubit gates not applied yet, multiplied together
    for i, role in chain.site_ops[q][first:stop]:
        gate, m = chain.gates[i], mats[i]
        if m is None:  # a Pauli slot no row drew a Pauli in
            continue
        if role == "one":
            pending = m if pending is None else _product(m, pending)
            continue
        S = len(gate.blocks)
        if role == "pass":  # a site inside a distant gate's span: δ(s, s') on its two bonds
            new = np.zeros((a.shape[0], S, 2, a.shape[2], S, a.shape[3]), dtype=a.dtype)
            for s in range(S):
                new[:, s, :, :, s] = a
            a = new.reshape(a.shape[0] * S, 2, a.shape[2] * S, a.shape[3])
            continue
        t = m.reshape(2, 2, 2, 2, m.shape[-1])  # (p_hi, p_lo, p'_hi, p'_lo, R)
        out_dtype = np.result_type(a, m) if pending is None else np.result_type(a, m, pending)
        if role == "lo":  # the lower site: new bond index s on the right
            new = np.empty((a.shape[0], 2, a.shape[2], S, R), dtype=out_dtype)
            for s, (x, y) in enumerate(gate.blocks):
                if gate.split_lo:  # L_s = |x><y| (after the pending gates: their row y)
                    new[:, 1 - x, :, s] = 0
                    if pending is None:
                        new[:, x, :, s] = a[:, y]
                    else:
                        _row(a[:, 0], a[:, 1], pending[y], new[:, x, :, s])
                else:  # L_s = t[x, :, y, :]
                    _apply_block(a, t[x, :, y, :], gate.kinds[s], new[:, :, :, s], pending)
            a = new.reshape(a.shape[0], 2, -1, R)
        else:  # the upper site: new bond index s on the left
            new = np.empty((a.shape[0], S, 2, a.shape[2], R), dtype=out_dtype)
            for s, (x, y) in enumerate(gate.blocks):
                if gate.split_lo:  # R_s = t[:, x, :, y]
                    _apply_block(a, t[:, x, :, y], gate.kinds[s], new[:, s], pending)
                else:  # R_s = |x><y|
                    new[:, s, 1 - x] = 0
                    if pending is None:
                        new[:, s, x] = a[:, y]
                    else:
                        _row(a[:, 0], a[:, 1], pending[y], new[:, s, x])
            a = new.reshape(-1, 2, a.shape[2], R)
        pending = None
    return a if pending is None else _apply(a, pending)


def _final_sites(chain: Chain, angles: np.ndarray, dtype, paulis: np.ndarray | None = None) -> list[np.ndarray]:
    """The site tensors (l, 2, r, R) of the final state, for angle rows (R, G).

    Rows are the last axis: every operation is then a few elementwise passes whose inner loop
    runs over the rows, where rows first made it a loop over 2-4 bond entries (numpy's tiny
    batched matrix products ran 3-10x slower)."""
    mats = _matrices(chain, angles, dtype, paulis=paulis)
    return [_site_tensor(chain, q, mats, angles.shape[0], dtype) for q in range(chain.num_qubits)]


def _shared_from(chain: Chain, q: int, angles: np.ndarray, paulis: np.ndarray | None,
                 constant: np.ndarray | None = None) -> int | None:
    """Where site q's operations stop depending on the row: the first index from which every
    operation has the same angle in all rows (a QNN batch shares its weights; the inputs enter
    in the first gates: angle encoding's RY, the ZZ map's P and entanglers), when the site's
    tensor there is small (its size at most a quarter of the rows); None otherwise.
    ``constant``: which angle columns are the same in all rows, when already known."""
    if paulis is not None:  # each row its own Pauli draws
        return None
    if constant is None:
        constant = np.all(angles == angles[:1], axis=0)
    ops = chain.site_ops[q]
    first = len(ops)
    while first > 0:
        i = ops[first - 1][0]
        if chain.gates[i].rotation is not None and not constant[chain.gate_rotation[i]]:
            break
        first -= 1
    return first if _prefix_size(chain, q, first) * 4 <= angles.shape[0] else None


def _prefix_size(chain: Chain, q: int, first: int) -> int:
    """Entries (l·2·r) of site q's tensor after its first ``first`` operations."""
    left = right = 1
    for i, role in chain.site_ops[q][:first]:
        terms = len(chain.gates[i].blocks)
        left *= terms if role in ("hi", "pass") else 1
        right *= terms if role in ("lo", "pass") else 1
    return 2 * left * right


def _prefix(chain: Chain, q: int, mats: Sequence[np.ndarray | None], first: int, R: int, dtype) -> np.ndarray:
    """Site q's tensor after its first ``first`` operations, per row: (R, l·2·r), and its shape."""
    a = _site_tensor(chain, q, mats, R, dtype, stop=first)
    if a.shape[-1] != R:
        a = np.broadcast_to(a, (*a.shape[:3], R))
    return np.ascontiguousarray(a.reshape(-1, R).T), a.shape[:3]


def _shared_site(chain: Chain, q: int, mats: Sequence[np.ndarray | None], first: int, prefix: np.ndarray,
                 shape: tuple[int, ...], dtype) -> np.ndarray:
    """Site q's tensors, rows first (R, l, 2, r), for rows whose operations from ``first`` on are
    the same: those operations are applied once to each basis tensor of the prefix's shape
    (``prefix.shape[1]`` "rows", 2 after angle encoding, 8 after the ZZ map), and each row's
    tensor is its ``prefix`` (R, d) times that basis (one matrix product)."""
    d = prefix.shape[1]
    start = np.eye(d, dtype=dtype).reshape(*shape, d)
    shared = _first_columns(chain, q, mats, first)
    basis = _site_tensor(chain, q, shared, d, dtype, first, start)  # (l, 2, r, d)
    out = np.matmul(prefix, basis.reshape(-1, d).T)  # (R, l·2·r), rows first
    return out.reshape(prefix.shape[0], *basis.shape[:3])


def _first_columns(chain: Chain, q: int, mats: Sequence[np.ndarray | None], first: int) -> list[np.ndarray | None]:
    """The matrices of site q's operations from ``first`` on, their first row only (the same in
    every row there); None for every other gate (only the site's are read)."""
    out: list[np.ndarray | None] = [None] * len(mats)
    for i, _ in chain.site_ops[q][first:]:
        out[i] = None if mats[i] is None else mats[i][..., :1]
    return out


def _sites_rows_first(chain: Chain, angles: np.ndarray, dtype, paulis: np.ndarray | None = None) -> list[np.ndarray]:
    """The final state's site tensors, rows first (R, l, 2, r): through :func:`_shared_site`
    where a site's operations after its one-qubit prefix are the same in every row (a QNN batch
    with angle encoding: 16x less work at 32 rows), else built row by row."""
    R = angles.shape[0]
    mats = _matrices(chain, angles, dtype, paulis=paulis)
    constant = np.all(angles == angles[:1], axis=0)
    out = []
    for q in range(chain.num_qubits):
        first = _shared_from(chain, q, angles, paulis, constant) if R > 2 else None
        if first is None:
            out.append(rows_first(_site_tensor(chain, q, mats, R, dtype)))
        else:
            out.append(_shared_site(chain, q, mats, first, *_prefix(chain, q, mats, first, R, dtype), dtype))
    return out


def _row_blocks(rows: int, row_bytes: int, budget: int | None = None) -> list[slice]:
    """Consecutive blocks of about ``budget`` bytes (default :data:`BLOCK_BYTES`), run one after
    another on this thread."""
    per = max(1, (BLOCK_BYTES if budget is None else budget) // row_bytes)
    return [slice(i, min(rows, i + per)) for i in range(0, rows, per)]


def _dtype(chain: Chain) -> np.dtype:
    return np.dtype(np.float64 if chain.is_real else np.complex128)


def _row_bytes(chain: Chain, stacks: bool = False, weighted: bool = False) -> int:
    """Bytes per row: site tensors (built, their compressed copies, one in the making) and
    environments; with the gradient's right stacks (one environment per readout to the right of
    each cut, at the compressed bonds: at most 2**k k sites from an end; ``weighted``, for a
    vector-Jacobian product: two per cut) and shifted sites."""
    n, built = chain.num_qubits, (1, *chain.cut_bonds, 1)
    cuts = [min(b, 2**k, 2 ** (n - k)) for k, b in enumerate(built)]  # the compressed bonds
    sites = sum(2 * built[j] * built[j + 1] for j in range(n))
    small = sum(2 * cuts[j] * cuts[j + 1] for j in range(n))
    # Sites: built and in the making; compressed, and the environments' right and left half
    # steps (at the compressed bonds).
    entries = 2 * sites + 3 * small + sum(b * b for b in built)
    if stacks:
        varied = np.bincount([chain.gates[g].varied_site for g in chain.rotation_gate], minlength=1).max()
        per_cut = [2 if weighted else n - k for k in range(n + 1)]
        entries += 2 * sites + sum(z * b * b for z, b in zip(per_cut, cuts)) + varied * max(
            2 * built[j] * built[j + 1] for j in range(n))
    return entries * _dtype(chain).itemsize


def chain_state(chain: Chain, values: np.ndarray, paulis: np.ndarray | None = None) -> ChainState:
    """ψ for parameter rows ``values`` (B, P): site tensors (rows first) and right environments."""
    return ChainState.of(_sites_rows_first(chain, chain.table.angles(values), _dtype(chain), paulis))


def _batch_matrices(chain: Chain, angles: np.ndarray, gates: set[int], dtype) -> list[np.ndarray | None]:
    """Each gate's matrix (d, d, R or 1), or where ``gates`` are rotations (the others None) its
    matrix at θ + π: per row only for the gates whose angle differs between rows (a QNN batch's
    inputs), one row for the rest. Built once per gradient, for every site's
    :func:`_shared_kets` (per site, these small products had cost a tenth of the gradient)."""
    varies = ~np.all(angles == angles[:1], axis=0)
    per_row = {i for i in gates if chain.gates[i].rotation is not None and varies[chain.gate_rotation[i]]}
    out = _matrices(chain, angles[:1], dtype, gates - per_row)
    rows = _matrices(chain, angles, dtype, per_row)
    for i in per_row:
        out[i] = rows[i]
    return out


def _shift_bases(chain: Chain, s: int, rotations: np.ndarray, first: int, dtype, R: int,
                 mats: Sequence[np.ndarray | None], moved: Sequence[np.ndarray | None]) -> tuple:
    """For :func:`_shared_kets` and :func:`_shared_overlaps`: the rows' prefixes (R, d), the
    indices ``after`` of the rotations at or after ``first``, and the shared bases
    (d·(1 + len(after)), l·2·r): block 0 unshifted, block k + 1 with rotation ``after[k]`` shifted
    by π, built in one pass (each row's tensor is its prefix times a block), and the site's shape."""
    ops = chain.site_ops[s]
    position = {i: k for k, (i, _) in enumerate(ops)}
    prefix, shape = _prefix(chain, s, mats, first, R, dtype)
    d = prefix.shape[1]
    after = [t for t, g in enumerate(rotations) if position[chain.rotation_gate[g]] >= first]
    columns = d * (1 + len(after))
    # One column block per shift: the shifted gate's matrices differ by block, every other
    # matrix is the same in all columns (broadcast, one column).
    stacked = _first_columns(chain, s, mats, first)
    for block, t in enumerate(after, start=1):
        gate = chain.rotation_gate[rotations[t]]
        if stacked[gate].shape[-1] == 1:
            stacked[gate] = np.repeat(stacked[gate], columns, axis=-1)
        stacked[gate][..., d * block: d * (block + 1)] = moved[gate][..., :1]
    start = np.tile(np.eye(d, dtype=dtype), (1, 1 + len(after))).reshape(*shape, columns)
    bases = _site_tensor(chain, s, stacked, columns, dtype, first, start)  # (l, 2, r, columns)
    return prefix, after, bases.reshape(-1, columns).T, bases.shape[:3]


def _shared_overlaps(chain: Chain, s: int, rotations: np.ndarray, first: int, dtype, R: int,
                     mats: Sequence[np.ndarray | None], moved: Sequence[np.ndarray | None],
                     envs: Sequence[np.ndarray]) -> np.ndarray:
    """Σ E_t·(ψ_g⁺'s tensor at site s) (R, T) for the ``rotations`` g varied there, against the
    effective environments ``envs`` (one per rotation, (R, l, 2, r)), where
    :func:`_shared_kets` would build the kets: each row's ket is its prefix p (R, d) times a
    shared basis block, so Σ E·(p·basis) = p·(basis·E), and the (R, T, l·2·r) kets are never
    written. Arguments as for :func:`_shared_kets`."""
    prefix, after, bases, _ = _shift_bases(chain, s, rotations, first, dtype, R, mats, moved)
    d = prefix.shape[1]
    projected: dict[int, np.ndarray] = {}  # per distinct environment: basis·E (R, columns)
    out = np.empty((R, len(rotations)), dtype=np.result_type(prefix, bases, *envs))
    blocks = {t: k for k, t in enumerate(after, start=1)}
    for t, g in enumerate(rotations):
        env = envs[t]
        if id(env) not in projected:
            projected[id(env)] = np.matmul(env.reshape(R, -1), bases.T)
        m = projected[id(env)]
        if t in blocks:
            out[:, t] = np.einsum("rd,rd->r", prefix, m[:, d * blocks[t]: d * (blocks[t] + 1)])
        else:  # its angle varies by row (before ``first``): its own prefixes, the unshifted block
            moved_rows, gate = list(mats), chain.rotation_gate[g]
            moved_rows[gate] = moved[gate]
            out[:, t] = np.einsum("rd,rd->r", _prefix(chain, s, moved_rows, first, R, dtype)[0], m[:, :d])
    return out


def _shared_kets(chain: Chain, s: int, rotations: np.ndarray, first: int, dtype, R: int,
                 mats: Sequence[np.ndarray | None], moved: Sequence[np.ndarray | None]) -> np.ndarray:
    """ψ_g⁺'s tensors at site s (R, T, l, 2, r) for the ``rotations`` g varied there, when the
    site's operations from ``first`` on are the same in every row (:func:`_shared_from`): a shift
    before ``first`` changes the rows' prefixes, one after it the shared basis. The bases of all
    shifts are built in one pass (the unshifted one first). ``mats``, ``moved``: the gates'
    matrices at θ and θ + π (:func:`_batch_matrices`)."""
    prefix, after, bases, site_shape = _shift_bases(chain, s, rotations, first, dtype, R, mats, moved)
    d = prefix.shape[1]
    position = {i: k for k, (i, _) in enumerate(chain.site_ops[s])}
    L, T = bases.shape[1], len(rotations)
    # The shifts after ``first``: every row's prefix times each shift's basis, one product.
    shifted = bases[d:].reshape(len(after), d, L).transpose(1, 0, 2).reshape(d, len(after) * L)
    out = np.empty((R, T, L), dtype=np.result_type(prefix, bases))
    if after == list(range(T - len(after), T)):  # the usual order: written in place
        target = out[:, T - len(after):].view()
        target.shape = (R, len(after) * L)  # each row's part is contiguous: a view, never a copy
        np.matmul(prefix, shifted, out=target)
    else:
        out[:, after] = np.matmul(prefix, shifted).reshape(R, len(after), L)
    for t, g in enumerate(rotations):
        if position[chain.rotation_gate[g]] < first:  # its angle varies by row: its own prefixes
            moved_rows, gate = list(mats), chain.rotation_gate[g]
            moved_rows[gate] = moved[gate]
            np.matmul(_prefix(chain, s, moved_rows, first, R, dtype)[0], bases[:d], out=out[:, t])
    return out.reshape(R, T, *site_shape)


def _keep_freed_memory() -> None:
    """Tune glibc's malloc once (see :data:`KEEP_FREED_MEMORY`)."""
    if _malloc_tuned or not KEEP_FREED_MEMORY:
        return
    _malloc_tuned.append(True)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def chain_expectations(chain: Chain, values: np.ndarray, readouts: Sequence[tuple[int, float]],
                       paulis: np.ndarray | None = None, keep: list | None = None) -> np.ndarray:
    """Expectation values (K, B) of the readouts c·Z_q for parameter rows ``values`` (B, P),
    a block of rows at a time (memory does not grow with the batch). ``paulis``: (S, B) codes of
    the Pauli each row drew in each slot, for a chain with slots. ``keep``: a list that receives
    the :class:`~.mps_sweeps.ChainState` of the rows when they fit in one block (for
    :func:`chain_gradient`'s ``state``)."""
    _keep_freed_memory()
    qubits = sorted({q for q, _ in readouts})
    col = {q: i for i, q in enumerate(qubits)}
    out = np.empty((len(readouts), len(values)))
    # A batch whose gradient runs in one block is evaluated in one too, so that the gradient
    # starts from this state (``keep``) instead of building it again.
    # Sized for a training step's gradient (a vector-Jacobian product); a full Jacobian blocks
    # its rows over this state itself (:func:`_parameter_derivatives`).
    whole = keep is not None and len(values) * _row_bytes(chain, stacks=True, weighted=True) <= GRADIENT_BLOCK_BYTES
    blocks = [slice(0, len(values))] if whole else _row_blocks(len(values), _row_bytes(chain))
    for block in blocks:
        state = chain_state(chain, values[block], None if paulis is None else paulis[:, block])
        if keep is not None and len(blocks) == 1:  # the gradient's left sweep reuses its half steps
            state.lefts = []
        z = z_values(state.compressed.bras, state.right, qubits, state.halves, state.densities, state.lefts)
        state.values.update({q: z[:, col[q]] for q in qubits})
        for k, (q, c) in enumerate(readouts):
            out[k, block] = c * z[:, col[q]]
        if keep is not None and len(blocks) == 1:
            keep.append(state)
    return out


def chain_gradient(
    chain: Chain, values: np.ndarray, readouts: Sequence[tuple[int, float]], paulis: np.ndarray | None = None,
    state: ChainState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(evs, grads)``: expectation values (K, B) and their gradients (K, B, P) w.r.t. every
    circuit parameter, a block of rows at a time: d⟨Z_q⟩/dθ per rotation angle
    (:func:`_angle_derivatives`), then the chain rule through each angle's expression.
    ``state``: ψ for these rows when the forward pass left it (:func:`chain_expectations`'s
    ``keep``), so that it is not built again."""
    B, P, K = values.shape[0], len(chain.parameters), len(readouts)
    qubits = sorted({q for q, _ in readouts})
    col = {q: i for i, q in enumerate(qubits)}
    evs, grads = np.empty((K, B)), np.empty((K, B, P))
    for block, z, dq in _parameter_derivatives(chain, values, qubits, paulis, state):  # dq (rows, Q, P)
        for k, (q, c) in enumerate(readouts):
            evs[k, block] = c * z[:, col[q]]
            grads[k, block] = c * dq[:, col[q]]
    return evs, grads


def chain_vjp(chain: Chain, values: np.ndarray, readouts: Sequence[tuple[int, float]], cotangent: np.ndarray,
              paulis: np.ndarray | None = None, state: ChainState | None = None) -> np.ndarray:
    """The vector-Jacobian product Σ_k cotangent[k, b] · d⟨c_k Z_{q_k}⟩/dθ (B, P): what a
    training step's backward pass needs, without the K Jacobians that :func:`chain_gradient`
    builds. It is the gradient of ⟨ψ|Σ_q w_q Z_q|ψ⟩ with per-row weights w, a sum of one-site
    terms, so the gradient's Z stacks collapse to one weighted environment each
    (:func:`~.mps_sweeps.gradient_overlaps`' ``weights``): RealAmplitudes reps 6 at 16 qubits
    (bond 64) carries 2 environments per site instead of up to 17. ``state``: as for
    :func:`chain_gradient`."""
    B, P = values.shape[0], len(chain.parameters)
    qubits = sorted({q for q, _ in readouts})
    col = {q: i for i, q in enumerate(qubits)}
    weights = np.zeros((B, len(qubits)))
    for k, (q, c) in enumerate(readouts):
        weights[:, col[q]] += c * cotangent[k]
    out = np.empty((B, P))
    for block, _, dq in _parameter_derivatives(chain, values, qubits, paulis, state, weights):  # dq (rows, 1, P)
        out[block] = dq[:, 0]
    return out


def _parameter_derivatives(chain: Chain, values: np.ndarray, qubits: Sequence[int], paulis: np.ndarray | None,
                           state: ChainState | None, weights: np.ndarray | None = None):
    """For each block of rows: ``(block, z, dq)``, with ⟨Z_q⟩ (rows, Q) and their derivatives
    per circuit parameter (rows, Q, P) (:func:`_angle_derivatives`, then the chain rule through
    each angle's expression); with ``weights`` (B, Q), None and the derivatives of Σ_q w_q⟨Z_q⟩
    (rows, 1, P)."""
    B = values.shape[0]
    _keep_freed_memory()
    moving = np.flatnonzero(chain.table.depends.any(axis=1))  # rotations that parameters move
    position = {g: i for i, g in enumerate(moving)}
    if state is not None and state.rows != B:
        state = None
    for block in _row_blocks(B, _row_bytes(chain, stacks=True, weighted=weights is not None), GRADIENT_BLOCK_BYTES):
        rows = values[block]
        drawn = None if paulis is None else paulis[:, block]
        z, dz = _angle_derivatives(chain, chain.table.angles(rows), qubits, moving, drawn,
                                   None if state is None else state.block(block),
                                   None if weights is None else weights[block])
        yield block, z, np.matmul(dz.transpose(0, 2, 1), _partials(chain, rows, moving, position))


def _partials(chain: Chain, rows: np.ndarray, moving: np.ndarray, position: dict[int, int]) -> np.ndarray:
    """d angle / d parameter (rows, M, P) for the rotations ``moving``: constant entries, then
    the varying ones."""
    partials = np.broadcast_to(chain.constant_partials[moving], (len(rows), len(moving), len(chain.parameters)))
    if chain.varying_partials:
        partials = partials.copy()
        for g, j, partial in chain.varying_partials:
            partials[:, position[g], j] += partial(rows)
    return partials


def _local_overlaps(chain: Chain, angles: np.ndarray, rotations: dict[int, np.ndarray], densities: dict[int, np.ndarray],
                    dtype, paulis: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """⟨ψ|Z_s|ψ_g⁺⟩ (B, T) per site s for the ``rotations`` g read at their own qubit s alone
    (:attr:`Chain.local_rotations`), from the qubit's reduced density matrix ρ (B, 2, 2). Only
    one-qubit gates follow g on its qubit, so ψ_g⁺ = N·ψ with N = W·U_g(θ + π)·U_g(θ)†·W† on
    qubit s (W: the gates after g), and ⟨ψ|Z N|ψ⟩ = Σ Z[p]·N[p, p']·ρ[p, p']. The effective
    environment these rotations would close against costs χ³ per row to build (an eighth of reps
    6's gradient at 16 qubits); this costs a few 2x2 products, the matrices built in two calls."""
    if not rotations:
        return {}
    entries = [(s, g) for s, gs in rotations.items() for g in gs]
    gates = [chain.rotation_gate[g] for _, g in entries]
    # The gates after each rotation on its qubit: one-qubit gates ("pass" is a distant gate's bond).
    after = []
    for (s, _), gate in zip(entries, gates):
        ops = [i for i, _ in chain.site_ops[s]]
        after.append([i for i, role in chain.site_ops[s][ops.index(gate) + 1:] if role == "one"])
    needed = set(gates).union(*after)
    # A QNN batch shares its weights: the matrices of one row then serve all (2x2 products, not 2x2xB).
    if paulis is None and all(np.all(angles[:, chain.gate_rotation[i]] == angles[0, chain.gate_rotation[i]])
                              for i in needed if chain.gates[i].rotation is not None):
        angles = angles[:1]
    mats = _matrices(chain, angles, dtype, needed, paulis)
    moved = _matrices(chain, angles + math.pi, dtype, set(gates), paulis)
    n = np.einsum("lijb,lkjb->likb", np.stack([moved[i] for i in gates]), np.conj(np.stack([mats[i] for i in gates])))
    for k, later in enumerate(after):
        for i in later:
            if mats[i] is not None:  # a Pauli slot no row drew a Pauli in is None
                n[k] = _product(mats[i], _product(n[k], _adjoint(mats[i])))
    n[:, 1] *= -1  # Z·N
    rho = np.stack([densities[s] for s, _ in entries])  # (L, B, 2, 2)
    values = np.einsum("lpqb,lbpq->bl", n, rho) if n.shape[-1] > 1 else np.einsum("lpq,lbpq->bl", n[..., 0], rho)
    out, k = {}, 0
    for s, gs in rotations.items():
        out[s] = values[:, k: k + len(gs)]
        k += len(gs)
    return out


def _adjoint(m: np.ndarray) -> np.ndarray:
    """U† for one-qubit matrices with rows last (2, 2, R)."""
    return np.conj(m).transpose(1, 0, 2)


def _angle_derivatives(chain: Chain, angles: np.ndarray, qubits: Sequence[int], moving: np.ndarray,
                       paulis: np.ndarray | None = None, state: ChainState | None = None,
                       weights: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """⟨Z_q⟩ (B, Q) and d⟨Z_q⟩/dθ_g (B, len(moving), Q) for angle rows (B, G); with
    ``weights`` (B, Q), None and d⟨Σ_q w_q Z_q⟩/dθ_g (B, len(moving), 1) instead.

    d⟨Z⟩/dθ = 2 Re⟨ψ|Z|∂ψ⟩, where ∂ψ is ψ with gate g replaced by its derivative: the gate at
    θ + π up to a factor, dU/dθ = U(θ + π)/2 for the Pauli rotations exp(−iθP/2) and
    (i/2)(U(θ) − U(θ + π)) for P and CP (projector generators). So d⟨Z⟩/dθ = Re⟨ψ|Z|ψ_g⁺⟩, or
    Im⟨ψ|Z|ψ_g⁺⟩ for P and CP, with ψ_g⁺ the circuit at angle g + π. ψ_g⁺ differs from ψ only
    in one site tensor (see :func:`_site_tensor`; a two-qubit gate's factors on one of its sites
    are fixed, |x⟩⟨y|, see :attr:`ChainGate.varied_site`), so every ⟨ψ|Z_q|ψ_g⁺⟩ is a few
    products against ψ's environments (:func:`~.mps_sweeps.gradient_overlaps`)."""
    B = angles.shape[0]
    dtype = _dtype(chain)
    col = {q: i for i, q in enumerate(qubits)}
    if state is None:
        state = ChainState.of(_sites_rows_first(chain, angles, dtype, paulis))
    if weights is not None and any(q not in state.densities for q in qubits):  # not left by the forward pass
        state.lefts = []
        z_values(state.compressed.bras, state.right, qubits, state.halves, state.densities, state.lefts)
    by_site: dict[int, list[int]] = {}
    for i, g in enumerate(moving):
        by_site.setdefault(chain.gates[chain.rotation_gate[g]].varied_site, []).append(i)
    # Per site, the rotations read at every readout first, then those read at their own alone.
    local = chain.local_rotations
    far = {}
    for s, members in by_site.items():
        members.sort(key=lambda i: moving[i] in local)
        far[s] = sum(moving[i] not in local for i in members)
    dz = np.zeros((B, len(moving), len(qubits) if weights is None else 1))
    constant = np.all(angles == angles[:1], axis=0)
    batch: list = []  # _batch_matrices at θ and θ + π, once the first site asks for them

    def shared(s: int) -> int | None:  # where site s's operations are the same in every row
        first = _shared_from(chain, s, angles, paulis, constant) if B > 2 else None
        if first is not None and not batch:
            batch.append(_batch_matrices(chain, angles, set(range(len(chain.gates))), dtype))
            batch.append(_batch_matrices(chain, angles + math.pi, {chain.rotation_gate[g] for g in moving}, dtype))
        return first

    def kets(s: int) -> tuple[np.ndarray, int]:  # ψ_g⁺'s tensor at site s for each rotation g varied there
        members = by_site[s]
        first = shared(s)
        if first is not None:
            return _shared_kets(chain, s, moving[members], first, dtype, B, *batch), far[s]
        return own_kets(s), far[s]

    def own_kets(s: int, members: list[int] | None = None) -> np.ndarray:  # built row by row: (B, T, l, 2, r)
        members = by_site[s] if members is None else members
        T = len(members)
        shifted = np.repeat(angles[None], T, axis=0)  # (T, B, G): rows t·B + b
        shifted[np.arange(T), :, moving[members]] += math.pi
        only = {i for i, _ in chain.site_ops[s]}
        mats = _matrices(chain, shifted.reshape(T * B, -1), dtype, only,
                         None if paulis is None else np.tile(paulis, T))
        k = _site_tensor(chain, s, mats, T * B, dtype)
        return np.ascontiguousarray(np.moveaxis(k.reshape(*k.shape[:3], T, B), (4, 3), (0, 1)))

    def closed(s: int) -> Callable:  # weights: the overlaps against the site's effective environment
        members = by_site[s]
        T = far[s]  # the rest are read at s alone: from its density matrix (_local_overlaps)

        def contract(env: np.ndarray | None) -> np.ndarray:  # (B, len(members))
            out = np.zeros((B, len(members)), dtype=np.result_type(dtype, *([] if env is None else [env])))
            if T and env is not None:
                first = shared(s)
                if first is not None:
                    out[:, :T] = _shared_overlaps(chain, s, moving[members[:T]], first, dtype, B, *batch, [env] * T)
                else:
                    k = own_kets(s, members[:T]).reshape(B, T, -1)
                    out[:, :T] = np.matmul(k, env.reshape(B, -1, 1))[:, :, 0]
            if s in at_own:
                out[:, T:] = at_own[s] * weights[:, col[s], None]
            return out

        return contract

    def take(s: int, overlaps: np.ndarray) -> None:  # (B, Q, T)
        for t, i in enumerate(by_site[s]):
            part = overlaps[:, :, t].imag if chain.rotations[moving[i]].name in _PROJECTOR else overlaps[:, :, t].real
            dz[:, i] = part

    at_own = {} if weights is None else _local_overlaps(
        chain, angles, {s: moving[by_site[s][far[s]:]] for s in by_site if s in col and far[s] < len(by_site[s])},
        state.densities, dtype, paulis)
    gradient_overlaps(state.sites, qubits, sorted(by_site), kets if weights is None else closed, take,
                      state.compressed, weights, state)
    if weights is not None:
        return None, dz
    if all(q in state.values for q in qubits):  # the forward pass read them
        return np.stack([state.values[q] for q in qubits], axis=1), dz
    return z_values(state.compressed.bras, state.right, qubits, state.halves), dz
