"""A chain's contractions, rows first: environments, ⟨Z_q⟩, and the gradient's overlaps.

Why rows first: every contraction here is a matrix product per row, so with the rows as the
leading (batched) axis each one is a single ``np.matmul`` over the batch. Measured on this
machine (one core, float64, 32 rows): stacked products of bond-16 matrices ran at 18-25 GMAC/s,
``np.einsum`` over the same five indices at 1-5, and ``torch.bmm`` at 6-11 (its per-call cost is
higher); at bond 16 that made the chain's gradient 8x faster (``experiments/bench_chain.py``).

Conventions: a site tensor is (R, l, 2, r); an environment is (R, bra bond, ket bond), and a
stack of them (R, z, bra, ket), one entry per readout qubit with Z inserted there. ``left[j]``
contracts the sites < j, ``right[j]`` the sites >= j.

The gradient's overlaps (:func:`gradient_overlaps`) are ⟨ψ|Z_q|ψ'⟩ for states ψ' that differ
from ψ in one site tensor (see :mod:`.mps`): for readouts q left of that site, a left stack
closes the site's mixed transfer; for readouts right of it, a right stack; at the site itself, Z
goes between bra and ket. The right stacks are built once (one sweep), the left ones on the way
through the sites, so each is computed once for all rotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def rows_first(site: np.ndarray) -> np.ndarray:
    """A site tensor built rows last (l, 2, r, R) as (R, l, 2, r), contiguous."""
    return np.ascontiguousarray(np.moveaxis(site, -1, 0))


def _conj(a: np.ndarray) -> np.ndarray:
    return np.conj(a) if np.iscomplexobj(a) else a


@dataclass
class ChainState:
    """ψ for a block of rows: its site tensors (R, l, 2, r) and right environments.

    What the forward pass leaves for the gradient (the estimator keeps it beside the values it
    was computed for), so that the gradient does not rebuild the state it starts from."""

    sites: list[np.ndarray]
    right: list[np.ndarray]

    @property
    def rows(self) -> int:
        return self.sites[0].shape[0]

    def block(self, rows: slice) -> ChainState:
        return ChainState([a[rows] for a in self.sites], [e[rows] for e in self.right])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.sites) + sum(e.nbytes for e in self.right)


class _Site:
    """A site tensor a (R, l, 2, r) with its bra and the transposed layouts the products take:
    numpy's stacked matmul ran 1.3-1.6x slower on a transposed operand than on a contiguous copy,
    and the copy costs 1/χ of the product."""

    def __init__(self, a: np.ndarray):
        self.a, self.ab = a, _conj(a)
        self.rows, self.l, _, self.r = a.shape
        self._bra_t = self._ket_t = None

    @property
    def bra_t(self) -> np.ndarray:
        """conj(a) as (R, r, 2l): [rb, (lb, p)]."""
        if self._bra_t is None:
            self._bra_t = np.ascontiguousarray(self.ab.reshape(self.rows, 2 * self.l, self.r).transpose(0, 2, 1))
        return self._bra_t

    @property
    def ket_t(self) -> np.ndarray:
        """a as (R, 2r, l): [(p, rk), lk]."""
        if self._ket_t is None:
            self._ket_t = np.ascontiguousarray(self.a.reshape(self.rows, self.l, 2 * self.r).transpose(0, 2, 1))
        return self._ket_t


def _flip(x: np.ndarray) -> np.ndarray:
    """x (R, [z,] l, 2, r) with the p = 1 half negated (Z on the site's qubit), as a copy."""
    out = x.copy()
    out[..., 1, :] *= -1
    return out


def right_environments(sites: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``right[j]`` (R, bra, ket) for j = 0..n: the sites >= j contracted (right[n] = 1)."""
    n, R = len(sites), sites[0].shape[0]
    right = [np.ones((R, 1, 1), dtype=sites[0].dtype)] * (n + 1)
    for j in range(n - 1, -1, -1):
        right[j] = _right_step(right[j + 1], _Site(sites[j]))
    return right


def _right_half(e: np.ndarray, site: _Site) -> np.ndarray:
    """y[lb, p, rk] = Σ_rb conj(a)[lb, p, rb] e[rb, rk] for e (R, [z,] r, r): (R, [z,] l, 2, r)."""
    R, dl, dr = site.rows, site.l, site.r
    if e.ndim == 3:
        return np.matmul(site.ab.reshape(R, 2 * dl, dr), e).reshape(R, dl, 2, dr)
    return np.matmul(site.ab.reshape(R, 1, 2 * dl, dr), e).reshape(R, e.shape[1], dl, 2, dr)


def _right_step(e: np.ndarray, site: _Site, y: np.ndarray | None = None) -> np.ndarray:
    """An environment or stack (R, [z,] r, r) carried left past ``site``: (R, [z,] l, l)."""
    R, dl, dr = site.rows, site.l, site.r
    y = _right_half(e, site) if y is None else y
    z = 1 if y.ndim == 4 else y.shape[1]
    out = np.matmul(y.reshape(R, z * dl, 2 * dr), site.ket_t)
    return out if y.ndim == 4 else out.reshape(R, z, dl, dl)


def _left_half(e: np.ndarray, site: _Site) -> np.ndarray:
    """t[lb, p, rk] = Σ_lk e[lb, lk] a[lk, p, rk] for e (R, [z,] l, l): (R, [z,] l, 2, r)."""
    R, dl, dr = site.rows, site.l, site.r
    z = 1 if e.ndim == 3 else e.shape[1]
    t = np.matmul(e.reshape(R, z * dl, dl), site.a.reshape(R, dl, 2 * dr))
    return t.reshape(R, dl, 2, dr) if e.ndim == 3 else t.reshape(R, z, dl, 2, dr)


def _left_step(e: np.ndarray, site: _Site, t: np.ndarray | None = None) -> np.ndarray:
    """An environment or stack (R, [z,] l, l) carried right past ``site``: (R, [z,] r, r)."""
    R, dl, dr = site.rows, site.l, site.r
    t = _left_half(e, site) if t is None else t
    if t.ndim == 4:
        return np.matmul(site.bra_t, t.reshape(R, 2 * dl, dr))
    return np.matmul(site.bra_t[:, None], t.reshape(R, t.shape[1], 2 * dl, dr))


def z_values(sites: Sequence[np.ndarray], right: Sequence[np.ndarray], qubits: Sequence[int]) -> np.ndarray:
    """⟨Z_q⟩ (R, len(qubits)) from one left sweep against the right environments. Unitary
    evolution keeps the norm 1: nothing is divided."""
    R = sites[0].shape[0]
    out = np.empty((R, len(qubits)))
    col = {q: i for i, q in enumerate(qubits)}
    left = np.ones((R, 1, 1), dtype=sites[0].dtype)
    for j in range(max(qubits, default=-1) + 1):
        site = _Site(sites[j])
        t = _left_half(left, site)
        if j in col:
            out[:, col[j]] = _inner(_left_step(left, site, _flip(t)), right[j + 1]).real
        left = _left_step(left, site, t)
    return out


def _inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ a ⊙ b over the last two axes, per row: (R, x, y) -> (R,)."""
    R = a.shape[0]
    return np.matmul(a.reshape(R, 1, -1), b.reshape(R, -1, 1))[:, 0, 0]


def gradient_overlaps(
    sites: Sequence[np.ndarray],
    right: Sequence[np.ndarray],
    qubits: Sequence[int],
    varied: Sequence[int],
    kets: Callable[[int], np.ndarray],
    take: Callable[[int, np.ndarray], None],
) -> np.ndarray:
    """⟨Z_q⟩ (R, Q); and, for every site s in ``varied``, ``take(s, overlaps)`` with overlaps
    (R, Q, T) = ⟨ψ|Z_q|ψ_t⟩ for the T states ``kets(s)`` (R, T, l, 2, r): ψ with site s replaced.

    One right sweep builds the right stacks, then one left sweep carries the left stack and
    closes each varied site's overlaps on its way."""
    n, R = len(sites), sites[0].shape[0]
    dtype = sites[0].dtype
    col = {q: i for i, q in enumerate(qubits)}
    wrapped = [_Site(a) for a in sites]
    # Right stacks: rstack[j] (R, z, l, l) for the readouts >= j (labels rlab[j]), newest first.
    rstack: list[np.ndarray | None] = [None] * (n + 1)
    rlab: list[list[int]] = [[] for _ in range(n + 1)]
    for j in range(n - 1, 0, -1):  # rstack[0] is never needed
        site, old = wrapped[j], rlab[j + 1]
        if j not in col and not old:
            continue
        stack = np.empty((R, len(old) + (j in col), site.l, site.l), dtype=dtype)
        if j in col:
            stack[:, 0] = _right_step(right[j + 1], site, _flip(_right_half(right[j + 1], site)))
        if old:
            stack[:, int(j in col):] = _right_step(rstack[j + 1], site)
        rstack[j], rlab[j] = stack, [j] * (j in col) + old
    values = np.empty((R, len(qubits)))
    wanted = set(varied)
    left = np.ones((R, 1, 1), dtype=dtype)
    lstack, llab = None, []
    for s in range(n):
        site = wrapped[s]
        dl, dr = site.l, site.r
        if s in wanted:
            b = kets(s)  # (R, T, l, 2, r)
            T = b.shape[1]
            out = np.zeros((R, len(qubits), T), dtype=np.result_type(dtype, b.dtype))
            # Only small operands are transposed (χ² or T·χ² per row), never the kets or stacks.
            if llab:  # readouts left of s: ⟨left_z | Y_t⟩, Y_t[lb, lk] = Σ conj(a)·right·b_t
                w = np.matmul(site.ab.reshape(R, 2 * dl, dr), right[s + 1]).reshape(R, dl, 2 * dr)
                y = np.matmul(b.reshape(R, T * dl, 2 * dr), np.ascontiguousarray(w.transpose(0, 2, 1)))  # [t, lk, lb]
                y = np.ascontiguousarray(y.reshape(R, T, dl, dl).transpose(0, 3, 2, 1)).reshape(R, dl * dl, T)
                out[:, [col[q] for q in llab]] = np.matmul(lstack.reshape(R, len(llab), dl * dl), y)
            v = np.matmul(np.ascontiguousarray(left.transpose(0, 2, 1)), site.ab.reshape(R, dl, 2 * dr))  # v[lk, p, rb]
            if rlab[s + 1]:  # readouts right of s: ⟨M_t | right_z⟩, M_t[rb, rk] = Σ left·conj(a)·b_t
                v_t = np.ascontiguousarray(v.reshape(R, 2 * dl, dr).transpose(0, 2, 1))
                m = np.matmul(v_t[:, None], b.reshape(R, T, 2 * dl, dr)).reshape(R, T, dr * dr)
                stack = rstack[s + 1].reshape(R, len(rlab[s + 1]), dr * dr)
                out[:, [col[q] for q in rlab[s + 1]]] = np.matmul(stack, np.ascontiguousarray(m.transpose(0, 2, 1)))
            if s in col:  # the readout at s: Z between bra and ket
                e = np.matmul(_flip(v.reshape(R, dl, 2, dr)).reshape(R, 2 * dl, dr), right[s + 1])
                out[:, col[s]] = np.matmul(b.reshape(R, T, -1), e.reshape(R, -1, 1))[:, :, 0]
            take(s, out)
        if s == n - 1:
            break
        t = _left_half(left, site)
        if s in col or llab:
            stack = np.empty((R, len(llab) + (s in col), dr, dr), dtype=dtype)
            if llab:
                stack[:, :len(llab)] = _left_step(lstack, site)
            if s in col:
                stack[:, -1] = _left_step(left, site, _flip(t))
                values[:, col[s]] = _inner(stack[:, -1], right[s + 1]).real
            lstack, llab = stack, llab + [s] * (s in col)
        left = _left_step(left, site, t)
    if n - 1 in col:  # the last site: Z against the end of the chain
        site = wrapped[n - 1]
        values[:, col[n - 1]] = _inner(_left_step(left, site, _flip(_left_half(left, site))), right[n]).real
    return values
