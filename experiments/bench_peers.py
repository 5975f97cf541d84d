"""Training-step benchmark against PennyLane: the same hybrid LeNet, the same head, one run.

The head is the default one (angle encoding, RealAmplitudes reps 2 with reverse-linear CX
entanglement, ⟨Z⟩ on every qubit), built once in Qiskit for ``ours`` (the ``statevector``
backend) and once as a PennyLane QNode inside ``qml.qnn.TorchLayer`` for each peer device
(``default.qubit``, backprop through torch; ``lightning.qubit``, its adjoint method). Before
timing, the peers' outputs are checked against ours on the same weights (to 1e-6), so that
every row times the same function. Steps are timed in round-robin with the classical baseline
(a burst of load hits every head alike); ratios use medians from the same run.

PennyLane is a benchmark extra, not a dependency: ``pip install -e .[peers]``.

Run:
    python experiments/bench_peers.py                      # 4, 8, 12, 16 qubits, batch 32
    python experiments/bench_peers.py --qubits 4 8 --markdown
"""

from __future__ import annotations

import argparse
import json
import math
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
from hybrid_qiskit.models import HybridLeNet, ModelConfig, build_model  # noqa: E402
from hybrid_qiskit.qnn import initial_weights  # noqa: E402

warnings.filterwarnings("ignore", message="To copy construct from a tensor")


def pennylane_head(n: int, device: str, reps: int = 2, seed: int = 0) -> nn.Module:
    """Our default head as a PennyLane TorchLayer, with our initial weights.

    Raises:
        SystemExit: PennyLane is not installed (it is the ``peers`` extra).
    """
    try:
        import pennylane as qml
    except ImportError:
        raise SystemExit("bench_peers needs PennyLane: pip install -e .[peers]  (or pip install pennylane)") from None
    dev = qml.device(device, wires=n)

    @qml.qnode(dev, interface="torch", diff_method="best")
    def circuit(inputs, weights):
        for q in range(n):
            qml.RY(inputs[..., q], wires=q)
        for layer in range(reps + 1):  # Qiskit's real_amplitudes: RY layer, reverse-linear CX, ...
            for q in range(n):
                qml.RY(weights[layer * n + q], wires=q)
            if layer < reps:
                for q in range(n - 2, -1, -1):
                    qml.CNOT(wires=[q, q + 1])
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    layer = qml.qnn.TorchLayer(circuit, {"weights": (n * (reps + 1),)})
    with torch.no_grad():
        layer.weights.copy_(torch.as_tensor(initial_weights(n * (reps + 1), seed)))
    return layer


class Stepper:
    """One model, Adam and a fixed batch; ``step()`` times one training step."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y, self.times = model, x, y, []
        self.opt = torch.optim.Adam(model.parameters(), lr=5e-3)

    def step(self, record: bool = True) -> float:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt)
        return dt

    def median_ms(self) -> float | None:
        return statistics.median(self.times) * 1e3 if self.times else None


def check_same_function(ours: nn.Module, peer: nn.Module, n: int, seed: int) -> float:
    """Largest |ours - peer| over a batch of random angles (same weights)."""
    angles = torch.rand(4, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * math.pi
    with torch.no_grad():
        a = ours(angles.float()).double()
        b = peer(angles).double()
    return float((a - b).abs().max())


def run_config(n: int, args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(args.batch, 1, 28, 28, generator=g), torch.randint(0, 10, (args.batch,), generator=g)
    cfg = ModelConfig(kind="hybrid", num_qubits=n)
    heads = {
        "classical": Stepper(build_model(ModelConfig(kind="classical", num_qubits=n), seed=args.seed), x, y),
        "ours": Stepper(build_model(cfg, create_backend("statevector", seed=args.seed), seed=args.seed), x, y),
    }
    row: dict = {"qubits": n, "batch": args.batch}
    peers = args.peers if n <= args.peer_max_qubits else []
    for device in peers:
        torch.manual_seed(args.seed)
        head = pennylane_head(n, device, seed=args.seed)
        if n <= 12:  # the check runs both heads once more; at 16 qubits default.qubit takes seconds
            err = check_same_function(heads["ours"].model.head, head, n, args.seed)
            if err > 1e-5:  # TorchConnector computes in float32 on the torch side
                raise SystemExit(f"{device} at {n} qubits differs from ours by {err:.2e}: not the same head")
        heads[device] = Stepper(HybridLeNet(cfg, head), x, y)
    # One untimed step each; a head whose step exceeds the budget is timed on that step alone.
    slow = {}
    for name, s in heads.items():
        dt = s.step(record=False)
        if dt * args.steps > args.budget:
            slow[name] = dt
    for _ in range(args.steps):
        for name, s in heads.items():
            if name not in slow:
                s.step()
    for name, s in heads.items():
        row[name] = slow[name] * 1e3 if name in slow else s.median_ms()
        if name != "classical":
            row[f"{name}_over_classical"] = row[name] / row["classical"]
    for device in set(args.peers) - set(peers):
        row[device] = row[f"{device}_over_classical"] = None
    row["timed_once"] = sorted(slow)
    row["load_average"] = os.getloadavg()[0]
    return row


def markdown(rows: list[dict], peers: list[str]) -> str:
    head = "| qubits | classical ms | ours ms (x classical) | " + " | ".join(f"{p} ms (x classical)" for p in peers) + " |"
    lines = [head, "|" + "---|" * (3 + len(peers))]
    for r in rows:
        cells = [str(r["qubits"]), f"{r['classical']:.1f}", f"{r['ours']:.0f} ({r['ours_over_classical']:.1f}x)"]
        cells += ["– (not run)" if r[p] is None else
                  f"{r[p]:.0f} ({r[p + '_over_classical']:.0f}x)" + ("*" if p in r["timed_once"] else "") for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qubits", type=int, nargs="+", default=[4, 8, 12, 16])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--peers", nargs="+", default=["default.qubit", "lightning.qubit"])
    p.add_argument("--steps", type=int, default=5, help="timed steps per head and width")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds a head may take per width; a slower head is timed on one step")
    p.add_argument("--peer-max-qubits", type=int, default=16,
                   help="widest head the peers are run at: at 20 qubits default.qubit's backprop graph "
                        "outgrew 24 GB (the process was killed) and a lightning.qubit step takes minutes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (see bench_training.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"load_average_start": list(os.getloadavg()), "cpus": os.cpu_count(), "torch_threads": args.threads,
            "numpy": np.__version__, "torch": torch.__version__}
    rows = []
    for n in args.qubits:
        rows.append(run_config(n, args))
        r = rows[-1]
        parts = [f"classical {r['classical']:.1f} ms", f"ours {r['ours']:.0f} ms ({r['ours_over_classical']:.1f}x)"]
        parts += [f"{d} {r[d]:.0f} ms ({r[d + '_over_classical']:.0f}x)" for d in args.peers if r[d] is not None]
        print(f"{n:>3} qubits: " + ", ".join(parts) + f"  [load {r['load_average']:.1f}]", flush=True)
    meta["load_average_end"] = list(os.getloadavg())
    import pennylane

    meta["pennylane"] = pennylane.__version__
    if args.markdown:
        print()
        print(markdown(rows, args.peers))
        print(f"\n* timed on one step (over the --budget). Batch {args.batch}, torch on {args.threads} thread, "
              f"{meta['cpus']} cpus, load average {meta['load_average_start'][0]:.1f} -> {meta['load_average_end'][0]:.1f}; "
              f"PennyLane {meta['pennylane']}.")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
