"""Backend benchmarks: a training step per backend, and device-scale local rehearsal.

1. Training step (default): one step (forward, backward, optimizer step) of the hybrid LeNet per
   backend, batch 32, 4 qubits, ``aer_noisy --device fake_fez --shots 1024``. The first step also
   transpiles the head (once per model) and is reported apart; the figure is the median of the
   following steps.
2. ``--rehearsal RUN_DIR``: what a user runs before sending a job to today's QPUs. For each
   device (fake_fez: Heron r2, 156 qubits; fake_miami: Nighthawk, 120; fake_torino: Heron r1,
   133) it evaluates the run's first ``--limit`` test images with ``--shots`` on ``aer_noisy``,
   on ``ibm_local`` unmitigated (resilience level 0) and with TREX (level 1), each in a fresh
   process, and reports wall time, peak RSS of that process, and accuracy. Targets (issue 9):
   level 0 under 60 s and 3 GB, level 1 under 3 minutes, accuracy within shot noise of aer_noisy.

Usage:
    python experiments/bench_backends.py                      # aer_noisy, fake_fez, 1024 shots
    python experiments/bench_backends.py --backends aer_noisy aer_noisy_exact statevector
    python experiments/bench_backends.py --backends ibm_local --resilience-level 0 --steps 1
    python experiments/bench_backends.py --rehearsal runs/digits-hybrid --limit 100
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
SETTINGS = {"device": "fake_fez", "shots": 1024, "optimization_level": 1, "seed": 0}
REHEARSAL_DEVICES = ("fake_fez", "fake_miami", "fake_torino")
REHEARSAL_BACKENDS = (("aer_noisy", None), ("ibm_local", 0), ("ibm_local", 1))


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


def rehearse(run_dir: str, *, device: str, backend: str, resilience: int | None, shots: int,
             limit: int) -> dict:
    """``hybrid-qiskit evaluate`` in a fresh process: wall time, its peak RSS, its accuracy."""
    import subprocess
    import sys
    import tempfile

    cmd = [sys.executable, "-m", "hybrid_qiskit.cli", "evaluate", run_dir, "--backend", backend,
           "--device", device, "--shots", str(shots), "--limit", str(limit), "--json"]
    if resilience is not None:
        cmd += ["--resilience-level", str(resilience)]
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file, text=True)
        # wait4 reaps the child and gives ITS peak RSS (RUSAGE_CHILDREN would be the largest so far).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    row = {"device": device, "backend": backend, "resilience_level": resilience, "shots": shots,
           "images": limit, "wall_s": round(wall, 1), "returncode": proc.returncode}
    if proc.returncode != 0:
        return {**row, "error": (err.strip().splitlines() or ["?"])[-1]}
    result = json.loads(out[out.index("{"):])
    row["accuracy"] = result["accuracy"]
    row["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    return row


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
    parser.add_argument("--rehearsal", metavar="RUN_DIR", help="time device-scale local rehearsal of this run")
    parser.add_argument("--devices", nargs="+", default=list(REHEARSAL_DEVICES))
    parser.add_argument("--limit", type=int, default=100, help="test images per rehearsal")
    args = parser.parse_args(argv)
    if args.rehearsal:
        return _rehearsal(args)
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


def _rehearsal(args) -> int:
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print("| device | backend | resilience | images | shots | wall | peak RSS | accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for device in args.devices:
        for backend, level in REHEARSAL_BACKENDS:
            row = rehearse(args.rehearsal, device=device, backend=backend, resilience=level,
                           shots=args.shots, limit=args.limit)
            rows.append(row)
            level_text = "-" if level is None else str(level)
            if "error" in row:
                print(f"| {device} | {backend} | {level_text} | {args.limit} | {args.shots} | failed: {row['error']} |||")
                continue
            print(f"| {device} | {backend} | {level_text} | {args.limit} | {args.shots} | {row['wall_s']:.0f} s | "
                  f"{row['peak_rss_mb']} MB | {row['accuracy']:.3f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpus": os.cpu_count(), "rows": rows}, fh, indent=2)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
