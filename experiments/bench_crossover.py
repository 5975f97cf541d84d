"""Whole training steps forced onto each exact simulator, where ``auto``'s choice is close.

The cost model (``hybrid_qiskit/primitives/chain_cost.py``) is fitted to gradients alone
(``bench_chain.py``); a training step adds the forward pass and the CNN. This steps the hybrid
LeNet of ``bench_heads.py`` on the ``statevector`` backend with ``method="statevector"`` and with
``method="mps"`` (the chain) in alternation on the same batch and prints the medians beside the
simulator ``auto`` takes.

Run:
    python experiments/bench_crossover.py angle:real_amplitudes:4@10 angle:real_amplitudes:6@14
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_heads import Stepper, parse_head, path_of  # noqa: E402

from backends import create_backend  # noqa: E402
from hybrid_qiskit.models import ModelConfig, build_model  # noqa: E402

warnings.filterwarnings("ignore", message="To copy construct from a tensor")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("points", nargs="+", metavar="HEAD@QUBITS", help="feature_map:ansatz:reps[:entanglement]@qubits")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'head@qubits':<40} {'statevector ms':>15} {'chain ms':>9}  auto takes")
    for point in args.points:
        spec, n = point.rsplit("@", 1)
        n, head = int(n), parse_head(spec)
        g = torch.Generator().manual_seed(args.seed)
        x, y = torch.randn(args.batch, 1, 28, 28, generator=g), torch.randint(0, 10, (args.batch,), generator=g)
        steppers = {m: Stepper(build_model(ModelConfig(kind="hybrid", num_qubits=n, **head),
                                           create_backend("statevector", seed=args.seed, method=m), seed=args.seed), x, y)
                    for m in ("statevector", "mps")}
        for _ in range(2):
            for s in steppers.values():
                s.step(record=False)
        for _ in range(args.steps):
            for s in steppers.values():
                s.step()
        ms = {m: statistics.median(s.times) * 1e3 for m, s in steppers.items()}
        print(f"{point:<40} {ms['statevector']:>15.1f} {ms['mps']:>9.1f}  {path_of(n, head)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
