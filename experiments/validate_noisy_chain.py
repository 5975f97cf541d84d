"""The noisy chain against Aer's own matrix-product-state trajectories, at widths the density
matrix cannot reach.

    python experiments/validate_noisy_chain.py [--widths 12,16] [--images 2] [--shots 2048]

For each width, a digits head (angle + RealAmplitudes reps 2) with seeded random inputs and
weights is transpiled for fake_fez once; each image is then simulated on the reduced device by

* Aer, ``method="matrix_product_state"``, one trajectory per shot, measuring every qubit, under
  (a) our twirled Pauli channels and readout errors (what the noisy chain should reproduce
  exactly, up to shot noise) and (b) Aer's own device model (``NoiseModel.from_backend``:
  exact thermal relaxation; the difference is the twirl's bias);
* ``noisy_trajectories`` with ``method=mps`` and one trajectory per shot, the same shots.

It prints, per width, the largest |difference| of ⟨Z_q⟩ in units of the combined shot sigma
over qubits and images (4 is the bar: with 2 x 16 values a few above 3 are expected), and the
time per image of each simulator. Tests cover 4-10 qubits against the density matrix
(tests/backends/test_noisy_chain_vs_aer.py); this is the wide check, too slow for a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import create_backend  # noqa: E402
from backends.devices import get_fake_backend  # noqa: E402
from backends.noise import device_noise  # noqa: E402
from backends.noisy_trajectories import device_channels  # noqa: E402
from backends.reduced import active_qubits, compact_circuit, reduce_device  # noqa: E402
from hybrid_qiskit.circuits import build_head_circuit  # noqa: E402


def twirled_model(circuit, device, scale: float):
    """An Aer noise model with our Pauli channel after every gate instance, and our readout."""
    from qiskit_aer.noise import NoiseModel, ReadoutError, pauli_error

    channel, readout = device_channels(device, scale)
    model = NoiseModel(basis_gates=["cz", "sx", "x", "rz", "id"])
    done = set()
    for inst in circuit.data:
        q = tuple(circuit.find_bit(b).index for b in inst.qubits)
        if inst.operation.name in ("measure", "barrier") or (inst.operation.name, q) in done:
            continue
        probs = channel(inst.operation.name, q)
        done.add((inst.operation.name, q))
        if probs is None:
            continue
        terms = [("".join("IXZY"[(c >> 2 * j) & 3] for j in reversed(range(len(q)))), p)
                 for c, p in enumerate(probs) if p > 0]
        model.add_quantum_error(pauli_error(terms), inst.operation.name, list(q))
    for q, (a, b) in enumerate(readout):
        model.add_readout_error(ReadoutError([[1 - a, a], [b, 1 - b]]), [q])
    return model


def z_means(counts: dict, n: int, shots: int) -> np.ndarray:
    z = np.zeros(n)
    for key, c in counts.items():
        bits = int(key.replace(" ", ""), 16) if key.startswith("0x") else int(key.replace(" ", ""), 2)
        for q in range(n):
            z[q] += c * (1 - 2 * ((bits >> q) & 1))
    return z / shots


def main(argv=None) -> int:
    from qiskit_aer import AerSimulator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="12,16")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--shots", type=int, default=2048)
    p.add_argument("--noise-scale", type=float, default=4.0)
    args = p.parse_args(argv)
    print(f"fake_fez x {args.noise_scale}, {args.shots} shots, {args.images} images per width")
    print("| qubits | max z vs Aer MPS (our channels) | max z vs Aer MPS (Aer's model) | largest twirl bias "
          "| s/image Aer MPS | s/image noisy chain |")
    print("|---|---|---|---|---|---|")
    for n in (int(w) for w in args.widths.split(",")):
        handle = create_backend("noisy_trajectories", device="fake_fez", noise_scale=args.noise_scale,
                                shots=args.shots, trajectories=args.shots, seed=5, method="mps")
        head = build_head_circuit(n, reps=2)
        isa = handle.pass_manager.run(head.circuit)
        layout = isa.layout.final_index_layout()
        qubits = active_qubits(isa)
        device = reduce_device(get_fake_backend("fake_fez"), qubits)
        small = compact_circuit(isa, qubits)
        where = [qubits.index(layout[i]) for i in range(n)]  # logical qubit i -> reduced index
        from qiskit.quantum_info import SparsePauliOp

        obs = [[SparsePauliOp.from_sparse_list([("Z", [layout[i]], 1.0)], isa.num_qubits)] for i in range(n)]
        values = np.random.default_rng(n).uniform(-np.pi, np.pi, (args.images, head.circuit.num_parameters))
        ours, times = [], {"aer": 0.0, "ours": 0.0}
        start = time.perf_counter()
        result = handle.estimator.run([(isa, obs, values)]).result()[0]
        times["ours"] = (time.perf_counter() - start) / args.images
        ours = np.asarray(result.data.evs)[:, :].T  # (images, n)
        refs = {}
        for label, model in (("twirled", None), ("aer", device_noise(device, args.noise_scale).model)):
            rows = []
            for row in values:
                bound = small.assign_parameters(row)
                bound.measure_all()
                noise = model if model is not None else twirled_model(bound, device, args.noise_scale)
                sim = AerSimulator(method="matrix_product_state", noise_model=noise, seed_simulator=11)
                t0 = time.perf_counter()
                counts = sim.run(bound, shots=args.shots).result().get_counts()
                times["aer"] += time.perf_counter() - t0
                rows.append(z_means(counts, small.num_qubits, args.shots)[where])
            refs[label] = np.array(rows)
        sigma = np.sqrt((1 - ours**2).clip(1e-6) / args.shots + (1 - refs["twirled"] ** 2).clip(1e-6) / args.shots)
        z_twirled = np.abs(ours - refs["twirled"]) / sigma
        z_aer = np.abs(ours - refs["aer"]) / sigma
        bias = np.abs(refs["twirled"] - refs["aer"]).max()
        print(f"| {n} | {z_twirled.max():.2f} | {z_aer.max():.2f} | {bias:.3f} (shot noise included) | "
              f"{times['aer'] / (2 * args.images):.1f} | {times['ours']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
