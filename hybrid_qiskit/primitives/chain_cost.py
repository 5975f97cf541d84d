"""Which exact simulator a circuit runs on: the chain's and the statevector's cost, estimated.

``method="auto"`` takes the matrix-product chain wherever its estimated gradient time is below
the statevector's, at any bond (a gradient is what a training step spends its time on; a
forward pass scales the same way on both). Both estimates are per batch of ``rows`` and were
fitted to ``experiments/bench_chain.py`` (one core, batch 32, heads of bond 4 to 64 at 6 to 16
qubits), which prints them beside the measured times so that the model can be checked again:

* the chain: its stacked products (:mod:`.mps_sweeps`) make, per row and site j with bonds l
  and r (at most 2**k k sites from an end, where the gradient compresses them),
  (K + 2·T_j + 4)·l·r·(l + r) multiply-adds (K readouts: the Z stacks; T_j rotations varied
  there: their overlaps), at about :data:`CHAIN_MACS_PER_S`; building the T_j shifted site
  tensors moves T_j·l·r·(gates on the site) numbers at :data:`CHAIN_MOVE_S` each; every site
  costs numpy calls, :data:`CHAIN_SITE_S` per site and batch, and every call
  :data:`CHAIN_FIXED_S`. Complex chains do 4x the arithmetic and 2x the moves.
* the statevector's adjoint sweep: (K + 2) states of 2**n amplitudes through each layer, about
  (gates / n) layers, at :data:`STATEVECTOR_S` per amplitude and layer (2x for complex states;
  2x below 13 qubits, where the sweep does not take :mod:`.adjoint_sweep`'s shortcuts for its
  first and last layers).

The gradients alone were fitted first (bench_chain.py); then the small widths were set by whole
training steps (the chain's forward pass costs more there, and the statevector's gradient reuses
its forward states), timed side by side on both simulators, batch 32: the default head 6.9 vs
8.8 ms at 7 qubits, 8.2 vs 9.8 at 8, level at 9 (10.1 vs 9.7), 16.4 vs 9.8 at 10; RealAmplitudes
reps 4 level at 10; EfficientSU2 level at 8; the ZZ map 7.8 vs 12.0 at 7, 23.7 vs 15.7 at 9.
Where the two are level the model may take either; elsewhere it takes the faster, and it is
within about 2x of the measured times.
"""

from __future__ import annotations

CHAIN_MACS_PER_S = 12e9
CHAIN_MOVE_S = 2.8e-9
CHAIN_SITE_S = 4.4e-4
CHAIN_FIXED_S = 5e-3  # per call: its forward pass, the bases, the angle table
STATEVECTOR_S = 6e-9  # per row, amplitude, readout and layer
STATEVECTOR_FIXED_S = 1e-3
SHORTCUT_QUBITS = 13  # adjoint_sweep.SHORTCUT_QUBITS (not imported: adjoint_sweep imports the chain)


def chain_seconds(chain, readouts: int, rows: int = 32) -> float:
    """Estimated seconds of :func:`~.mps.chain_gradient` for ``rows`` rows and ``readouts``
    Z readouts."""
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
        macs += (readouts + 2 * varied[j] + 4) * left * right * (left + right)
        moves += varied[j] * built[j] * built[j + 1] * len(chain.site_ops[j])
    complex_ = not chain.is_real
    return CHAIN_FIXED_S + CHAIN_SITE_S * n + rows * (macs * (4 if complex_ else 1) / CHAIN_MACS_PER_S
                                      + moves * (2 if complex_ else 1) * CHAIN_MOVE_S)


def statevector_seconds(num_qubits: int, gates: int, readouts: int, is_real: bool, rows: int = 32) -> float:
    """Estimated seconds of the statevector's adjoint gradient of a circuit of ``gates`` gates."""
    layers = max(1.0, gates / num_qubits)
    factor = (1 if is_real else 2) * (2 if num_qubits < SHORTCUT_QUBITS else 1)
    return STATEVECTOR_FIXED_S + rows * STATEVECTOR_S * 2.0**num_qubits * (readouts + 2) * layers * factor
