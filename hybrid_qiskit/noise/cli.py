"""``hybrid-qiskit noise-sweep RUN_DIR``: the command line of the noise sweeps."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

from hybrid_qiskit import executors
from hybrid_qiskit.errors import HybridQiskitError

EPILOG = """\
levels by --noise kind (least noise first; defaults in brackets):
  depolarizing  p of a depolarizing channel after every gate [0,0.001,0.003,0.01,0.03,0.1]
                (two-qubit gates: p x --two-qubit-factor)
  readout       symmetric readout flip probability [0,0.01,0.02,0.05,0.1,0.2]
  thermal       T1 = T2 in µs, 50 ns / 300 ns gates; inf = none [inf,200,100,50,20,10]
  device        noise scale x the calibration of each --devices fake device [0,0.5,1,2,4]

examples:
  hybrid-qiskit noise-sweep runs/digits-hybrid --config experiments/noise_digits.toml
  hybrid-qiskit noise-sweep RUN --noise device --devices fake_fez,fake_miami --levels 1 \\
      --shots 1024 --mitigation none,readout,trex
  hybrid-qiskit noise-sweep RUN --noise device --levels 0,8,16,32,48 --mitigation none,normalize
  hybrid-qiskit noise-sweep RUN --compare runs/trained-under-noise --baseline runs/classical
  hybrid-qiskit noise-sweep RUN --config experiments/noise_digits.toml --workers 2
  hybrid-qiskit noise-sweep RUN --config experiments/noise_digits.toml --ray HEAD_IP:6379
"""


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "noise-sweep", help="accuracy of a trained model as a function of noise, shots and mitigation",
        description="Evaluate RUN_DIR's checkpoint over a grid of noisy simulations. Results go to "
                    "RUN_DIR/noise/<name>/ (cells.jsonl, table.csv, summary.csv/.md/.json, plots); every "
                    "finished cell is saved at once and a rerun of the same command skips it. Cells run "
                    "one at a time, in a local process pool (--workers) or on Ray (--ray); the table is "
                    "the same whatever ran them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory of a hybrid or quantum model")
    p.add_argument("--config", help="TOML file of sweep settings (flags given here override it)")
    p.add_argument("--name", help="sweep folder under RUN_DIR/noise/ (default: <noise>-<devices>-<fingerprint "
                                  "of the other settings>, so sweeps with other settings never share tables)")
    p.add_argument("--noise", help="depolarizing (default) | readout | thermal | device")
    p.add_argument("--levels", help="comma-separated levels of the noise kind (see below)")
    p.add_argument("--noise-scale", dest="noise_scale", help="same as --levels, for --noise device")
    p.add_argument("--devices", help="fake devices, comma-separated (default: all_to_all, or fake_fez "
                                     "for --noise device); parametric noise uses their coupling and basis")
    p.add_argument("--shots", help="comma-separated shot counts and/or 'exact' (default 1024)")
    p.add_argument("--repeats", type=int, help="simulator seeds per setting (default 3; exact cells run once)")
    p.add_argument("--mitigation", help="comma-separated: none (default), readout (calibrated per qubit), "
                                        "normalize (⟨Z⟩ re-standardized per qubit with the noisy backend's "
                                        "statistics), refit (normalize, then the readout re-fitted to the "
                                        "calibration images), trex, zne (qiskit-ibm-runtime local mode; --noise device "
                                        "--levels 1)")
    p.add_argument("--normalize-stats", choices=("calibration", "batch"),
                   help="normalize: the noisy statistics from a calibration set of training images (default) or "
                        "from each evaluated batch")
    p.add_argument("--calibration-samples", type=int, metavar="N",
                   help="normalize, refit: training images in the calibration set (default 64)")
    p.add_argument("--two-qubit-factor", type=float, help="depolarizing: two-qubit p = factor x level (default 1)")
    p.add_argument("--optimization-level", type=int, choices=range(4), help="transpiler level (default 1)")
    p.add_argument("--simulator", choices=("auto", "aer", "trajectories"),
                   help="noisy cells on Aer, or on noisy_trajectories with one trajectory per shot (default auto: "
                        "Aer up to 12 qubits, noisy_trajectories wider; trajectories: every width alike)")
    p.add_argument("--split", choices=("test", "val"), help="images to evaluate on (default test)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    p.add_argument("--batch-size", type=int, help="images per estimator call (default 256)")
    p.add_argument("--seed", type=int, help="base simulator/transpiler seed; repeat k uses seed + k (default: the run's)")
    p.add_argument("--compare", action="append", metavar="RUN_DIR2",
                   help="sweep this run too, on one plot (e.g. trained with --backend aer_noisy); repeatable")
    p.add_argument("--baseline", metavar="RUN_DIR", help="a run trained with --model classical: reference line")
    executors.add_flags(p, "cells")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    p.set_defaults(func=noise_sweep_command)


def resolve_sweep(config_path: str | None, **overrides):
    """Defaults, then the TOML file, then the non-None ``overrides`` (CLI flags)."""
    from hybrid_qiskit.noise.plan import SweepConfig

    names = {f.name for f in fields(SweepConfig)}
    cfg = SweepConfig()
    if config_path:
        from hybrid_qiskit.config import load_toml

        data = load_toml(config_path, names)
        cfg = replace(cfg, **data)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def noise_sweep_command(args) -> int:
    import json

    from hybrid_qiskit.noise.sweep import markdown_table, run_sweep

    levels = args.levels
    if args.noise_scale is not None:
        if levels is not None:
            raise HybridQiskitError("give --levels or --noise-scale, not both")
        if args.noise not in (None, "device"):
            raise HybridQiskitError("--noise-scale scales a device's calibrated errors: use it with --noise device")
        levels, args.noise = args.noise_scale, "device"
    cfg = resolve_sweep(
        args.config, noise=args.noise, levels=levels, devices=args.devices, shots=args.shots,
        repeats=args.repeats, mitigation=args.mitigation, two_qubit_factor=args.two_qubit_factor,
        normalize_stats=args.normalize_stats, calibration_samples=args.calibration_samples,
        optimization_level=args.optimization_level, split=args.split, limit=args.limit, simulator=args.simulator,
        batch_size=args.batch_size, seed=args.seed, name=args.name,
        compare=tuple(args.compare) if args.compare else None, baseline=args.baseline,
    )
    try:
        summary = run_sweep(args.run_dir, cfg, quiet=args.quiet, workers=args.workers, ray=args.ray)
    except KeyboardInterrupt:
        print(f"interrupted: finished cells are saved under {Path(args.run_dir) / 'noise'}; "
              "rerun the same command to resume", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(markdown_table(summary["rows"]), end="")
    if summary["classical_baseline"] is None:
        print(summary["classical_baseline_note"])
    print(f"{summary['cells']} cells, {summary['cell_seconds']:.0f} s of evaluation; outputs in "
          f"{summary['output_dir']} ({', '.join(summary['files'][1:])})")
    return 0
