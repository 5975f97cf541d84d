"""Backend benchmarks: a training step per backend, and device-scale local rehearsal.

1. Training step (default): one step (forward, backward, optimizer step) of the hybrid LeNet per
   backend, batch 32, 4 qubits, ``aer_noisy --device fake_fez --shots 1024``. The first step also
   transpiles the head (once per model) and is reported apart; the figure is the median of the
   following steps.
2. ``--rehearsal RUN_DIR``: what a user runs before sending a job to today's QPUs. For each
   device (fake_fez: Heron r2, 156 qubits; fake_miami: Nighthawk, 120; fake_torino: Heron r1,
   133) it evaluates the run's first ``--limit`` test images with ``--shots`` on ``aer_noisy``,
   on ``ibm_local`` unmitigated (resilience level 0) and with TREX (level 1), each in a fresh
   process, and reports wall time, peak RSS of that process, and accuracy. Targets (a rehearsal
   must be quick enough to run before every QPU job):
   level 0 under 60 s and 3 GB, level 1 under 3 minutes, accuracy within shot noise of aer_noisy.

Usage:
    python experiments/bench_backends.py                      # aer_noisy, fake_fez, 1024 shots
    python experiments/bench_backends.py --backends aer_noisy aer_noisy_exact statevector
    python experiments/bench_backends.py --backends ibm_local --resilience-level 0 --steps 1
    python experiments/bench_backends.py --rehearsal runs/digits-hybrid --limit 100
    python experiments/bench_backends.py --noisy-widths 4,8,12,16,20,24,28

3. ``--noisy-widths``: noisy evaluation time per image of a digits head (angle + RealAmplitudes
   reps 2) laid out on ``--device``, by width, for each method that can run it: noisy_trajectories
   as a noisy chain (``mps``) and on the statevector, with one trajectory per image and with one per
   shot, and Aer's density matrix, statevector and matrix-product-state trajectories
   (``aer_noisy``). Methods are skipped
   past the width where one image would take minutes. This is what the ``auto`` thresholds
   (``backends.noisy_trajectories.NOISY_CHAIN_QUBITS``, ``backends.noise_source``) are checked on.
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
    parser.add_argument("--noisy-widths", help="comma-separated head widths: noisy evaluation time per image")
    parser.add_argument("--images", type=int, default=32, help="images per noisy-width timing (Aer: 2)")
    args = parser.parse_args(argv)
    if args.rehearsal:
        return _rehearsal(args)
    if args.noisy_widths:
        return _noisy_widths(args)
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


# Widest head each method is timed at (one image takes minutes beyond).
NOISY_METHODS = (
    ("noisy_trajectories", {"method": "mps", "trajectories": 1}, 40),
    ("noisy_trajectories", {"method": "mps", "trajectories": "shots"}, 40),
    ("noisy_trajectories", {"method": "statevector", "trajectories": 1}, 16),
    ("noisy_trajectories", {"method": "statevector", "trajectories": "shots"}, 10),
    ("aer_noisy", {"method": "density_matrix"}, 12),
    ("aer_noisy", {"method": "statevector"}, 14),
    ("aer_noisy", {"method": "matrix_product_state"}, 16),
)


def noisy_time(width: int, backend: str, extra: dict, *, device: str, shots: int, images: int) -> float:
    """Seconds per image of one noisy evaluation call (a digits head, random inputs and weights)."""
    import numpy as np
    from qiskit.quantum_info import SparsePauliOp

    from hybrid_qiskit.circuits import build_head_circuit

    settings = {**extra, "device": device, "shots": shots, "seed": 0}
    if settings.get("trajectories") == "shots":
        settings["trajectories"] = shots
    handle = create_backend(backend, **settings)
    head = build_head_circuit(width, reps=2)
    isa = handle.pass_manager.run(head.circuit)
    obs = [[SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], width).apply_layout(isa.layout)] for q in range(width)]
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (images, head.circuit.num_parameters))
    handle.estimator.run([(isa, obs, values[:1])]).result()  # compile and cache (once per model)
    start = time.perf_counter()
    handle.estimator.run([(isa, obs, values)]).result()
    return (time.perf_counter() - start) / images


def _noisy_widths(args) -> int:
    widths = [int(w) for w in args.noisy_widths.split(",")]
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; {args.device}, {args.shots} shots; "
          "seconds per image")
    names = [f"{b} {' '.join(f'{k}={v}' for k, v in e.items())}" for b, e, _ in NOISY_METHODS]
    print("| qubits | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    rows = []
    for width in widths:
        cells = []
        for (backend, extra, widest), name in zip(NOISY_METHODS, names):
            if width > widest:
                cells.append("-")
                continue
            images = 2 if backend == "aer_noisy" or extra.get("trajectories") == "shots" and extra["method"] != "mps" \
                else args.images
            t = noisy_time(width, backend, extra, device=args.device, shots=args.shots, images=images)
            rows.append({"qubits": width, "method": name, "seconds_per_image": t, "images": images})
            cells.append(f"{t:.4f}")
        print(f"| {width} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cpus": os.cpu_count(), "device": args.device, "shots": args.shots, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
