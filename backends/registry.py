"""The backend registry: names -> factories of :class:`BackendHandle`.

Each kind of backend is a small module with a factory decorated by ``@register_backend`` (the
timm pattern, with the registry in its own module as timm keeps ``_registry.py``). Backend
modules import this module, never the ``backends`` package, and importing the package registers
them all. ``create_backend(name, **settings)`` returns a :class:`BackendHandle`, the only thing
model code sees: the same model runs on every backend, and only the handle differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backends.settings import BackendSettings, check_settings, describe_settings, setting_names
from hybrid_qiskit.errors import UnknownBackendError


@dataclass(frozen=True)
class BackendHandle:
    """What a QNN needs to run on one backend.

    Attributes:
        name: the registry name.
        estimator: a Qiskit V2 estimator primitive (``BaseEstimatorV2``).
        gradient: a qiskit-machine-learning ``BaseEstimatorGradient`` built on ``estimator``.
        pass_manager: maps circuits to the target's ISA (None: the estimator takes any circuit).
            The QNN transpiles once per model and maps observables with ``apply_layout``.
        precision: the precision passed to ``estimator.run``; 0 on exact backends (a positive
            precision makes exact estimators add Gaussian noise), ``1/sqrt(shots)`` on sampled ones.
        exact: True when results carry no shot noise.
        remote: True when jobs run on a remote service (IBM Quantum) and outlive this process.
        device: the full device (a ``BackendV2``: fake device or QPU) the pass manager targets,
            None for exact simulation and all-to-all noise. Its configuration gives timing
            figures (repetition delay) for cost estimates; jobs are laid out on it.
        description: JSON-able facts written into every run's metadata (name, target, shots,
            noise, transpiler settings, seed).
    """

    name: str
    estimator: Any
    gradient: Any
    pass_manager: Any = None
    precision: float = 0.0
    exact: bool = True
    remote: bool = False
    device: Any = None
    description: dict = field(default_factory=dict)

    def close(self) -> None:
        """Close the Session / Batch the estimator runs in, if any: its queued jobs still run,
        no new ones are accepted, and a session stops holding the QPU. Safe to call twice; a
        no-op for simulators. Whoever builds a handle closes it, on error paths too."""
        mode = getattr(self.estimator, "mode", None)
        if mode is None or not callable(getattr(mode, "close", None)):
            return
        if getattr(mode, "_active", True) is False:  # already closed
            return
        mode.close()


@dataclass(frozen=True)
class BackendSpec:
    """A registry entry: the factory, its settings' model and what `hybrid-qiskit backends` shows."""

    name: str
    factory: Callable[..., BackendHandle]
    summary: str
    needs_credentials: bool = False
    settings_model: type[BackendSettings] = BackendSettings

    @property
    def settings(self) -> dict[str, Any]:
        """Setting name -> default, in the order ``backends`` lists them (from :attr:`settings_model`)."""
        fields = self.settings_model.model_fields
        return {k: fields[k].default for k in setting_names(self.settings_model)}

    def describe_settings(self) -> dict[str, dict[str, Any]]:
        """Setting name -> type, default, allowed values and description (``backends --json``)."""
        return describe_settings(self.settings_model)


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(name: str, *, summary: str, settings: type[BackendSettings],
                     needs_credentials: bool = False):
    """Decorator: register ``factory(**settings) -> BackendHandle`` under ``name``.

    ``settings`` is the backend's pydantic model (:mod:`backends.settings`): :func:`create_backend`
    validates against it and calls the factory with every setting, checked and defaulted."""

    def wrap(factory: Callable[..., BackendHandle]) -> Callable[..., BackendHandle]:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} is registered twice")
        _REGISTRY[name] = BackendSpec(name, factory, summary, needs_credentials, settings)
        return factory

    return wrap


def list_backends() -> list[str]:
    """Names of every registered backend, sorted.

    Example:
        >>> from hybrid_qiskit import list_backends
        >>> {"statevector", "aer_noisy", "ibm_local", "ibm_runtime"} <= set(list_backends())
        True
    """
    return sorted(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The registry entry for ``name``; an unknown name raises an error listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackendError(
            f"unknown backend {name!r}; known backends: {', '.join(list_backends())}"
        ) from None


def create_backend(name: str, **settings: Any) -> BackendHandle:
    """Build the handle for backend ``name``.

    Settings whose value is None are dropped (the default applies), so the CLI can pass every flag
    it has. The rest are validated against the backend's settings model (:mod:`backends.settings`),
    and the factory gets every setting, checked. A setting the backend does not take is an error
    that lists the ones it does; a bad value is one line naming the setting, the value and what is
    allowed. ``hybrid-qiskit backends`` lists every backend's settings and defaults.

    Example:
        >>> from hybrid_qiskit import create_backend
        >>> handle = create_backend("aer_noisy", device="fake_fez", shots=1024, seed=7)
        >>> handle.exact, handle.description["device"], handle.description["shots"]
        (False, 'fake_fez', 1024)
        >>> create_backend("statevector", shots=1024)
        Traceback (most recent call last):
        ...
        hybrid_qiskit.errors.HybridQiskitError: backend 'statevector' does not take setting(s) shots; it takes: method, seed, single_precision
        >>> create_backend("statevector", single_precision="no")
        Traceback (most recent call last):
        ...
        hybrid_qiskit.errors.HybridQiskitError: single_precision must be true or false, got 'no'
    """
    spec = backend_spec(name)
    given = {k: v for k, v in settings.items() if v is not None}
    checked = check_settings(name, spec.settings_model, given)
    return spec.factory(**checked.model_dump())
