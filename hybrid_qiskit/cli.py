"""The ``hybrid-qiskit`` command.

    hybrid-qiskit train [--config experiments/X.toml] [flags]
    hybrid-qiskit evaluate RUN_DIR [--backend NAME ...]
    hybrid-qiskit backends [--json] [--devices]

Feature modules add their own subcommands through ``register_cli(subparsers)`` (jobs: submit,
jobs, fetch; noise: noise-sweep). Heavy imports happen inside the handlers, so ``--help`` is
quick. Errors users can fix print one line (``error: ...``) and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from hybrid_qiskit.cli_flags import add_backend_flags, backend_settings_from
from hybrid_qiskit.cli_flags import checked as _checked
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.executors import add_flags as add_executor_flags

FEATURE_MODULES = ("hybrid_qiskit.jobs", "hybrid_qiskit.noise")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block), like every other error here."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a simulator backend",
                       description="Train a hybrid (or classical / quantum-only) classifier.")
    p.add_argument("--config", help="TOML file of settings (flags given here override it)")
    p.add_argument("--dataset", help="digits (default, offline) | mnist | fashion-mnist | cifar10")
    p.add_argument("--data-dir", help="folder with torchvision's dataset layout (default: data)")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--classes", help="keep only these classes, e.g. 0,1")
    p.add_argument("--limit-train", type=int, help="use at most N training images")
    p.add_argument("--limit-test", type=int, help="use at most N test images")
    p.add_argument("--val-fraction", type=float,
                   help="share of the training images kept back to choose the best epoch (default 0.1; "
                        "0: train on all, keep the last epoch)")
    p.add_argument("--model", choices=("hybrid", "classical", "quantum", "pixel_classical"),
                   help="hybrid LeNet, its classical baseline, a quantum-only QNN on pooled pixels, or its baseline")
    p.add_argument("--qubits", type=int, help="width of the quantum head")
    p.add_argument("--cnn-width", type=int, help="LeNet's channels and widths times this (default 1: LeNet-5)")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="batch normalization after each of LeNet's convolutions")
    p.add_argument("--feature-map", choices=("angle", "zz"))
    p.add_argument("--ansatz", choices=("real_amplitudes", "efficient_su2"))
    p.add_argument("--reps", type=int, help="ansatz repetitions")
    p.add_argument("--reuploads", type=int, help="data re-uploading layers")
    p.add_argument("--entanglement", choices=("reverse_linear", "linear", "circular", "full"),
                   help="the ansatz's entangling pairs (default reverse_linear; circular and linear run as "
                        "exact chains at width too)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="post-measurement normalization: per-qubit standardized ⟨Z⟩ feeds the readout")
    add_backend_flags(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"))
    p.add_argument("--seed", type=int)
    add_recipe_flags(p)
    p.add_argument("--out", help="parent folder of run directories (default: runs)")
    p.add_argument("--name", help="run directory name (default: <dataset>-<model>-<backend>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out/--name from last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out/--name (finished or not) with a new one")
    p.add_argument("--quiet", action="store_true",
                   help="no progress or per-epoch lines; still prints the test accuracy and the run directory")
    p.set_defaults(func=_train)


RECIPE_KEYS = ("weight_decay", "dropout", "augment", "augment_shift", "augment_degrees", "augment_flip",
               "augment_erase", "label_smoothing", "patience", "threads")


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """The training recipe's flags (see experiments/README.md for what each one buys)."""
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (0: plain Adam)")
    p.add_argument("--dropout", type=float, help="dropout before the CNN's fully connected layers")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random changes of training images (the kinds: the four flags below)")
    p.add_argument("--augment-shift", type=float, help="largest shift in pixels of a 28-pixel side (default 2)")
    p.add_argument("--augment-degrees", type=float, help="largest rotation either way (default 10)")
    p.add_argument("--augment-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: for 3-channel images only)")
    p.add_argument("--augment-erase", type=float, help="probability of random erasing (default 0)")
    p.add_argument("--label-smoothing", type=float, help="label smoothing of the training loss (default 0)")
    p.add_argument("--patience", type=int, help="early stop after N epochs without a better val accuracy")
    p.add_argument("--threads", type=int, help="torch threads (part of the run's config; default 1)")


def _train(args) -> int:
    from hybrid_qiskit.config import BACKEND_FLAGS, parse_setting, resolve
    from hybrid_qiskit.training import train

    keys = ("dataset", "data_dir", "download", "classes", "limit_train", "limit_test", "val_fraction", "model", "qubits",
            "cnn_width", "batch_norm", "feature_map", "ansatz", "reps", "reuploads", "entanglement", "normalize", "backend", "epochs",
            "batch_size", "lr", "lr_schedule", "seed", "out", "name", *BACKEND_FLAGS, *RECIPE_KEYS)
    overrides = {k: getattr(args, k) for k in keys}
    # Settings without a flag of their own (--backend-setting K=V) go to the config's table.
    extra = dict(parse_setting(s) for s in args.backend_setting)
    if extra:
        overrides["backend_settings"] = extra
    cfg = resolve(args.config, **overrides)
    train(cfg, resume=args.resume, quiet=args.quiet, overwrite=args.overwrite)
    return 0


# ---------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained checkpoint on any backend",
                       description="Re-evaluate RUN_DIR's best checkpoint; with --backend, on another backend.")
    p.add_argument("run_dir", help="a run directory (holds model.pt and config.json)")
    add_backend_flags(p)
    p.add_argument("--seed", type=_checked("Seed"), help="simulator/transpiler seed (default: the run's)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--limit", type=_checked("PositiveInt"), help="evaluate only the first N images of the split")
    p.add_argument("--batch-size", type=_checked("PositiveInt"), default=256)
    add_normalize_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_evaluate)


def add_normalize_flags(p: argparse.ArgumentParser) -> None:
    """Where the per-qubit ⟨Z⟩ statistics come from on the evaluating backend (adaptation.py)."""
    p.add_argument("--normalize-stats", choices=("off", "calibration", "batch"),
                   help="re-standardize ⟨Z⟩ per qubit with this backend's statistics, from a calibration set of "
                        "training images (default for a model trained with --normalize when --backend or a backend "
                        "setting is given), "
                        "from each batch, or off (default otherwise; a model with the layer keeps its trained "
                        "statistics)")
    p.add_argument("--calibration-samples", type=_checked("PositiveInt"), default=None, metavar="N",
                   help="training images in the calibration set (default 64)")
    p.add_argument("--refit-readout", action="store_true",
                   help="after re-standardizing from the calibration set, re-fit the readout to those images' ⟨Z⟩ "
                        "on this backend and their labels (implies --normalize-stats calibration)")


def _evaluate(args) -> int:
    from hybrid_qiskit.evaluation import evaluate_run

    ev = evaluate_run(args.run_dir, split=args.split, backend=args.backend, settings=backend_settings_from(args),
                      seed=args.seed, limit=args.limit, batch_size=args.batch_size,
                      normalize_stats=args.normalize_stats, calibration_samples=args.calibration_samples,
                      refit_readout=args.refit_readout)
    if ev.unwritable:  # evaluation only reads the run: a read-only one still evaluates
        print(f"note: {args.run_dir} is not writable ({ev.unwritable}): the result is printed, not saved",
              file=sys.stderr)
    res = ev.result
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        name = res["backend"]["name"] if res["backend"] else "classical"
        print(f"{args.split} accuracy {res['accuracy']:.4f}  loss {res['loss']:.4f}  ({res['samples']} images, "
              f"backend {name}, {res['seconds']:.1f}s)")
        if not ev.unwritable:
            print(f"wrote {ev.path}" + (" (replacing an evaluation with the same settings)" if ev.replaced else ""))
    return 0


# ---------------------------------------------------------------- compare
def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="a model against its matched classical baseline over several seeds",
                       description="Train the config's model and its matched classical baseline (its *-classical.toml "
                                   "sibling) with N seeds; write compare.json, compare.md (a README table) and "
                                   "compare.png. Finished runs are reused: rerun to resume. Runs train one "
                                   "after another, in a local process pool (--workers) or on Ray (--ray); the "
                                   "table is the same whatever trained them.")
    p.add_argument("--config", required=True, help="TOML file of a hybrid or quantum model (experiments/X.toml)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, from the config's seed on (default 5)")
    p.add_argument("--out", help="folder for the runs and the results (default: runs/compare-<config name>)")
    p.add_argument("--data-dir", help="folder with torchvision's dataset layout")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting for both models, e.g. --set weight_decay=0.01 (repeatable)")
    p.add_argument("--verbose", action="store_true",
                   help="print every run's epochs (runs trained by --workers or --ray keep them in their train.log)")
    add_executor_flags(p, "runs")
    p.set_defaults(func=_compare)


def _compare(args) -> int:
    from hybrid_qiskit.compare import command_line, compare
    from hybrid_qiskit.config import parse_setting

    overrides = dict(parse_setting(s) for s in args.set)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    # The recorded command leaves --workers and --ray out: they change who trains, not the table.
    command = command_line(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else None
    result = compare(args.config, seeds=args.seeds, out=args.out, overrides=overrides, command=command,
                     verbose=args.verbose, workers=args.workers, ray=args.ray)
    from pathlib import Path

    out = Path(result["models"][result["models_compared"][0]]["runs"][0]["run_dir"]).parent
    print()
    print((out / "compare.md").read_text(), end="")
    print(f"wrote {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.png'}")
    return 0


# ---------------------------------------------------------------- backends
def _add_backends(sub) -> None:
    p = sub.add_parser("backends", help="list the registered backends and their settings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--devices", action="store_true", help="list the fake devices usable with --device")
    p.set_defaults(func=_backends)


def _backends(args) -> int:
    from backends import backend_spec, list_backends

    if args.devices:
        from backends.devices import device_table, list_fake_devices

        devices = list_fake_devices()
        print(json.dumps(devices, indent=2) if args.json else device_table(devices))
        return 0
    rows = []
    for name in list_backends():
        spec = backend_spec(name)
        rows.append({"name": name, "summary": spec.summary, "needs_credentials": spec.needs_credentials,
                     "settings": spec.describe_settings()})  # type, default, allowed, description
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        cred = "  [needs IBM Quantum credentials]" if r["needs_credentials"] else ""
        print(f"{r['name']}{cred}\n    {r['summary']}")
        settings = ", ".join(f"{k}={v['default']!r}" for k, v in r["settings"].items())
        print(f"    settings: {settings or '-'}")
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hybrid-qiskit",
        description="Hybrid quantum-classical image classifier: train on simulators, run on IBM Quantum.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_compare(sub)
    _add_backends(sub)
    for name in FEATURE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except HybridQiskitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hybrid-qiskit backends | head`: the reader left, nothing is wrong
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        print("interrupted: nothing finished was lost (train: rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
