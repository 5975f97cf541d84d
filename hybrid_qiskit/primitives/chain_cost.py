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
* the statevector's adjoint sweep: (K + 2) states of 2**n amplitudes through each layer, about
  (gates / n) layers, at :data:`STATEVECTOR_S` per amplitude and layer (2x for complex states;
  2x below 13 qubits, where the sweep does not take :mod:`.adjoint_sweep`'s shortcuts for its
  first and last layers).

The constants are a relative least-squares fit (non-negative) to one run of ``bench_chain.py``
on a quiet machine (load 1.3; RealAmplitudes reps 2, 4 and 6, the ZZ map and circular
entanglement at 8, 9, 10, 12, 14 and 16 qubits) after the vector-Jacobian product replaced the
full Jacobian. There ``auto`` took the faster simulator at 28 of 30 points; the two others were
level (reps 4 at 9 qubits: 6 against 6 ms; circular at 10: 5 against 4 ms). The chain's estimates
are within 1.5x of its times, the statevector's within 2.5x (it underestimates from 14 qubits,
where its states leave the cache). A training step also runs the forward pass, which costs the
chain more (it builds and compresses ψ; the statevector's adjoint sweep starts from its forward
state), so the chain's gradient estimate is scaled by :data:`CHAIN_STEP_FACTOR`: reps 6 at 12
qubits, level in gradients (70 against 71 ms), took 74 ms per step on the chain and 63 ms on the
statevector (``experiments/bench_heads.py``), and stays on the statevector.
"""

from __future__ import annotations

CHAIN_MACS_PER_S = 8.3e9
CHAIN_MOVE_S = 3.4e-10
CHAIN_SITE_S = 3.4e-4
CHAIN_FIXED_S = 0.0  # per call (the fit put nothing here: the per-site cost covers it)
CHAIN_STEP_FACTOR = 1.3  # a training step's forward pass, on top of the gradient
STATEVECTOR_S = 1.9e-9  # per row, amplitude, readout and layer
STATEVECTOR_FIXED_S = 2.2e-4
SHORTCUT_QUBITS = 13  # adjoint_sweep.SHORTCUT_QUBITS (not imported: adjoint_sweep imports the chain)


def chain_seconds(chain, readouts: int, rows: int = 32) -> float:
    """Estimated seconds of :func:`~.mps.chain_vjp` for ``rows`` rows, scaled for a training
    step's forward pass (its cost does not grow with the number of Z readouts)."""
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
    return CHAIN_STEP_FACTOR * (CHAIN_FIXED_S + CHAIN_SITE_S * n + rows * (
        macs * (4 if complex_ else 1) / CHAIN_MACS_PER_S + moves * (2 if complex_ else 1) * CHAIN_MOVE_S))


def statevector_seconds(num_qubits: int, gates: int, readouts: int, is_real: bool, rows: int = 32) -> float:
    """Estimated seconds of the statevector's adjoint gradient of a circuit of ``gates`` gates."""
    layers = max(1.0, gates / num_qubits)
    factor = (1 if is_real else 2) * (2 if num_qubits < SHORTCUT_QUBITS else 1)
    return STATEVECTOR_FIXED_S + rows * STATEVECTOR_S * 2.0**num_qubits * (readouts + 2) * layers * factor
