"""The matrix-product-state chain against the statevector, per head and width: where each pays.

Times the exact gradient of one batch as one training step's backward pass asks
``AdjointEstimatorGradient`` for it (a vector-Jacobian product: every input and weight
derivative of Σ_k g_k ⟨Z_k⟩ per row, the rows sharing their weights) on both simulators of the
``statevector`` backend, and prints beside each time the estimate of ``method="auto"``'s cost
model (``hybrid_qiskit/primitives/chain_cost.py``) and which simulator ``auto`` takes: the
model is checked wherever ``auto`` takes the slower one ("MISS").

Run:
    python experiments/bench_chain.py                          # the issue's heads, 8 to 16 qubits
    python experiments/bench_chain.py --heads angle:real_amplitudes:6 --qubits 12 14 16
    python experiments/bench_chain.py --heads zz:efficient_su2:2:reverse_linear:2 --max-bond 1024
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_qiskit.circuits import build_head_circuit  # noqa: E402
from hybrid_qiskit.primitives import mps  # noqa: E402
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_vjp  # noqa: E402
from hybrid_qiskit.primitives.chain_cost import chain_seconds, statevector_seconds  # noqa: E402
from hybrid_qiskit.primitives.compiler import compile_circuit  # noqa: E402
from hybrid_qiskit.primitives.simulate import CompiledObservable  # noqa: E402

HEADS = ["angle:real_amplitudes:2", "angle:real_amplitudes:4", "zz:real_amplitudes:2",
         "angle:real_amplitudes:2:circular", "angle:real_amplitudes:6"]


def time_gradient(program, values, observables, method: str, repeats: int, budget: float) -> float:
    cotangent = np.random.default_rng(1).normal(size=(len(observables), len(values)))
    t0 = time.perf_counter()
    adjoint_vjp(program, values, observables, cotangent, method=method)  # warm-up
    if time.perf_counter() - t0 > budget:
        return time.perf_counter() - t0  # one slow call is its own measurement
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        adjoint_vjp(program, values, observables, cotangent, method=method)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=HEADS,
                   help="feature_map:ansatz:reps[:entanglement[:reuploads]]")
    p.add_argument("--qubits", type=int, nargs="+", default=[8, 10, 12, 14, 16])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=5.0, help="a first call slower than this is not repeated")
    p.add_argument("--max-bond", type=int, default=mps.MAX_BOND, help="raise to time chains the limit refuses")
    args = p.parse_args(argv)
    mps.MAX_BOND = args.max_bond
    print(f"{'head':<40} {'qubits':>6} {'bond':>5} {'chain s':>9} {'(model)':>9} {'statevector s':>14} "
          f"{'(model)':>9}  auto takes", flush=True)
    misses = 0
    for spec in args.heads:
        fm, ansatz, reps, *rest = spec.split(":")
        entanglement = rest[0] if rest else "reverse_linear"
        reuploads = int(rest[1]) if len(rest) > 1 else 1
        for n in args.qubits:
            head = build_head_circuit(n, feature_map=fm, ansatz=ansatz, reps=int(reps), reuploads=reuploads,
                                      entanglement=entanglement)
            program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
            if program.chain is None:
                print(f"{spec:<40} {n:>6}  not a chain within --max-bond {args.max_bond}")
                continue
            chain = program.chain
            observables = [CompiledObservable(o) for o in head.observables]
            values = np.random.default_rng(0).uniform(0, np.pi, (args.batch, len(program.parameters)))
            values[:, n:] = values[0, n:]  # one set of weights for the batch, as a QNN's step has
            t_chain = time_gradient(program, values, observables, "mps", args.repeats, args.budget)
            t_plain = time_gradient(program, values, observables, "statevector", args.repeats, args.budget)
            m_chain = chain_seconds(chain, n, args.batch)
            m_plain = statevector_seconds(n, len(chain.gates), n, chain.is_real, args.batch)
            auto = mps.takes_chain(chain, n)
            miss = auto != (t_chain < t_plain)
            misses += miss
            print(f"{spec:<40} {n:>6} {chain.bond:>5} {t_chain:>9.3f} {m_chain:>9.3f} {t_plain:>14.3f} "
                  f"{m_plain:>9.3f}  {'chain' if auto else 'statevector'}{'  MISS' if miss else ''}", flush=True)
    print(f"batch {args.batch}; auto took the slower simulator {misses} time(s); load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
