"""Run configuration: one frozen dataclass, TOML override files, CLI flags last.

Resolution order (later wins): the defaults below, ``--config experiments/X.toml``, then the
flags given on the command line. The resolved config is saved with every run (config.json).

Every value is checked (pydantic, strict types, the ranges in :mod:`hybrid_qiskit.validation`)
whenever a config is made, so a bad flag, TOML value or saved config.json is one line naming the
setting, the value and what is allowed.

A TOML file uses the field names below at the top level, plus an optional ``[backend_settings]``
table for backend settings that have no flag of their own (e.g. ``depolarizing = 0.01``).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.validation import (
    FolderName,
    Fraction,
    NonNegativeFinite,
    NonNegativeInt,
    OptimizationLevel,
    PositiveFinite,
    PositiveInt,
    ResilienceLevel,
    Seed,
    explain,
)

# Backend settings that have their own CLI flag; None means "the backend's default".
BACKEND_FLAGS = ("device", "shots", "optimization_level", "noise_scale", "resilience_level")


# Strict: a value of the wrong type ("qubits": "four", epochs = 2.5) is refused, never coerced.
@dataclass(frozen=True, config=ConfigDict(strict=True))
class TrainConfig:
    """Every setting of a training run: data, model, backend, training, output (frozen).

    Each value is checked when the config is made (a wrong type is refused, never coerced). The
    fields are the names a TOML file (``--config``) uses and, with dashes, ``hybrid-qiskit train``'s
    flags; the comment beside each field in ``hybrid_qiskit/config.py`` says why its default is
    what it is. Backend settings without a field go in ``backend_settings``.

    Example:
        >>> from hybrid_qiskit import TrainConfig
        >>> config = TrainConfig(qubits=4, epochs=3, backend="aer_noisy", device="fake_fez", shots=1024)
        >>> config.run_name(), config.batch_size
        ('digits-hybrid-aer_noisy', 32)
        >>> config.backend_kwargs()["device"]
        'fake_fez'
    """

    # --- data
    dataset: str = "digits"  # digits (offline default) | mnist | fashion-mnist | cifar10
    data_dir: str = "data"  # torchvision's layout lives below this folder
    download: bool = False  # only download when asked: the default must run offline
    classes: str | None = None  # e.g. "0,1": keep these classes, relabelled 0..k-1
    limit_train: PositiveInt | None = None  # stratified subsample, for quick runs
    limit_test: PositiveInt | None = None
    # Of the training split, to choose the best epoch; 0: every image trains, the last epoch is kept.
    val_fraction: Fraction = 0.1
    # --- model
    model: str = "hybrid"  # hybrid | classical (matched baseline) | quantum (pixels -> QNN)
    # LeNet's channels (6, 16) and fully connected widths (120, 84) times this: 1 is LeNet-5 (digits,
    # MNIST); Fashion-MNIST underfits it (experiments/README.md).
    cnn_width: PositiveInt = 1
    batch_norm: bool = False  # BatchNorm2d after each of LeNet's convolutions
    qubits: PositiveInt = 8  # head width; 8 measured far better than 4 on 10 classes
    feature_map: str = "angle"  # angle | zz
    ansatz: str = "real_amplitudes"  # real_amplitudes | efficient_su2
    reps: NonNegativeInt = 2
    reuploads: PositiveInt = 1
    # reverse_linear | linear | circular | full: the pairs the ansatz (and the ZZ map) entangle.
    # reverse_linear is what every head was before the choice existed: runs without it load so.
    entanglement: str = "reverse_linear"
    # Post-measurement normalization (QuantumNAT): per-qubit standardized ⟨Z⟩ feeds the readout,
    # and evaluation on another backend re-estimates the statistics there (adaptation.py).
    # QuantumNAT's post-measurement quantization is not offered: measured here, it did not help (README).
    normalize: bool = False
    # --- backend (where the quantum head runs while training)
    backend: str = "statevector"
    device: str | None = None
    shots: PositiveInt | None = None
    optimization_level: OptimizationLevel | None = None
    noise_scale: NonNegativeFinite | None = None
    resilience_level: ResilienceLevel | None = None
    backend_settings: dict[str, Any] = field(default_factory=dict)
    # --- training
    epochs: PositiveInt = 15  # digits: 10 left the 4-qubit model at 0.755, 15 reached 0.969
    batch_size: PositiveInt = 32
    lr: PositiveFinite = 0.005  # Adam
    lr_schedule: str = "cosine"  # cosine (decay to 0 over the run) | constant
    seed: Seed = 0  # reaches torch, numpy, the data split, the transpiler and the simulators
    # --- recipe against overfitting (experiments/README.md: what each one bought on digits)
    weight_decay: NonNegativeFinite = 0.0  # AdamW's decoupled weight decay (0: plain Adam)
    dropout: Fraction = 0.0  # dropout before each of the CNN's fully connected layers
    augment: bool = False  # random changes of each training batch; what they are is set below
    augment_shift: NonNegativeFinite = 2.0  # largest shift, in pixels of a 28-pixel side (scaled for others)
    augment_degrees: NonNegativeFinite = 10.0  # largest rotation either way
    augment_flip: bool | None = None  # horizontal flips; None: for 3-channel images (CIFAR-10) only
    augment_erase: Fraction = 0.0  # probability of erasing a random rectangle (random erasing)
    label_smoothing: Fraction = 0.0  # of the training loss's targets; history's train_loss, validation, test: plain
    patience: PositiveInt | None = None  # stop after this many epochs without a better val accuracy
    # --- machine
    threads: PositiveInt = 1  # torch threads: part of the run, so results do not depend on the core count
    eval_batch_size: PositiveInt = 256  # evaluation has no backward pass: bigger PUBs, fewer calls
    # --- output
    out: str = "runs"
    name: FolderName | None = None  # run directory name; default: <dataset>-<model>-<backend>

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
# Settings added after runs were first written: a config.json without one was written before it
# existed, and its default is what that run used (not a damaged file).
LATER_SETTINGS = {"entanglement", "cnn_width", "augment_shift", "augment_degrees", "augment_flip", "augment_erase",
                  "batch_norm", "label_smoothing"}


def load_toml(path: str | Path, known: set[str] | None = None) -> dict[str, Any]:
    """Read a TOML override file; keys outside ``known`` (default: TrainConfig's fields) are an
    error naming them. A missing, unreadable, binary or malformed file is one line too."""
    path = Path(path)
    known = FIELD_NAMES if known is None else known
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise HybridQiskitError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise HybridQiskitError(f"config file {path} is a directory; pass a .toml file") from None
    except OSError as exc:
        raise HybridQiskitError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HybridQiskitError(f"config file {path} is not text (binary data); pass a .toml file") from None
    except tomllib.TOMLDecodeError as exc:
        raise HybridQiskitError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - known)
    if unknown:
        raise HybridQiskitError(
            f"config file {path} has unknown key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return data


def checked(cfg: TrainConfig, changes: dict[str, Any], *, source: str = "", flags: bool = False) -> TrainConfig:
    """``replace(cfg, **changes)``, with a bad value as one line naming the setting (and its flag
    when the value came from the command line), the value and the allowed range."""
    try:
        return replace(cfg, **changes)
    except ValidationError as exc:
        annotations = {f.name: TrainConfig.__pydantic_fields__[f.name].rebuild_annotation() for f in fields(TrainConfig)}
        names = {k: "--backend-setting" if k == "backend_settings" else "--" + k.replace("_", "-")
                 for k in changes} if flags else None
        raise HybridQiskitError(explain(exc, source=source, annotations=annotations, flags=names)) from None


def resolve(config_path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the TOML file, then the non-None ``overrides`` (CLI flags)."""
    overrides.pop("run_id", None)  # a run's config.json carries its run id (see runs.py): not a setting
    cfg = TrainConfig()
    if config_path:
        cfg = checked(cfg, load_toml(config_path), source=f"in config file {config_path}")
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - FIELD_NAMES)
    if unknown:
        raise HybridQiskitError(f"unknown setting(s): {', '.join(unknown)}")
    if isinstance(given.get("backend_settings"), dict):
        given["backend_settings"] = {**cfg.backend_settings, **given["backend_settings"]}
    return checked(cfg, given, flags=True)


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
