"""How much of a head's signal survives device noise: the best readouts of its noisy ⟨Z⟩.

    python experiments/noise_ceiling.py runs/digits-hybrid --levels 32,48 [--device fake_fez --shots 1024]

For each noise scale, the run's head is simulated on ``aer_noisy`` (the device's calibrated noise
times the scale, on the reduced device) for every image of the training and test splits. Then
readouts are fitted to the noisy ⟨Z⟩ of the WHOLE training split and scored on the test split:
logistic regression on standardized ⟨Z⟩ (what ``refit`` does, with 64 images instead of all) and
gradient-boosted trees (a nonlinear readout). No mitigation that only post-processes this head's
outputs has more to work with, so these accuracies bound what normalization or a re-fit can reach;
beating them takes a head whose outputs survive the noise. The model's own readout on the raw
noisy ⟨Z⟩ is shown for comparison.

Writes ``RUN/noise/ceiling-<device>-<shots>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ceiling(run_dir: Path, levels: list[float], device: str, shots: int, seed: int) -> list[dict]:
    import numpy as np
    import torch
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from backends import create_backend
    from hybrid_qiskit import runs
    from hybrid_qiskit.adaptation import head_outputs
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.runs import load_splits

    cfg, payload = runs.load_run(run_dir)
    splits = load_splits(cfg)
    (x_train, y_train), (x_test, y_test) = splits.train.tensors, splits.test.tensors
    rows = []
    for level in levels:
        t0 = time.perf_counter()
        handle = (create_backend("aer_noisy", device=device, noise_scale=level, shots=shots, seed=seed)
                  if level > 0 else create_backend("statevector", seed=seed))
        model = restore_model(payload, handle)
        z_train, z_test = head_outputs(model, x_train), head_outputs(model, x_test)
        with torch.no_grad():
            logits = model.decode(torch.as_tensor(z_test, dtype=torch.float32))
        row = {"level": level, "own_readout": float((logits.argmax(1) == y_test).double().mean()),
               "train_images": len(z_train), "test_images": len(z_test),
               "qubit_spread": np.round(z_test.std(0), 4).tolist()}
        for name, clf in (("logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))),
                          ("boosted_trees", HistGradientBoostingClassifier(max_iter=200, random_state=seed))):
            clf.fit(z_train, y_train.numpy())
            row[name] = float((clf.predict(z_test) == y_test.numpy()).mean())
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{level:>6g}x  own readout {row['own_readout']:.3f}  logistic {row['logistic']:.3f}  "
              f"boosted trees {row['boosted_trees']:.3f}  ({row['seconds']:.0f} s)", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--levels", default="0,32,48", help="noise scales, comma-separated (0: exact simulation)")
    p.add_argument("--device", default="fake_fez")
    p.add_argument("--shots", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    args = p.parse_args(argv)
    from hybrid_qiskit.errors import HybridQiskitError
    from hybrid_qiskit.fileio import write_json

    try:
        levels = [float(v) for v in args.levels.split(",")]
        if any(not 0 <= v < float("inf") for v in levels):
            raise ValueError
    except ValueError:
        print(f"error: --levels must be non-negative numbers, got {args.levels!r}", file=sys.stderr)
        return 2
    try:
        rows = ceiling(args.run_dir, levels, args.device, args.shots, args.seed)
    except HybridQiskitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.run_dir / "noise" / f"ceiling-{args.device}-{args.shots}.json"
    write_json(out, {"device": args.device, "shots": args.shots, "seed": args.seed, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
