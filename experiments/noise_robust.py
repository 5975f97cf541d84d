"""What makes a model survive device noise: train variants, sweep them on a device's noise, tabulate.

    python experiments/noise_robust.py --config experiments/noise_robust_digits.toml [--out runs/noise-robust]
    python experiments/noise_robust.py --config ... --models hybrid --variants plain,normalized   # a subset

For each model of the config (``[models.NAME]``: settings over the base config) and each variant
(``[variants.NAME]``: training settings, and the ``--mitigation`` its sweep uses), this trains the
run (reused when finished: compare's ``run_one``), sweeps it over the device's noise with
``noise-sweep``'s driver (finished cells are reused too), trains the model's classical baseline
as the reference line, and writes ``OUT/noise_robust.{json,md}`` and a plot with one panel per
model, ``OUT/noise_robust.png``. Interrupted, the same command continues where it stopped.

The variants' training settings, noise scale, shots and images are in the TOML file, so the
table states what it measured; time per training and per sweep is reported beside accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_qiskit.errors import HybridQiskitError  # noqa: E402

SWEEP_KEYS = ("device", "levels", "shots", "repeats", "limit", "split", "simulator")


def load_plan(path: Path) -> dict:
    try:
        plan = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HybridQiskitError(f"cannot read {path}: {exc}") from None
    for key in ("base_config", "models", "variants", *SWEEP_KEYS[:3]):
        if key not in plan:
            raise HybridQiskitError(f"{path} has no {key!r}")
    return plan


def train_config(plan: dict, model: dict, settings: dict, out: Path, name: str):
    from hybrid_qiskit.config import resolve

    base = ROOT / plan["base_config"] if not Path(plan["base_config"]).is_absolute() else plan["base_config"]
    return resolve(base, **{**model.get("settings", {}), **settings, "out": str(out), "name": name})


def sweep(run_dir: Path, plan: dict, mitigation: list[str], baseline: Path | None) -> dict:
    from hybrid_qiskit.noise.plan import SweepConfig
    from hybrid_qiskit.noise.sweep import run_sweep

    cfg = SweepConfig(noise="device", devices=(plan["device"],), levels=tuple(plan["levels"]),
                      shots=(plan["shots"],), repeats=plan.get("repeats", 1), limit=plan.get("limit"),
                      split=plan.get("split", "test"), mitigation=tuple(mitigation),
                      simulator=plan.get("simulator", "auto"),
                      baseline=str(baseline) if baseline else None, name="robust-" + "-".join(mitigation))
    return run_sweep(run_dir, cfg, quiet=True)


def run(plan: dict, out: Path, models: list[str], variants: list[str]) -> dict:
    from hybrid_qiskit.compare import run_one

    results = {"plan": plan, "models": {}}
    for mname in models:
        model = plan["models"][mname]
        base_run = run_one(train_config(plan, model, model["baseline"], out, f"{mname}-classical"))
        entry = {"classical": base_run["test_accuracy"], "variants": {}}
        for vname in variants:
            variant = plan["variants"][vname]
            cfg = train_config(plan, model, variant.get("train", {}), out, f"{mname}-{vname}")
            trained = run_one(cfg)
            print(f"{mname}/{vname}: trained, test accuracy {trained['test_accuracy']:.3f} "
                  f"({trained['train_seconds']:.0f} s)", flush=True)
            mitigations = variant.get("mitigation", ["none"])
            summary = sweep(Path(trained["run_dir"]), plan, mitigations, Path(base_run["run_dir"]))
            exact = next(r["accuracy_mean"] for r in summary["rows"] if r["noise"] == "exact")
            for mitigation in mitigations:
                rows = [r for r in summary["rows"] if r["noise"] == "device" and r["mitigation"] == mitigation]
                series = vname if len(mitigations) == 1 else f"{vname}, {mitigation}"
                entry["variants"][series] = {
                    "exact": exact,
                    "mitigation": mitigation,
                    "train_seconds": trained["train_seconds"],
                    "sweep_seconds": sum(r["seconds"] for r in rows),
                    "levels": {str(r["level"]): {"accuracy": r["accuracy_mean"], "std": r["accuracy_std"],
                                                 "mean_abs_z": r["mean_abs_z_mean"]} for r in rows},
                }
                print(f"{mname}/{series}: " + ", ".join(f"{lv}x {v['accuracy']:.3f}" for lv, v in
                                                        entry["variants"][series]["levels"].items()), flush=True)
        results["models"][mname] = entry
        plot(out / "noise_robust.png", results)
    return results


def markdown(results: dict) -> str:
    plan = results["plan"]
    levels = [str(lv) for lv in plan["levels"]]
    head = ["model", "variant", "exact", *[f"{lv}x" for lv in levels], "training (s)", "sweep (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mname, entry in results["models"].items():
        for vname, v in entry["variants"].items():
            cells = [f"{v['levels'][lv]['accuracy']:.3f}" if lv in v["levels"] else "" for lv in levels]
            lines.append(f"| {mname} | {vname} | {v['exact']:.3f} | " + " | ".join(cells)
                         + f" | {v['train_seconds']:.0f} | {v['sweep_seconds']:.0f} |")
        lines.append(f"| {mname} | classical baseline | {entry['classical']:.3f} |" + " |" * (len(levels) + 2))
    return "\n".join(lines) + "\n"


def plot(path: Path, results: dict) -> None:
    """One panel per model: accuracy against the noise scale, a line per variant (and mitigation),
    the classical baseline dotted. The 0x point sits at the left edge of a symlog axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan, models = results["plan"], results["models"]
    # Colour: how the model was trained; line style: the mitigation (a dozen lines stay apart).
    trainings = list(dict.fromkeys(v.partition(", ")[0] for e in models.values() for v in e["variants"]))
    colours = {t: f"C{i}" for i, t in enumerate(trainings)}
    styles = {"none": "-", "readout": ":", "normalize": "--", "refit": "-."}
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, (mname, entry) in zip(axes[0], models.items()):
        for vname, v in entry["variants"].items():
            training, _, mitigation = vname.partition(", ")
            xs = [float(lv) for lv in v["levels"]]
            ax.plot(xs, [p["accuracy"] for p in v["levels"].values()], marker="o", ms=3, label=vname,
                    color=colours[training], linestyle=styles.get(mitigation or "none", "-"))
        ax.axhline(entry["classical"], color="black", linestyle=(0, (1, 2)), lw=1, label="classical baseline")
        ax.set_xscale("symlog", linthresh=1)
        levels = [float(lv) for lv in plan["levels"]]
        ax.set_xlim(-0.1, max(levels) * 1.15)
        ax.set_xticks(levels, [f"{lv:g}" for lv in levels])
        ax.set_xlabel(f"noise scale x {plan['device']} calibration")
        ax.set_title(mname)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test accuracy ({plan['shots']} shots)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "noise_robust_digits.toml"))
    parser.add_argument("--out", default="runs/noise-robust")
    parser.add_argument("--models", help="comma-separated subset of the config's models")
    parser.add_argument("--variants", help="comma-separated subset of the config's variants")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(Path(args.config))
        models = _pick(args.models, plan["models"], "model")
        variants = _pick(args.variants, plan["variants"], "variant")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results = run(plan, out, models, variants)
    except HybridQiskitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs and sweep cells are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130
    from hybrid_qiskit.fileio import atomic_write_text, write_json

    write_json(out / "noise_robust.json", results)
    table = markdown(results)
    atomic_write_text(out / "noise_robust.md", table)
    print(table, end="")
    return 0


def _pick(text: str | None, known: dict, what: str) -> list[str]:
    names = list(known) if not text else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HybridQiskitError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


if __name__ == "__main__":
    sys.exit(main())
