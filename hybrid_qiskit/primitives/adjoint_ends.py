"""Shortcuts for the two ends of the adjoint sweep, where the general method wastes most work.

The general sweep (:mod:`.adjoint_sweep`) carries a stack of 1 + K states (ψ and one co-state
per observable) back through every layer. Profiled at 16 qubits (RealAmplitudes reps 2, ⟨Z⟩ on
every qubit, batch 32), undoing the two later rotation layers on that stack was ~45% of the
backward pass and the three layers' derivative products ~35%. Both ends of the circuit have
structure that makes most of that unnecessary:

* **The last layer** (:func:`last_layer`). With single-qubit Z readouts, a final layer of
  one-qubit gates U_q turns ⟨Z_k⟩ into ⟨ψ_L|U_k†Z_kU_k|ψ_L⟩ (ψ_L: the state before that layer):
  the co-state just before it is one 2x2 matrix h_k = U_k†Z_kU_k applied to ψ_L on qubit k (one
  pass each) instead of the whole layer undone on K states. Its own derivatives involve qubit k
  alone, so they come from the one-qubit reduced density matrices of the final state. Trailing
  diagonal layers (EfficientSU2's last RZ layer) commute with Z readouts: their derivatives are
  zero and they are undone on ψ only.
* **The first layer** (:func:`product_layer_derivatives`). A first layer of one-qubit gates
  acting on |0…0⟩ makes a product state ⊗_q v_q, and its derivative states are product states
  too (v_r replaced by w_r = -2iG_r v_r). ⟨λ_k|t_r⟩ for every r is then a leave-one-out
  contraction of λ_k with the v's: two contractions over the full state per halving level
  (O(N) per co-state in all) instead of R derivative states and a K x R x N product.

Anything else (other observables, a last layer that is not one-qubit gates, a first layer that
is not the first op) goes through the general sweep unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .kernels import Batch, apply_op, at_precision
from .layers import Program
from .rotations import generator
from .simulate import CompiledObservable

_Z = np.diag([1.0, -1.0])


def last_layer(program: Program, observables: Sequence[CompiledObservable]) -> int | None:
    """Index of the final one-qubit layer when the last-layer shortcut applies, else None:
    every observable is c·Z_q, and after that layer come only diagonal layers."""
    if not observables or any(o.single_z is None for o in observables):
        return None
    i = len(program.ops) - 1
    while i >= 0 and program.ops[i].kind == "diag":
        i -= 1
    return i if i >= 0 and program.ops[i].kind == "local" else None


def _qubit_view(states: np.ndarray, q: int) -> np.ndarray:
    """Rows of states (B, N) as (B, N >> (q+1), 2, 2**q): axis 2 is qubit q's bit (a view).

    The shortcuts below work on rows (B, N), not the sweep's (N, B) columns: a pass over qubit q
    then runs its inner loop over 2**q contiguous amplitudes (or N/2 at stride 2), where in the
    (N, B) layout it ran over the B rows of a block (4 at 12 qubits: 3x slower in all)."""
    B, N = states.shape
    return states.reshape(B, N >> (q + 1), 2, 1 << q)


def _reduced_density(rows: np.ndarray, q: int, diagonal: bool = True) -> np.ndarray:
    """Qubit q's reduced density matrices ρ[b, a, a'] = Σ_rest ψ(a, rest) ψ*(a', rest) for states
    ``rows`` (B, N): (B, 2, 2). With ``diagonal`` False only the off-diagonal is computed."""
    v = _qubit_view(rows, q)
    v0, v1 = v[:, :, 0], v[:, :, 1]
    rho = np.zeros((rows.shape[0], 2, 2), dtype=np.result_type(rows.dtype, np.float64))
    if diagonal:
        rho[:, 0, 0] = (v0 * v0.conj()).real.sum((1, 2))
        rho[:, 1, 1] = (v1 * v1.conj()).real.sum((1, 2))
    rho[:, 0, 1] = (v0 * v1.conj()).sum((1, 2))
    rho[:, 1, 0] = rho[:, 0, 1].conj()
    return rho


def last_layer_stack(
    program: Program,
    index: int,
    batch: Batch,
    psi: np.ndarray,
    observables: Sequence[CompiledObservable],
    dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """The sweep's stack just before op ``index`` (the final one-qubit layer), and that
    layer's derivatives.

    Args:
        psi: final states (N, B).

    Returns:
        ``(stack, dtheta)``: stack (N, B, 1+K) with ψ_L and the co-states h_k ψ_L;
        dtheta (B, K, R) for the layer's rotations that depend on parameters (zeros when it has none).
    """
    N, B = psi.shape
    K = len(observables)
    op, jacobian = program.ops[index], program.angle_jacobians[index]
    # A block's final states are a column slice of the batch's, strided by the batch width:
    # one contiguous copy first, or every later pass touches a cache line per amplitude.
    psi = np.ascontiguousarray(psi, dtype=dtype)
    readouts = [o.single_z for o in observables]
    gates = {g.qubit: g for g in op.gates}

    # Trailing diagonal layers commute with the readouts: undone on ψ alone (their derivatives
    # are zero). ψ is then the state right after the layer.
    state = psi[:, :, None]
    for op_after in program.ops[:index:-1]:  # last first
        state = apply_op(np.array(state), op_after, batch, True, _NoBuffers())
    psi = state[:, :, 0]

    # Its derivatives, at the point after the layer: 2 Re⟨ψ|c Z_q (-iG_q)|ψ⟩ = c Tr(ρ_q Z(-2iG_q)),
    # nonzero only for a rotation on the readout's own qubit (others commute with Z_q).
    rotations = jacobian.rotations if jacobian is not None else ()
    dtheta = np.zeros((B, K, len(rotations)))
    if rotations:
        column = {id(r): j for j, r in enumerate(rotations)}
        rho, rows = {}, None
        for k, (q, c) in enumerate(readouts):
            gate = gates.get(q)
            if gate is None or gate.rotation is None or id(gate.rotation) not in column:
                continue
            a = _Z @ (-2j * generator(gate.rotation.name))
            if q not in rho:  # RX, RY: a is off-diagonal, and so only ρ's off-diagonal counts
                if rows is None:
                    rows = np.ascontiguousarray(psi.T)
                rho[q] = _reduced_density(rows, q, diagonal=bool(a[0, 0] or a[1, 1]))
            dtheta[:, k, column[id(gate.rotation)]] = c * np.einsum("bij,ji->b", rho[q], a).real

    # Back to the point before the layer: only ψ is undone through it.
    state = apply_op(np.ascontiguousarray(state), op, batch, True, _NoBuffers())
    psi_l = state[:, :, 0]
    rows_l = np.ascontiguousarray(psi_l.T)  # (B, N)

    # Co-states h_k ψ_L are built as contiguous rows (B, N), then moved into the stack in one
    # transposing copy: written straight into the stack's strided slots they took 1.6x longer
    # (16 qubits), and in the (N, B) layout 3x longer (12 qubits).
    costates = np.empty((K, B, N), dtype=dtype)
    tmp = np.empty((B, N // 2), dtype=dtype)
    for k, (q, c) in enumerate(readouts):
        gate = gates.get(q)
        if gate is None:  # no gate on the readout qubit: h = c Z
            h = c * _Z
        else:
            u = gate.matrix if gate.rotation is None else batch.matrix(gate.rotation, False)
            h = c * (np.swapaxes(u, -1, -2).conj() @ _Z @ u)  # (2, 2) or (B, 2, 2): U†(cZ)U
        h = at_precision(h if np.issubdtype(dtype, np.complexfloating) else h.real, dtype)
        if h.ndim == 3:  # per-row matrices: (B, 2, 2) broadcast over a row's amplitudes
            h = h[:, None, None]
        src, dst = _qubit_view(rows_l, q), _qubit_view(costates[k], q)
        t = tmp.reshape(src[:, :, 0].shape)
        for r in (0, 1):
            np.multiply(src[:, :, 0], h[..., r, 0], out=dst[:, :, r])
            dst[:, :, r] += np.multiply(src[:, :, 1], h[..., r, 1], out=t)
    stack = np.empty((N, B, 1 + K), dtype=dtype)
    stack[:, :, 0] = psi_l
    stack[:, :, 1:] = costates.transpose(2, 1, 0)
    return stack, dtheta


class _NoBuffers:
    """Buffers for a one-off application: always a fresh output (the input may be a view)."""

    def swap(self, used: np.ndarray) -> np.ndarray:
        return np.empty_like(used)


# --------------------------------------------------------------------------- the first layer


def product_layer_applies(program: Program, first: int) -> bool:
    """True when the first parametrized op is ops[0], a one-qubit layer acting on |0…0⟩."""
    return first == 0 and program.ops[0].kind == "local"


def _factor(gate, batch: Batch, B: int) -> np.ndarray:
    """The gate applied to |0⟩: (B, 2)."""
    if gate.rotation is None:
        col = gate.matrix[:, 0]
    else:
        col = np.asarray(batch.matrix(gate.rotation, False))[..., :, 0]
    return np.broadcast_to(col, (B, 2))


def product_layer_derivatives(stack: np.ndarray, op, rotations, batch: Batch, n: int) -> np.ndarray:
    """d⟨O_k⟩/dθ_r = Re⟨λ_k|t_r⟩ for the first layer (a product state): (B, K, R), from the
    stack (N, B, 1+K) at the point after it. t_r is ⊗_q v_q with v_r replaced by
    w_r = -2iG_r v_r, so only leave-one-out contractions of λ_k with the v's are needed."""
    N, B, L = stack.shape
    dtype = stack.dtype
    gates = {g.qubit: g for g in op.gates}
    # ⟨λ|t⟩ = Σ λ* t; take Σ λ conj(t) and the real part (the same).
    factors = [
        (_factor(gates[q], batch, B) if q in gates else np.broadcast_to([1.0, 0.0], (B, 2))) for q in range(n)
    ]
    factors = [at_precision(np.conj(f) if np.iscomplexobj(stack) else np.real(f), dtype) for f in factors]
    qubit_of = {id(g.rotation): g.qubit for g in op.gates if g.rotation is not None}
    wanted = {qubit_of[id(r)] for r in rotations}
    leaves: dict[int, np.ndarray] = {}
    # The whole stack (slot 0 too) is contracted: contiguous, so every contraction is one
    # matrix product without a copy; slot 0 is dropped at the leaves.
    _leave_one_out(stack, 0, n - 1, factors, wanted, leaves)
    out = np.empty((B, L - 1, len(rotations)))
    for j, r in enumerate(rotations):
        q = qubit_of[id(r)]
        v = np.conj(factors[q]) if np.iscomplexobj(stack) else factors[q]  # (B, 2), unconjugated
        w = v @ (-2j * generator(r.name)).T  # (B, 2): rows are -2iG v
        w = np.conj(w) if np.iscomplexobj(stack) else w.real
        out[:, :, j] = np.einsum("abk,ba->bk", leaves[q][:, :, 1:], w).real
    return out


def _product(factors: Sequence[np.ndarray], lo: int, hi: int) -> np.ndarray:
    """⊗ of the (B, 2) factors of qubits lo..hi: (2**(hi-lo+1), B), qubit hi most significant."""
    out = factors[lo].T
    for q in range(lo + 1, hi + 1):
        f = factors[q].T  # (2, B)
        out = (f[:, None, :] * out[None, :, :]).reshape(-1, out.shape[1])
    return out


def _contract(t: np.ndarray, vec: np.ndarray, axis: int) -> np.ndarray:
    """Σ_x t[..., x, ..., b, k] vec[x, b] over ``axis`` (0 or 1) of t (X0, X1, B, K)."""
    if t.shape[2] == 1:  # one row (wide states): a plain matrix-vector product
        if axis == 0:
            return (vec[:, 0] @ t.reshape(t.shape[0], -1)).reshape(t.shape[1:])
        return np.matmul(vec[:, 0], t.reshape(t.shape[0], t.shape[1], -1)).reshape(t.shape[0], *t.shape[2:])
    return np.einsum("hlbk,hb->lbk" if axis == 0 else "hlbk,lb->hbk", t, vec)


def _leave_one_out(t: np.ndarray, lo: int, hi: int, factors, wanted: set[int], leaves: dict) -> None:
    """For each wanted qubit q in lo..hi: t (2**(hi-lo+1), B, K) contracted with the factors of
    every other qubit in lo..hi, into ``leaves[q]`` (2, B, K). Halving the qubit range each
    level keeps the total work at a few passes over t."""
    if lo == hi:
        leaves[lo] = t
        return
    mid = (lo + hi) // 2
    t4 = t.reshape(1 << (hi - mid), 1 << (mid - lo + 1), *t.shape[1:])  # (high, low, B, K)
    if any(lo <= q <= mid for q in wanted):
        _leave_one_out(_contract(t4, _product(factors, mid + 1, hi), 0), lo, mid, factors, wanted, leaves)
    if any(mid < q <= hi for q in wanted):
        _leave_one_out(_contract(t4, _product(factors, lo, mid), 1), mid + 1, hi, factors, wanted, leaves)
