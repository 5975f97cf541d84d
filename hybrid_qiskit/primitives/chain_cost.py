"""Which exact simulator a circuit runs on: the chain's and the statevector's cost, estimated.

``method="auto"`` takes the matrix-product chain wherever its estimated gradient time is below
the statevector's, at any bond (a gradient is what a training step spends its time on; a
forward pass scales the same way on both). Both estimates are per batch of ``rows``, for the
gradient a training step asks for (a vector-Jacobian product, :func:`~.adjoint_sweep.adjoint_vjp`),
and were fitted to ``experiments/bench_chain.py`` (one core, batch 32, heads of bond 4 to 64 at
6 to 16 qubits), which prints them beside the measured times so that the model can be checked
again:

* the chain (:func:`~.mps.chain_vjp`): its stacked products (:mod:`.mps_sweeps`) make, per row
  and site j with bonds l and r (at most 2**k k sites from an end, where the gradient
  compresses them), (10 + 2·[F_j > 0])·l·r·(l + r) multiply-adds (the state's environments and
  the gradient's weighted ones, carried each way, and the effective environment where F_j
  rotations read beyond their own qubit are varied; those read at their own qubit alone close
  against its density matrix, for next to nothing) and 8·(1 + F_j)·l·r more for the overlaps
  against the shift bases, at about :data:`CHAIN_MACS_PER_S`; building the state and
  the shift bases at the uncompressed bonds is charged as T_j·l·r·(gates on the site) numbers
  moved per row (T_j: every rotation varied there) at :data:`CHAIN_MOVE_S` each (fitted: the
  bases are shared by the batch, but the state's sites and their compression are per row); every
  site costs numpy calls, :data:`CHAIN_SITE_S` per site and batch, and every call
  :data:`CHAIN_FIXED_S`. Complex chains do 4x the arithmetic and 2x the moves.
* the statevector's adjoint sweep for the product (:func:`~.adjoint_sweep.adjoint_vjp`): ψ and
  one co-state, 3 states' worth of 2**n amplitudes with the derivative states, through each of
  about (gates / n) layers, at :data:`STATEVECTOR_S` per amplitude and layer (2x for complex
  states); it no longer grows with the number of readouts either.

The chain's constants are a relative least-squares fit (non-negative) to one quiet run (load
0.8) of the gradients of ``bench_chain.py``'s heads and EfficientSU2 at 8, 9, 10, 11, 12, 14
and 16 qubits (42 points; median error 13%), after its rotations read at their own qubit alone
moved to density matrices and its left sweep to the forward pass's half steps; the
statevector's are from the fit before, its code unchanged. Whole training steps on both
simulators (``experiments/bench_crossover.py``: batch 32, medians of 15 alternating steps,
statevector / chain ms) then checked the
choices where they are close: the default head 10.1 / 9.5 at 10 qubits (``auto``: statevector)
and 14.1 / 9.7 at 11; reps 4 11.7 / 12.9 at 10 (``auto``: chain) and 25.4 / 20.8 at 11; the ZZ
map 14.5 / 16.3 at 9 (``auto``: chain); EfficientSU2 17.1 / 17.6 at 9 and 18.9 / 11.2 at 10;
circular 9.6 / 12.2 at 10 and 14.2 / 13.7 at 11; reps 6 48.5 / 59.6 at 12 and 163 / 89.5 at 14.
``auto`` takes the faster or a level one at each but reps 4 at 10 qubits and the ZZ map at 9,
where it takes the chain at 10-12% over the statevector's step: the default head takes the chain
from 11 qubits, reps 4 from 10, circular from 11, the ZZ map and EfficientSU2 from 9, reps 6 from
14 (where its step is 1.8x faster than the statevector's).
"""

from __future__ import annotations

CHAIN_MACS_PER_S = 7.4e9
CHAIN_MOVE_S = 1.8e-10
CHAIN_SITE_S = 2.5e-4
CHAIN_FIXED_S = 1.2e-3  # per call
STATEVECTOR_S = 7.0e-9  # per row, amplitude, state and layer
STATEVECTOR_FIXED_S = 4.7e-4


def chain_seconds(chain, readouts: int, rows: int = 32) -> float:
    """Estimated seconds of :func:`~.mps.chain_vjp` for ``rows`` rows (its cost does not grow
    with the number of Z readouts)."""
    n = chain.num_qubits
    built = (1, *chain.cut_bonds, 1)  # the site tensors are built at these bonds
    cuts = built  # and contracted at these: the gradient compresses the ends (mps_sweeps._bases)
    if max(cuts) >= 8:
        cuts = tuple(min(b, 2**k, 2 ** (n - k)) for k, b in enumerate(cuts))
    varied, far = [0] * n, [0] * n  # rotations varied per site; those read beyond it
    local = chain.local_rotations
    for g in chain.rotation_gate:
        varied[chain.gates[g].varied_site] += 1
        far[chain.gates[g].varied_site] += chain.gate_rotation[g] not in local
    macs = moves = 0.0
    for j in range(n):
        left, right = cuts[j], cuts[j + 1]
        macs += (10 + 2 * (far[j] > 0)) * left * right * (left + right) + 8 * (1 + far[j]) * left * right
        moves += varied[j] * built[j] * built[j + 1] * len(chain.site_ops[j])
    complex_ = not chain.is_real
    return CHAIN_FIXED_S + CHAIN_SITE_S * n + rows * (macs * (4 if complex_ else 1) / CHAIN_MACS_PER_S
                                      + moves * (2 if complex_ else 1) * CHAIN_MOVE_S)


def statevector_seconds(num_qubits: int, gates: int, readouts: int, is_real: bool, rows: int = 32) -> float:
    """Estimated seconds of the statevector's vector-Jacobian product for a circuit of ``gates``
    gates (``readouts`` does not change it: one co-state serves them all)."""
    layers = max(1.0, gates / num_qubits)
    return STATEVECTOR_FIXED_S + rows * STATEVECTOR_S * 2.0**num_qubits * 3 * layers * (1 if is_real else 2)
