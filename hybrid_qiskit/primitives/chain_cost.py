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
  compresses them), (8 + 3·[T_j > 0])·l·r·(l + r) multiply-adds (two environments carried each
  way, the effective environment where T_j rotations are varied) and 8·(1 + T_j)·l·r more for
  the overlaps against the shift bases, at about :data:`CHAIN_MACS_PER_S`; building the state and
  the shift bases at the uncompressed bonds is charged as T_j·l·r·(gates on the site) numbers
  moved per row at :data:`CHAIN_MOVE_S` each (fitted: the bases are shared by the batch, but the
  state's sites and their compression are per row); every site costs numpy calls, :data:`CHAIN_SITE_S` per site and batch, and every call
  :data:`CHAIN_FIXED_S`. Complex chains do 4x the arithmetic and 2x the moves.
* the statevector's adjoint sweep for the product (:func:`~.adjoint_sweep.adjoint_vjp`): ψ and
  one co-state, 3 states' worth of 2**n amplitudes with the derivative states, through each of
  about (gates / n) layers, at :data:`STATEVECTOR_S` per amplitude and layer (2x for complex
  states); it no longer grows with the number of readouts either.

The constants are a relative least-squares fit (non-negative) to one run of ``bench_chain.py``
on a quiet machine (load 0.5; RealAmplitudes reps 2, 4 and 6, the ZZ map and circular
entanglement at 8, 9, 10, 12, 14 and 16 qubits), after both simulators' gradients became
vector-Jacobian products. There ``auto`` took the faster simulator at 29 of 30 points; the other
was level (the ZZ map at 9 qubits: 9 against 7 ms). Whole training steps on both simulators
(batch 32, medians of 9 alternating steps) then checked the choices where they are close: the
default head 8.5 / 10.1 ms (statevector / chain) at 9 qubits, 10.6 / 10.0 at 10, 16.1 / 10.3 at 11;
reps 4 13.3 / 14.7 at 10; circular 9.7 / 12.2 at 10, 19.5 / 15.0 at 11; reps 6 54 / 94 at 12 and
180 / 134 at 14. ``auto`` takes the faster at each but reps 6 at 14 qubits, where the gradients
alone favour the statevector (117 against 136 ms) and the chain's cheaper forward pass wins the
step: the default head takes the chain from 11 qubits (level at 10), reps 4 from 11, circular
from 11, the ZZ map from 9, reps 6 from 15.
"""

from __future__ import annotations

CHAIN_MACS_PER_S = 4.9e9
CHAIN_MOVE_S = 2.25e-10
CHAIN_SITE_S = 1.3e-4
CHAIN_FIXED_S = 2.7e-3  # per call
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
    varied = [0] * n
    for g in chain.rotation_gate:
        varied[chain.gates[g].varied_site] += 1
    macs = moves = 0.0
    for j in range(n):
        left, right = cuts[j], cuts[j + 1]
        macs += (8 + 3 * (varied[j] > 0)) * left * right * (left + right) + 8 * (1 + varied[j]) * left * right
        moves += varied[j] * built[j] * built[j + 1] * len(chain.site_ops[j])
    complex_ = not chain.is_real
    return CHAIN_FIXED_S + CHAIN_SITE_S * n + rows * (macs * (4 if complex_ else 1) / CHAIN_MACS_PER_S
                                      + moves * (2 if complex_ else 1) * CHAIN_MOVE_S)


def statevector_seconds(num_qubits: int, gates: int, readouts: int, is_real: bool, rows: int = 32) -> float:
    """Estimated seconds of the statevector's vector-Jacobian product for a circuit of ``gates``
    gates (``readouts`` does not change it: one co-state serves them all)."""
    layers = max(1.0, gates / num_qubits)
    return STATEVECTOR_FIXED_S + rows * STATEVECTOR_S * 2.0**num_qubits * 3 * layers * (1 if is_real else 2)
