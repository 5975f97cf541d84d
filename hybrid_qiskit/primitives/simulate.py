"""Forward simulation of a compiled program on a batch of parameter sets, and observables.

States are arrays of shape ``(2**n, B, L)`` (see :mod:`.kernels`); the forward pass uses L = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache

import numpy as np
from qiskit.quantum_info import SparsePauliOp

from .kernels import Batch, Buffers, apply_op, at_precision, blas_threads
from .layers import LocalLayer, Program
from .rows import map_blocks, row_blocks


def _first_column(gate, batch: Batch) -> np.ndarray:
    """Column 0 of a gate's matrix, the gate applied to |0⟩: (2,) or (B, 2)."""
    rot = gate.rotation
    if rot is None:
        return gate.matrix[:, 0]
    if rot.name not in ("ry", "rx"):
        return batch.matrix(rot, False)[..., :, 0]
    half = np.asarray(batch.angle(rot)) / 2
    c, s = np.cos(half), np.sin(half)
    return np.stack([c, s if rot.name == "ry" else -1j * s], axis=-1)


def _product_state(op: LocalLayer, batch: Batch, n: int, dtype) -> np.ndarray:
    """The first layer applied to |0…0⟩: ⊗_q (column 0 of gate q), shape (N, B, 1)."""
    B = batch.values.shape[0]
    cols = {g.qubit: at_precision(_first_column(g, batch), dtype) for g in op.gates}
    state = np.ones((1, B), dtype=dtype)
    for q in range(n):
        col = cols.get(q)
        if col is None:
            state = np.concatenate([state, np.zeros_like(state)])
        else:
            col = col.T if col.ndim == 2 else col[:, None]  # (2, B) or (2, 1)
            state = (col[:, None, :] * state[None]).reshape(2 * state.shape[0], B)
    return np.ascontiguousarray(state).reshape(1 << n, B, 1)  # (2, B) columns come transposed


def state_dtype(program: Program, single: bool = False) -> np.dtype:
    """The dtype of ``program``'s states: real when every gate is, in single or double precision."""
    if program.is_real:
        return np.dtype(np.float32 if single else np.float64)
    return np.dtype(np.complex64 if single else np.complex128)


def evolve(program: Program, batch: Batch, single: bool = False) -> np.ndarray:
    """Final states (N, B, 1) from |0…0⟩, in single precision if ``single``."""
    n = program.num_qubits
    B = batch.values.shape[0]
    dtype = state_dtype(program, single)
    ops = program.ops
    if ops and ops[0].kind == "local":
        state, ops = _product_state(ops[0], batch, n, dtype), ops[1:]
    else:
        state = np.zeros((1 << n, B, 1), dtype=dtype)
        state[0] = 1.0
    bufs = Buffers(state.shape, dtype)
    for op in ops:
        state = apply_op(state, op, batch, False, bufs)
    return state


def as_values(program: Program, values) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=float)
    P = len(program.parameters)
    if P == 0:  # (rows, 0): reshape(-1, 0) cannot tell the row count
        return values.reshape(values.shape[0] if values.ndim > 1 else 1, 0)
    return values.reshape(-1, P)


# Bytes of state per forward block: with its ping-pong buffer, about the 1 MB L2 of a core. Wide
# states are cut into single rows, so memory is a few states per worker whatever the batch.
FORWARD_BYTES = 512 << 10
# Final states are returned (and kept for the gradient) only up to this size: 20 qubits x 32
# rows in float64. Beyond it (an evaluation of 10,000 images) only expectation values are.
KEEP_STATES_BYTES = 256 << 20


def simulate(program: Program, values: np.ndarray, *, single: bool = False) -> np.ndarray:
    """Final states (2**n, B) from |0…0⟩, one column per row of ``values`` (B, P), in single
    precision if ``single``.

    The circuit's global phase (and any a transpilation to the native gates adds) is left
    out: it changes no expectation value.
    """
    values = as_values(program, values)
    B, N = values.shape[0], 1 << program.num_qubits
    dtype = state_dtype(program, single)
    blocks = row_blocks(B, N * dtype.itemsize, FORWARD_BYTES)
    with blas_threads():
        if len(blocks) == 1:
            return evolve(program, Batch(program, values), single).reshape(N, B)
        out = np.empty((N, B), dtype)

        def run(block: slice) -> None:
            out[:, block] = evolve(program, Batch(program, values[block]), single)[:, :, 0]

        map_blocks(run, blocks)
    return out


def simulate_expectations(
    program: Program, values: np.ndarray, observables: Sequence[CompiledObservable], *, single: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Expectation values (K, B) for parameter sets ``values`` (B, P), and the final states
    (2**n, B) when they fit in :data:`KEEP_STATES_BYTES` (else None: rows are then simulated a
    block at a time, and memory does not grow with the batch)."""
    values = as_values(program, values)
    B, N = values.shape[0], 1 << program.num_qubits
    dtype = state_dtype(program, single)
    if N * B * dtype.itemsize <= KEEP_STATES_BYTES:
        states = simulate(program, values, single=single)
        return expectations(states, observables), states
    evs = np.empty((len(observables), B))

    def run(block: slice) -> None:
        evs[:, block] = expectations(evolve(program, Batch(program, values[block]), single)[:, :, 0], observables)

    with blas_threads():
        map_blocks(run, row_blocks(B, N * dtype.itemsize, FORWARD_BYTES))
    return evs, None


# --------------------------------------------------------------------------- observables


class CompiledObservable:
    """An observable ready to act on batches of states: a diagonal vector when it is made only
    of I/Z Paulis (the QNN's default readout), else a sparse matrix. Both are built on first
    use: a chain circuit (:mod:`.mps`) needs only :attr:`single_z`, and a 2**n diagonal per
    readout at 28 qubits is gigabytes."""

    def __init__(self, op: SparsePauliOp):
        op = op.simplify(atol=0)
        self.op = op
        self.num_qubits = op.num_qubits
        # A sum of Paulis (each Hermitian, phases folded into the coefficients) is Hermitian
        # exactly when its coefficients are real.
        self.hermitian = bool(np.allclose(np.imag(op.coeffs), 0))
        self.is_diagonal = not np.any(op.paulis.x)

    @cached_property
    def single_z(self) -> tuple[int, float] | None:
        """(q, c) when the observable is c·Z_q with c real and nonzero, else None."""
        op = self.op
        if len(op) != 1 or not self.is_diagonal or op.coeffs[0].imag != 0 or op.coeffs[0] == 0:
            return None
        zbits = np.flatnonzero(op.paulis.z[0])
        if len(zbits) != 1 or op.paulis.phase[0] != 0:
            return None
        return int(zbits[0]), float(op.coeffs[0].real)

    @cached_property
    def diag(self) -> np.ndarray | None:
        """The full diagonal (2**n,) of an I/Z observable, else None."""
        if not self.is_diagonal:
            return None
        # ⟨b|Z-string|b⟩ = (-1)^{popcount(b & zmask)}
        op = self.op
        idx = np.arange(1 << op.num_qubits)
        diag = np.zeros(idx.shape, dtype=complex)
        for zbits, coeff in zip(op.paulis.z, op.coeffs):
            parity = np.zeros(idx.shape, dtype=np.int64)
            for q in np.flatnonzero(zbits):
                parity ^= (idx >> q) & 1
            diag += coeff * (1 - 2 * parity)
        return diag.real.copy() if np.allclose(diag.imag, 0) else diag

    @cached_property
    def matrix(self):
        """The sparse matrix (CSR) of an observable with X or Y terms, else None."""
        return None if self.is_diagonal else self.op.to_matrix(sparse=True).tocsr()

    def apply(self, states: np.ndarray) -> np.ndarray:
        """O|ψ⟩ for states (N, B)."""
        if self.diag is not None:
            return states * self.diag[:, None]
        return self.matrix @ states

    def expectation(self, states: np.ndarray) -> np.ndarray:
        """⟨ψ|O|ψ⟩ for states (N, B): shape (B,), real part (observables are Hermitian)."""
        with blas_threads():
            if self.diag is not None:
                return np.real(self.diag) @ _probabilities(states)
            return np.einsum("ib,ib->b", states.conj(), self.apply(states)).real


def _probabilities(states: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(states):
        return states.real**2 + states.imag**2
    return states**2


@lru_cache(maxsize=2)  # a 20-qubit table of 20 observables is 168 MB: keep few
def _diagonal_table(observables: tuple[CompiledObservable, ...]) -> tuple[list[int], np.ndarray | None]:
    """The diagonal observables' positions and their diagonals stacked (D, N): built once, not
    once per block of rows (at 16 qubits, most of what expectations took per block)."""
    diag = [k for k, o in enumerate(observables) if o.diag is not None]
    return diag, (np.stack([np.real(observables[k].diag) for k in diag]) if diag else None)


def expectations(states: np.ndarray, observables: Sequence[CompiledObservable]) -> np.ndarray:
    """⟨ψ_b|O_k|ψ_b⟩ for states (N, B): shape (K, B). Diagonal observables share one product."""
    out = np.empty((len(observables), states.shape[1]))
    diag, table = _diagonal_table(tuple(observables))
    with blas_threads():
        if diag:
            out[diag] = table @ _probabilities(states)
        for k, o in enumerate(observables):
            if o.diag is None:
                out[k] = o.expectation(states)
    return out

