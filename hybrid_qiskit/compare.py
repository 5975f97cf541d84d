"""A model against its matched classical baseline, over several seeds, with the uncertainty.

``hybrid-qiskit compare --config experiments/digits.toml --seeds 5`` trains the configured model
and its baseline with seeds s, s+1, ..., s+N-1 (s: the config's seed; the same seed for both
members of a pair: the same data split, the same shuffling) and writes to ``--out``
(default ``runs/compare-<config name>/``):

* one run directory per model and seed (``hybrid-seed0/``, ``classical-seed0/``, ...);
* ``compare.json``: per model the per-seed test accuracy and loss, their mean and standard
  deviation and the training and wall times; between the models the paired per-seed differences
  with a 95% t-interval (n - 1 degrees of freedom);
* ``compare.md``: a Markdown table ready for the README, with the command line above it;
* ``compare.png``: per-seed accuracies (lines join the pairs) and the paired differences.

Which baseline: the config's ``*-classical.toml`` sibling (``digits.toml`` ->
``digits-classical.toml``, ``mnist-01-quantum.toml`` -> ``mnist-01-classical.toml``), checked to
be matched (the same data, budget and recipe; only the model differs), or, without a sibling, the
same config with ``model`` set to the baseline kind. Finished runs are reused and interrupted ones
continue (``train --resume``), so rerunning the command after Ctrl-C loses nothing.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import replace
from pathlib import Path

from hybrid_qiskit.config import TrainConfig, load_toml, resolve
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.stats import paired_difference, summary

BASELINE_OF = {"hybrid": "classical", "quantum": "pixel_classical"}
# Fields in which a model and its baseline may differ; all others must agree (a matched budget).
MAY_DIFFER = {"model", "name", "backend", "device", "shots", "optimization_level", "noise_scale",
              "resilience_level", "backend_settings", "feature_map", "ansatz", "reuploads", "entanglement"}


def baseline_config_path(config_path: str | Path) -> Path | None:
    """The ``*-classical.toml`` sibling of a config, or None."""
    path = Path(config_path)
    stem = path.stem
    for suffix in ("-hybrid", "-quantum"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    sibling = path.with_name(f"{stem}-classical.toml")
    return sibling if sibling.exists() and sibling != path else None


def pair_configs(config_path: str | Path, overrides: dict | None = None) -> tuple[TrainConfig, TrainConfig, str]:
    """(model config, baseline config, where the baseline came from), both with ``overrides``."""
    overrides = overrides or {}
    for key in ("model", "seed", "out", "name"):
        if key in overrides:
            raise HybridQiskitError(f"compare sets {key} itself; use --config, --seeds and --out instead of --set {key}=...")
    cfg = resolve(config_path, **overrides)
    if cfg.model not in BASELINE_OF:
        raise HybridQiskitError(
            f"compare needs a quantum model's config (model hybrid or quantum); {config_path} has model {cfg.model!r}")
    kind = BASELINE_OF[cfg.model]
    sibling = baseline_config_path(config_path)
    if sibling is None:
        return cfg, replace(cfg, model=kind), f"{config_path} with model = {kind!r}"
    load_toml(sibling)  # a clear error for a broken sibling
    base = resolve(sibling, **overrides)
    if base.model != kind:
        raise HybridQiskitError(f"{sibling} should be the baseline of {config_path} (model {kind!r}), but has model {base.model!r}")
    a, b = cfg.to_dict(), base.to_dict()
    unmatched = sorted(k for k in a if k not in MAY_DIFFER and a[k] != b[k])
    if unmatched:
        raise HybridQiskitError(
            f"{sibling} is not a matched baseline of {config_path}: {', '.join(f'{k} ({a[k]!r} vs {b[k]!r})' for k in unmatched)} differ")
    return cfg, base, str(sibling)


def run_one(cfg: TrainConfig, *, verbose: bool = False) -> dict:
    """Train (or reuse, or continue) one run; its test metrics and times."""
    from hybrid_qiskit.fileio import read_json, write_json
    from hybrid_qiskit.runs import settings_diff
    from hybrid_qiskit.training import train

    run_dir = Path(cfg.out) / cfg.run_name()
    if (run_dir / "last.pt").exists():  # a run to reuse or continue: it must be this config's
        diff, _ = settings_diff(run_dir, cfg)
        if diff:
            raise HybridQiskitError(f"{run_dir} was trained with other settings ({', '.join(diff)} differ); "
                                    f"pass another --out, or remove that folder")
    reused = (run_dir / "metrics.json").exists()
    earlier = 0.0 if reused else _epoch_seconds(run_dir)  # a resumed run: its earlier sessions' epochs
    t0 = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if not verbose else contextlib.nullcontext():
        metrics = train(cfg, resume=True, quiet=not verbose)
    wall_path = run_dir / "wall.json"
    if not reused or not wall_path.exists():
        write_json(wall_path, {"wall_seconds": earlier + time.perf_counter() - t0, "resumed": earlier > 0})
    return {
        "seed": cfg.seed,
        "run_dir": str(run_dir),
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "test_samples": metrics["test_samples"],
        "epochs": metrics["epochs"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": read_json(wall_path)["wall_seconds"],
        "resumed": bool(read_json(wall_path).get("resumed")),
        "parameters": metrics["parameters"],
        "reused": reused,
    }


def _epoch_seconds(run_dir: Path) -> float:
    """Seconds of the epochs ``run_dir`` has recorded so far (0 if none, or unreadable: the
    resume itself then says what is wrong)."""
    from hybrid_qiskit.runs import read_history

    try:
        return sum(float(h.get("seconds", 0.0)) for h in read_history(run_dir, required=False) or [])
    except (HybridQiskitError, TypeError, ValueError):
        return 0.0


def _heartbeat(label: str, run_dir: Path, epochs: int):
    """A line on stderr every 30 s while one run of the comparison trains (its epoch lines go to
    its train.log; stdout is captured meanwhile)."""
    from hybrid_qiskit.progress import report_every
    from hybrid_qiskit.runs import read_history

    def describe(seconds: float) -> str:
        try:
            done = len(read_history(run_dir, required=False) or [])
        except HybridQiskitError:
            done = "?"
        return f"  {label}: training, {done}/{epochs} epochs done, {seconds:.0f}s"

    return report_every(describe)


def compare(config_path: str | Path, *, seeds: int = 5, out: str | Path | None = None,
            overrides: dict | None = None, command: str | None = None, verbose: bool = False,
            echo=print) -> dict:
    """Train both models over ``seeds`` seeds and write compare.json, compare.md and compare.png.

    Returns the content of compare.json."""
    from hybrid_qiskit.fileio import write_json

    if seeds < 1:
        raise HybridQiskitError(f"--seeds must be at least 1, got {seeds}")
    cfg, base, baseline_from = pair_configs(config_path, overrides)
    out = Path(out) if out is not None else Path(cfg.out) / f"compare-{Path(config_path).stem}"
    out.mkdir(parents=True, exist_ok=True)
    seed_list = [cfg.seed + k for k in range(seeds)]
    _check_earlier(out, seed_list, [cfg.model, base.model])
    command = command or f"hybrid-qiskit compare --config {config_path} --seeds {seeds} --out {out}"
    echo(f"compare: {cfg.model} vs {base.model} ({baseline_from}), seeds {seed_list[0]}..{seed_list[-1]}, in {out}")
    models: dict[str, dict] = {}
    for seed in seed_list:  # pairs in turn: an interrupted comparison has whole pairs
        for c in (cfg, base):
            run_cfg = replace(c, seed=seed, out=str(out), name=f"{c.model}-seed{seed}")
            label = f"{c.model:<15} seed {seed}"
            with contextlib.nullcontext() if verbose else _heartbeat(label, out / run_cfg.name, c.epochs):
                r = run_one(run_cfg, verbose=verbose)
            models.setdefault(c.model, {"config": run_cfg.to_dict() | {"seed": None, "name": None}, "runs": []})
            models[c.model]["runs"].append(r)
            how = "reused" if r["reused"] else f"trained in {r['wall_seconds']:.1f}s"
            if r["resumed"]:
                how += ", over more than one session"
            echo(f"  {label}: test accuracy {r['test_accuracy']:.4f}  loss {r['test_loss']:.4f}  ({how})")
    for m in models.values():
        runs = m["runs"]
        m["test_accuracy"] = summary([r["test_accuracy"] for r in runs])
        m["test_loss"] = summary([r["test_loss"] for r in runs])
        m["train_seconds"] = summary([r["train_seconds"] for r in runs])
        m["wall_seconds"] = summary([r["wall_seconds"] for r in runs])
        m["parameters"] = runs[0]["parameters"]
    a, b = models[cfg.model]["runs"], models[base.model]["runs"]
    result = {
        "command": command,
        "config": str(config_path),
        "baseline": baseline_from,
        "models_compared": [cfg.model, base.model],
        "seeds": seed_list,
        "test_samples": a[0]["test_samples"],
        "models": models,
        "difference": {
            "test_accuracy": paired_difference([x["test_accuracy"] for x in a], [y["test_accuracy"] for y in b]),
            "test_loss": paired_difference([x["test_loss"] for x in a], [y["test_loss"] for y in b]),
            "of": f"{cfg.model} - {base.model}, per seed",
        },
    }
    result["verdict"] = verdict(result)
    write_json(out / "compare.json", result)
    (out / "compare.md").write_text(markdown_table(result))
    from hybrid_qiskit import plots

    plots.comparison(result, out / "compare.png")
    return result


def _check_earlier(out: Path, seeds: list[int], models: list[str]) -> None:
    """Refuse to replace another comparison's compare.json/.md/.png: the same seeds and models
    (a rerun, which reuses the finished runs) write the same files again; anything else goes to
    another folder."""
    import json

    path = out / "compare.json"
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text())
        same = earlier.get("seeds") == seeds and earlier.get("models_compared") == models
    except (OSError, ValueError, AttributeError):
        return  # not a readable comparison: nothing to keep, it is written anew
    if not same:
        raise HybridQiskitError(
            f"{out} holds another comparison ({', '.join(map(str, earlier.get('models_compared') or []))}, seeds "
            f"{earlier.get('seeds')}); this one ({', '.join(models)}, seeds {seeds}) would replace its compare.json, "
            f".md and .png: pass another --out, or move them away")


def verdict(result: dict) -> str:
    """One plain sentence on the accuracy difference."""
    first, second = result["models_compared"]
    d = result["difference"]["test_accuracy"]
    n = len(result["seeds"])
    wins = f"{first} ahead on {d['first_better']} of {n} seeds"
    if d["ci95"] is None:
        return f"one seed: no interval, no claim either way ({wins})"
    lo, hi = d["ci95"]
    if lo > 0:
        return f"{first} is better: the 95% interval of the difference lies above 0 ({wins})"
    if hi < 0:
        return f"{first} is worse than {second}: the 95% interval of the difference lies below 0 ({wins})"
    return f"no significant difference: the 95% interval of the difference contains 0 ({wins})"


def markdown_table(result: dict) -> str:
    """The README table: the command, one row per model, one row for the paired difference."""
    first, second = result["models_compared"]
    seeds = result["seeds"]
    lines = [
        f"`{result['command']}` (seeds {seeds[0]}-{seeds[-1]}, {result['test_samples']} test images each)",
        "",
        "| model | test accuracy, mean ± std | per seed | test loss, mean ± std | training time per run | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for name in (first, second):
        m = result["models"][name]
        acc, loss, secs = m["test_accuracy"], m["test_loss"], m["train_seconds"]
        per = ", ".join(f"{r['test_accuracy']:.3f}" for r in m["runs"])
        lines.append(f"| {name} | {acc['mean']:.3f} ± {acc['std']:.3f} | {per} | {loss['mean']:.3f} ± {loss['std']:.3f} "
                     f"| {secs['mean']:.1f} s | {m['parameters']:,} |")
    d, dl = result["difference"]["test_accuracy"], result["difference"]["test_loss"]

    def ci(x):
        return f"[{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]" if x["ci95"] else "(one seed: none)"

    per = ", ".join(f"{v:+.3f}" for v in d["per_seed"])
    lines.append(f"| {first} − {second}, paired | {d['mean']:+.3f}, 95% CI {ci(d)} | {per} | {dl['mean']:+.3f}, 95% CI {ci(dl)} | | |")
    lines += ["", f"Verdict: {result['verdict']}.", ""]
    return "\n".join(lines)
