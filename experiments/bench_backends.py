"""Time one training step (forward, backward, optimizer step) of the hybrid LeNet per backend.

The issue's target: batch 32, 4 qubits, ``aer_noisy --device fake_manila --shots 1024``, under
5 s a step on the project's 2-core machine. The first step also transpiles the head (once per
model) and is reported apart; the figure is the median of the following steps.

Usage:
    python experiments/bench_backends.py                      # aer_noisy, fake_manila, 1024 shots
    python experiments/bench_backends.py --backends aer_noisy aer_noisy_exact statevector
    python experiments/bench_backends.py --backends ibm_local --resilience-level 0 --steps 1
    python experiments/bench_backends.py --qubits 4 --batch-size 32 --steps 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

from backends import backend_spec, create_backend
from hybrid_qiskit.models import ModelConfig, build_model

# Settings each backend gets when it takes them (None-valued ones are left to its defaults).
SETTINGS = {"device": "fake_manila", "shots": 1024, "optimization_level": 1, "seed": 0}


def bench(name: str, *, qubits: int, batch_size: int, steps: int, settings: dict) -> dict:
    """Median wall time of one training step on backend ``name`` (and the first step apart)."""
    known = backend_spec(name).settings
    taken = {k: v for k, v in settings.items() if k in known and v is not None}
    handle = create_backend(name, **taken)
    model = build_model(ModelConfig(kind="hybrid", num_qubits=qubits), handle, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {
        "backend": name,
        "settings": taken,
        "qubits": qubits,
        "batch_size": batch_size,
        "first_step_s": round(times[0], 3),
        "step_s_median": round(statistics.median(times[1:]), 3),
        "steps": steps,
        "loss": loss.item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["aer_noisy"])
    parser.add_argument("--device", default=SETTINGS["device"])
    parser.add_argument("--shots", type=int, default=SETTINGS["shots"])
    parser.add_argument("--optimization-level", type=int, default=SETTINGS["optimization_level"])
    parser.add_argument("--resilience-level", type=int, help="runtime backends (default: theirs)")
    parser.add_argument("--qubits", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    settings = {
        "device": args.device,
        "shots": args.shots,
        "optimization_level": args.optimization_level,
        "resilience_level": args.resilience_level,
        "seed": 0,
    }
    # Timings move with whatever else runs on the machine: say how busy it was.
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    results = []
    for name in args.backends:
        row = bench(
            name,
            qubits=args.qubits,
            batch_size=args.batch_size,
            steps=args.steps,
            settings=settings,
        )
        results.append(row)
        print(
            f"{name:18s} step {row['step_s_median']:7.3f} s (first {row['first_step_s']:.3f} s)  {row['settings']}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            meta = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
            json.dump({**meta, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
