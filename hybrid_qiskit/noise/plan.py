"""Plan a noise sweep: its settings, its models, and the cells to run, as plain data.

A cell is described by a :class:`~hybrid_qiskit.noise.cell.CellTask` (run directory, backend
settings, seed, images), so any executor can run it: in this process, in a local process pool, or
on a Ray cluster. References are cells too: each model on exact ``statevector`` simulation, and the
classical baseline run when one is given.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.models import is_quantum
from hybrid_qiskit.noise.cell import CellTask
from hybrid_qiskit.noise.grid import (
    ALL_TO_ALL,
    CALIBRATED,
    MITIGATIONS,
    NOISE_KINDS,
    SIMULATORS,
    Cell,
    backend_for_cell,
    check_runtime_cells,
    parse_choices,
    parse_devices,
    parse_levels,
    parse_shots,
    shots_label,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep's settings; TOML files (``--config``) use these names, flags override them."""

    noise: str = "depolarizing"  # depolarizing | readout | thermal | device
    levels: tuple | None = None  # None: the kind's default grid (see grid.NOISE_KINDS)
    devices: tuple | None = None  # coupling map / basis (parametric kinds) or noise source (device)
    shots: tuple = (1024,)  # ints, or None / "exact" for the density-matrix expectation
    repeats: int = 3  # simulator seeds per cell: base seed + repeat
    mitigation: tuple = ("none",)  # none | readout (calibrated) | normalize | trex | zne (runtime local mode)
    normalize_stats: str = "calibration"  # normalize: backend statistics from a calibration set | each batch
    calibration_samples: int = 64  # normalize: training images in the calibration set
    two_qubit_factor: float = 1.0  # depolarizing: two-qubit p = factor x level (1: one p for every gate)
    optimization_level: int = 1  # transpiler
    split: str = "test"  # test | val
    limit: int | None = None  # evaluate the first N images only (speed)
    batch_size: int = 256  # images per estimator call
    seed: int | None = None  # base seed (default: the run's)
    name: str | None = None  # folder under RUN_DIR/noise/ (default: see default_name)
    compare: tuple = ()  # more run directories, swept on the same grid (noise-aware training...)
    baseline: str | None = None  # a run trained with --model classical: the reference line
    # Which simulator runs the noisy cells: auto (Aer where it is fast, noisy_trajectories for
    # heads wider than Aer runs here), aer, or trajectories (every width alike: width studies).
    simulator: str = "auto"

    def validated(self) -> SweepConfig:
        """Canonical, checked values (levels, devices and name filled in); errors are one line."""
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
        if self.normalize_stats not in ("calibration", "batch"):
            raise HybridQiskitError(f"--normalize-stats must be calibration or batch, got {self.normalize_stats!r}")
        for flag, value, low in (("--repeats", self.repeats, 1), ("--limit", self.limit, 1),
                                 ("--calibration-samples", self.calibration_samples, 2),
                                 ("--batch-size", self.batch_size, 1), ("--seed", self.seed, 0)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise HybridQiskitError(f"{flag} must be an integer >= {low}, got {value!r}")
        if self.seed is not None and self.seed >= 2**32 - 1000:
            raise HybridQiskitError(f"--seed must be below 2**32 - 1000 (numpy's range), got {self.seed}")
        if self.split not in ("test", "val"):
            raise HybridQiskitError(f"--split must be test or val, got {self.split!r}")
        if self.simulator not in SIMULATORS:
            raise HybridQiskitError(f"--simulator must be one of {', '.join(SIMULATORS)}, got {self.simulator!r}")
        if not isinstance(self.two_qubit_factor, (int, float)) or not 0 <= self.two_qubit_factor < float("inf"):
            raise HybridQiskitError(f"--two-qubit-factor must be a finite number >= 0, got {self.two_qubit_factor!r}")
        if self.baseline is not None and not isinstance(self.baseline, str):
            raise HybridQiskitError(f"baseline must be a run directory (a string), got {self.baseline!r}")
        compare = (self.compare,) if isinstance(self.compare, str) else self.compare
        if not isinstance(compare, (list, tuple)) or not all(isinstance(c, str) for c in compare):
            raise HybridQiskitError(f"compare must be a run directory or a list of them (strings), got {self.compare!r}")
        compare = tuple(compare)
        cfg = replace(self, noise=kind.name, levels=levels, devices=devices, shots=shots,
                      mitigation=mitigation, compare=compare)
        if self.name is None:
            return replace(cfg, name=cfg.default_name())
        return replace(cfg, name=check_name(self.name))

    def fingerprint(self) -> str:
        """Six hex digits of everything that shapes the table (not the name)."""
        settings = {k: v for k, v in asdict(self).items() if k != "name"}
        if settings["simulator"] == "auto":  # the default: sweeps from before it keep their names
            del settings["simulator"]
        if not set(CALIBRATED) & set(self.mitigation):  # they shape nothing: older sweeps keep their names
            del settings["normalize_stats"], settings["calibration_samples"]
        settings["compare"] = [str(Path(p).resolve()) for p in self.compare]
        settings["baseline"] = str(Path(self.baseline).resolve()) if self.baseline else None
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]

    def default_name(self) -> str:
        """``<noise>-<devices>-<fingerprint>``, e.g. ``device-fake_fez-3fa2c1``: sweeps with other
        devices or settings get other folders, so none replaces another's tables and plots."""
        devices = "+".join(d.removeprefix("fake_") for d in self.devices) if len(self.devices) <= 3 \
            else f"{len(self.devices)}devices"
        if self.devices == (ALL_TO_ALL,):
            devices = ALL_TO_ALL
        return f"{self.noise}-{devices}-{self.fingerprint()}"

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


def check_name(name: str) -> str:
    """A sweep folder name: one plain path component, so results stay inside RUN_DIR/noise/."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise HybridQiskitError(
            f"bad --name {name!r}: one folder name under RUN_DIR/noise/ (letters, digits, . _ + -; "
            "no path separators, not starting with '.')"
        )
    return name


@dataclass
class SweepModel:
    """One model of the sweep: a run directory's checkpoint and config."""

    label: str
    run_dir: Path
    config: object  # TrainConfig
    sha: str = ""


def load_model(run_dir: str | Path, label: str | None = None) -> SweepModel:
    from hybrid_qiskit.noise.cell import load_checkpoint_of

    cfg, _, sha = load_checkpoint_of(str(run_dir))
    return SweepModel(label or Path(run_dir).resolve().name, Path(run_dir), cfg, sha)


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


def load_models(run_dir, cfg: SweepConfig) -> tuple[list[SweepModel], SweepModel | None]:
    """The swept models (the run, then each --compare) and the classical baseline, checked."""
    main = load_model(run_dir)
    if not is_quantum(main.config.model):
        raise HybridQiskitError(f"{run_dir} holds a {main.config.model} model: nothing quantum to sweep "
                                "(use it as --baseline)")
    models = [main]
    for path in cfg.compare:
        other = load_model(path)
        if not is_quantum(other.config.model):
            raise HybridQiskitError(f"--compare {path} holds a {other.config.model} model; pass it as --baseline")
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


def _check_device_widths(cfg: SweepConfig, models: list[SweepModel]) -> None:
    from backends.devices import get_fake_backend

    width = max(m.config.qubits for m in models)
    for device in cfg.devices:
        if device == ALL_TO_ALL:
            continue
        n = get_fake_backend(device).num_qubits
        if n < width:
            raise HybridQiskitError(f"device {device} has {n} qubits; the model needs {width}: "
                                    "choose a larger one (hybrid-qiskit backends --devices)")


@dataclass(frozen=True)
class Job:
    """A planned cell: its resume key, the fields the table shows, and the task that computes it."""

    identity: dict
    fields: dict
    model: str  # the model's label
    run_dir: str
    task: CellTask
    width: int  # the head's qubits (0: no quantum stage), for the memory estimate
    chain: object = None  # the head as an exact chain (resources.head_chain), for the same estimate


def plan(cfg: SweepConfig, models: list[SweepModel], baseline: SweepModel | None, base_seed: int,
         data_run_dir: str | Path) -> list[Job]:
    """The references (exact simulation of each model, the classical baseline), then the grid."""
    from hybrid_qiskit import resources

    common = {"split": cfg.split, "limit": cfg.limit}
    chains: dict = {}

    def job(identity, fields, model, backend, settings, mitigation="none"):
        # Absolute paths: a Ray worker's current folder is not the driver's.
        task = CellTask(run_dir=str(model.run_dir.resolve()), model_sha=model.sha,
                        data_run_dir=str(Path(data_run_dir).resolve()),
                        split=cfg.split, limit=cfg.limit, batch_size=cfg.batch_size, backend=backend,
                        settings=settings, mitigation=mitigation, normalize_stats=cfg.normalize_stats,
                        calibration_samples=cfg.calibration_samples)
        width = model.config.qubits if backend else 0
        if width and model.sha not in chains:
            chains[model.sha] = resources.head_chain(model.config)
        return Job(identity, fields, model.label, str(model.run_dir), task, width, chains.get(model.sha) if width else None)

    reference = {"device": "-", "level": "-", "mitigation": "none", "repeat": 0}
    jobs = [job({**common, "model": m.sha, "reference": "exact"},
                {**reference, "noise": "exact", "shots": "exact", "seed": base_seed},
                m, "statevector", {"seed": base_seed}) for m in models]
    if baseline is not None:
        jobs.append(job({**common, "model": baseline.sha, "reference": "classical"},
                        {**reference, "noise": "classical", "shots": "-", "seed": None}, baseline, None, {}))
    for cell in cfg.cells():
        seed = base_seed + cell.repeat
        fields = {"noise": cell.noise, "device": cell.device, "level": cell.level, "shots": shots_label(cell.shots),
                  "mitigation": cell.mitigation, "repeat": cell.repeat, "seed": seed}
        identity = {**common, **fields, "optimization_level": cfg.optimization_level}
        if cell.noise == "depolarizing":
            identity["two_qubit_factor"] = cfg.two_qubit_factor
        if cell.mitigation == "refit":  # always from the calibration set
            identity["calibration_samples"] = cfg.calibration_samples
        elif cell.mitigation == "normalize":
            identity["normalize_stats"] = cfg.normalize_stats
            if cfg.normalize_stats == "calibration":
                identity["calibration_samples"] = cfg.calibration_samples
            else:  # batch statistics depend on which images share a batch
                identity["batch_size"] = cfg.batch_size
        for m in models:
            backend, settings = backend_for_cell(cell, seed=seed, optimization_level=cfg.optimization_level,
                                                 two_qubit_factor=cfg.two_qubit_factor, width=m.config.qubits,
                                                 simulator=cfg.simulator)
            extra = {"simulator": backend} if backend == "noisy_trajectories" else {}
            jobs.append(job({**identity, **extra, "model": m.sha}, fields, m, backend, settings, cell.mitigation))
    return jobs
