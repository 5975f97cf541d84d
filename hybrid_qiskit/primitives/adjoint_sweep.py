"""The adjoint (reverse-mode) gradient of a compiled program, for many observables at once.

The adjoint method (Jones & Gacon 2020, arXiv:2009.02823): with ψ the state after a gate and
λ = U_{later}^† O ψ_final, a rotation U = exp(-iθG) contributes d⟨O⟩/dθ = 2 Re⟨λ|(-iG)|ψ⟩. One
forward and one backward sweep give every gate's derivative; the chain rule through each
angle's expression gives the derivative per circuit parameter.

The state is stacked with one co-state per observable (L = 1 + K), so every layer is undone once
per step for all of them. All gates of a layer commute, so every derivative of a layer is taken
at the point after it, as one batched matrix product of the co-states against ``(-2iG_g)|ψ⟩``
(built a cache-sized slab of rows at a time). The sweep runs on cache-sized slabs of rows
(:data:`SWEEP_BYTES`): rows are independent, and a 12-qubit stack of 32 rows (14 MB) would
otherwise go through memory for every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .adjoint_ends import (
    last_layer,
    last_layer_stack,
    product_layer_applies,
    product_layer_derivatives,
)
from .kernels import Batch, Buffers, apply_dense, apply_op, at_precision, blas_threads
from .layers import Program
from .mps import chain_gradient, chain_readouts, chain_vjp
from .mps_sweeps import ChainState
from .rotations import Rotation, generator
from .rows import map_blocks, row_blocks
from .simulate import CompiledObservable, as_values, evolve, expectations, state_dtype


@lru_cache(maxsize=256)
def _local_derivative_maps(n: int, gates: tuple[tuple[int, str], ...]) -> tuple[np.ndarray, np.ndarray]:
    """For one-qubit rotations (qubit, name) with off-diagonal generators: the index map
    i -> i ^ (1 << q) (R, N) and coefficients c (R, N) with (-2iG ψ)[i] = c[i] ψ[i ^ (1 << q)]."""
    idx = np.arange(1 << n)
    flips, coeffs = [], []
    for q, name in gates:
        g = _minus_2i_generator(name)
        flips.append(idx ^ (1 << q))
        coeffs.append(np.where((idx >> q) & 1, g[1, 0], g[0, 1]))
    coeffs = np.array(coeffs)
    return np.array(flips), (coeffs.real.copy() if np.allclose(coeffs.imag, 0) else coeffs)


@lru_cache(maxsize=64)
def _minus_2i_generator(name: str) -> np.ndarray:
    """-2iG (the factor 2 of d⟨O⟩/dθ = 2 Re⟨λ|-iG|ψ⟩ folded in); real where it can be."""
    g = -2j * generator(name)
    return g.real.copy() if np.allclose(g.imag, 0) else g


def _derivative_states(psi_t: np.ndarray, op, rotations: Sequence[Rotation]) -> np.ndarray:
    """-2iG_r|ψ⟩ for each rotation r of ``op``: shape (B, R, N), from ψ transposed (B, N)."""
    B, N = psi_t.shape
    if op.kind == "local":
        qubit = {id(g.rotation): g.qubit for g in op.gates if g.rotation is not None}
        gates = tuple((qubit[id(r)], r.name) for r in rotations)
        if B * N * len(gates) <= 1 << 15:  # small: one gather and one multiply for all gates
            flips, coeffs = _local_derivative_maps(N.bit_length() - 1, gates)
            return psi_t[:, flips] * at_precision(coeffs, psi_t.dtype)
        # Large: two strided scaled copies per gate (off-diagonal one-qubit generators).
        gens = [at_precision(_minus_2i_generator(name), psi_t.dtype) for _, name in gates]
        out = np.empty((B, len(gates), N), dtype=np.result_type(psi_t, *gens))
        for r, ((q, _), g) in enumerate(zip(gates, gens)):
            src = psi_t.reshape(B, N >> (q + 1), 2, 1 << q)
            dst = out[:, r].reshape(src.shape)
            np.multiply(src[:, :, 1], g[0, 1], out=dst[:, :, 0])
            np.multiply(src[:, :, 0], g[1, 0], out=dst[:, :, 1])
        return out
    if op.kind == "diag":
        rows = [i for i, r in enumerate(op.rotations) if any(r is x for x in rotations)]
        return psi_t[:, None, :] * at_precision(-2j * op.generators[rows], psi_t.dtype)
    g = at_precision(_minus_2i_generator(op.rotation.name), psi_t.dtype)
    d = apply_dense(np.ascontiguousarray(psi_t.T)[:, :, None], op, g)  # (N, B, 1)
    return d[:, :, 0].T[:, None, :]


# The end-layer shortcuts of :mod:`.adjoint_ends` are taken from this width up. Measured on the
# QNN head (RealAmplitudes reps 2, batch 32, load ~1.5): 14 qubits 15% and 16 qubits 25-30%
# faster with them; at 12 qubits no gain (their per-block Python work matches what they save).
SHORTCUT_QUBITS = 13

SLAB_BYTES = 4 << 20  # derivative states are built this many bytes at a time (cache-sized)
# The adjoint sweep runs on slabs of rows whose (N, rows, 1+K) stack is about this size, so that
# it stays in cache through every layer: 12 qubits, batch 32 (a 14 MB stack) measured 15-25%
# faster; below ~2 MB per batch nothing changes.
SWEEP_BYTES = 2 << 20


def _layer_derivatives(stack: np.ndarray, op, rotations: Sequence[Rotation]) -> np.ndarray:
    """d⟨O_k⟩/dθ_r = 2 Re⟨λ_k|-iG_r|ψ⟩ for one layer: (B, K, R), from the stack (N, B, 1+K)
    at the point after the layer. Rows are taken in slabs so that the (rows, R, N) derivative
    states stay in cache instead of making a round trip through memory."""
    N, B, L = stack.shape
    R = len(rotations)
    out = np.empty((B, L - 1, R))
    rows = max(1, SLAB_BYTES // (R * N * stack.itemsize))
    for b0 in range(0, B, rows):
        b1 = min(B, b0 + rows)
        psi_t = np.ascontiguousarray(stack[:, b0:b1, 0].T)  # (rows, N)
        d = _derivative_states(psi_t, op, rotations)  # (rows, R, N)
        lam = stack[:, b0:b1, 1:].transpose(1, 2, 0)  # (rows, K, N), a view
        if np.iscomplexobj(d) or np.iscomplexobj(lam):
            out[b0:b1] = np.matmul(lam, d.conj().transpose(0, 2, 1)).real
        else:
            np.matmul(lam, d.transpose(0, 2, 1), out=out[b0:b1])
    return out


def adjoint_gradient(
    program: Program,
    values: np.ndarray,
    observables: Sequence[CompiledObservable],
    *,
    state: np.ndarray | ChainState | None = None,
    single: bool = False,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Expectation values and their gradients w.r.t. every circuit parameter.

    Args:
        program: the compiled circuit.
        values: parameter sets (B, P), columns in ``program.parameters`` order.
        observables: K observables.
        state: the final states (2**n, B) for ``values`` when already known (the estimator's
            forward pass computed them), or for a chain its :class:`~.mps_sweeps.ChainState`;
            simulated otherwise, a block of rows at a time.
        single: sweep in single precision (float32/complex64 states; expectation values and
            derivatives are still summed in float64). A given ``state`` decides for itself.
        method: "auto", "statevector" or "mps": where the circuit runs as a matrix-product-state
            chain instead (:func:`~.mps.chain_readouts`; always float64).

    Returns:
        ``(evs, grads)`` with evs (K, B) and grads (K, B, P).
    """
    values = as_values(program, values)
    readouts = chain_readouts(program, observables, method)
    with blas_threads():
        if readouts is not None:
            return chain_gradient(program.chain, values, readouts,
                                  state=state if isinstance(state, ChainState) else None)
        return _adjoint_gradient(program, values, observables, state if isinstance(state, np.ndarray) else None,
                                 single)


def adjoint_vjp(
    program: Program,
    values: np.ndarray,
    observables: Sequence[CompiledObservable],
    cotangent: np.ndarray,
    *,
    state: np.ndarray | ChainState | None = None,
    single: bool = False,
    method: str = "auto",
) -> np.ndarray:
    """The vector-Jacobian product Σ_k cotangent[k, b] · d⟨O_k⟩/dθ per row: (B, P), what a
    training step's backward pass needs: the gradient of ⟨O_b⟩ for one observable per row,
    O_b = Σ_k cotangent[k, b] O_k. A chain computes it directly, at about the cost of one
    readout's gradient (:func:`~.mps.chain_vjp`). On the statevector, diagonal observables (the
    QNN's Z readouts) give one co-state O_b ψ_b, so the adjoint sweep carries 2 states instead of
    1 + K; other observables take :func:`adjoint_gradient`'s Jacobians (K, B, P), contracted with
    ``cotangent`` (K, B). Arguments as for :func:`adjoint_gradient`."""
    values = as_values(program, values)
    cotangent = np.asarray(cotangent, dtype=float)
    readouts = chain_readouts(program, observables, method)
    if readouts is not None:
        with blas_threads():
            return chain_vjp(program.chain, values, readouts, cotangent,
                             state=state if isinstance(state, ChainState) else None)
    plain = state if isinstance(state, np.ndarray) else None
    if observables and all(o.diag is not None for o in observables):
        with blas_threads():
            return _statevector_vjp(program, values, observables, cotangent, plain, single)
    _, grads = adjoint_gradient(program, values, observables, state=state, single=single, method=method)
    return np.einsum("kb,kbp->bp", cotangent, grads)


def _statevector_vjp(program, values, observables, cotangent, state, single) -> np.ndarray:
    """:func:`adjoint_vjp` on the statevector for diagonal observables: the sweep's stack holds ψ
    and the one co-state λ_b = (Σ_k cotangent[k, b] O_k) ψ_b."""
    B, P, n = values.shape[0], values.shape[1], program.num_qubits
    out = np.zeros((B, P))
    if not any(c is not None for c in program.angle_jacobians):
        return out
    if state is not None:
        single = state.dtype in (np.float32, np.complex64)
    diag = np.stack([o.diag for o in observables], axis=1)  # (N, K)
    dtype = state_dtype(program, single)
    if np.iscomplexobj(diag):
        dtype = np.result_type(dtype, np.complex64)

    def run(block: slice) -> None:
        if state is None:
            psi = evolve(program, Batch(program, values[block]), single)[:, :, 0]
        else:
            psi = state[:, block]
        co_state = psi * at_precision(diag @ cotangent[:, block], dtype)
        out[block] = _sweep(program, values[block], psi, observables, dtype, None, co_state)[0]

    map_blocks(run, row_blocks(B, (1 << n) * 2 * dtype.itemsize, SWEEP_BYTES))
    return out


def _adjoint_gradient(program, values, observables, state, single):
    B, P, n, K = values.shape[0], values.shape[1], program.num_qubits, len(observables)
    if state is not None:
        single = state.dtype in (np.float32, np.complex64)
    # A Y in an observable makes even a real program's co-states complex.
    complex_obs = any(np.iscomplexobj(o.diag if o.diag is not None else o.matrix.data) for o in observables)
    dtype = state_dtype(program, single)
    if complex_obs:
        dtype = np.result_type(dtype, np.complex64)
    evs, grads = np.empty((K, B)), np.zeros((K, B, P))
    differentiable = K > 0 and any(c is not None for c in program.angle_jacobians)
    # Slot 0 of the stack is ψ, slots 1..K are λ_k = O_k ψ: for the QNN's Z readouts, one product
    # with this table, built once for all blocks.
    table = None
    if differentiable and all(o.diag is not None for o in observables):
        table = at_precision(np.stack([np.ones(1 << n)] + [o.diag for o in observables], axis=1), dtype)

    def run(block: slice) -> None:
        if state is None:
            psi = evolve(program, Batch(program, values[block]), single)[:, :, 0]
        else:
            psi = state[:, block]
        evs[:, block] = expectations(psi, observables)
        if differentiable:
            grads[:, block] = _sweep(program, values[block], psi, observables, dtype, table)

    # Rows are independent: sweep them in blocks whose stack stays in cache across all layers.
    map_blocks(run, row_blocks(B, (1 << n) * (1 + K) * dtype.itemsize, SWEEP_BYTES))
    return evs, grads


def _sweep(program, values, psi, observables, dtype, table, co_state: np.ndarray | None = None) -> np.ndarray:
    """The adjoint sweep for parameter sets ``values`` (B, P) with final states ``psi`` (N, B):
    gradients (K, B, P). ``co_state`` (N, B): one co-state O_b ψ_b given per row instead of the
    observables' (a vector-Jacobian product): gradients (1, B, P) of ⟨O_b⟩."""
    B, P, K = values.shape[0], values.shape[1], 1 if co_state is not None else len(observables)
    batch = Batch(program, values)
    ops = program.ops
    first = next(i for i, c in enumerate(program.angle_jacobians) if c is not None)
    grads_t = np.zeros((B, K, P))  # (B, K, P) while accumulating: rows of the matmul below
    top = len(ops) - 1
    # One layer application serves ψ and every co-state.
    wide = program.num_qubits >= SHORTCUT_QUBITS
    last = last_layer(program, observables) if table is not None and wide and co_state is None else None
    if co_state is not None:
        stack = np.empty((psi.shape[0], B, 2), dtype=dtype)
        stack[:, :, 0] = psi
        stack[:, :, 1] = co_state
    elif last is not None:  # Z readouts after one-qubit gates: the stack starts before that layer
        stack, dtheta = last_layer_stack(program, last, batch, psi, observables, dtype)
        if program.angle_jacobians[last] is not None:
            _through_angles(grads_t, dtheta, program.angle_jacobians[last], values)
        top = last - 1
    elif table is not None:
        stack = np.multiply(psi[:, :, None], table[:, None, :], dtype=dtype)
    else:
        stack = np.empty((psi.shape[0], B, 1 + K), dtype=dtype)
        stack[:, :, 0] = psi
        for k, o in enumerate(observables):
            stack[:, :, 1 + k] = o.apply(psi)
    bufs = Buffers(stack.shape, dtype)
    for i in range(top, first - 1, -1):
        op, jacobian = ops[i], program.angle_jacobians[i]
        if jacobian is not None:
            if i == first and wide and product_layer_applies(program, first):
                dtheta = product_layer_derivatives(stack, op, jacobian.rotations, batch, program.num_qubits)
            else:
                dtheta = _layer_derivatives(stack, op, jacobian.rotations)  # (B, K, R)
            _through_angles(grads_t, dtheta, jacobian, values)
        if i > first:  # nothing before the first parametrized layer needs its inverse
            stack = apply_op(stack, op, batch, True, bufs)
    return grads_t.transpose(1, 0, 2)


def _through_angles(grads_t: np.ndarray, dtheta: np.ndarray, jacobian, values: np.ndarray) -> None:
    """Add one layer's angle derivatives dtheta (B, K, R) to grads_t (B, K, P) through the angles'
    :class:`~.layers.AngleJacobian` (the chain rule)."""
    grads_t += dtheta @ jacobian.constant
    for r, j, partial in jacobian.varying:
        grads_t[:, :, j] += partial(values)[:, None] * dtheta[:, :, r]
