"""Run configuration: one frozen dataclass, TOML override files, CLI flags last.

Resolution order (later wins): the defaults below, ``--config experiments/X.toml``, then the
flags given on the command line. The resolved config is saved with every run (config.json).

A TOML file uses the field names below at the top level, plus an optional ``[backend_settings]``
table for backend settings that have no flag of their own (e.g. ``depolarizing = 0.01``).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hybrid_qiskit.errors import HybridQiskitError

# Backend settings that have their own CLI flag; None means "the backend's default".
BACKEND_FLAGS = ("device", "shots", "optimization_level", "noise_scale", "resilience_level")


@dataclass(frozen=True)
class TrainConfig:
    # --- data
    dataset: str = "digits"  # digits (offline default) | mnist | fashion-mnist | cifar10
    data_dir: str = "data"  # torchvision's layout lives below this folder
    download: bool = False  # only download when asked: the default must run offline
    classes: str | None = None  # e.g. "0,1": keep these classes, relabelled 0..k-1
    limit_train: int | None = None  # stratified subsample, for quick runs
    limit_test: int | None = None
    val_fraction: float = 0.1  # of the training split, for model selection
    # --- model
    model: str = "hybrid"  # hybrid | classical (matched baseline) | quantum (pixels -> QNN)
    qubits: int = 8  # head width; 8 measured far better than 4 on 10 classes
    feature_map: str = "angle"  # angle | zz
    ansatz: str = "real_amplitudes"  # real_amplitudes | efficient_su2
    reps: int = 2
    reuploads: int = 1
    # --- backend (where the quantum head runs while training)
    backend: str = "statevector"
    device: str | None = None
    shots: int | None = None
    optimization_level: int | None = None
    noise_scale: float | None = None
    resilience_level: int | None = None
    backend_settings: dict[str, Any] = field(default_factory=dict)
    # --- training
    epochs: int = 15  # digits: 10 left the 4-qubit model at 0.755, 15 reached 0.969 (issue 16)
    batch_size: int = 32
    lr: float = 0.005  # Adam
    lr_schedule: str = "cosine"  # cosine (decay to 0 over the run) | constant
    seed: int = 0  # reaches torch, numpy, the data split, the transpiler and the simulators
    # --- recipe against overfitting (experiments/README.md: what each one bought on digits)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: plain Adam)
    dropout: float = 0.0  # dropout before each of the CNN's fully connected layers
    augment: bool = False  # random shifts (±2 px at 28x28) and rotations (±10°) of training images
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    # --- machine
    threads: int = 1  # torch threads: part of the run, so results do not depend on the core count
    eval_batch_size: int = 256  # evaluation has no backward pass: bigger PUBs, fewer calls
    # --- output
    out: str = "runs"
    name: str | None = None  # run directory name; default: <dataset>-<model>-<backend>

    def run_name(self) -> str:
        return self.name or f"{self.dataset}-{self.model}-{self.backend}"

    def backend_kwargs(self) -> dict[str, Any]:
        """Settings for ``create_backend`` (None values mean the backend's default)."""
        kw = {k: getattr(self, k) for k in BACKEND_FLAGS}
        kw.update(self.backend_settings)
        kw["seed"] = self.seed
        return kw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELD_NAMES = {f.name for f in fields(TrainConfig)}


def load_toml(path: str | Path, known: set[str] | None = None) -> dict[str, Any]:
    """Read a TOML override file; keys outside ``known`` (default: TrainConfig's fields) are an
    error naming them."""
    path = Path(path)
    known = FIELD_NAMES if known is None else known
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise HybridQiskitError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise HybridQiskitError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - known)
    if unknown:
        raise HybridQiskitError(
            f"config file {path} has unknown key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return data


def resolve(config_path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the TOML file, then the non-None ``overrides`` (CLI flags)."""
    cfg = TrainConfig()
    if config_path:
        cfg = replace(cfg, **load_toml(config_path))
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - FIELD_NAMES)
    if unknown:
        raise HybridQiskitError(f"unknown setting(s): {', '.join(unknown)}")
    if "backend_settings" in given:
        given["backend_settings"] = {**cfg.backend_settings, **given["backend_settings"]}
    return replace(cfg, **given)


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--backend-setting``; the value is read as TOML (numbers, bools,
    quoted strings), falling back to a bare string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise HybridQiskitError(f"--backend-setting expects key=value, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed
