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
through the sites, so each is computed once for all rotations. Near the chain's ends the bonds
are first compressed exactly to the state's own rank there (:func:`_bases`: at most 2**k k sites
from an end), where the stacks are longest: RealAmplitudes reps 6 at 16 qubits (bond 64), a
gradient of 32 rows took 0.55 s instead of 1.1 s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


def rows_first(site: np.ndarray) -> np.ndarray:
    """A site tensor built rows last (l, 2, r, R) as (R, l, 2, r), contiguous."""
    return np.ascontiguousarray(np.moveaxis(site, -1, 0))


def _conj(a: np.ndarray) -> np.ndarray:
    return np.conj(a) if np.iscomplexobj(a) else a


@dataclass
class ChainState:
    """ψ for a block of rows: its site tensors (R, l, 2, r), their exact compression at the
    chain's ends (:func:`compress`), and the right environments of the compressed sites.

    What the forward pass leaves for the gradient (the estimator keeps it beside the values it
    was computed for), so that the gradient does not rebuild the state it starts from."""

    sites: list[np.ndarray]
    compressed: Compressed
    right: list[np.ndarray]
    values: dict[int, np.ndarray] = field(default_factory=dict)  # ⟨Z_q⟩ (R,) the forward pass read
    # Each right environment's first half step (R, bl, 2, kr) past site j: qubit j's density
    # matrix, and with it ⟨Z_j⟩, closes against it at χ² per row (:func:`z_values`).
    halves: list[np.ndarray] | None = None
    # The read qubits' reduced density matrices (R, 2, 2) (:func:`z_values`' ``densities``): the
    # gradient of a rotation read at its own qubit alone closes against them (``mps._local_overlaps``).
    densities: dict[int, np.ndarray] = field(default_factory=dict)
    # The left half steps of that sweep (R, bl, 2, kr), from site 0 on (``z_values``' ``lefts``):
    # the gradient's left sweep reuses them (:func:`_weighted_left_sweep`).
    lefts: list[np.ndarray] | None = None

    @classmethod
    def of(cls, sites: list[np.ndarray]) -> ChainState:
        compressed = compress(sites)
        halves: list[np.ndarray] = []
        return cls(sites, compressed, right_environments(compressed.bras, halves), halves=halves)

    @property
    def rows(self) -> int:
        return self.sites[0].shape[0]

    def block(self, rows: slice) -> ChainState:
        return ChainState([a[rows] for a in self.sites], self.compressed.block(rows), [e[rows] for e in self.right],
                          {q: v[rows] for q, v in self.values.items()},
                          None if self.halves is None else [y[rows] for y in self.halves],
                          {q: r[rows] for q, r in self.densities.items()},
                          None if self.lefts is None else [t[rows] for t in self.lefts])

    @property
    def nbytes(self) -> int:
        return (sum(a.nbytes for a in self.sites) + self.compressed.nbytes
                + sum(e.nbytes for e in self.right) + sum(y.nbytes for y in self.halves or ())
                + sum(t.nbytes for t in self.lefts or ()))


@dataclass
class Compressed:
    """ψ's bonds in the bases of :func:`_bases`: ``left``/``right`` per cut (None: the whole
    bond), and ``bras``: the sites in the smaller of the two at each cut (ψ exactly, its bonds
    at most 2**k k sites from an end). None of it is built at a bond below 8, where the ends
    save little and the bases cost their numpy calls (``bras`` are then the sites)."""

    left: list[np.ndarray | None]
    right: list[np.ndarray | None]
    bras: list[np.ndarray]

    def block(self, rows: slice) -> Compressed:
        def cut(xs):
            return [None if x is None else x[rows] for x in xs]
        return Compressed(cut(self.left), cut(self.right), cut(self.bras))

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in (*self.left, *self.right, *self.bras) if x is not None)


def compress(sites: Sequence[np.ndarray]) -> Compressed:
    """:class:`Compressed` for ψ's ``sites`` (computed once, in the forward pass: its
    environments and ⟨Z⟩ then run at the compressed bonds, and the gradient reuses the bases)."""
    n = len(sites)
    if max(a.shape[3] for a in sites) < 8:
        return Compressed([None] * (n + 1), [None] * (n + 1), list(sites))
    lb, rb = _bases(sites)
    bra_basis = [_smaller(lb[k], rb[k]) for k in range(n + 1)]
    return Compressed(lb, rb, [_in_bases(sites[j], bra_basis[j], bra_basis[j + 1]) for j in range(n)])


class _Site:
    """A site's ket tensor a (R, kl, 2, kr) and bra tensor (R, bl, 2, br) (conjugated here; the
    same tensor unless the two are held in different bases, see :func:`_bases`), with the
    transposed layouts the products take: numpy's stacked matmul ran 1.3-1.6x slower on a
    transposed operand than on a contiguous copy, and the copy costs 1/χ of the product."""

    def __init__(self, a: np.ndarray, bra: np.ndarray | None = None):
        self.a, self.ab = a, _conj(a if bra is None else bra)
        self.rows, self.kl, _, self.kr = a.shape
        _, self.bl, _, self.br = self.ab.shape
        self._bra_t = self._ket_t = None

    @property
    def bra_t(self) -> np.ndarray:
        """conj(bra) as (R, br, 2bl): [rb, (lb, p)]."""
        if self._bra_t is None:
            self._bra_t = np.ascontiguousarray(self.ab.reshape(self.rows, 2 * self.bl, self.br).transpose(0, 2, 1))
        return self._bra_t

    @property
    def ket_t(self) -> np.ndarray:
        """a as (R, 2kr, kl): [(p, rk), lk]."""
        if self._ket_t is None:
            self._ket_t = np.ascontiguousarray(self.a.reshape(self.rows, self.kl, 2 * self.kr).transpose(0, 2, 1))
        return self._ket_t


def _weighted_flip(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w·Z on the site's qubit of x (R, l, 2, r), per row's weight w (R,): one pass, a new array."""
    sign = np.array([1.0, -1.0])
    return x * (w[:, None, None, None] * sign[None, None, :, None])


def _flip(x: np.ndarray) -> np.ndarray:
    """x (R, [z,] l, 2, r) with the p = 1 half negated (Z on the site's qubit), as a copy."""
    out = x.copy()
    out[..., 1, :] *= -1
    return out


def right_environments(sites: Sequence[np.ndarray], halves: list | None = None) -> list[np.ndarray]:
    """``right[j]`` (R, bra, ket) for j = 0..n: the sites >= j contracted (right[n] = 1).
    ``halves``: a list that receives each step's first half (:func:`_right_half`), site by site."""
    n, R = len(sites), sites[0].shape[0]
    right = [np.ones((R, 1, 1), dtype=sites[0].dtype)] * (n + 1)
    if halves is not None:
        halves[:] = [None] * n
    for j in range(n - 1, -1, -1):
        site = _Site(sites[j])
        y = _right_half(right[j + 1], site)
        if halves is not None:
            halves[j] = y
        right[j] = _right_step(right[j + 1], site, y)
    return right


def _right_half(e: np.ndarray, site: _Site) -> np.ndarray:
    """y[lb, p, rk] = Σ_rb conj(bra)[lb, p, rb] e[rb, rk] for e (R, [z,] br, kr): (R, [z,] bl, 2, kr)."""
    R, bl, br = site.rows, site.bl, site.br
    if e.ndim == 3:
        return np.matmul(site.ab.reshape(R, 2 * bl, br), e).reshape(R, bl, 2, -1)
    return np.matmul(site.ab.reshape(R, 1, 2 * bl, br), e).reshape(R, e.shape[1], bl, 2, -1)


def _right_step(e: np.ndarray, site: _Site, y: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """An environment or stack (R, [z,] br, kr) carried left past ``site``: (R, [z,] bl, kl),
    written into ``out`` when given (a slice of the next stack: no copy into it after)."""
    R, bl, kr = site.rows, site.bl, site.kr
    y = _right_half(e, site) if y is None else y
    z = 1 if y.ndim == 4 else y.shape[1]
    if out is not None:
        np.matmul(y.reshape(R, z * bl, 2 * kr), site.ket_t, out=_merged(out, z * bl))
        return out
    out = np.matmul(y.reshape(R, z * bl, 2 * kr), site.ket_t)
    return out if y.ndim == 4 else out.reshape(R, z, bl, site.kl)


def _merged(view: np.ndarray, rows: int) -> np.ndarray:
    """``view`` (R, [z,] a, b), each row's entries contiguous, as (R, rows, b) without a copy."""
    out = view.view()
    out.shape = (view.shape[0], rows, view.shape[-1])  # raises rather than copy
    return out


def _left_half(e: np.ndarray, site: _Site) -> np.ndarray:
    """t[lb, p, rk] = Σ_lk e[lb, lk] a[lk, p, rk] for e (R, [z,] bl, kl): (R, [z,] bl, 2, kr)."""
    R, bl, kl, kr = site.rows, site.bl, site.kl, site.kr
    z = 1 if e.ndim == 3 else e.shape[1]
    t = np.matmul(e.reshape(R, z * bl, kl), site.a.reshape(R, kl, 2 * kr))
    return t.reshape(R, bl, 2, kr) if e.ndim == 3 else t.reshape(R, z, bl, 2, kr)


def _left_step(e: np.ndarray, site: _Site, t: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """An environment or stack (R, [z,] bl, kl) carried right past ``site``: (R, [z,] br, kr)
    (into ``out`` when given)."""
    R, bl, kr = site.rows, site.bl, site.kr
    t = _left_half(e, site) if t is None else t
    if t.ndim == 4:
        return np.matmul(site.bra_t, t.reshape(R, 2 * bl, kr), out=out)
    return np.matmul(site.bra_t[:, None], t.reshape(R, t.shape[1], 2 * bl, kr), out=out)


def z_values(sites: Sequence[np.ndarray], right: Sequence[np.ndarray], qubits: Sequence[int],
             halves: Sequence[np.ndarray] | None = None, densities: dict | None = None,
             lefts: list | None = None) -> np.ndarray:
    """⟨Z_q⟩ (R, len(qubits)) from one left sweep against the right environments. Unitary
    evolution keeps the norm 1: nothing is divided. With the right environments' ``halves``
    (:func:`right_environments`), each ⟨Z_j⟩ is read from the qubit's reduced density matrix,
    the left half step t against half j (:func:`_densities`): χ² per row instead of a χ³ step.
    ``densities``: a dict that receives those matrices (R, 2, 2) by qubit (with ``halves``);
    ``lefts``: a list that receives each site's left half step t (R, bl, 2, kr), site by site."""
    R = sites[0].shape[0]
    out = np.empty((R, len(qubits)))
    col = {q: i for i, q in enumerate(qubits)}
    left = np.ones((R, 1, 1), dtype=sites[0].dtype)
    pairs: dict[tuple, list] = {}  # by the half steps' shape: (qubit, y, t)
    for j in range(max(qubits, default=-1) + 1):
        site = _Site(sites[j])
        t = _left_half(left, site)
        if lefts is not None:
            lefts.append(t)
        if j in col and halves is not None:
            pairs.setdefault(t.shape, []).append((j, halves[j], t))
        elif j in col:
            out[:, col[j]] = _inner(_left_step(left, site, _flip(t)), right[j + 1]).real
        left = _left_step(left, site, t)
    for shape, group in pairs.items():
        # Small bonds: one contraction for all the sites of a shape (few numpy calls); large
        # ones site by site (stacking them would copy megabytes for nothing).
        parts = [group] if shape[1] * shape[3] <= 1024 else [[x] for x in group]
        for part in parts:
            if len(part) == 1:  # views, not copies
                rho = _densities(part[0][1][None], part[0][2][None])
            else:
                rho = _densities(np.stack([y for _, y, _ in part]), np.stack([t for _, _, t in part]))
            out[:, [col[j] for j, _, _ in part]] = (rho[:, :, 0, 0] - rho[:, :, 1, 1]).real.T
            if densities is not None:
                densities.update({j: rho[k] for k, (j, _, _) in enumerate(part)})
    return out


def _densities(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """ρ[p, p'] = Σ conj(ψ[.., p, ..])·ψ[.., p', ..] (G, R, 2, 2), G qubits' reduced density
    matrices (bra index first), from right half steps y and left ones t (G, R, bl, 2, kr) at
    their sites. Measured (32 rows): at bonds up to 32, four elementwise contractions over the
    bonds; above, one 2x2 product per bond entry (no transposed copies of the half steps)."""
    G, R, bl, _, kr = y.shape
    if bl * kr <= 1024:
        out = np.empty((G, R, 2, 2), dtype=np.result_type(y, t))
        for p in range(2):
            for q in range(2):
                out[:, :, p, q] = np.einsum("grak,grak->gr", y[:, :, :, p], t[:, :, :, q])
        return out
    pairs = np.matmul(y.reshape(G * R * bl, 2, kr), t.reshape(G * R * bl, 2, kr).transpose(0, 2, 1))
    return pairs.reshape(G, R, bl, 2, 2).sum(axis=2)


def _bases(sites: Sequence[np.ndarray]) -> tuple[list, list]:
    """Exact compression at the chain's ends: per cut k, an orthonormal basis (R, D_k, d) of the
    bond vectors that ψ's left part uses (``left[k]``, d <= 2**k) and of those its right part
    uses (``right[k]``, d <= 2**(n-k)); None where that is the whole bond.

    Why: the chain's bond is the product of its gates' Schmidt terms at every cut, but the state
    has at most 2**k of them k sites from an end (RealAmplitudes reps 4, bond 16: 2, 4, 8 at the
    first and last three cuts). Near the ends the Z stacks hold the most entries, so the stacks
    cost 37% less at 16 qubits and bond 16, 65% less at bond 64. It is exact for the gradient:
    every ψ_t differs from ψ in one site s, so its left part at cuts <= s and its right part at
    cuts > s are ψ's, and a ket index is only ever held in the basis of the part ψ_t shares
    (left environments in ``left``, right ones in ``right``, see :func:`gradient_overlaps`)."""
    n, R = len(sites), sites[0].shape[0]
    left: list[np.ndarray | None] = [None] * (n + 1)
    right: list[np.ndarray | None] = [None] * (n + 1)
    for k in range(1, n):  # row space of Φ_k = (Φ_{k-1} ⊗ 1)·(Q_{k-1}† A_{k-1}) lies in that of M
        a = sites[k - 1]
        m = a if left[k - 1] is None else _from_left(a, left[k - 1])
        rows, bond = 2 * m.shape[1], m.shape[3]
        if rows < bond:
            left[k] = np.linalg.qr(np.conj(m.reshape(R, rows, bond)).transpose(0, 2, 1))[0]
    for k in range(n - 1, 0, -1):  # column space of Ψ_k = A_k·(P_{k+1} P_{k+1}† Ψ_{k+1})
        a = sites[k]
        m = a if right[k + 1] is None else _to_right(a, right[k + 1])
        cols, bond = 2 * m.shape[3], m.shape[1]
        if cols < bond:
            right[k] = np.linalg.qr(m.reshape(R, bond, cols))[0]
    return left, right


def _from_left(a: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """basis† · a on the left bond: (R, l, 2, r) -> (R, d, 2, r)."""
    if basis is None:
        return a
    R, left, _, r = a.shape
    return np.matmul(np.conj(basis).transpose(0, 2, 1), a.reshape(R, left, 2 * r)).reshape(R, -1, 2, r)


def _to_right(a: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """a · basis on the right bond: (R, l, 2, r) -> (R, l, 2, d)."""
    if basis is None:
        return a
    R, left, _, r = a.shape
    return np.matmul(a.reshape(R, 2 * left, r), basis).reshape(R, left, 2, -1)


def _in_bases(a: np.ndarray, left_basis, right_basis) -> np.ndarray:
    return _to_right(_from_left(a, left_basis), right_basis)


def _inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ a ⊙ b over the last two axes, per row: (R, x, y) -> (R,)."""
    R = a.shape[0]
    return np.matmul(a.reshape(R, 1, -1), b.reshape(R, -1, 1))[:, 0, 0]


def gradient_overlaps(
    sites: Sequence[np.ndarray],
    qubits: Sequence[int],
    varied: Sequence[int],
    kets: Callable[[int], tuple[np.ndarray, int]],
    take: Callable[[int, np.ndarray], None],
    compressed: Compressed | None = None,
    weights: np.ndarray | None = None,
    forward: ChainState | None = None,
) -> None:
    """For every site s in ``varied``, ``take(s, overlaps)`` with overlaps (R, Q, T) =
    ⟨ψ|Z_q|ψ_t⟩ for the T states of ``kets(s)`` = (tensors (R, T, l, 2, r), far): ψ with site s
    replaced. Only the first ``far`` of them are read at every readout; the rest only at s
    (their overlaps elsewhere are zero, left so: see :attr:`~.mps.Chain.local_rotations`).

    ``weights`` (R, Q): overlaps (R, 1, T) of the weighted sum ⟨ψ|Σ_q w_q Z_q|ψ_t⟩ instead, for
    a vector-Jacobian product. Σ_q w_q Z_q is a sum of one-site terms, so each stack collapses
    to one environment, the weighted sum of its entries (carried like any entry, since carrying
    is linear): two environments per site instead of 1 + Q, whatever the number of readouts.
    ``kets(s)`` is then a function of the site's effective environment (:func:`_weighted_left_sweep`).

    One right sweep builds the right stacks, then one left sweep carries the left stack and
    closes each varied site's overlaps on its way. Bonds are held in the bases of
    :func:`_bases`: a left environment's ket index in ψ's left-part basis, a right one's in its
    right-part basis, and every bra index in the smaller of the two (a bra is ψ itself, whose
    parts both bases hold exactly). ``compressed``: :func:`compress` of ``sites``, when the
    forward pass left it. ``forward``: the forward pass's state (with ``weights``): from the
    chain's right end up to the first cut whose bra basis is not the right-part basis, its plain
    right environments and half steps are the ones this sweep needs, and only the weighted sum is
    carried there (two products per site instead of four)."""
    n, R = len(sites), sites[0].shape[0]
    dtype = sites[0].dtype
    col = {q: i for i, q in enumerate(qubits)}
    compressed = compress(sites) if compressed is None else compressed
    lb, rb, bras = compressed.left, compressed.right, compressed.bras

    def carried(full: np.ndarray, site: _Site, q: int, half, step, shape: tuple[int, int]) -> np.ndarray:
        if weights is None:
            return _carried(full, site, q in col, half, step, shape)
        return _carried_sum(full, site, weights[:, col[q]] if q in col else None, half, step, shape)
    # Right environments: full[j] (R, 1 + z, bra, ket), the plain one first (right[j]), then
    # the stack rstack[j] for the readouts >= j (labels rlab[j], newest last): carried as one
    # array, two products per site for all of them. Ket indices in the right-part bases.
    full = np.ones((R, 1, 1, 1), dtype=dtype)
    right: list[np.ndarray] = [full[:, 0]] * (n + 1)
    rstack: list[np.ndarray] = [full[:, 1:]] * (n + 1)
    rlab: list[list[int]] = [[] for _ in range(n + 1)]
    # Where every cut from j on holds its bras in the right-part basis, the forward pass's right
    # environments (bras on both sides) are this sweep's plain ones.
    shared = forward is not None and weights is not None and forward.halves is not None
    for j in range(n - 1, 0, -1):  # right[0] and rstack[0] are never needed
        shared = shared and _smaller(lb[j], rb[j]) is rb[j]
        if shared:
            site = _Site(bras[j])
            w = weights[:, col[j]] if j in col else None
            y = forward.halves[j]
            summed = _right_half(full[:, 1], site) if full.shape[1] == 2 else None
            if w is not None:
                here = _weighted_flip(y, w)
                summed = here if summed is None else summed + here
            entries = [forward.right[j]]
            if summed is not None:
                entries.append(_right_step(None, site, summed))
            full = np.stack(entries, axis=1)
        else:
            site = _Site(_in_bases(sites[j], rb[j], rb[j + 1]), bras[j])
            full = carried(full, site, j, _right_half, _right_step, (site.bl, site.kl))
        right[j], rstack[j], rlab[j] = full[:, 0], full[:, 1:], rlab[j + 1] + [j] * (j in col)
    wanted = set(varied)
    if weights is not None:
        _weighted_left_sweep(sites, compressed, wanted, kets, take, right, rstack, weights, col, forward)
        return
    full = np.ones((R, 1, 1, 1), dtype=dtype)  # left[s] then lstack (labels llab), as above
    left, lstack, llab = full[:, 0], full[:, 1:], []
    for s in range(n):
        site = _Site(_in_bases(sites[s], lb[s], lb[s + 1]), bras[s])
        dl, dr = site.bl, site.br
        if s in wanted:
            b, T = kets(s)  # T: how many are read at every readout (the rest at s alone)
            b = _kets_in_bases(b, lb[s], rb[s + 1])  # (R, all, ql, 2, pr)
            ql, pr = b.shape[2], b.shape[4]
            out = np.zeros((R, len(qubits), b.shape[1]), dtype=np.result_type(dtype, b.dtype))
            # Only small operands are transposed (χ² or T·χ² per row), never the kets or stacks.
            if llab and T:  # readouts left of s: ⟨left_z | Y_t⟩, Y_t[lb, lk] = Σ conj(a)·right·b_t
                w = np.matmul(site.ab.reshape(R, 2 * dl, dr), right[s + 1]).reshape(R, dl, 2 * pr)
                y = np.matmul(b[:, :T].reshape(R, T * ql, 2 * pr), np.ascontiguousarray(w.transpose(0, 2, 1)))  # [t, lk, lb]
                y = np.ascontiguousarray(y.reshape(R, T, ql, dl).transpose(0, 3, 2, 1)).reshape(R, dl * ql, T)
                out[:, [col[q] for q in llab], :T] = np.matmul(lstack.reshape(R, len(llab), dl * ql), y)
            v = np.matmul(np.ascontiguousarray(left.transpose(0, 2, 1)), site.ab.reshape(R, dl, 2 * dr))  # v[lk, p, rb]
            if rlab[s + 1] and T:  # readouts right of s: ⟨M_t | right_z⟩, M_t[rb, rk] = Σ left·conj(a)·b_t
                v_t = np.ascontiguousarray(v.reshape(R, 2 * ql, dr).transpose(0, 2, 1))
                m = np.matmul(v_t[:, None], b[:, :T].reshape(R, T, 2 * ql, pr)).reshape(R, T, dr * pr)
                stack = rstack[s + 1].reshape(R, len(rlab[s + 1]), dr * pr)
                out[:, [col[q] for q in rlab[s + 1]], :T] = np.matmul(stack, np.ascontiguousarray(m.transpose(0, 2, 1)))
            if s in col:  # the readout at s: Z between bra and ket
                e = np.matmul(_flip(v.reshape(R, ql, 2, dr)).reshape(R, 2 * ql, dr), right[s + 1])
                out[:, col[s]] = np.matmul(b.reshape(R, b.shape[1], -1), e.reshape(R, -1, 1))[:, :, 0]
            take(s, out)
        if s == n - 1:
            break
        full = _carried(full, site, s in col, _left_half, _left_step, (dr, site.kr))
        left, lstack, llab = full[:, 0], full[:, 1:], llab + [s] * (s in col)


def _weighted_left_sweep(sites: Sequence[np.ndarray], compressed: Compressed, wanted: set[int], kets: Callable,
                         take: Callable, right: list[np.ndarray], rstack: list[np.ndarray], weights: np.ndarray,
                         col: dict[int, int], forward: ChainState | None = None) -> None:
    """:func:`gradient_overlaps`' left sweep for ``weights``: at each varied site s, the overlaps
    (R, 1, T) of ⟨ψ|Σ_q w_q Z_q|ψ_t⟩ from the site's effective environment E, the whole effect of
    the operator and of ψ's other sites on it: each overlap is an inner product of E with a ket
    (χ² per ket; ``kets(s)`` = ``contract`` with ``contract(E)`` the overlaps (R, T)), where the
    stacks cost χ³ per ket. E is taken out of the bonds' bases once rather than every ket into
    them. Rotations read at their own qubit alone are not asked for here: the caller closes them
    against the qubit's reduced density matrix (see ``mps._local_overlaps``).

    The left environments are held transposed (ket, bra), the plain one and the weighted one,
    and are carried bra first: their products with the site's bra, v, are E's first factors too,
    and a readout at the site joins the weighted sum there (two fewer χ³ products per site).
    ``forward``: the forward pass's state; where its left half steps (``lefts``) are this
    sweep's plain products (the chain's left part, bras in the left-part bases), only the
    weighted environment is carried (two products per site instead of four)."""
    n, R = len(sites), sites[0].shape[0]
    lb, rb, bras = compressed.left, compressed.right, compressed.bras
    lefts = None if forward is None else forward.lefts

    def reused(s: int) -> bool:  # the plain product v at site s is the forward pass's left half step
        return lefts is not None and s < len(lefts) and _smaller(lb[s], rb[s]) is lb[s]

    plain = np.ones((R, 1, 1), dtype=sites[0].dtype)  # (R, ket, bra); None where not carried
    weighted = None  # the weighted sum, from the first readout on
    for s in range(n):
        # Where both of the site's cuts hold the bras in the left-part bases, the ket is the bra.
        same = _smaller(lb[s], rb[s]) is lb[s] and _smaller(lb[s + 1], rb[s + 1]) is lb[s + 1]
        site = _Site(bras[s]) if same else _Site(_in_bases(sites[s], lb[s], lb[s + 1]), bras[s])
        dl, dr = site.bl, site.br
        bra = site.ab.reshape(R, dl, 2 * dr)
        # v (R, lk, (p, rb)): an environment times the site's bra. Where the cut's bras are in
        # the left-part basis, the plain environment (ket, bra) is the forward pass's (bra, ket),
        # a Hermitian Gram matrix, transposed: its v is the conjugate of that pass's half step.
        v0 = _conj(lefts[s]).reshape(R, -1, 2 * dr) if reused(s) else np.matmul(plain, bra)
        ql = v0.shape[1]
        v1 = None if weighted is None else np.matmul(weighted, bra)
        if s in col:  # Z at this site joins the weighted sum
            here = _weighted_flip(v0.reshape(R, ql, 2, dr), weights[:, col[s]]).reshape(R, ql, 2 * dr)
            v1 = here if v1 is None else v1 + here
        if s in wanted:
            take(s, _site_overlaps(v0.reshape(R, 2 * ql, dr), None if v1 is None else v1.reshape(R, 2 * ql, dr),
                                   right[s + 1], rstack[s + 1], kets(s), lb[s], rb[s + 1]))
        if s == n - 1:
            break
        ket_t = np.ascontiguousarray(site.a.reshape(R, 2 * ql, site.kr).transpose(0, 2, 1))  # (R, rk, (lk, p))
        plain = None if reused(s + 1) else np.matmul(ket_t, v0.reshape(R, 2 * ql, dr))  # (R, rk, rb)
        weighted = None if v1 is None else np.matmul(ket_t, v1.reshape(R, 2 * ql, dr))


def _site_overlaps(v0: np.ndarray, v1: np.ndarray | None, right: np.ndarray, rstack: np.ndarray, contract: Callable,
                   left_basis, right_basis) -> np.ndarray:
    """The overlaps (R, 1, T) at one site from v0 and v1 (R, (lk, p), rb): the plain and the
    weighted left environment times the site's bra, the weighted one with the site's own Z term
    in it (None before the first readout); ``right``, ``rstack``: ψ's right environment and the
    weighted one (R, 0 or 1, bra, ket) after the site. ``contract(E)`` closes the effective
    environment E (None where no readout reaches the site)."""
    R, rows, _ = v0.shape
    ql, pr = rows // 2, right.shape[2]
    far_env = None
    if v1 is not None:  # readouts left of the site, and at it
        far_env = np.matmul(v1, right).reshape(R, ql, 2, pr)
    if rstack.shape[1]:  # readouts right of the site
        term = np.matmul(v0, rstack[:, 0]).reshape(R, ql, 2, pr)
        far_env = term if far_env is None else far_env + term
    return contract(None if far_env is None else _out_of_bases(far_env, left_basis, right_basis))[:, None, :]


def _out_of_bases(e: np.ndarray, left_basis, right_basis) -> np.ndarray:
    """An effective environment E (R, ql, 2, pr) held in the bonds' bases, as the tensor E'
    (R, l, 2, r) of the full bonds with Σ E'·b = Σ E·(b in the bases) for every site tensor b:
    E' = conj(left basis)·E·(right basis)ᵀ."""
    R, ql, _, pr = e.shape
    if right_basis is not None:
        e = np.matmul(e.reshape(R, 2 * ql, pr), right_basis.transpose(0, 2, 1)).reshape(R, ql, 2, -1)
    if left_basis is not None:
        r = e.shape[3]
        e = np.matmul(np.conj(left_basis), e.reshape(R, ql, 2 * r)).reshape(R, -1, 2, r)
    return e


def _carried(full: np.ndarray, site: _Site, readout: bool, half, step, shape: tuple[int, int]) -> np.ndarray:
    """The environments ``full`` (R, 1 + z, a, b) — the plain one first, then a stack — carried
    past ``site`` (``half`` and ``step``: :func:`_left_half` and :func:`_left_step`, or the
    right ones), with one entry appended for a ``readout`` at the site: the plain one's half
    with Z on the site's qubit."""
    R, z = full.shape[0], full.shape[1]
    y = half(full, site)  # (R, 1 + z, ., 2, .)
    out = np.empty((R, z + readout, *shape), dtype=full.dtype)
    step(None, site, y, out=out[:, :z])
    if readout:
        step(None, site, _flip(y[:, 0]), out=out[:, z])
    return out


def _carried_sum(full: np.ndarray, site: _Site, w: np.ndarray | None, half, step, shape: tuple[int, int]) -> np.ndarray:
    """As :func:`_carried` for a weighted sum (R, 1 or 2, a, b): the plain environment, then
    Σ_q w_q·(the one with Z_q). A readout at the site (its weights ``w``) is added to the sum
    between the two half steps, so the sum stays one entry and costs one step."""
    y = half(full, site)  # (R, 1 or 2, ., 2, .)
    if w is not None:
        here = _weighted_flip(y[:, 0], w)
        if y.shape[1] == 1:
            y = np.concatenate([y, here[:, None]], axis=1)
        else:
            y[:, 1] += here
    out = np.empty((full.shape[0], y.shape[1], *shape), dtype=np.result_type(full.dtype, y.dtype))
    step(None, site, y, out=out)
    return out


def _smaller(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None or a.shape[2] <= b.shape[2] else b


def _kets_in_bases(b: np.ndarray, left_basis, right_basis) -> np.ndarray:
    """Shifted site tensors (R, T, l, 2, r) in the bases of their bonds."""
    R, T, left, _, r = b.shape
    # One product per row, not one per row and shift (R·T tiny products cost more than these
    # bonds' arithmetic): T joins the rows of the right basis's product, and for the left
    # basis's it joins the columns (a transposed copy, small at the chain's ends).
    if left_basis is not None:
        moved = np.ascontiguousarray(b.reshape(R, T, left, 2 * r).transpose(0, 2, 1, 3)).reshape(R, left, T * 2 * r)
        b = np.matmul(np.conj(left_basis).transpose(0, 2, 1), moved)  # (R, d, T·2r)
        b = b.reshape(R, -1, T, 2, r).transpose(0, 2, 1, 3, 4)
    if right_basis is not None:
        ql = b.shape[2]
        b = np.matmul(np.ascontiguousarray(b).reshape(R, T * ql * 2, r), right_basis).reshape(R, T, ql, 2, -1)
    return b
