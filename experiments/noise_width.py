"""Does a wider head survive device noise better? Heads of several widths, several seeds, one sweep each.

    python experiments/noise_width.py [--widths 8,16,24] [--seeds 0,1,2] [--out runs/noise-width]

For each width and seed this trains the digits recipe (``experiments/digits.toml``, only
``--qubits`` and ``--seed`` changed; a finished run is reused, an interrupted one resumes), then
sweeps it over fake_fez's calibrated noise times ``--levels`` with ``noise-sweep --simulator
trajectories``: every width on the same simulator (the device's noise as Pauli trajectories, one
per shot, a matrix-product state for these chain heads), with ``--mitigation none,normalize,refit``.
Finished sweep cells are reused on a rerun. The classical baseline of each seed is trained too.

It writes ``OUT/noise_width.md`` and ``.json``: test accuracy per (width, noise scale,
mitigation) as mean ± standard deviation over seeds, and the drop from each model's own exact
accuracy, whose spread over seeds is what a width comparison must beat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "hybrid_qiskit.cli"]


def run(args: list[str]) -> None:
    print("$", " ".join(["hybrid-qiskit", *args]), flush=True)
    subprocess.run([*CLI, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def train(out: Path, name: str, *flags: str) -> Path:
    run(["train", "--config", "experiments/digits.toml", *flags, "--out", str(out), "--name", name,
         "--resume", "--quiet", "--threads", "1"])
    return out / name


def cells(run_dir: Path, sweep: str) -> list[dict]:
    path = run_dir / "noise" / sweep / "cells.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "-"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="8,16,24")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--levels", default="0,1,4,16,32,48")
    p.add_argument("--mitigation", default="none,normalize,refit")
    p.add_argument("--shots", default="1024")
    p.add_argument("--out", default="runs/noise-width")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    sweep = "width"
    rows: dict[tuple, list[float]] = {}
    drops: dict[tuple, list[float]] = {}
    signal: dict[tuple, list[float]] = {}  # mean |<Z>| as a fraction of the exact model's
    classical = []
    for seed in seeds:  # seed-major: a stopped run has whole seeds first
        base = train(out, f"classical-s{seed}", "--model", "classical", "--seed", str(seed))
        classical.append(json.loads((base / "metrics.json").read_text())["test_accuracy"])
        for width in widths:
            run_dir = train(out, f"w{width}-s{seed}", "--qubits", str(width), "--seed", str(seed))
            run(["noise-sweep", str(run_dir), "--noise", "device", "--devices", "fake_fez", "--levels", args.levels,
                 "--shots", args.shots, "--mitigation", args.mitigation, "--repeats", "1",
                 "--simulator", "trajectories", "--name", sweep, "--quiet"])
            found = cells(run_dir, sweep)
            reference = next(c for c in found if c["noise"] == "exact")
            exact = reference["accuracy"]
            rows.setdefault((width, "exact", "-"), []).append(exact)
            levels = set(args.levels.split(","))
            for c in found:
                if c["noise"] == "device" and c["level"] in levels:
                    key = (width, c["level"], c["mitigation"])
                    rows.setdefault(key, []).append(c["accuracy"])
                    drops.setdefault(key, []).append(exact - c["accuracy"])
                    signal.setdefault(key, []).append(c["mean_abs_z"] / reference["mean_abs_z"])
    lines = [
        f"Test accuracy on digits (359 images), fake_fez noise x scale, {args.shots} shots (one trajectory per shot), "
        f"seeds {args.seeds}: mean ± std over seeds. Drop: the model's exact accuracy minus its noisy one. "
        "Signal: mean |<Z>| over images and qubits, as a fraction of the exact model's (before mitigation "
        "rescales it).",
        "",
        f"Classical baseline: {mean_std(classical)}",
        "",
        "| width | noise scale | mitigation | accuracy | drop from exact | signal |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(rows, key=lambda k: (k[0], k[1] != "exact", float(k[1]) if k[1] != "exact" else 0, k[2])):
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {mean_std(rows[key])} | "
                     f"{mean_std(drops[key]) if key in drops else '-'} | "
                     f"{mean_std(signal[key]) if key in signal and key[2] == 'none' else '-'} |")
    (out / "noise_width.md").write_text("\n".join(lines) + "\n")
    (out / "noise_width.json").write_text(json.dumps(
        {"classical": classical, "accuracy": {"|".join(map(str, k)): v for k, v in rows.items()},
         "drop": {"|".join(map(str, k)): v for k, v in drops.items()},
         "signal": {"|".join(map(str, k)): v for k, v in signal.items()}}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
