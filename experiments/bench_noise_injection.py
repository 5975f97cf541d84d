"""Noise injection's cost: a digits training epoch on ``noisy_trajectories`` vs ``statevector``.

Both epochs are the default digits model (8-qubit head, angle encoding, real_amplitudes reps 2,
batch 32, Adam 5e-3) run as ``hybrid-qiskit train`` runs an epoch; the noisy one gets fake_fez's
calibrated noise (x ``--noise-scale``) with ``--shots`` shots per sample, transpiled to fake_fez's
ISA (190 gates on 8 physical qubits). Model building and transpilation are not timed. Epochs
alternate (exact, noisy, exact, ...) so that load on the shared machine hits both; the ratio is
of the medians.

Run:
    python experiments/bench_noise_injection.py                      # 3 epochs each, ~1 minute
    python experiments/bench_noise_injection.py --noise-scale 8 --shots 256 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import create_backend  # noqa: E402
from hybrid_qiskit.data import load_dataset  # noqa: E402
from hybrid_qiskit.models import ModelConfig, build_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import train_one_epoch  # noqa: E402  (the same timed loop)

warnings.filterwarnings("ignore", message="To copy construct from a tensor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="fake_fez")
    p.add_argument("--noise-scale", type=float, default=1.0)
    p.add_argument("--shots", type=int, default=1024)
    p.add_argument("--trajectories", type=int, default=1)
    p.add_argument("--qubits", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def make_epoch(backend: str, args, splits, **settings):
    """A function that trains one epoch on ``backend`` and returns (seconds, loss, accuracy)."""
    handle = create_backend(backend, seed=args.seed, **settings)
    cfg = ModelConfig(kind="hybrid", num_qubits=args.qubits, num_classes=splits.num_classes)
    model = build_model(cfg, handle, seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loader = torch.utils.data.DataLoader(
        splits.train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(args.seed)
    )

    def epoch():
        t0 = time.perf_counter()
        _, loss, acc = train_one_epoch(model, opt, loader)
        return time.perf_counter() - t0, loss, acc

    return epoch


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)  # a shared 2-core machine: see experiments/bench_training.py
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    splits = load_dataset("digits", seed=args.seed)
    exact = make_epoch("statevector", args, splits)
    noisy = make_epoch("noisy_trajectories", args, splits, device=args.device, noise_scale=args.noise_scale,
                       shots=args.shots, trajectories=args.trajectories)
    times: dict[str, list[float]] = {"statevector": [], "noisy_trajectories": []}
    last = {}
    for _ in range(args.repeats):
        for name, run in (("statevector", exact), ("noisy_trajectories", noisy)):
            seconds, loss, acc = run()
            times[name].append(seconds)
            last[name] = {"train_loss": loss, "train_acc": acc}
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": args.device, "noise_scale": args.noise_scale, "shots": args.shots,
        "trajectories": args.trajectories, "qubits": args.qubits, "steps_per_epoch": len(splits.train) // 32 + 1,
        "epoch_s": times, "median_s": medians, "last_epoch": last,
        "ratio": medians["noisy_trajectories"] / medians["statevector"],
    }
    for name, ts in times.items():
        print(f"{name:<20} epoch median {medians[name]:.2f} s  (all: {', '.join(f'{t:.2f}' for t in ts)})  "
              f"last epoch loss {last[name]['train_loss']:.3f} acc {last[name]['train_acc']:.3f}")
    print(f"ratio noisy/exact: {result['ratio']:.2f}x  ({args.device}, noise scale {args.noise_scale}, "
          f"{args.shots} shots, {args.trajectories} trajectory/sample)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
