"""Every backend's settings, typed: one pydantic model per backend kind, with a description per
field (qiskit-ibm-runtime's options are typed the same way, one class per group).

The registry reads a backend's settings, defaults and descriptions from its model
(``hybrid-qiskit backends``, ``--json`` too) and validates what :func:`~backends.registry.create_backend`
is given against it, so a factory receives checked values. Types are strict: a boolean is true
or false (``"no"`` is an error, not a truthy string), a number is a number; ranges are field
constraints. What a constraint cannot say (Aer's methods, a layout, a device name) the factory
checks, with its own one-line error.

The noisy simulators (``aer_noisy``, ``aer_noisy_exact``, ``noisy_trajectories``) share
:class:`NoiseSettings`, so their noise is described the same way; ``ibm_local`` and
``ibm_runtime`` share :class:`RuntimeSettings`. Field order is the order ``backends`` lists.

Example:
    >>> AerNoisySettings(shots=256, noise_scale=0.5).shots
    256
    >>> set(NoisyTrajectoriesSettings.model_fields) - set(AerNoisySettings.model_fields)
    {'trajectories'}
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backends.devices import DEFAULT_DEVICE
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.validation import allowed

Shots = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Microseconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Nanoseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
OptimizationLevel = Annotated[int, Field(ge=0, le=3)]
ResilienceLevel = Annotated[int, Field(ge=0, le=2)]
Layout = str | list | tuple | None  # checked by backends.layout.parse_layout (one line)

SEED = "seeds the simulator's draws and the transpiler (unset: not reproducible)"
SHOTS = "shots per circuit and parameter set"
LAYOUT = ("where the head goes on the device: noise_aware (its best qubits), transpiler, trivial, "
          "or physical qubits (3,4,5)")


class BackendSettings(BaseModel):
    """The base of every backend's settings: strict, frozen, and no setting it does not declare."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    # Settings listed before the rest (inherited ones come first otherwise): the order
    # `hybrid-qiskit backends` has always shown.
    listed_first: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        # A numpy number (a sweep's np.linspace level) is a number; strict int would refuse int64.
        if isinstance(data, dict):
            return {k: v.item() if isinstance(v, np.generic) else v for k, v in data.items()}
        return data


# ------------------------------------------------------------------------ exact simulators


class StatevectorSettings(BackendSettings):
    """``statevector``: the project's batched statevector (or matrix-product-state chain)."""

    seed: int | None = Field(None, description=SEED)
    single_precision: bool = Field(
        False, description="simulate in float32: ~2x faster from 12 qubits, values within ~2e-7 of float64")
    method: str = Field(
        "auto", description="auto (an exact matrix-product state for chain heads from 10 qubits, else a "
                            "statevector), statevector or mps")


class StatevectorReferenceSettings(BackendSettings):
    """``statevector_reference``: Qiskit's stock StatevectorEstimator."""

    seed: int | None = Field(None, description=SEED)


class AerStatevectorSettings(BackendSettings):
    """``aer_statevector``: Aer without noise, exact or sampled."""

    shots: Shots | None = Field(None, description=SHOTS + " (unset: exact expectation values)")
    seed: int | None = Field(None, description=SEED)


# ------------------------------------------------------------------------ noisy simulators


class NoiseSettings(BackendSettings):
    """Where a noisy simulator's noise comes from: a fake device's calibration times
    ``noise_scale``, or parametric noise (any of depolarizing, readout_error, t1, t2 given) on
    the device's coupling map and basis (``all_to_all``: on a generic basis)."""

    device: str = Field(DEFAULT_DEVICE, description="fake device (hybrid-qiskit backends --devices) or all_to_all")
    noise_scale: float = Field(1.0, ge=0, allow_inf_nan=False,
                               description="multiplies every error rate (0 = noiseless)")
    depolarizing: Probability | None = Field(None, description="one-qubit gate depolarizing probability")
    depolarizing_2q: Probability | None = Field(
        None, description="two-qubit gate depolarizing probability (unset: depolarizing)")
    readout_error: Probability | None = Field(None, description="probability a measured bit flips")
    t1: Microseconds | None = Field(None, description="T1 relaxation time, µs")
    t2: Microseconds | None = Field(None, description="T2 dephasing time, µs (unset: t1)")
    gate_time_1q: Nanoseconds = Field(50.0, description="one-qubit gate time, ns (thermal relaxation)")
    gate_time_2q: Nanoseconds = Field(300.0, description="two-qubit gate time, ns (thermal relaxation)")
    optimization_level: OptimizationLevel = Field(1, description="transpiler optimization level")
    layout: Layout = Field("noise_aware", description=LAYOUT)
    seed: int | None = Field(None, description=SEED)


class AerNoisySettings(NoiseSettings):
    """``aer_noisy``: Aer with real shots."""

    listed_first = ("shots", "method")

    shots: Shots = Field(1024, description=SHOTS)
    method: str = Field("auto", description="Aer's method: auto (by width), automatic, density_matrix, "
                                            "statevector or matrix_product_state")


class AerNoisyExactSettings(NoiseSettings):
    """``aer_noisy_exact``: the exact noisy expectation (no shots)."""


class NoisyTrajectoriesSettings(NoiseSettings):
    """``noisy_trajectories``: the noise as sampled Pauli trajectories."""

    listed_first = ("shots", "trajectories", "method")

    shots: Shots = Field(1024, description=SHOTS)
    trajectories: Annotated[int, Field(ge=1)] = Field(
        1, description="noisy trajectories per parameter set, sharing its shots (at most shots)")
    method: str = Field("auto", description="auto, statevector or mps (a noisy matrix-product state)")


# ------------------------------------------------------------------------ qiskit-ibm-runtime


class RuntimeSettings(BackendSettings):
    """The runtime Estimator's options, on a QPU or in local testing mode."""

    shots: Shots = Field(1024, description=SHOTS)
    optimization_level: OptimizationLevel = Field(1, description="transpiler optimization level")
    resilience_level: ResilienceLevel = Field(1, description="the runtime's error mitigation level (1: TREX)")
    mode: str = Field("job", description="job, session or batch")
    twirling: bool | None = Field(None, description="gate twirling on/off (unset: the resilience level's default)")
    dynamical_decoupling: bool | str | None = Field(
        None, description="true/false or a sequence: XX, XpXm, XY4 (unset: off)")


class IbmLocalSettings(RuntimeSettings):
    """``ibm_local``: local testing mode on a fake device (or a QPU's live calibration)."""

    listed_first = ("device",)

    device: str = Field("fake_fez", description="fake device, or a QPU name (ibm_fez) to rehearse on its calibration")
    layout: Layout = Field("noise_aware", description=LAYOUT)
    max_execution_time: Annotated[int, Field(ge=1)] | None = Field(
        None, description="seconds of QPU time a job may take (recorded; the service cancels past it)")
    seed: int | None = Field(None, description="seeds the transpiler and the local simulator")


class IbmRuntimeSettings(RuntimeSettings):
    """``ibm_runtime``: a QPU on IBM Quantum."""

    listed_first = ("device",)

    device: str | None = Field(None, description="QPU name, e.g. ibm_fez (unset: the least busy one)")
    instance: str | None = Field(None, description="IBM Quantum instance (unset: the saved account's)")
    channel: str | None = Field(None, description="IBM Quantum channel (unset: the saved account's)")
    layout: Layout = Field("noise_aware", description=LAYOUT)
    max_execution_time: Annotated[int, Field(ge=1)] | None = Field(
        None, description="seconds of QPU time a job may take: the service cancels it past that")
    seed: int | None = Field(None, description="seeds the transpiler (hardware has no simulator seed)")


# ------------------------------------------------------------------------ listing and checking


def setting_names(model: type[BackendSettings]) -> list[str]:
    """The model's settings in the order they are listed."""
    first = [k for k in model.listed_first if k in model.model_fields]
    return first + [k for k in model.model_fields if k not in first]


def _annotation(model: type[BackendSettings], name: str) -> Any:
    """The field's annotation with its constraints, as :func:`hybrid_qiskit.validation.allowed` reads it."""
    info = model.model_fields[name]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


_WORDS = {bool: ("boolean", "true or false"), int: ("integer", "an integer"), float: ("number", "a number"),
          str: ("string", "a string"), list: ("list", "a list"), tuple: ("list", "a list")}


def _kinds(annotation: Any) -> list[tuple[str, str]]:
    """(JSON type, words) of each type the annotation allows, None excepted."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [k for a in typing.get_args(annotation) for k in _kinds(a)]
    if typing.get_origin(annotation) is Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if annotation is type(None):
        return []
    return [_WORDS.get(typing.get_origin(annotation) or annotation, ("any", "a value"))]


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def describe_settings(model: type[BackendSettings]) -> dict[str, dict[str, Any]]:
    """Setting name -> its type, default, allowed values and description (``backends --json``)."""
    out = {}
    for name in setting_names(model):
        info, annotation = model.model_fields[name], _annotation(model, name)
        kinds = list(dict.fromkeys(k for k, _ in _kinds(annotation)))
        text = allowed(annotation)
        if len(kinds) > 1:
            words = " or ".join(dict.fromkeys(w for _, w in _kinds(annotation)))
            text = f"{words} (or unset)" if _optional(annotation) else words
        out[name] = {"type": " | ".join(kinds + (["null"] if _optional(annotation) else [])),
                     "default": info.default, "allowed": text, "description": info.description}
    return out


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}


def check_settings(backend: str, model: type[BackendSettings], given: dict[str, Any]) -> BackendSettings:
    """``given`` validated against ``model``; anything wrong is ONE line: an unknown setting lists
    the ones the backend takes, a bad value names the setting, the value and what is allowed.

    Example:
        >>> check_settings("aer_noisy", AerNoisySettings, {"noise_scale": -1.0})
        Traceback (most recent call last):
        ...
        hybrid_qiskit.errors.HybridQiskitError: noise_scale = -1.0 is not allowed: must be a finite number >= 0
    """
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        raise HybridQiskitError(
            f"backend {backend!r} does not take setting(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(model.model_fields)) or 'none'}"
        )
    try:
        return model(**given)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err.get("loc") else ""
        if name not in model.model_fields:
            raise HybridQiskitError(f"backend {backend!r}: {err['msg']}") from None
        value, annotation = given[name], _annotation(model, name)
        rule = describe_settings(model)[name]["allowed"]
        if err["type"] in _RANGE_ERRORS:
            raise HybridQiskitError(f"{name} = {value!r} is not allowed: must be {rule}") from None
        kind = " or ".join(dict.fromkeys(w for _, w in _kinds(annotation)))
        more = f"; allowed: {rule}" if rule != kind else ""
        raise HybridQiskitError(f"{name} must be {kind}, got {value!r}{more}") from None
