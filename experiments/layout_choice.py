"""Which physical qubits should the head run on? Layouts compared on the fake Heron devices.

    python experiments/layout_choice.py [RUN_DIR] [--devices fake_fez,fake_torino,fake_marrakesh]
        [--layouts trivial,transpiler@2,transpiler@3,noise_aware] [--seeds 0,1,2] [--shots 1024]
        [--limit N] [--out runs/layout-choice]

For each device, layout and seed, the trained run (default ``runs/digits-hybrid``, what ``make
train`` writes) is evaluated on its whole test split with ``ibm_local`` (qiskit-ibm-runtime's local
testing mode, the fake device's calibrated noise) at resilience level 0, so nothing hides a bad
qubit. The seed is the simulator's (and the transpiler's). Layouts (``backends.layout``):

* ``trivial``: physical qubits 0..n-1, what ``optimization_level=1`` gave before (its layout);
* ``transpiler@2`` / ``transpiler@3``: the preset pass manager's own noise-aware search (VF2Layout,
  VF2PostLayout) at optimization level 2 / 3;
* ``noise_aware``: every placement of the head scored by its estimated success probability (the
  default now).

Per cell it reports accuracy, agreement with exact simulation of the same images, the mean
|<Z> - exact <Z>| over images and qubits (the noise the layout lets through, more sensitive than
accuracy), the physical qubits, their worst readout and two-qubit errors, and how many of them
are in the device's worst decile. Writes ``OUT/layout_choice.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _exact(payload, images):
    import torch

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model

    model = restore_model(payload, create_backend("statevector", seed=0))
    with torch.no_grad():
        z = model.quantum(model.encode(images))
        return z.numpy(), model.decode(z).argmax(1).numpy()


def cell(payload, data, device: str, layout: str, seed: int, shots: int, exact) -> dict:
    import numpy as np

    from backends import create_backend
    from backends.layout import placement_facts
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.training import evaluate

    how, _, level = layout.partition("@")
    handle = create_backend("ibm_local", device=device, shots=shots, resilience_level=0, seed=seed, layout=how,
                            optimization_level=int(level or 1))
    t0 = time.perf_counter()
    model = restore_model(payload, handle)
    isa = model.head.neural_network.circuit
    facts = placement_facts(isa, handle.device.target)
    res = evaluate(model, data, batch_size=128, quiet=True)
    exact_z, exact_pred = exact
    couplings = [c[2] for c in facts["couplings"] if c[2] is not None]
    return {
        "device": device, "layout": layout, "seed": seed, "accuracy": res.accuracy,
        "agreement": float((res.predictions == exact_pred).mean()),
        "mean_abs_dz": float(np.abs(res.expvals - exact_z).mean()),
        "qubits": facts["qubits"], "max_readout": max(facts["readout"]), "max_2q": max(couplings, default=None),
        "two_qubit_gates": sum(c[3] for c in facts["couplings"]),
        "worst_decile_qubits": [q for q, e in zip(facts["qubits"], facts["readout"]) if e >= facts["p90_readout"]],
        "worst_decile_couplings": [c[:2] for c in facts["couplings"] if c[2] is not None and c[2] >= facts["p90_2q"]],
        "seconds": time.perf_counter() - t0,
    }


def table(cells: list[dict], devices: list[str], layouts: list[str]) -> str:
    def ms(values, fmt):
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:{fmt}} ± {sd:{fmt}}"

    out = ["| device | layout | physical qubits | max readout / 2q error | worst-decile qubits, couplings "
           "| accuracy | agreement with exact | mean abs(⟨Z⟩ − exact) |", "|---|---|---|---|---|---|---|---|"]
    for device in devices:
        for layout in layouts:
            rows = [c for c in cells if c["device"] == device and c["layout"] == layout]
            if not rows:
                continue
            r = rows[0]
            bad = f"{len(r['worst_decile_qubits'])}, {len(r['worst_decile_couplings'])}"
            out.append(f"| {device} | `{layout}` | {','.join(map(str, r['qubits']))} | "
                       f"{100 * r['max_readout']:.1f}% / {100 * r['max_2q']:.2f}% | {bad} | "
                       f"{ms([c['accuracy'] for c in rows], '.4f')} | {ms([c['agreement'] for c in rows], '.4f')} | "
                       f"{ms([c['mean_abs_dz'] for c in rows], '.4f')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", default="runs/digits-hybrid")  # where make train writes it
    parser.add_argument("--devices", default="fake_fez,fake_torino,fake_marrakesh")
    parser.add_argument("--layouts", default="trivial,transpiler@2,transpiler@3,noise_aware")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--limit", type=int, help="first N test images (default: the whole split)")
    parser.add_argument("--out", default="runs/layout-choice")
    args = parser.parse_args(argv)

    import torch
    from torch.utils.data import TensorDataset

    from hybrid_qiskit.runs import load_run, load_splits

    torch.set_num_threads(1)
    cfg, payload = load_run(args.run_dir)
    data = load_splits(cfg).test
    if args.limit:
        data = TensorDataset(*(t[: args.limit] for t in data.tensors))
    exact = _exact(payload, data.tensors[0])
    devices, layouts = args.devices.split(","), args.layouts.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for device in devices:
        for layout in layouts:
            for seed in seeds:
                c = cell(payload, data, device, layout, seed, args.shots, exact)
                cells.append(c)
                print(f"{device} {layout} seed {seed}: accuracy {c['accuracy']:.4f}, mean |dZ| {c['mean_abs_dz']:.4f}, "
                      f"qubits {c['qubits']} ({c['seconds']:.0f} s)", flush=True)
    md = table(cells, devices, layouts)
    exact_acc = float((exact[1] == data.tensors[1].numpy()).mean())
    header = (f"{len(data)} test images of {args.run_dir}, ibm_local at resilience level 0, {args.shots} shots, "
              f"seeds {args.seeds} (mean ± std over seeds); exact simulation: accuracy {exact_acc:.4f}\n\n")
    (out / "layout_choice.md").write_text(header + md + "\n")
    (out / "layout_choice.json").write_text(json.dumps({"args": vars(args), "exact_accuracy": exact_acc,
                                                        "cells": cells}, indent=1))
    print(header + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
