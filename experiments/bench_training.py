"""Training-step benchmark: classical head vs the stock Qiskit stack vs our exact backend.

A step is what training does per batch: forward, cross-entropy, backward, Adam step, on the
LeNet models of ``hybrid_qiskit.models`` (1x28x28 images). Three heads are compared:

* ``classical``: the matched classical baseline (``tanh(Linear)`` instead of the quantum head);
* ``ours``: the hybrid model on the ``statevector`` backend (batched estimator + adjoint gradient);
* ``stock``: the hybrid model on ``statevector_reference`` (StatevectorEstimator +
  ParamShiftEstimatorGradient). It takes seconds to minutes per step, so it is run only where
  its estimated cost fits the ``--stock-budget``; skipped rows say so.

Timings are noisy on a shared 2-core machine, so torch runs on one thread unless told otherwise
(``--threads``; numpy's BLAS is kept on one thread by the simulator itself), and classical and
ours are measured in alternation
(one step each, round-robin: a burst of load hits both) and the median and minimum are reported.
Ratios use medians. Memory: each configuration runs in a fresh subprocess (``--isolate``, on by
default), whose peak resident set (``resource.getrusage`` maxrss, torch and qiskit included) is
that configuration's peak RSS; and the peak of numpy allocations during one quantum step
(``tracemalloc``, measured after the timings: tracing slows Python down).
Wide heads (16 and 20 qubits) are timed at batches up to ``--wide-max-batch`` only, with few steps.

Run:
    python experiments/bench_training.py                 # full run, ~10 minutes on 2 cores
    python experiments/bench_training.py --qubits 12 16 20 --batches 32 --stock-budget 0
    python experiments/bench_training.py --quick         # a short smoke run, no stock steps
    python experiments/bench_training.py --out runs/bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import create_backend  # noqa: E402
from hybrid_qiskit.config import parse_setting  # noqa: E402
from hybrid_qiskit.data import load_dataset  # noqa: E402
from hybrid_qiskit.models import ModelConfig, build_model  # noqa: E402

# TorchConnector copies its initial weights with torch.tensor(tensor): a harmless warning.
warnings.filterwarnings("ignore", message="To copy construct from a tensor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 12, 16, 20])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--steps", type=int, default=30, help="timed steps per head and config (fewer at 12 qubits)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--stock-budget", type=float, default=180.0,
                   help="seconds the stock stack may take in all; rows estimated to exceed it are skipped")
    p.add_argument("--stock-steps", type=int, default=2, help="timed stock steps per row (1 beyond 4 qubits)")
    p.add_argument("--stock-batches", type=int, nargs="+", default=[32],
                   help="batch sizes at which the stock stack is timed (each row costs minutes)")
    p.add_argument("--wide-max-batch", type=int, default=32,
                   help="largest batch timed at 16 qubits and more (a 20-qubit step at batch 32 takes seconds)")
    p.add_argument("--backend-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the statevector backend for 'ours' (e.g. single_precision=true)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every configuration in this process (peak RSS is then the largest so far)")
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)  # "n,b": one configuration, JSON out
    p.add_argument("--no-epoch", action="store_true", help="skip the full digits epoch")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: torch's own choice). 1 by default: on a shared 2-core machine "
                        "torch's threads wait on each other whenever another process holds a core "
                        "(classical step medians of 170-470 ms instead of 7 ms were measured with 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="4 and 8 qubits, batch 32, few steps, no stock, no epoch")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.qubits, args.batches, args.steps, args.warmup = [4, 8], [32], 8, 2
        args.stock_budget, args.no_epoch = 0.0, True
    return args


# --------------------------------------------------------------------------- steps


class Stepper:
    """One model, optimizer and fixed batch: ``step()`` runs and times one training step."""

    def __init__(self, model: nn.Module, batch: int, seed: int):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, 1, 28, 28, generator=g)
        self.y = torch.randint(0, 10, (batch,), generator=g)
        self.times: list[float] = []

    def step(self, record: bool = True) -> float:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt)
        return dt

    def summary(self) -> dict:
        if not self.times:
            return {}
        ms = [t * 1e3 for t in self.times]
        return {"median_ms": statistics.median(ms), "min_ms": min(ms), "steps": len(ms)}


class HeadStepper(Stepper):
    """The quantum head alone (TorchConnector forward + backward on random angles): what the
    hybrid step adds to the CNN, without it."""

    def __init__(self, model: nn.Module, batch: int, seed: int):
        self.model, self.times = model, []
        g = torch.Generator().manual_seed(seed)
        self.angles = (torch.rand(batch, model.config.num_qubits, generator=g) * math.pi).requires_grad_(True)
        self.weights = torch.randn(batch, model.config.num_qubits, generator=g)

    def step(self, record: bool = True) -> float:
        t0 = time.perf_counter()
        self.angles.grad = None
        (self.model.quantum(self.angles) * self.weights).sum().backward()
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt)
        return dt


def hybrid(n: int, backend: str, seed: int, settings: dict | None = None) -> nn.Module:
    handle = create_backend(backend, seed=seed, **(settings or {}))
    return build_model(ModelConfig(kind="hybrid", num_qubits=n), handle, seed=seed)


def classical(n: int, seed: int) -> nn.Module:
    return build_model(ModelConfig(kind="classical", num_qubits=n), seed=seed)


def numpy_peak_mb(stepper: Stepper) -> float:
    """Peak numpy/Python allocation (MB) during one step (torch's own memory is not traced)."""
    tracemalloc.start()
    try:
        stepper.step(record=False)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def stock_estimate_s(n: int, batch: int, measured: dict[tuple[int, int], float]) -> float | None:
    """Seconds per stock step, extrapolated from a measured row: parameter shift runs
    2·P·B·K circuits per backward (P = 4n parameters, K = n observables), each costing about
    the same at these sizes (Statevector's overhead dominates the 2**n work below ~10 qubits)."""
    if not measured:
        return None
    (n0, b0), t0 = next(iter(measured.items()))
    return t0 * (batch / b0) * (n / n0) ** 2 * max(1.0, 2 ** (n - max(n0, 8)))


# --------------------------------------------------------------------------- epoch


def train_one_epoch(model, opt, loader) -> tuple[int, float, float]:
    """One pass of plain training (no schedule, no augmentation): (samples, mean loss, accuracy).
    Also used by bench_noise_injection.py, so both benchmarks time the same loop."""
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return total, loss_sum / total, correct / total


def epoch_time(kind: str, seed: int) -> dict:
    """One epoch of the default digits training (8 qubits, batch 32, Adam 5e-3), then the
    validation pass, as ``hybrid-qiskit train`` runs it."""
    splits = load_dataset("digits", seed=seed)
    cfg = ModelConfig(kind=kind, num_qubits=8, num_classes=splits.num_classes)
    backend = create_backend("statevector", seed=seed) if kind == "hybrid" else None
    model = build_model(cfg, backend, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loader = torch.utils.data.DataLoader(
        splits.train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    t0 = time.perf_counter()
    total, train_loss, train_acc = train_one_epoch(model, opt, loader)
    train_s = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(splits.val, batch_size=256):
            model(x)
    val_s = time.perf_counter() - t1
    return {
        "kind": kind,
        "train_samples": total,
        "steps": len(loader),
        "train_s": train_s,
        "val_samples": len(splits.val),
        "val_s": val_s,
        "train_loss": train_loss,
        "train_acc": train_acc,
    }


# --------------------------------------------------------------------------- one configuration


def measure(n: int, b: int, args: argparse.Namespace) -> dict:
    """Classical, ours and ours' head alone at ``n`` qubits and batch ``b``, in round-robin."""
    steps = args.steps if n < 12 else max(3, args.steps // 6) if n < 16 else max(2, args.steps // 15)
    warmup = args.warmup if n < 16 else 1
    settings = dict(parse_setting(s) for s in args.backend_setting)
    heads = {"classical": Stepper(classical(n, args.seed), b, args.seed),
             "ours": Stepper(hybrid(n, "statevector", args.seed, settings), b, args.seed)}
    heads["ours"].x = heads["classical"].x  # identical batches
    if n < 16:  # wide steps take seconds: time the whole step only, and measure memory by RSS
        heads["ours_head"] = HeadStepper(heads["ours"].model, b, args.seed)
    for _ in range(warmup):
        for s in heads.values():
            s.step(record=False)
    for _ in range(steps):  # round-robin: load bursts hit both heads alike
        for s in heads.values():
            s.step()
    row = {"qubits": n, "batch": b, "settings": settings}
    for name, s in heads.items():
        row[name] = s.summary()
    row["ours_numpy_peak_mb"] = numpy_peak_mb(heads["ours"]) if n < 16 else None
    row["ours_over_classical"] = row["ours"]["median_ms"] / row["classical"]["median_ms"]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["load_average"] = os.getloadavg()[0]
    return row


def measure_isolated(n: int, b: int, args: argparse.Namespace) -> dict:
    """:func:`measure` in a fresh interpreter, so that its peak RSS is this configuration's own."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--config", f"{n},{b}", "--seed", str(args.seed),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    for s in args.backend_setting:
        argv += ["--backend-setting", s]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "memory_note": "process_maxrss_mb: peak RSS of the whole process (resource.getrusage); "
        "numpy_peak_mb: tracemalloc peak of numpy/Python allocations in one quantum step",
    }
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1) and torch.get_num_threads() > 1:  # with --threads 0 or >1
        print(f"note: load average {load:.1f} on {os.cpu_count()} cpus; torch's multi-threaded ops stall "
              "when other processes hold the cores (--threads 1 gives steadier numbers)", flush=True)
    rows, stock_measured, stock_spent = [], {}, 0.0
    configs = [(n, b) for n in args.qubits for b in args.batches if n < 16 or b <= args.wide_max_batch]
    for n, b in configs:
        row = measure_isolated(n, b, args) if args.isolate else measure(n, b, args)
        classical_x = torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))

        # The stock stack: only where it fits the budget.
        estimate = stock_estimate_s(n, b, stock_measured)
        stock_steps = args.stock_steps if n <= 4 else 1
        left = args.stock_budget - stock_spent
        if args.stock_budget <= 0:
            row["stock"] = {"skipped": "stock budget is 0 (--quick or --stock-budget 0)"}
        elif b not in args.stock_batches:
            row["stock"] = {"skipped": f"stock timed only at batch {args.stock_batches} (--stock-batches)"}
        elif estimate is not None and estimate * stock_steps > left:
            row["stock"] = {"skipped": f"estimated {estimate:.0f} s/step x {stock_steps} exceeds the "
                            f"{left:.0f} s left of --stock-budget", "estimated_s_per_step": estimate}
        elif estimate is None and n > 4:
            row["stock"] = {"skipped": "no cheaper stock row measured first to extrapolate from"}
        else:
            stock = Stepper(hybrid(n, "statevector_reference", args.seed), b, args.seed)
            stock.x = classical_x
            t0 = time.perf_counter()
            for _ in range(stock_steps):
                stock.step()
            stock_spent += time.perf_counter() - t0
            row["stock"] = stock.summary()
            stock_measured.setdefault((n, b), row["stock"]["median_ms"] / 1e3)
        if "median_ms" in row["stock"]:
            row["stock_over_ours"] = row["stock"]["median_ms"] / row["ours"]["median_ms"]
        rows.append(row)
        print(_row_line(row), flush=True)

    epochs = [] if args.no_epoch else [epoch_time("hybrid", args.seed), epoch_time("classical", args.seed)]
    meta["load_average_end"] = list(os.getloadavg())
    return {
        "meta": meta,
        "rows": rows,
        "epochs": epochs,
        "process_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _fmt(x, spec=".1f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _row_line(r: dict) -> str:
    st = r["stock"]
    return (
        f"{r['qubits']:>6} {r['batch']:>5} "
        f"{_fmt(r['classical']['median_ms']):>10} {_fmt(r['ours']['median_ms']):>9} "
        f"{_fmt(r['ours']['min_ms']):>8} {_fmt(st.get('median_ms'), '.0f'):>10} "
        f"{_fmt(r['ours_over_classical'], '.2f'):>9} {_fmt(r.get('stock_over_ours'), '.0f'):>10} "
        f"{_fmt(r.get('ours_head', {}).get('median_ms')):>9} {_fmt(r['ours_numpy_peak_mb']):>8} "
        f"{_fmt(r.get('peak_rss_mb'), '.0f'):>7} {_fmt(r.get('load_average'), '.1f'):>5}"
    )


HEADER = (
    f"{'qubits':>6} {'batch':>5} {'classical':>10} {'ours':>9} {'ours min':>8} {'stock':>10} "
    f"{'ours/cl':>9} {'stock/ours':>10} {'head':>9} {'np MB':>8} {'RSS MB':>7} {'load':>5}\n"
    f"{'':>6} {'':>5} {'ms/step':>10} {'ms/step':>9} {'ms':>8} {'ms/step':>10} {'':>9} {'':>10} {'ms':>9}"
)


def report(result: dict, *, rows: bool = True) -> str:
    """The summary; ``rows=False`` leaves out the table that ``run`` already printed row by row."""
    lines = [""]
    if rows:
        lines += ["Training step (forward + cross-entropy + backward + Adam), medians:", HEADER]
        lines += [_row_line(r) for r in result["rows"]]
    skipped = [(r["qubits"], r["batch"], r["stock"]["skipped"]) for r in result["rows"] if "skipped" in r["stock"]]
    if skipped:
        lines.append("stock rows skipped:")
        lines += [f"  {n} qubits, batch {b}: {why}" for n, b, why in skipped]
    for e in result["epochs"]:
        lines.append(
            f"digits epoch, {e['kind']} (8 qubits, batch 32): {e['steps']} steps on {e['train_samples']} "
            f"images in {e['train_s']:.2f} s, validation ({e['val_samples']} images) {e['val_s']:.2f} s"
        )
    m = result["meta"]
    lines.append("head = the quantum layer alone (TorchConnector forward + backward), ms")
    lines.append(
        f"memory: 'RSS MB' = peak RSS of the configuration's own process (getrusage; whole process "
        f"{result['process_maxrss_mb']:.0f} MB without --isolate); 'np MB' = tracemalloc peak of numpy "
        f"allocations in one step of ours; 'load' = 1-minute load average after the row"
    )
    lines.append(
        f"torch threads {m['torch_threads']}, cpus {m['cpus']}, load average "
        f"{m['load_average_start'][0]:.1f} -> {m['load_average_end'][0]:.1f}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.config:  # a child of measure_isolated: one configuration, one JSON line
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        n, b = (int(v) for v in args.config.split(","))
        print(json.dumps(measure(n, b, args)))
        return 0
    print("Training step (forward + cross-entropy + backward + Adam), medians:", HEADER, sep="\n", flush=True)
    result = run(args)
    print(report(result, rows=False))  # the table is already on screen, printed as each row finished
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
