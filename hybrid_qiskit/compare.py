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

Who trains: this process, one run after another (the default); ``--workers N``: N local worker
processes at once; ``--ray [ADDRESS]``: Ray tasks on a local Ray instance or the cluster at
ADDRESS (the executors of :mod:`hybrid_qiskit.executors`, as ``noise-sweep`` uses them). Each run
writes only its own folder, wherever it trains; this process alone writes compare.json, .md and
.png, from the runs sorted by seed, so the table is the same whatever trained them (only the
times differ). On a cluster, the folder the command runs in and ``--out`` must be on a
filesystem that every node mounts at the same path.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hybrid_qiskit.config import TrainConfig, load_toml, resolve
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.executors import Work, make_executor
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
    from hybrid_qiskit.training import train

    run_dir = Path(cfg.out) / cfg.run_name()
    check_reusable(cfg)
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


def check_reusable(cfg: TrainConfig) -> None:
    """A run folder that holds a run (to reuse or continue) must hold this config's."""
    from hybrid_qiskit.runs import settings_diff

    run_dir = Path(cfg.out) / cfg.run_name()
    if (run_dir / "last.pt").exists():
        diff, _ = settings_diff(run_dir, cfg)
        if diff:
            raise HybridQiskitError(f"{run_dir} was trained with other settings ({', '.join(diff)} differ); "
                                    f"pass another --out, or remove that folder")


@dataclass(frozen=True)
class RunTask:
    """One run of a comparison as plain data, for any executor."""

    cfg: TrainConfig
    label: str  # "hybrid          seed 3", for progress lines
    cwd: str  # the driver's folder: the config's relative paths (out, data_dir) mean the same anywhere
    verbose: bool = False  # epoch lines on stdout (in the driver only: workers' lines would interleave)
    heartbeat: bool = False  # a line every 30 s while it trains (in the driver only)


def train_run(task: RunTask) -> dict:
    """:func:`run_one` in any process: ``{"run": result}``, or ``{"error": text, "user": bool}``
    (plain data, not an exception that may not survive pickling)."""
    try:
        if os.getcwd() != task.cwd:
            try:
                os.chdir(task.cwd)
            except OSError as exc:
                raise HybridQiskitError(
                    f"{task.cwd} is not there where this run trains ({exc.strerror or exc}): on a cluster, the "
                    "command's folder and --out must be on a filesystem every node mounts at the same path") from None
        run_dir = Path(task.cfg.out) / task.cfg.run_name()
        with _heartbeat(task.label, run_dir, task.cfg.epochs) if task.heartbeat else contextlib.nullcontext():
            return {"run": run_one(task.cfg, verbose=task.verbose)}
    except HybridQiskitError as exc:
        return {"error": str(exc), "user": True}
    except Exception as exc:  # a bug or a crash in training: reported by the driver, naming the run
        return {"error": f"{type(exc).__name__}: {exc}", "user": False}


@dataclass(frozen=True)
class _Job:
    key: tuple[int, str]  # (seed, model): where the result goes in the table
    task: RunTask


def _run_bytes(job: _Job) -> tuple[int, str]:
    """The simulation one run holds while it trains (a run that could not fit at all is refused
    here, with train's own message), for the executors' memory check and Ray's requests."""
    from hybrid_qiskit import resources

    cfg = job.task.cfg
    est = resources.check_config(cfg, what="train")
    if est is None:
        return 0, f"{cfg.model} model (no simulation)"
    return est.bytes, f"{cfg.qubits}-qubit {est.method} ({est.detail})"


# A run for any executor; the pool's server preloads what training imports (matplotlib: the
# run's curves), so that no worker spends its first seconds importing.
RUNS = Work(fn=train_run, needs=_run_bytes, unit="run", cpus=lambda job: job.task.cfg.threads, preload=(
    "torch", "qiskit", "sklearn.datasets", "matplotlib.pyplot", "backends", "hybrid_qiskit.data",
    "hybrid_qiskit.qnn", "hybrid_qiskit.primitives", "hybrid_qiskit.training", "hybrid_qiskit.checkpoints",
    "hybrid_qiskit.plots", "hybrid_qiskit.compare"))


def command_line(argv: list[str]) -> str:
    """The command that reproduces a comparison: ``argv`` (after ``hybrid-qiskit``) without
    ``--workers`` and ``--ray``, which choose who trains, not what (the table is the same)."""
    import shlex

    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif arg == "--ray":  # its address is optional: the next word, unless that is a flag
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("-")
        elif not arg.startswith(("--workers=", "--ray=")):
            kept.append(arg)
    return "hybrid-qiskit " + shlex.join(kept)


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


def _pool_heartbeat(jobs: list[_Job], finished: dict):
    """A line on stderr every 30 s while runs train at once: how many of ``jobs`` are in
    ``finished`` (keyed like them), and the epochs done."""
    from hybrid_qiskit.progress import report_every
    from hybrid_qiskit.runs import read_history

    def epochs_done(job: _Job) -> int:
        try:
            return len(read_history(Path(job.task.cfg.out) / job.task.cfg.run_name(), required=False) or [])
        except HybridQiskitError:  # being written: counted next time
            return 0

    def describe(seconds: float) -> str:
        epochs = sum(job.task.cfg.epochs if job.key in finished else epochs_done(job) for job in jobs)
        total = sum(job.task.cfg.epochs for job in jobs)
        count = sum(job.key in finished for job in jobs)
        return f"compare: {count}/{len(jobs)} runs finished, {epochs}/{total} epochs, {seconds:.0f}s"

    return report_every(describe)


def compare(config_path: str | Path, *, seeds: int = 5, out: str | Path | None = None,
            overrides: dict | None = None, command: str | None = None, verbose: bool = False,
            echo=print, workers: int = 1, ray: str | None = None) -> dict:
    """Train both models over ``seeds`` seeds and write compare.json, compare.md and compare.png.

    Args:
        workers: runs at once, in local worker processes (1: in this process, pairs in turn).
        ray: train the runs as Ray tasks: ``"local"`` (a local Ray instance) or a cluster address.
        verbose: every run's epoch lines on stdout (in this process only; a worker's run keeps
            them in its train.log).

    Returns the content of compare.json: the same, times apart, whatever trained the runs."""
    from hybrid_qiskit.fileio import WriterLock, write_json

    if seeds < 1:
        raise HybridQiskitError(f"--seeds must be at least 1, got {seeds}")
    cfg, base, baseline_from = pair_configs(config_path, overrides)
    out = Path(out) if out is not None else Path(cfg.out) / f"compare-{Path(config_path).stem}"
    seed_list = [cfg.seed + k for k in range(seeds)]
    command = command or f"hybrid-qiskit compare --config {config_path} --seeds {seeds} --out {out}"
    in_driver = workers == 1 and ray is None
    jobs = []
    for seed in seed_list:  # pairs in turn: an interrupted serial comparison has whole pairs
        for c in (cfg, base):
            run_cfg = replace(c, seed=seed, out=str(out), name=f"{c.model}-seed{seed}")
            task = RunTask(run_cfg, f"{c.model:<15} seed {seed}", os.getcwd(), verbose=verbose and in_driver,
                           heartbeat=in_driver and not verbose)
            jobs.append(_Job((seed, c.model), task))
    with WriterLock(out, what="compare"):  # this process alone writes compare.json, .md and .png
        _check_earlier(out, seed_list, [cfg.model, base.model], echo)
        for job in jobs:  # before anything trains: a folder of another config is one line now
            check_reusable(job.task.cfg)
        todo = [j for j in jobs if not (Path(j.task.cfg.out) / j.task.cfg.run_name() / "metrics.json").exists()]
        executor = make_executor(RUNS, workers=workers, ray=ray, jobs=todo)
        echo(f"compare: {cfg.model} vs {base.model} ({baseline_from}), seeds {seed_list[0]}..{seed_list[-1]}, in {out}"
             + (f"; {len(todo)} of {len(jobs)} runs to train {executor.description}" if todo else ""))
        results: dict[tuple[int, str], dict] = {}
        for job in jobs:  # finished runs: their metrics are only read again, here
            if job not in todo:
                results[job.key] = _arrived(job, train_run(job.task), echo)
        if todo:
            with executor, contextlib.nullcontext() if in_driver else _pool_heartbeat(todo, results):
                for job, outcome in executor.run(todo):  # in any order: the table below is in seed order
                    results[job.key] = _arrived(job, outcome, echo)
        models: dict[str, dict] = {}
        for job in jobs:
            c = job.task.cfg
            model = models.setdefault(c.model, {"config": c.to_dict() | {"seed": None, "name": None}, "runs": []})
            model["runs"].append(results[job.key])
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


def _arrived(job: _Job, outcome: dict, echo) -> dict:
    """A finished run's result, and its line; a failed run is a one-line error naming it."""
    label = job.task.label
    if "error" in outcome:
        if outcome.get("user"):
            raise HybridQiskitError(f"{' '.join(label.split())}: {outcome['error']}")
        raise HybridQiskitError(f"{' '.join(label.split())} failed: {outcome['error']} (finished runs are saved; "
                                "rerun to resume)")
    r = outcome["run"]
    how = "reused" if r["reused"] else f"trained in {r['wall_seconds']:.1f}s"
    if r["resumed"]:
        how += ", over more than one session"
    echo(f"  {label}: test accuracy {r['test_accuracy']:.4f}  loss {r['test_loss']:.4f}  ({how})")
    return r


def _check_earlier(out: Path, seeds: list[int], models: list[str], echo) -> None:
    """Never lose another comparison's compare.json/.md/.png: the same seeds and models (a rerun,
    which reuses the finished runs) write the same files again; more seeds of the same models (a
    widened comparison, which reuses the earlier seeds' runs) keep the earlier files as
    compare-seedsA-B.*; anything else goes to another folder."""
    import json

    path = out / "compare.json"
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text())
        same = earlier.get("seeds") == seeds and earlier.get("models_compared") == models
        widened = (earlier.get("models_compared") == models and isinstance(earlier.get("seeds"), list)
                   and set(earlier["seeds"]) < set(seeds))
    except (OSError, ValueError, AttributeError, TypeError):
        return  # not a readable comparison: nothing to keep, it is written anew
    if widened:
        stem = f"compare-seeds{earlier['seeds'][0]}-{earlier['seeds'][-1]}"
        kept = {p: out / f"{stem}{p.suffix}"
                for p in (out / f"compare{ext}" for ext in (".json", ".md", ".png")) if p.exists()}
        if not any(k.exists() for k in kept.values()):
            for p, k in kept.items():
                p.rename(k)
            echo(f"compare: the earlier comparison (seeds {earlier['seeds']}) is kept as {out / stem}.*")
            return
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
