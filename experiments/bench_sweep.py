"""Wall time of the default digits noise sweep at --workers 1 and 2 (the README's figures).

    python experiments/bench_sweep.py        # trains runs/digits-hybrid and runs/digits-classical if missing
    python experiments/bench_sweep.py --run-dir runs/digits-hybrid --workers 1,2,4

Each worker count sweeps a fresh copy of the run (no finished cells), through the CLI in a
subprocess, exactly as a user would run it: ``noise-sweep RUN --config
experiments/noise_digits.toml --workers N``. It reports the wall time, the speed-up over the
first count, how busy the machine's CPUs were meanwhile (this sweep and everything else), and the
load average before and after: other processes compete for the same cores, so read the times with
the load beside them. It also checks that every worker count gave the same table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hybrid_qiskit.cli", *args]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (our sweep and everyone else)."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def table_without_timing(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/digits-hybrid", help="a trained run (trained here if missing)")
    p.add_argument("--baseline", default="runs/digits-classical",
                   help="the matched classical run, --baseline of the sweep (trained here if missing; 'none': no baseline)")
    p.add_argument("--config", default=str(ROOT / "experiments" / "noise_digits.toml"))
    p.add_argument("--keep", help="copy the first worker count's sweep folder (tables, plots) here")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--extra", default="", help="more noise-sweep flags, e.g. '--limit 40' for a quick check")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    run_dir = Path(args.run_dir)
    baseline = [] if args.baseline == "none" else ["--baseline", args.baseline]
    recipes = [(run_dir, "digits.toml")] + ([(Path(args.baseline), "digits-classical.toml")] if baseline else [])
    for path, recipe in recipes:
        if not (path / "model.pt").exists():
            print(f"training {path} (experiments/{recipe}) ...", flush=True)
            subprocess.run(cli("train", "--config", str(ROOT / "experiments" / recipe), "--out", str(path.parent),
                               "--name", path.name, "--quiet"), check=True, env=env)

    results, tables = [], []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            copy = Path(tmp) / f"workers{workers}" / run_dir.name
            shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("noise"))
            load_before, ticks0, t0 = os.getloadavg(), cpu_ticks(), time.perf_counter()
            subprocess.run(cli("noise-sweep", str(copy), "--config", args.config, "--workers", str(workers),
                               *baseline, "--quiet", "--json", *args.extra.split()), check=True, env=env,
                           stdout=subprocess.DEVNULL)
            wall, load_after, ticks1 = time.perf_counter() - t0, os.getloadavg(), cpu_ticks()
            busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1)
            (table,) = (copy / "noise").glob("*/table.csv")
            tables.append(table_without_timing(table))
            if args.keep and not results:
                shutil.copytree(table.parent, args.keep, dirs_exist_ok=True)
            results.append({"workers": workers, "wall_s": round(wall, 1), "machine_busy": round(busy, 3),
                            "cells": len(tables[-1]), "load_before": [round(x, 2) for x in load_before],
                            "load_after": [round(x, 2) for x in load_after]})
            print(f"--workers {workers}: {wall:.1f} s wall, machine {busy:.0%} busy, load average "
                  f"{load_before[0]:.2f} before, {load_after[0]:.2f} after", flush=True)

    same = all(t == tables[0] for t in tables)
    print(f"\n{results[0]['cells']} cells on {os.cpu_count()} CPUs; tables identical across worker counts: {same}\n")
    print("| --workers | wall time | speed-up | machine CPU busy | load average (1 min) before → after |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['wall_s']:.0f} s | {results[0]['wall_s'] / r['wall_s']:.2f}x | {r['machine_busy']:.0%} | "
              f"{r['load_before'][0]:.2f} → {r['load_after'][0]:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": os.cpu_count(), "identical_tables": same,
                                               "results": results}, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
