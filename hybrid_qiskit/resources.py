"""Memory before allocation: the peak a simulator will need, estimated from the head's width,
the batch and the simulation method, and checked against the memory this machine has free.

A statevector of n qubits holds 2**n amplitudes (8 bytes each when the circuit is real, as
angle encoding + RealAmplitudes is, else 16); a density matrix holds 4**n complex entries. What
multiplies them, per method (measured at 12-16 qubits, see tests/e2e/test_attacks.py and the README):

* ``statevector`` (our batched numpy simulator): the whole batch is one (2**n, rows) array; the
  evolution ping-pongs between two buffers, the estimator keeps the last two final states for the
  adjoint gradient, the expectation values square the final states (with temporaries), and
  complex heads add per-row phases. Peak, with M = max(training batch, evaluation batch): 5
  (real) or 6 (complex) copies of 2**n x M amplitudes, plus the observables' diagonals and the
  adjoint sweep's (2**n, 1 + K) co-state stack, twice, and a fixed ~100 MB per training step.
  Measured (peak RSS above the process's baseline, one training step of 32 and two evaluation
  batches of 128) against the estimate, real / complex head: 12 qubits 57 / 121 MB vs 123 / 153;
  14 qubits 114 / 258 MB vs 192 / 313; 16 qubits 300 / 726 MB vs 471 / 958.
* ``statevector`` on a chain head (every head we ship up to a bond of 256, where ``auto``'s
  cost model takes it: ``hybrid_qiskit.primitives.mps.takes_chain``): no statevector at all.
  The rows' tensors come in blocks of ~32 MB, and neither the statevector program's 2**n index
  maps nor the readouts' 2**n diagonals are built.
* ``statevector_reference`` and Aer's ``statevector``: one circuit at a time, a few copies of
  2**n complex amplitudes.
* Aer's ``density_matrix``: one circuit at a time, a couple of copies of 4**n complex entries.
* A remote QPU (``ibm_runtime``) allocates nothing here.

Example:
    >>> est = estimate("statevector", qubits=20, batch=32, eval_batch=256, observables=20, real=True)
    >>> round(est.bytes / 2**30, 1)
    10.7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.memory import HEADROOM, available_memory, size_text

# Backends that simulate here, by the method they use (a backend may override it with its
# ``method`` setting). Anything else (a QPU) costs no local memory.
METHODS = {
    "statevector": "batched_statevector",
    "statevector_reference": "statevector",
    "aer_statevector": "statevector",
    "aer_noisy": "density_matrix",
    "aer_noisy_exact": "density_matrix",
    "ibm_local": "statevector",  # Aer's automatic method: statevector once a circuit is wide
}
# What a training step allocates whatever the width (autograd graph, the QNN's and the gradient's
# bookkeeping, first BLAS buffers): 40-80 MB measured at 12 qubits, where the states are small.
STEP_OVERHEAD = 96 << 20


@dataclass(frozen=True)
class Estimate:
    bytes: int
    method: str
    detail: str  # how the figure was made, for the message

    def gib(self) -> str:
        return size_text(self.bytes)


def estimate(backend: str, *, qubits: int, batch: int, eval_batch: int | None = None,
             observables: int | None = None, real: bool = False,
             settings: dict[str, Any] | None = None, chain=None) -> Estimate | None:
    """Peak bytes the simulator of ``backend`` needs for a head of ``qubits`` (None: remote).
    ``chain``: the head as a matrix-product-state chain (:func:`head_chain`), if it is one."""
    settings = settings or {}
    n, k = qubits, qubits if observables is None else observables
    amps = 2**n
    if backend == "statevector":  # its ``method`` setting picks our simulator, not Aer's
        from hybrid_qiskit.primitives.mps import BLOCK_BYTES, GRADIENT_BLOCK_BYTES, takes_chain

        if takes_chain(chain, n, settings.get("method", "auto")):
            # A gradient block (up to GRADIENT_BLOCK_BYTES: its right stacks) beside a forward one.
            return Estimate(BLOCK_BYTES + max(2 * BLOCK_BYTES, GRADIENT_BLOCK_BYTES) + STEP_OVERHEAD, "mps_chain",
                            "an exact matrix-product state, a block of rows at a time")
        method = "batched_statevector"
    elif backend in ("aer_noisy", "aer_noisy_exact", "ibm_local"):  # Aer's method follows the width
        from backends.noise_source import aer_method

        twirled = backend == "ibm_local" and (settings.get("resilience_level", 1) >= 1 or bool(settings.get("twirling")))
        method = aer_method(backend, n, settings.get("method") or "auto", twirled=twirled)
    elif backend == "noisy_trajectories":
        return _trajectories_estimate(n, k, settings, chain)
    else:
        method = settings.get("method") or METHODS.get(backend)
    if method is None:
        return None
    if method == "batched_statevector":
        item = 8 if real else 16
        rows = max(batch, eval_batch or batch)
        # Two evolution buffers, the cached final states, |amplitude|**2 and its temporaries, and
        # (complex heads) the per-row phases of diagonal layers: 5 copies real, 6 complex, measured.
        copies = 5 if real else 6
        states = copies * item * amps * rows
        extra = 2 * k * amps * 8 + 2 * amps * (1 + k) * item  # diagonals; adjoint co-states
        extra += STEP_OVERHEAD
        return Estimate(states + extra, method,
                        f"2**{n} {'real' if real else 'complex'} amplitudes x {rows} rows x {copies} copies")
    if method in ("statevector", "automatic"):
        return Estimate(4 * amps * 16, method, f"2**{n} complex amplitudes x 4 copies, one circuit at a time")
    if method == "density_matrix":
        return Estimate(3 * 4**n * 16, method, f"4**{n} complex entries x 3 copies, one circuit at a time")
    if method in ("matrix_product_state", "stabilizer", "extended_stabilizer"):
        return None  # memory follows entanglement, not width: nothing useful to say up front
    return Estimate(4 * amps * 16, method, f"2**{n} complex amplitudes x 4 copies")


def _trajectories_estimate(n: int, k: int, settings: dict, chain) -> Estimate:
    """``noisy_trajectories``: a chain head as a noisy matrix-product state (blocks of ~32 MB),
    anything else as statevector trajectories a block of images at a time, of which one image
    must fit (:func:`backends.noisy_trajectories.statevector_image_bytes`)."""
    from backends.noisy_trajectories import (
        NOISY_CHAIN_QUBITS,
        STATEVECTOR_BLOCK_BYTES,
        statevector_image_bytes,
    )
    from hybrid_qiskit.primitives.mps import BLOCK_BYTES

    method = settings.get("method") or "auto"
    if chain is not None and method != "statevector" and (method == "mps" or n >= NOISY_CHAIN_QUBITS):
        return Estimate(3 * BLOCK_BYTES + STEP_OVERHEAD, "noisy_mps_chain",
                        "noisy trajectories on a matrix-product state, a block of rows at a time")
    t = settings.get("trajectories") or 1
    image = statevector_image_bytes(n, k, t)
    return Estimate(max(image, STATEVECTOR_BLOCK_BYTES) + STEP_OVERHEAD, "statevector_trajectories",
                    f"2**{n} complex amplitudes x {t} trajectories x {2 + k} copies per image, a block of images "
                    f"at a time")


def check_memory(backend: str, *, qubits: int, batch: int, what: str, eval_batch: int | None = None,
                 real: bool = False, settings: dict[str, Any] | None = None,
                 available: int | None = None, chain=None) -> Estimate | None:
    """Refuse, before anything is allocated, a simulation that would not fit in memory.

    Raises:
        HybridQiskitError: the estimate exceeds the free memory; the message gives both figures
            and what to lower.
    """
    est = estimate(backend, qubits=qubits, batch=batch, eval_batch=eval_batch, real=real, settings=settings,
                   chain=chain)
    if est is None:
        return None
    free = available_memory() if available is None else available
    if est.bytes > HEADROOM * free:
        hint = ("lower --qubits, or --batch-size and eval_batch_size (a --config setting)"
                if est.method == "batched_statevector" else
                "lower --qubits, or use --backend noisy_trajectories (a matrix-product state for chain heads)"
                if est.method in ("density_matrix", "statevector") else "lower --qubits")
        raise HybridQiskitError(
            f"{what}: a {qubits}-qubit head on {backend} ({est.method}) needs about {est.gib()} of memory "
            f"({est.detail}), but only {size_text(free)} is free; {hint}"
        )
    return est


def is_real_head(feature_map: str, ansatz: str) -> bool:
    """Whether the head's circuit has real amplitudes only (RY and CX gates): half the bytes."""
    return feature_map == "angle" and ansatz == "real_amplitudes"


def head_chain(cfg):
    """The head of ``cfg`` (a config or anything with its head fields) as an exact
    matrix-product-state chain (:mod:`hybrid_qiskit.primitives.mps`), or None if it is not one."""
    from hybrid_qiskit.circuits import build_head_circuit
    from hybrid_qiskit.primitives.compiler import native_circuit
    from hybrid_qiskit.primitives.mps import compile_chain

    head = build_head_circuit(cfg.qubits, feature_map=cfg.feature_map, ansatz=cfg.ansatz, reps=cfg.reps,
                              reuploads=cfg.reuploads, entanglement=getattr(cfg, "entanglement", "reverse_linear"))
    return compile_chain(native_circuit(head.circuit), head.input_params + head.weight_params)


def check_config(cfg, *, what: str = "train") -> Estimate | None:
    """:func:`check_memory` for a training config (a classical model simulates nothing)."""
    from hybrid_qiskit.models import is_quantum

    if not is_quantum(cfg.model):
        return None
    eval_rows = cfg.eval_batch_size
    if cfg.limit_train is not None and cfg.limit_test is not None:  # evaluation never sees more rows
        eval_rows = min(eval_rows, max(cfg.limit_test, round(cfg.val_fraction * cfg.limit_train), 1))
    return check_memory(cfg.backend, qubits=cfg.qubits, batch=min(cfg.batch_size, cfg.limit_train or cfg.batch_size),
                        eval_batch=eval_rows, real=is_real_head(cfg.feature_map, cfg.ansatz),
                        settings=cfg.backend_settings, what=what, chain=head_chain(cfg))
