"""Run a noise sweep: evaluate trained models over a grid of noise settings, resumably.

Every cell rebuilds the checkpoint's model on the cell's backend (``restore_model``: the circuit
is transpiled for that target) and evaluates it on the same images; each finished cell is
appended to ``cells.jsonl`` at once, so a rerun skips it. References are cells too: each model on
exact ``statevector`` simulation, and the classical baseline run when one is given.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.fileio import atomic_write_text, write_json
from hybrid_qiskit.noise.grid import (
    MITIGATIONS,
    NOISE_KINDS,
    Cell,
    backend_for_cell,
    check_runtime_cells,
    parse_choices,
    parse_devices,
    parse_levels,
    parse_shots,
    shots_label,
)
from hybrid_qiskit.noise.store import CellStore

GROUP_FIELDS = ("model", "noise", "device", "level", "shots", "mitigation")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep's settings; TOML files (``--config``) use these names, flags override them."""

    noise: str = "depolarizing"  # depolarizing | readout | thermal | device
    levels: tuple | None = None  # None: the kind's default grid (see grid.NOISE_KINDS)
    devices: tuple | None = None  # coupling map / basis (parametric kinds) or noise source (device)
    shots: tuple = (1024,)  # ints, or None / "exact" for the density-matrix expectation
    repeats: int = 3  # simulator seeds per cell: base seed + repeat
    mitigation: tuple = ("none",)  # none | readout (calibrated) | trex | zne (runtime local mode)
    two_qubit_factor: float = 1.0  # depolarizing: two-qubit p = factor x level (1: one p for every gate)
    optimization_level: int = 1  # transpiler
    split: str = "test"  # test | val
    limit: int | None = None  # evaluate the first N images only (speed)
    batch_size: int = 256  # images per estimator call
    seed: int | None = None  # base seed (default: the run's)
    name: str | None = None  # folder under RUN_DIR/noise/ (default: the noise kind)
    compare: tuple = ()  # more run directories, swept on the same grid (noise-aware training...)
    baseline: str | None = None  # a run trained with --model classical: the reference line

    def validated(self) -> SweepConfig:
        """Canonical, checked values (levels and devices filled in); errors are one line."""
        noise = parse_choices(self.noise, tuple(NOISE_KINDS), "--noise")
        if len(noise) != 1:
            raise HybridQiskitError("--noise takes one kind per sweep")
        kind = NOISE_KINDS[noise[0]]
        levels = parse_levels(kind.name, self.levels if self.levels is not None else kind.default_levels)
        levels = tuple(sorted(levels, key=float, reverse=not kind.increasing))  # least noise first
        devices = parse_devices(self.devices or kind.default_devices)
        shots = parse_shots(self.shots)
        mitigation = parse_choices(self.mitigation, MITIGATIONS, "--mitigation")
        check_runtime_cells(kind.name, levels, shots, mitigation)
        if self.repeats < 1:
            raise HybridQiskitError(f"--repeats must be >= 1, got {self.repeats}")
        if self.split not in ("test", "val"):
            raise HybridQiskitError(f"--split must be test or val, got {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise HybridQiskitError(f"--limit must be >= 1, got {self.limit}")
        if self.two_qubit_factor < 0:
            raise HybridQiskitError(f"--two-qubit-factor must be >= 0, got {self.two_qubit_factor}")
        compare = (self.compare,) if isinstance(self.compare, str) else tuple(self.compare)
        return replace(self, noise=kind.name, levels=levels, devices=devices, shots=shots,
                       mitigation=mitigation, compare=compare, name=self.name or kind.name)

    def cells(self) -> list[Cell]:
        """The grid, repeat-major (a stopped sweep has whole passes first). Exact cells are
        deterministic: they run once."""
        return [
            Cell(self.noise, device, level, shots, mitigation, repeat)
            for repeat in range(self.repeats)
            for device in self.devices
            for shots in self.shots
            for mitigation in self.mitigation
            for level in self.levels
            if shots is not None or repeat == 0
        ]


@dataclass
class SweepModel:
    """One model of the sweep: a run directory's checkpoint and config."""

    label: str
    run_dir: Path
    config: object  # TrainConfig
    payload: dict
    sha: str = ""


def load_model(run_dir: str | Path, label: str | None = None) -> SweepModel:
    from hybrid_qiskit.cli import load_run

    cfg, payload = load_run(str(run_dir))
    sha = hashlib.sha256((Path(run_dir) / "model.pt").read_bytes()).hexdigest()[:12]
    return SweepModel(label or Path(run_dir).resolve().name, Path(run_dir), cfg, payload, sha)


def check_same_data(main: SweepModel, other: SweepModel, role: str) -> None:
    """Every model is evaluated on the main run's images: they must be the same task, and no
    model may have trained on them (digits' train/test split depends on the seed)."""
    fields = ["dataset", "classes"] + (["seed"] if main.config.dataset == "digits" else [])
    for f in fields:
        a, b = getattr(main.config, f), getattr(other.config, f)
        if a != b:
            raise HybridQiskitError(
                f"{role} run {other.run_dir} differs from {main.run_dir} in {f} ({b!r} vs {a!r}); "
                "models are compared on the same images, so train it with the same " + f
            )


def evaluate_cell(model: SweepModel, backend: str | None, settings: dict, mitigation: str, data,
                  batch_size: int) -> dict:
    """Rebuild ``model`` on the backend, evaluate it on ``data``: the metrics of one cell."""
    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.noise.mitigation import with_readout_mitigation
    from hybrid_qiskit.training import evaluate

    t0 = time.perf_counter()
    handle = None
    if backend:
        # The QNN already sends one PUB for all n ⟨Z_q⟩ (qnn.BroadcastEstimatorQNN).
        handle = create_backend(backend, **settings)
    if mitigation == "readout":
        handle = with_readout_mitigation(handle)
    net = restore_model(model.payload, handle)
    result = evaluate(net, data, batch_size)
    out = {
        "accuracy": result.accuracy,
        "loss": result.loss,
        # The classical head's tanh outputs are not expectation values.
        "mean_abs_z": None if backend is None else float(np.abs(result.expvals).mean()),
        "seconds": time.perf_counter() - t0,
        "samples": len(data),
    }
    if mitigation == "readout":
        out["readout_calibration"] = {str(q): ab for q, ab in sorted(handle.estimator.calibration.items())}
        out["readout_uncorrected_qubits"] = handle.estimator.uncorrected
    return out


@dataclass(frozen=True)
class Job:
    """A cell to run: its resume key, the fields the table shows, and how to evaluate it."""

    identity: dict
    fields: dict
    backend: str | None  # None: the classical baseline (no quantum stage)
    settings: dict
    mitigation: str
    model: SweepModel


def load_models(run_dir, cfg: SweepConfig) -> tuple[list[SweepModel], SweepModel | None]:
    """The swept models (the run, then each --compare) and the classical baseline, checked."""
    from hybrid_qiskit.models import is_quantum

    main = load_model(run_dir)
    if not is_quantum(main.config.model):
        raise HybridQiskitError(f"{run_dir} holds a classical model: nothing quantum to sweep (use it as --baseline)")
    models = [main]
    for path in cfg.compare:
        other = load_model(path)
        if not is_quantum(other.config.model):
            raise HybridQiskitError(f"--compare {path} holds a classical model; pass it as --baseline")
        check_same_data(main, other, "--compare")
        if other.label in {m.label for m in models}:
            other.label = f"{other.label}#{len(models)}"
        models.append(other)
    baseline = None
    if cfg.baseline:
        baseline = load_model(cfg.baseline)
        if is_quantum(baseline.config.model):
            raise HybridQiskitError(f"--baseline {cfg.baseline} is a {baseline.config.model} model; "
                                    "train one with --model classical (or pixel_classical)")
        check_same_data(main, baseline, "--baseline")
    _check_device_widths(cfg, models)
    return models, baseline


def plan(cfg: SweepConfig, models: list[SweepModel], baseline: SweepModel | None, base_seed: int) -> list[Job]:
    """The references (exact simulation of each model, the classical baseline), then the grid."""
    common = {"split": cfg.split, "limit": cfg.limit}
    reference = {"device": "-", "level": "-", "mitigation": "none", "repeat": 0}
    jobs = [Job({**common, "model": m.sha, "reference": "exact"},
                {**reference, "noise": "exact", "shots": "exact", "seed": base_seed},
                "statevector", {"seed": base_seed}, "none", m) for m in models]
    if baseline is not None:
        jobs.append(Job({**common, "model": baseline.sha, "reference": "classical"},
                        {**reference, "noise": "classical", "shots": "-", "seed": None}, None, {}, "none", baseline))
    for cell in cfg.cells():
        seed = base_seed + cell.repeat
        backend, settings = backend_for_cell(cell, seed=seed, optimization_level=cfg.optimization_level,
                                             two_qubit_factor=cfg.two_qubit_factor)
        fields = {"noise": cell.noise, "device": cell.device, "level": cell.level, "shots": shots_label(cell.shots),
                  "mitigation": cell.mitigation, "repeat": cell.repeat, "seed": seed}
        identity = {**common, **fields, "optimization_level": cfg.optimization_level}
        if cell.noise == "depolarizing":
            identity["two_qubit_factor"] = cfg.two_qubit_factor
        jobs += [Job({**identity, "model": m.sha}, fields, backend, settings, cell.mitigation, m) for m in models]
    return jobs


def run_sweep(run_dir: str | Path, cfg: SweepConfig, *, quiet: bool = False) -> dict:
    """Run (or resume) the sweep into ``run_dir/noise/<name>/`` and write its table and plots.

    Returns:
        The summary (also written to summary.json).
    """
    from torch.utils.data import TensorDataset

    from hybrid_qiskit.training import load_splits

    cfg = cfg.validated()
    models, baseline = load_models(run_dir, cfg)
    data = getattr(load_splits(models[0].config), cfg.split)
    if cfg.limit:
        data = TensorDataset(*(t[: cfg.limit] for t in data.tensors))
    if len(data) == 0:
        raise HybridQiskitError(f"the {cfg.split} split of {run_dir} is empty")
    base_seed = models[0].config.seed if cfg.seed is None else cfg.seed
    out_dir = Path(run_dir) / "noise" / cfg.name
    store = CellStore(out_dir / "cells.jsonl")
    jobs = plan(cfg, models, baseline, base_seed)

    if not quiet:
        done = sum(store.get(j.identity) is not None for j in jobs)
        print(f"noise sweep {out_dir}: {len(jobs)} cells ({done} done already), "
              f"{len(data)} {cfg.split} images", flush=True)
    records = []
    for i, job in enumerate(jobs, 1):
        record = store.get(job.identity)
        if record is None:
            try:
                metrics = evaluate_cell(job.model, job.backend, job.settings, job.mitigation, data, cfg.batch_size)
            except HybridQiskitError:
                raise
            except Exception as exc:  # a simulator failure: one line naming the cell; done cells stay
                raise HybridQiskitError(f"cell {_describe({'model': job.model.label, **job.fields})} failed: "
                                        f"{type(exc).__name__}: {exc}") from exc
            record = {"identity": job.identity, "model": job.model.label, "run_dir": str(job.model.run_dir),
                      **job.fields, "backend": job.backend or "none (classical)", **metrics,
                      "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
            store.append(record)
            if not quiet:
                print(f"[{i}/{len(jobs)}] {_describe(record)}: accuracy {record['accuracy']:.3f} "
                      f"loss {record['loss']:.3f} ({record['seconds']:.1f}s)", flush=True)
        records.append({**record, "model": job.model.label})
    return write_outputs(out_dir, cfg, records, models, baseline, run_dir)


def _describe(r: dict) -> str:
    if r["noise"] in ("exact", "classical"):
        return f"{r['model']} {r['noise']} reference"
    return (f"{r['model']} {r['noise']}: {NOISE_KINDS[r['noise']].level_name}={r['level']} device={r['device']} shots={r['shots']} "
            f"mitigation={r['mitigation']} repeat={r['repeat']}")


def _check_device_widths(cfg: SweepConfig, models: list[SweepModel]) -> None:
    from backends.devices import get_fake_backend

    width = max(m.config.qubits for m in models)
    for device in cfg.devices:
        if device == "all_to_all":
            continue
        n = get_fake_backend(device).num_qubits
        if n < width:
            raise HybridQiskitError(f"device {device} has {n} qubits; the model needs {width}: "
                                    "choose a larger one (hybrid-qiskit backends --devices)")


# ---------------------------------------------------------------- outputs
TABLE_FIELDS = ("model", "noise", "device", "level", "shots", "mitigation", "repeat", "seed",
                "accuracy", "loss", "mean_abs_z", "seconds")


def aggregate(records: list[dict]) -> list[dict]:
    """Mean and standard deviation over repeats of each setting (grid order kept)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[f] for f in GROUP_FIELDS), []).append(r)
    rows = []
    for key, members in groups.items():
        row = dict(zip(GROUP_FIELDS, key))
        row["repeats"] = len(members)
        for metric in ("accuracy", "loss", "mean_abs_z"):
            values = [m[metric] for m in members if m[metric] is not None]
            row[f"{metric}_mean"] = float(np.mean(values)) if values else None
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        row["seconds"] = float(sum(m["seconds"] for m in members))
        rows.append(row)
    return rows


def write_outputs(out_dir: Path, cfg: SweepConfig, records: list[dict], models, baseline, run_dir) -> dict:
    """table.csv (one row per cell), summary.csv / summary.json (per setting) and the plots."""
    from hybrid_qiskit import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "table.csv", [{f: r.get(f) for f in TABLE_FIELDS} for r in records], TABLE_FIELDS)
    rows = aggregate(records)
    _write_csv(out_dir / "summary.csv", rows, list(rows[0]))
    atomic_write_text(out_dir / "summary.md", markdown_table(rows))
    grid = [r for r in rows if r["noise"] == cfg.noise]
    references = [{"label": f"exact simulation ({r['model']})", "accuracy": r["accuracy_mean"], "kind": "exact"}
                  for r in rows if r["noise"] == "exact"]
    classical = [r for r in rows if r["noise"] == "classical"]
    references += [{"label": f"classical baseline ({r['model']})", "accuracy": r["accuracy_mean"],
                    "kind": "baseline"} for r in classical]
    note = None if classical else "no classical baseline given (pass --baseline RUN_DIR, a --model classical run)"
    kind = NOISE_KINDS[cfg.noise]
    samples = records[0]["samples"] if records else 0
    title = f"{Path(run_dir).resolve().name}: {cfg.noise} noise, {samples} {cfg.split} images"

    vary = {f: len({r[f] for r in grid}) > 1 for f in GROUP_FIELDS}
    names = {"level": kind.level_name}
    if cfg.noise == "device" and vary["device"] and not vary["level"]:
        x_key, x_values, x_label = "device", list(cfg.devices), "device (calibrated noise)"
    else:
        x_key, x_values, x_label = "level", list(cfg.levels), kind.level_meaning
    series = [f for f in ("model", "device", "shots", "mitigation") if vary[f] and f != x_key]
    plots.noise_sweep(grid, out_dir / "accuracy_vs_noise.png", x_key=x_key, x_values=x_values, x_label=x_label,
                      series_keys=series, references=references, note=note, title=title, names=names)
    shot_values = [shots_label(s) for s in sorted(cfg.shots, key=lambda s: float("inf") if s is None else s)]
    series = [f for f in ("model", "device", "level", "mitigation") if vary[f] or f == "level"]
    plots.noise_sweep(grid, out_dir / "accuracy_vs_shots.png", x_key="shots", x_values=shot_values,
                      x_label="shots per circuit (exact: density-matrix expectation)", series_keys=series,
                      references=references, note=note, title=title, names=names)

    summary = {
        "run_dir": str(run_dir),
        "models": {m.label: {"run_dir": str(m.run_dir), "sha256_12": m.sha, "backend_trained_on": m.config.backend}
                   for m in models},
        "sweep": {k: v for k, v in asdict(cfg).items()},
        "samples": samples,
        "exact_accuracy": {r["model"]: r["accuracy_mean"] for r in rows if r["noise"] == "exact"},
        "classical_baseline": ({"run_dir": str(baseline.run_dir), "accuracy": classical[0]["accuracy_mean"]}
                               if classical else None),
        "classical_baseline_note": note,
        "cells": len(records),
        "cell_seconds": float(sum(r["seconds"] for r in records)),
        "rows": rows,
        "files": ["cells.jsonl", "table.csv", "summary.csv", "summary.md", "summary.json", "accuracy_vs_noise.png",
                  "accuracy_vs_shots.png"],
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _write_csv(path: Path, rows: list[dict], fields) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def markdown_table(rows: list[dict]) -> str:
    """The per-setting summary as a Markdown table (accuracy and mean |⟨Z⟩|: mean ± std)."""

    def pm(row, metric):
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        if mean is None:
            return "-"
        return f"{mean:.3f}" + (f" ± {std:.3f}" if row["repeats"] > 1 else "")

    lines = ["| model | noise | device | level | shots | mitigation | repeats | accuracy | mean abs(Z) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['noise']} | {r['device']} | {r['level']} | {r['shots']} | "
                     f"{r['mitigation']} | {r['repeats']} | {pm(r, 'accuracy')} | {pm(r, 'mean_abs_z')} |")
    return "\n".join(lines) + "\n"
