"""The batched statevector simulator's kernels: one layer applied to a stack of states.

States are arrays of shape ``(2**n, B, L)``: the basis index first, then B parameter sets (the
batch), then L stacked copies that share the batch's angles. The forward pass uses L = 1; the
adjoint pass stacks the state with one co-state per observable (L = 1 + K), so every layer is
applied once per step for all of them. Each layer of the program (see :mod:`.layers`) touches
the whole stack in one or two numpy calls: that, not the simulation itself (16 amplitudes at
4 qubits), is what makes this orders of magnitude faster than one primitive call per parameter
set.

Where the time goes, and why the kernels look the way they do:

* A one-qubit gate whose angle is the same for the whole batch (the ansatz weights: EstimatorQNN
  repeats them on every row) is a constant 2x2 matrix. Such gates are grouped by up to
  :data:`CHUNK` neighbouring qubits into one Kronecker-product matrix and applied as a single
  matrix product over the state reshaped to ``(above, 2**c, below·B·L)``: one pass over memory
  per group instead of several elementwise passes per gate (6-10x faster).
* Gates whose angle differs per row (the inputs) are applied elementwise, with (B, 1)
  coefficients. Most never run: a first layer acting on |0…0⟩ is a product state, built
  directly, and the adjoint sweep never needs to undo the first layer.
* numpy's BLAS runs on one thread here (:data:`BLAS_THREADS`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from .layers import DenseGate, DiagonalLayer, LocalLayer, Program
from .rotations import Rotation, rotation_matrices

CHUNK = 4  # qubits per constant-matrix product: 16x16 blocks balance flops against passes
# numpy's BLAS threads during a simulation. The products here are small and many; OpenBLAS's
# worker threads wait for a free core, and on a shared 2-core machine one 16x16 product that
# takes 0.1 ms on one thread was measured at 12 ms on two.
BLAS_THREADS = 1

_blas_lock = threading.Lock()
_blas_state = {"depth": 0, "saved": [], "libs": None}


@contextmanager
def blas_threads():
    """Run the block with numpy's BLAS limited to :data:`BLAS_THREADS` threads (restored after)."""
    with _blas_lock:
        if _blas_state["libs"] is None:
            try:
                from threadpoolctl import ThreadpoolController

                _blas_state["libs"] = ThreadpoolController().select(user_api="blas").lib_controllers
            except Exception:  # threadpoolctl missing or a BLAS it cannot drive: leave threads be
                _blas_state["libs"] = []
        if _blas_state["depth"] == 0:
            _blas_state["saved"] = [lib.num_threads for lib in _blas_state["libs"]]
            for lib in _blas_state["libs"]:
                lib.set_num_threads(BLAS_THREADS)
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                for lib, n in zip(_blas_state["libs"], _blas_state["saved"]):
                    lib.set_num_threads(n)


_I2 = np.eye(2)


def at_precision(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` (real or complex, kept so) in the precision of states of ``dtype``: a float64 matrix
    against a float32 state would make numpy compute in float64 and cast every result back."""
    single = np.dtype(dtype).itemsize == (8 if np.dtype(dtype).kind == "c" else 4)
    if np.iscomplexobj(a):
        return a.astype(np.complex64 if single else np.complex128, copy=False)
    return a.astype(np.float32 if single else np.float64, copy=False)


class Batch:
    """One call's parameter sets and every rotation's angle: a (B,) array per rotation, or a
    Python float when the angle is the same on every row (then its matrix is a constant)."""

    def __init__(self, program: Program, values: np.ndarray):
        self.values = values
        table = program.angle_table
        self._index = table.index
        self._theta = table.angles(values)  # (B, G)
        if values.shape[0] > 1:
            varying_columns = ~(values == values[:1]).all(axis=0)
            self._varying = (table.depends & varying_columns).any(axis=1)
        else:
            self._varying = np.zeros(self._theta.shape[1], dtype=bool)

    def angle(self, rot: Rotation) -> float | np.ndarray:
        g = self._index[id(rot)]
        return self._theta[:, g] if self._varying[g] else float(self._theta[0, g])

    def matrix(self, rot: Rotation, adjoint: bool) -> np.ndarray:
        """(d, d) for a batch-constant angle, else (B, d, d)."""
        theta = self.angle(rot)
        return rotation_matrices(rot.name, -theta if adjoint else theta)


def _gate_matrix(gate, batch: Batch, adjoint: bool) -> np.ndarray:
    if gate.rotation is not None:
        return batch.matrix(gate.rotation, adjoint)
    return gate.matrix.conj().T if adjoint else gate.matrix


# --------------------------------------------------------------------------- kernels


class Buffers:
    """Two ping-pong state buffers, so that no layer allocates.

    Kernels write into ``out.reshape(...)``, which is a view only for C-contiguous arrays: a
    state that is not contiguous is never taken as the next output buffer.
    """

    def __init__(self, shape, dtype):
        self.spare = np.empty(shape, dtype)

    def swap(self, used: np.ndarray) -> np.ndarray:
        out = self.spare
        self.spare = used if used.flags.c_contiguous and used.dtype == out.dtype else np.empty_like(out)
        return out


def _kron_chunk(mats: dict[int, np.ndarray], lo: int, hi: int) -> np.ndarray:
    """⊗ of the 2x2 ``mats`` over qubits lo..hi (identity where absent), little-endian."""
    out = None
    for q in range(lo, hi + 1):
        m = mats.get(q, _I2)
        if out is None:
            out = m
        else:  # np.kron(m, out), without np.kron's generality (10x less overhead)
            d = out.shape[0]
            out = (m[:, None, :, None] * out[None, :, None, :]).reshape(2 * d, 2 * d)
    return out


def _apply_constant_1q(state, mats: dict[int, np.ndarray], bufs: Buffers) -> np.ndarray:
    """Apply constant one-qubit matrices {qubit: (2, 2)}, :data:`CHUNK` qubits per matmul."""
    N = state.shape[0]
    rest = state[0].size  # B·L
    qubits = sorted(mats)
    while qubits:
        lo = qubits[0]
        group = [q for q in qubits if q < lo + CHUNK]
        qubits = qubits[len(group):]
        hi = group[-1]
        m = at_precision(_kron_chunk(mats, lo, hi), state.dtype)
        view = state.reshape(N >> (hi + 1), 1 << (hi - lo + 1), (1 << lo) * rest)
        out = bufs.swap(state)
        np.matmul(m, view, out=out.reshape(view.shape))
        state = out
    return state


def _apply_varying_1q(state, q: int, m: np.ndarray, bufs: Buffers) -> np.ndarray:
    """Apply per-row 2x2 matrices ``m`` (B, 2, 2) to qubit q, elementwise."""
    N, B, L = state.shape
    view = state.reshape(N >> (q + 1), 2, 1 << q, B, L)
    out = bufs.swap(state)
    oview = out.reshape(view.shape)
    coeff = at_precision(m[:, :, :, None], state.dtype)  # (B, 2, 2, 1): broadcast over the stack axis
    tmp = np.empty_like(view[:, 0])
    for r in (0, 1):
        o = oview[:, r]
        np.multiply(view[:, 0], coeff[:, r, 0], out=o)
        o += np.multiply(view[:, 1], coeff[:, r, 1], out=tmp)
    return out


def _apply_local(state, op: LocalLayer, batch: Batch, adjoint: bool, bufs: Buffers) -> np.ndarray:
    constant = {}
    for gate in op.gates:
        m = _gate_matrix(gate, batch, adjoint)
        if m.ndim == 2:
            constant[gate.qubit] = m
        else:
            state = _apply_varying_1q(state, gate.qubit, m, bufs)
    return _apply_constant_1q(state, constant, bufs) if constant else state


def _diagonal_phases(op: DiagonalLayer, batch: Batch, adjoint: bool) -> np.ndarray:
    """The layer's diagonal: (N, 1) when the same for every row, else (N, B)."""
    phase = op.phase
    if op.rotations:
        thetas = [batch.angle(r) for r in op.rotations]
        if all(np.ndim(t) == 0 for t in thetas):
            rot = np.exp(-1j * (np.asarray(thetas, dtype=float) @ op.generators))[:, None]
        else:
            B = batch.values.shape[0]
            theta = np.stack([np.broadcast_to(t, (B,)) for t in thetas], axis=1)  # (B, G)
            rot = np.exp(-1j * (op.generators.T @ theta.T))  # (N, B)
        phase = rot if phase is None else rot * phase[:, None]
    else:
        phase = phase[:, None]
    return phase.conj() if adjoint else phase


def apply_dense(state, op: DenseGate, mat: np.ndarray) -> np.ndarray:
    """Apply a k-qubit matrix: ``mat`` (d, d) for all rows or (B, d, d) per row."""
    N, B, L = state.shape
    n = N.bit_length() - 1
    k = len(op.qubits)
    t = state.reshape((2,) * n + (B, L))
    axes = [n - 1 - q for q in reversed(op.qubits)]  # qargs[-1] is the most significant bit
    t = np.moveaxis(t, axes, range(k))
    moved_shape = t.shape
    t = t.reshape(1 << k, -1, B, L)
    mat = at_precision(mat, state.dtype)
    t = np.einsum("bij,jrbl->irbl", mat, t) if mat.ndim == 3 else np.einsum("ij,jrbl->irbl", mat, t)
    t = np.moveaxis(t.reshape(moved_shape), range(k), axes)
    return np.ascontiguousarray(t).reshape(N, B, L)


def apply_op(state, op, batch: Batch, adjoint: bool, bufs: Buffers) -> np.ndarray:
    """Apply ``op`` (or its inverse) to ``state`` (N, B, L); may reuse ``state``'s memory."""
    if op.kind == "local":
        return _apply_local(state, op, batch, adjoint, bufs)
    if op.kind == "perm":
        out = bufs.swap(state)
        # mode="clip": with the default "raise", numpy buffers ``out`` (an extra copy)
        np.take(state, op.inv_perm if adjoint else op.perm, axis=0, out=out, mode="clip")
        return out
    if op.kind == "diag":
        state *= at_precision(_diagonal_phases(op, batch, adjoint)[:, :, None], state.dtype)
        return state
    mat = batch.matrix(op.rotation, adjoint) if op.rotation is not None else op.matrix
    if op.rotation is None and adjoint:
        mat = mat.conj().T
    return apply_dense(state, op, mat)

