"""Training-step benchmark against PennyLane: the same hybrid LeNet, the same head, one run.

The head (``--head``; the default one unless given: angle encoding, RealAmplitudes reps 2 with
reverse-linear CX entanglement, ⟨Z⟩ on every qubit) is built once in Qiskit for ``ours`` (the
``statevector`` backend) and replayed gate by gate as a PennyLane QNode inside
``qml.qnn.TorchLayer`` for each peer device (``default.qubit``, backprop through torch;
``lightning.qubit``, its adjoint method). Before timing, the peers' outputs are checked against
ours on the same weights (to 1e-5, float32 on our side), so that every row times the same
function. Steps are timed in round-robin with the classical baseline (a burst of load hits every
head alike); ratios use medians from the same run.

PennyLane is a benchmark extra, not a dependency: ``pip install -e .[peers]``.

Run:
    python experiments/bench_peers.py                      # 4, 8, 12, 16 qubits, batch 32
    python experiments/bench_peers.py --qubits 4 8 --markdown
    python experiments/bench_peers.py --head zz:real_amplitudes:2 --qubits 12 16
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_heads import parse_head  # noqa: E402

warnings.filterwarnings("ignore", message="To copy construct from a tensor")


# Qiskit's basis gates -> PennyLane's: the head is transpiled to these and replayed gate by gate.
PENNYLANE_GATES = {"rx": "RX", "ry": "RY", "rz": "RZ", "p": "PhaseShift", "h": "Hadamard", "cx": "CNOT",
                   "x": "PauliX", "sx": "SX"}


def _angle(param, index: dict):
    """A gate angle as a function of (inputs, weights): a constant, one parameter, or a
    parameter expression (the ZZ map's 2(π − x_i)(π − x_j)) through sympy on torch tensors."""
    if not hasattr(param, "parameters"):
        return lambda inputs, weights: float(param)

    def value(p, inputs, weights):
        kind, i = index[p]
        return inputs[..., i] if kind == "x" else weights[i]
    parameters = list(param.parameters)
    if hasattr(param, "name") and len(parameters) == 1 and param == parameters[0]:  # a plain parameter
        return lambda inputs, weights: value(parameters[0], inputs, weights)
    import sympy

    expr = param.sympify()
    symbols = [sympy.Symbol(q.name) for q in parameters]
    f = sympy.lambdify(symbols, expr, modules=[{"pi": math.pi}, "math"], dummify=True)
    return lambda inputs, weights: f(*(value(q, inputs, weights) for q in parameters))


def pennylane_head(n: int, device: str, head: dict, seed: int = 0) -> nn.Module:
    """Our head (``build_head_circuit(n, **head)``) as a PennyLane TorchLayer, with our initial
    weights: the Qiskit circuit transpiled to basis gates and replayed in PennyLane, so that every
    head family is the same function on both sides (checked before timing).

    Raises:
        SystemExit: PennyLane is not installed (it is the ``peers`` extra).
    """
    try:
        import pennylane as qml
    except ImportError:
        raise SystemExit("bench_peers needs PennyLane: pip install -e .[peers]  (or pip install pennylane)") from None
    from qiskit import transpile

    from hybrid_qiskit.circuits import build_head_circuit

    built = build_head_circuit(n, **head)
    qc = transpile(built.circuit, basis_gates=list(PENNYLANE_GATES), optimization_level=0)
    index = {p: ("x", i) for i, p in enumerate(built.input_params)}
    index.update({p: ("w", j) for j, p in enumerate(built.weight_params)})
    program = [(getattr(qml, PENNYLANE_GATES[inst.operation.name]), [qc.find_bit(q).index for q in inst.qubits],
                _angle(inst.operation.params[0], index) if inst.operation.params else None) for inst in qc.data]
    readouts = []
    for op in built.observables:  # single-qubit Z readouts, coefficient 1 (the heads' only kind)
        label = op.paulis[0].to_label()
        if len(op) != 1 or label.count("Z") != 1 or set(label) - {"I", "Z"} or op.coeffs[0] != 1:
            raise SystemExit(f"bench_peers replays single-Z readouts only, not {op}")
        readouts.append(len(label) - 1 - label.index("Z"))
    dev = qml.device(device, wires=n)

    @qml.qnode(dev, interface="torch", diff_method="best")
    def circuit(inputs, weights):
        for gate, wires, angle in program:
            if angle is None:
                gate(wires=wires)
            else:
                gate(angle(inputs, weights), wires=wires)
        return [qml.expval(qml.PauliZ(q)) for q in readouts]

    count = len(built.weight_params)
    layer = qml.qnn.TorchLayer(circuit, {"weights": (count,)})
    with torch.no_grad():
        layer.weights.copy_(torch.as_tensor(initial_weights(count, seed)))
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
    cfg = ModelConfig(kind="hybrid", num_qubits=n, **args.head)
    heads = {
        "classical": Stepper(build_model(ModelConfig(kind="classical", num_qubits=n), seed=args.seed), x, y),
        "ours": Stepper(build_model(cfg, create_backend("statevector", seed=args.seed), seed=args.seed), x, y),
    }
    row: dict = {"qubits": n, "batch": args.batch}
    peers = args.peers if n <= args.peer_max_qubits else []
    for device in peers:
        torch.manual_seed(args.seed)
        head = pennylane_head(n, device, args.head, seed=args.seed)
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
    p.add_argument("--head", type=parse_head, default=parse_head("angle:real_amplitudes:2"),
                   help="feature_map:ansatz:reps[:entanglement] (default: the default head)")
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
    meta = {"head": args.head, "load_average_start": list(os.getloadavg()), "cpus": os.cpu_count(), "torch_threads": args.threads,
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
        print(f"\n* timed on one step (over the --budget). Head {args.head}, batch {args.batch}, torch on {args.threads} thread, "
              f"{meta['cpus']} cpus, load average {meta['load_average_start'][0]:.1f} -> {meta['load_average_end'][0]:.1f}; "
              f"PennyLane {meta['pennylane']}.")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
