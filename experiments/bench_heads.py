"""What each head family costs: a training step per head and width, against the classical step.

For each head (feature map, ansatz, reps, entanglement) and width, the hybrid LeNet of
``hybrid_qiskit.models`` on the ``statevector`` backend (``method=auto``: the chain or the
statevector, whichever the cost model picks) and its matched classical baseline are stepped in
alternation on the same batch (forward, cross-entropy, backward, Adam; batch 32, torch on one
thread), so a burst of load on this shared machine hits both. Ratios are of medians from the
same run; the path ``auto`` took and the chain's bond are printed beside them.

Run:
    python experiments/bench_heads.py                                  # the README's table
    python experiments/bench_heads.py --heads angle:real_amplitudes:6 --qubits 16 --steps 5
    python experiments/bench_heads.py --markdown --out runs/bench_heads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import create_backend  # noqa: E402
from hybrid_qiskit.circuits import build_head_circuit  # noqa: E402
from hybrid_qiskit.models import ModelConfig, build_model  # noqa: E402
from hybrid_qiskit.primitives import mps  # noqa: E402
from hybrid_qiskit.primitives.compiler import compile_circuit  # noqa: E402

warnings.filterwarnings("ignore", message="To copy construct from a tensor")

# feature_map:ansatz:reps[:entanglement], the head families.
HEADS = [
    "angle:real_amplitudes:2",
    "angle:efficient_su2:2",
    "angle:real_amplitudes:4",
    "zz:real_amplitudes:2",
    "angle:real_amplitudes:6",
    "angle:real_amplitudes:2:circular",
]


def parse_head(spec: str) -> dict:
    parts = spec.split(":")
    head = {"feature_map": parts[0], "ansatz": parts[1], "reps": int(parts[2])}
    if len(parts) > 3:
        head["entanglement"] = parts[3]
    return head


def path_of(n: int, head: dict) -> str:
    """The simulator ``auto`` takes for this head's gradient, and the chain's bond."""
    circuit = build_head_circuit(n, **head)
    program = compile_circuit(circuit.circuit, list(circuit.input_params) + list(circuit.weight_params))
    if mps.takes_chain(program.chain, n):
        return f"chain, bond {program.chain.bond}"
    return "statevector" + ("" if program.chain is None else f" (chain bond {program.chain.bond})")


class Stepper:
    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        self.times: list[float] = []

    def step(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()
        if record:
            self.times.append(time.perf_counter() - t0)


def measure(n: int, head: dict, args) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(args.batch, 1, 28, 28, generator=g), torch.randint(0, 10, (args.batch,), generator=g)
    config = ModelConfig(kind="hybrid", num_qubits=n, **head)
    steppers = {
        "classical": Stepper(build_model(ModelConfig(kind="classical", num_qubits=n), seed=args.seed), x, y),
        "hybrid": Stepper(build_model(config, create_backend("statevector", seed=args.seed), seed=args.seed), x, y),
    }
    for _ in range(args.warmup):
        for s in steppers.values():
            s.step(record=False)
    deadline = time.perf_counter() + args.budget
    for i in range(args.steps):
        for s in steppers.values():
            s.step()
        if i >= 1 and time.perf_counter() > deadline:
            break
    ms = {k: statistics.median(s.times) * 1e3 for k, s in steppers.items()}
    return {"qubits": n, **head, "path": path_of(n, head), "classical_ms": ms["classical"],
            "hybrid_ms": ms["hybrid"], "ratio": ms["hybrid"] / ms["classical"],
            "steps": len(steppers["hybrid"].times), "load_average": os.getloadavg()[0]}


def name_of(row: dict) -> str:
    ent = row.get("entanglement")
    return f"{row['feature_map']} + {row['ansatz']} reps {row['reps']}" + (f", {ent}" if ent else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=HEADS, help="feature_map:ansatz:reps[:entanglement]")
    p.add_argument("--qubits", type=int, nargs="+", default=[12, 16, 20])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=9, help="timed steps per head (fewer past --budget)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed steps per row, at least 2 steps")
    p.add_argument("--skip", nargs="*", default=[], metavar="SPEC@N",
                   help="rows not to run, e.g. angle:real_amplitudes:6@20")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    np.random.seed(args.seed)
    load0 = os.getloadavg()
    print(f"{'head':<44} {'qubits':>6}  {'path':<32} {'classical ms':>12} {'hybrid ms':>10} {'ratio':>7} {'load':>5}")
    rows = []
    for spec in args.heads:
        for n in args.qubits:
            if f"{spec}@{n}" in args.skip:
                continue
            row = measure(n, parse_head(spec), args)
            rows.append(row)
            print(f"{name_of(row):<44} {n:>6}  {row['path']:<32} {row['classical_ms']:>12.1f} "
                  f"{row['hybrid_ms']:>10.1f} {row['ratio']:>6.1f}x {row['load_average']:>5.1f}", flush=True)
    load1 = os.getloadavg()
    print(f"batch {args.batch}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {load0[0]:.1f} -> {load1[0]:.1f}")
    if args.markdown:
        widths = sorted({r["qubits"] for r in rows})
        print("\n| head | path | " + " | ".join(f"{n} qubits" for n in widths) + " |")
        print("|---|---|" + "---|" * len(widths))
        for spec in args.heads:
            mine = {r["qubits"]: r for r in rows if name_of(r) == name_of({**parse_head(spec)})}
            if not mine:
                continue
            paths = " / ".join(dict.fromkeys(r["path"] for r in mine.values()))
            cells = [f"{mine[n]['ratio']:.1f}x ({mine[n]['hybrid_ms']:.0f} ms)" if n in mine else "–" for n in widths]
            print(f"| {name_of(next(iter(mine.values())))} | {paths} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "load_average": [load0, load1], "args": vars(args)},
                                       indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
