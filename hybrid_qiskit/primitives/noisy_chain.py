"""Noisy trajectories on a matrix-product state: device noise for wide chain heads.

Why: a trajectory of :mod:`.trajectories` is the circuit with a Pauli drawn after each gate, and
a Pauli is a one-qubit gate: it never grows a bond. So a head whose ISA circuit is a chain (every
two-qubit gate between neighbours on a path of physical qubits, as a linear head laid out on a
heavy-hex device is) stays an exact bond-4 matrix-product state under noise, and a trajectory costs
what the exact chain costs (:mod:`.mps`), where the statevector needs 2**n amplitudes per column.

* :func:`compile_noisy_chain` orders the program's qubits along the path its two-qubit gates
  form (the reduced device numbers them by physical index, not along the path), and places a
  Pauli *slot* after every noisy gate on each of its qubits.
* :func:`slot_codes` turns drawn :class:`~.trajectories.Trajectories` into each column's Pauli per
  slot: the very draws the statevector simulator replays, so both simulators agree to rounding on
  the same trajectories (tested).
* :func:`noisy_chain_values` and :func:`noisy_chain_gradient` give each column's exact
  trajectory expectation of the readouts c·Z_q, readout error folded in (a flip turns ⟨Z⟩ into
  (1 - a - b)·⟨Z⟩ + b - a), and its exact gradient (the chain's, with the slots fixed).
* :func:`sample_readouts` measures shots: bitstrings drawn qubit by qubit along the chain from
  its conditional probabilities (one right-environment sweep), then flipped by readout errors, so
  the readouts' shot noise is correlated as a QPU's is.

Example:
    >>> import numpy as np
    >>> from qiskit import QuantumCircuit
    >>> from hybrid_qiskit.primitives.trajectories import compile_noisy_program, sample_trajectories
    >>> qc = QuantumCircuit(2); _ = qc.sx(0); _ = qc.sx(0); _ = qc.cx(0, 1)   # |11>
    >>> prog = compile_noisy_program(qc, lambda name, qubits: None, readout=[(0.0, 0.1), (0.0, 0.0)])
    >>> chain = compile_noisy_chain(prog)
    >>> codes = slot_codes(chain, sample_trajectories(prog, 1, np.random.default_rng(0)))
    >>> noisy_chain_values(chain, np.zeros((1, 0)), codes, [(0, 1.0), (1, 1.0)]).round(6).tolist()
    [[-0.8], [-1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .mps import (
    Chain,
    GateSpec,
    _dtype,
    _final_sites,
    _row_blocks,
    _row_bytes,
    build_chain,
)
from .mps import chain_expectations as _chain_expectations
from .mps import chain_gradient as _chain_gradient
from .mps_sweeps import right_environments, rows_first
from .trajectories import NoisyProgram, Trajectories


@dataclass(frozen=True)
class NoisyChain:
    """A noisy program as a chain: ``order[s]`` is the program qubit at site s."""

    program: NoisyProgram
    chain: Chain
    order: tuple[int, ...]
    site: dict[int, int]  # program qubit -> site
    slots: dict[tuple[int, int], int]  # (op index, program qubit) -> slot

    @property
    def bond(self) -> int:
        return self.chain.bond


def path_order(num_qubits: int, pairs: set[frozenset]) -> tuple[int, ...] | None:
    """The qubits in an order where every pair in ``pairs`` is adjacent, or None when the
    pairs do not form paths (a qubit with three partners, or a cycle)."""
    partners: dict[int, set[int]] = {q: set() for q in range(num_qubits)}
    for pair in pairs:
        a, b = tuple(pair)
        partners[a].add(b)
        partners[b].add(a)
    if any(len(p) > 2 for p in partners.values()):
        return None
    order, seen = [], set()
    for start in range(num_qubits):  # each path from one end (isolated qubits are paths too)
        if start in seen or len(partners[start]) == 2:
            continue
        q, prev = start, None
        while q is not None:
            order.append(q)
            seen.add(q)
            q, prev = next((p for p in partners[q] if p != prev), None), q
    return tuple(order) if len(order) == num_qubits else None  # a cycle was never entered


def compile_noisy_chain(program: NoisyProgram) -> NoisyChain | None:
    """``program`` as a chain with Pauli slots, or None where it is not one (gates on three
    qubits, two-qubit gates that do not form a path, or a bond above :data:`.mps.MAX_BOND`)."""
    if any(len(op.qubits) > 2 for op in program.ops):
        return None
    pairs = {frozenset(op.qubits) for op in program.ops if len(op.qubits) == 2}
    order = path_order(program.num_qubits, pairs)
    if order is None:
        return None
    site = {q: s for s, q in enumerate(order)}
    specs: list[GateSpec] = []
    slots: dict[tuple[int, int], int] = {}
    for i, op in enumerate(program.ops):
        qubits = tuple(site[q] for q in op.qubits)
        if op.kind == "phase":
            specs.append(GateSpec("p", qubits, angle=op.angle))
        elif op.kind == "fixed":
            specs.append(GateSpec("fixed", qubits, matrix=op.matrix))
        if op.channel is not None:
            for q in op.qubits:
                slots[(i, q)] = len(slots)
                specs.append(GateSpec("pauli", (site[q],), slot=slots[(i, q)]))
    chain = build_chain(program.num_qubits, program.parameters, specs)
    return None if chain is None else NoisyChain(program, chain, order, site, slots)


def slot_codes(nc: NoisyChain, traj: Trajectories) -> np.ndarray:
    """(S, columns) int8: the Pauli each column drew in each slot (x = bit 0, z = bit 1)."""
    codes = np.zeros((len(nc.slots), traj.columns), dtype=np.int8)
    for i, group in traj.errors.items():
        for cols, xm, zm in group:
            for q in nc.program.ops[i].qubits:
                code = ((xm >> q) & 1) | (((zm >> q) & 1) << 1)
                if code:
                    codes[nc.slots[(i, q)], cols] = code
    return codes


def _folded(nc: NoisyChain, readouts: Sequence[tuple[int, float]]) -> tuple[list[tuple[int, float]], np.ndarray]:
    """Readouts on sites, scaled by 1 - a - b, and their offsets c·(b - a) (readout error)."""
    ro = nc.program.readout
    scaled = [(nc.site[q], c * (1.0 - ro[q, 0] - ro[q, 1])) for q, c in readouts]
    offsets = np.array([c * (ro[q, 1] - ro[q, 0]) for q, c in readouts])
    return scaled, offsets


def noisy_chain_values(nc: NoisyChain, values: np.ndarray, codes: np.ndarray,
                       readouts: Sequence[tuple[int, float]]) -> np.ndarray:
    """Each column's exact trajectory expectation (K, C) of the readouts (program qubit q, c),
    readout error included; ``values`` (C, P), ``codes`` from :func:`slot_codes`."""
    scaled, offsets = _folded(nc, readouts)
    return _chain_expectations(nc.chain, values, scaled, codes) + offsets[:, None]


def noisy_chain_gradient(nc: NoisyChain, values: np.ndarray, codes: np.ndarray,
                         readouts: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """``(values (K, C), gradients (K, C, P))`` of each column's own trajectory."""
    scaled, offsets = _folded(nc, readouts)
    evs, grads = _chain_gradient(nc.chain, values, scaled, codes)
    return evs + offsets[:, None], grads


def sample_readouts(nc: NoisyChain, values: np.ndarray, codes: np.ndarray, shots: np.ndarray,
                    qubits: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Sum over each column's ``shots[c]`` measured bitstrings of Z on each of ``qubits``
    (program qubits), readout flips included: (len(qubits), C).

    Bits are drawn site by site along the chain: given the bits drawn on sites < j (the ket's
    left partial contraction v), P(b_j) = v_b† E v_b with E the right environment of the sites
    > j. Shots that drew the same bits so far share one branch and split binomially at each
    site, so the work follows the number of distinct bitstrings drawn, at most one per shot (with
    random angles, 760 branches per 1,024 shots at 16 qubits; fewer where a trained head's state
    is concentrated). The result is distributed exactly
    as ``shots`` independent bitstrings: the readouts' shot noise is correlated as a QPU's is.
    Readout flips are independent per shot and qubit, so each branch's flips are binomial too."""
    chain = nc.chain
    dtype = _dtype(chain)
    C, n = len(values), chain.num_qubits
    wanted = {nc.site[q]: k for k, q in enumerate(qubits)}
    out = np.zeros((len(qubits), C))
    if not shots.any():
        return out
    angles = chain.table.angles(values)
    ro = nc.program.readout
    for block in _row_blocks(C, _row_bytes(chain) + branch_bytes(nc, int(shots.max()))):
        sites = [rows_first(a) for a in _final_sites(chain, angles[block], dtype, codes[:, block])]
        right = right_environments(sites)  # right[j]: sites >= j, (C, bra, ket)
        count = shots[block].astype(np.int64)
        col = np.flatnonzero(count)  # one branch per column to start
        count = count[col]
        v = np.ones((len(col), 1), dtype=dtype)
        for j in range(n):
            w, ew = _branch_amplitudes(v, sites[j], right[j + 1], col)
            prob = np.einsum("bpi,bpi->bp", w.conj(), ew).real.clip(0)
            total = prob.sum(axis=1)
            ones = rng.binomial(count, np.clip(prob[:, 1] / np.where(total > 0, total, 1), 0, 1))
            zeros = count - ones
            if j in wanted:
                a0, b0 = ro[nc.order[j]]
                flipped0, flipped1 = rng.binomial(zeros, a0), rng.binomial(ones, b0)
                z = (zeros - 2 * flipped0) - (ones - 2 * flipped1)  # read 0 gives +1, read 1 gives -1
                out[wanted[j], block] += np.bincount(col, weights=z, minlength=block.stop - block.start)
            # Children of branch b at 2b, 2b + 1: branches stay sorted by column.
            children = np.stack([w[:, 0] / np.sqrt(np.where(zeros > 0, prob[:, 0], 1))[:, None],
                                 w[:, 1] / np.sqrt(np.where(ones > 0, prob[:, 1], 1))[:, None]], axis=1)
            counts = np.stack([zeros, ones], axis=1).ravel()
            keep = counts > 0
            v = children.reshape(-1, w.shape[2])[keep]
            col = np.repeat(col, 2)[keep]
            count = counts[keep]
    return out


def branch_bytes(nc: NoisyChain, shots: int) -> int:
    """Bytes the sampler may hold per column: a branch per distinct bitstring drawn (at most
    min(shots, 2**n)), each a few bond-sized vectors and counts."""
    return min(shots, 2 ** min(nc.chain.num_qubits, 62)) * (8 * nc.chain.bond * 16 + 64)


def _branch_amplitudes(v: np.ndarray, site: np.ndarray, right: np.ndarray, col: np.ndarray):
    """For branches (B, l) of columns ``col`` (sorted), a site (C, l, 2, r) and its right
    environment (C, r, r): w = v·A (B, 2, r) for both values of the
    site's bit, and E·w with the right environment. Many branches per column: one product per
    column on its contiguous branches; few: gathered per branch (copying a site tensor per
    branch costs more memory traffic than the products themselves)."""
    columns, left, _, r = site.shape
    if len(col) > 16 * columns:
        starts = np.searchsorted(col, np.arange(columns + 1))
        w = np.empty((len(col), 2 * r), dtype=np.result_type(v, site))
        ew = np.empty((len(col), 2, r), dtype=w.dtype)
        for c in range(columns):
            seg = slice(starts[c], starts[c + 1])
            if seg.start == seg.stop:
                continue
            w[seg] = v[seg] @ site[c].reshape(left, 2 * r)
            ew[seg] = w[seg].reshape(-1, 2, r) @ right[c].T
        return w.reshape(-1, 2, r), ew
    a = site.reshape(columns, left, 2 * r)[col]
    w = np.matmul(v[:, None, :], a).reshape(len(col), 2, r)
    return w, np.matmul(w, right[col].transpose(0, 2, 1))  # Σ_k E[i, k] w_k
