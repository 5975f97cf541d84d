"""The matrix-product-state chain against the statevector, per head and width: where each pays.

Times the exact gradient of one batch (values and every input and weight derivative, what one
training step's backward pass asks of ``AdjointEstimatorGradient``) on both simulators of the
``statevector`` backend, for heads of growing bond dimension. This is what ``method="auto"``'s
threshold in ``hybrid_qiskit/primitives/mps.py`` (``takes_chain``) was set from.

Run:
    python experiments/bench_chain.py                          # bond 4 and 16 at 12 and 16 qubits
    python experiments/bench_chain.py --heads angle:real_amplitudes:3 --qubits 16 --max-bond 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_qiskit.circuits import build_head_circuit  # noqa: E402
from hybrid_qiskit.primitives import mps  # noqa: E402
from hybrid_qiskit.primitives.adjoint_sweep import adjoint_gradient  # noqa: E402
from hybrid_qiskit.primitives.compiler import compile_circuit  # noqa: E402
from hybrid_qiskit.primitives.simulate import CompiledObservable  # noqa: E402


def time_gradient(program, values, observables, method: str, repeats: int) -> float:
    adjoint_gradient(program, values, observables, method=method)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        adjoint_gradient(program, values, observables, method=method)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=["angle:real_amplitudes:1", "zz:efficient_su2:1"],
                   help="feature_map:ansatz:reuploads (reps 2)")
    p.add_argument("--qubits", type=int, nargs="+", default=[12, 16])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-bond", type=int, default=mps.MAX_BOND, help="raise to time chains the limit refuses")
    args = p.parse_args(argv)
    mps.MAX_BOND = args.max_bond
    print("head                              qubits  bond   chain s  statevector s  auto takes")
    for spec in args.heads:
        fm, ansatz, reuploads = spec.split(":")
        for n in args.qubits:
            head = build_head_circuit(n, feature_map=fm, ansatz=ansatz, reuploads=int(reuploads))
            program = compile_circuit(head.circuit, list(head.input_params) + list(head.weight_params))
            if program.chain is None:
                print(f"{spec:<33} {n:>6}  not a chain within --max-bond {args.max_bond}")
                continue
            observables = [CompiledObservable(o) for o in head.observables]
            values = np.random.default_rng(0).uniform(0, np.pi, (args.batch, len(program.parameters)))
            chain = time_gradient(program, values, observables, "mps", args.repeats)
            plain = time_gradient(program, values, observables, "statevector", args.repeats)
            auto = "chain" if mps.takes_chain(program.chain, n) else "statevector"
            print(f"{spec:<33} {n:>6} {program.chain.bond:>5} {chain:>9.3f} {plain:>14.3f}  {auto}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
