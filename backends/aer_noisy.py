"""Noisy Aer backends: a fake device's noise (scaled), or parametric noise, on its ISA.

* ``aer_noisy``: real shots. Each qubit-wise-commuting group of Pauli terms is measured on an
  ``AerSimulator`` carrying the noise model, so shot noise AND readout error show in the results.
  (Aer's own EstimatorV2 computes expectation values from the simulator state and never measures:
  with a noise model it leaves readout error out.)
* ``aer_noisy_exact``: the exact noisy expectation (density matrix, no shots) for smooth curves.
  Readout error is included analytically (:func:`backends.noise.fold_readout`), so this is the
  mean of what ``aer_noisy`` samples (exactly so for Z-type observables like the head's; X/Y
  terms miss the noise of the basis-change gates ``aer_noisy`` adds before measuring).

Where the noise comes from (``device`` and the parametric settings):

* ``device="fake_fez"`` (any name from ``hybrid-qiskit backends --devices``) and no parametric
  setting: the device's calibration, every error rate times ``noise_scale`` (0 = noiseless,
  1 = the device, 2 = twice as noisy).
* any of ``depolarizing``, ``depolarizing_2q``, ``readout_error``, ``t1`` given: that parametric
  noise (times ``noise_scale``) replaces the calibration; the device still sets the coupling map
  and basis gates. ``depolarizing=p`` alone means p on every gate, one- and two-qubit alike.
  ``device="all_to_all"``: no device, all-to-all coupling, basis rz/sx/x/cx.

Circuits are transpiled to the FULL device's ISA once per model by the handle's pass manager
(``generate_preset_pass_manager(optimization_level, backend, seed_transpiler=seed)``), the layout
a QPU job would use; the estimators then simulate the reduced device of the qubits each circuit
touches (:mod:`backends.reduced`), so cost follows the head's width. Gradients are batched
parameter shifts on that same ISA circuit. The estimators live in :mod:`backends.aer_estimators`.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("aer_noisy", device="fake_fez", shots=1024, seed=7)
    >>> handle.description["noise"]["kind"]
    'device'
"""

from __future__ import annotations

import inspect

from backends import BackendHandle, register_backend
from backends.aer_estimators import AerShotEstimator, ExactNoisyEstimator
from backends.devices import ALL_TO_ALL, DEFAULT_DEVICE
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError

GENERIC_BASIS = ("cx", "rz", "sx", "x")
METHODS = ("automatic", "density_matrix", "statevector", "matrix_product_state")
GRADIENT_KIND = "parameter-shift, batched (one PUB per circuit, on the ISA circuit)"
PARAMETRIC = ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2", "gate_time_1q", "gate_time_2q")
# The settings both noisy backends take, with their defaults (T1/T2 in µs, gate times in ns).
NOISE_SETTINGS = {
    "device": DEFAULT_DEVICE,
    "noise_scale": 1.0,
    "depolarizing": None,
    "depolarizing_2q": None,
    "readout_error": None,
    "t1": None,
    "t2": None,
    "gate_time_1q": 50.0,
    "gate_time_2q": 300.0,
    "optimization_level": 1,
    "seed": None,
}


def _takes(**own):
    """Give a ``**settings`` factory the keyword-only signature the registry lists: its own
    settings, then :data:`NOISE_SETTINGS` (one list for both noisy backends)."""

    def wrap(factory):
        params = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in {**own, **NOISE_SETTINGS}.items()
        ]
        factory.__signature__ = inspect.Signature(params, return_annotation=BackendHandle)
        return factory

    return wrap


class _Noise:
    """Where a handle's noise comes from, and how to build it for a (reduced) device."""

    def __init__(self, settings: dict):
        from backends.devices import describe_device, get_fake_backend
        from backends.noise import device_noise_summary, parametric_noise

        self.scale = settings["noise_scale"]
        device = settings["device"]
        self.backend = None if device == ALL_TO_ALL else get_fake_backend(device)
        if self.backend is None:
            one_q, two_q = ["rz", "sx", "x"], ["cx"]
            self.target = {"name": ALL_TO_ALL, "basis_gates": list(GENERIC_BASIS), "coupling": "all-to-all"}
        else:
            self.target = describe_device(self.backend)
            two_q = self.target["two_qubit_gates"]
            one_q = [g for g in self.target["basis_gates"] if g not in two_q]
        given = {k: settings[k] for k in PARAMETRIC if settings[k] is not None}
        parametric = self.backend is None or any(
            k in given for k in ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2")
        )
        # Parametric noise is the same on every qubit: one spec serves the full and any reduced
        # device. Device noise is built per reduced device, from its own calibration.
        self.fixed = (
            parametric_noise(one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=self.scale, **given)
            if parametric
            else None
        )
        self.summary = self.fixed.summary if parametric else device_noise_summary(self.backend, self.scale)

    def on(self, device):
        """The NoiseSpec of ``device`` (a reduced device of :attr:`backend`)."""
        from backends.noise import device_noise

        return self.fixed if self.fixed is not None else device_noise(device, self.scale)

    def estimator(self, make):
        """``make(NoiseSpec)`` on the reduced device of each circuit (all-to-all: directly)."""
        from backends.reduced import ReducedDeviceEstimator

        if self.backend is None:
            return make(self.fixed)
        return ReducedDeviceEstimator(self.backend, lambda reduced: make(self.on(reduced)))


def _pass_manager(backend, optimization_level: int, seed):
    from qiskit.transpiler import generate_preset_pass_manager

    from backends.devices import guard_width

    if optimization_level not in (0, 1, 2, 3):
        raise HybridQiskitError(
            f"optimization_level must be 0, 1, 2 or 3, got {optimization_level}"
        )
    if backend is None:
        return generate_preset_pass_manager(
            optimization_level=optimization_level,
            basis_gates=list(GENERIC_BASIS),
            seed_transpiler=seed,
        )
    return guard_width(
        generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        ),
        backend,
    )


def _handle(name: str, source: _Noise, primitive, precision: float, settings: dict, **facts) -> BackendHandle:
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    return BackendHandle(
        name=name,
        estimator=primitive,
        gradient=BatchedParamShiftEstimatorGradient(primitive, precision=precision),
        pass_manager=_pass_manager(source.backend, settings["optimization_level"], settings["seed"]),
        precision=precision,
        exact=precision == 0,
        device=source.backend,
        description={
            "name": name,
            "device": source.target["name"],
            "target": source.target,
            **facts,
            "optimization_level": settings["optimization_level"],
            "seed": settings["seed"],
            "simulated": "only the physical qubits the circuit touches (reduced device)"
            if source.backend is not None
            else "the circuit's qubits (all-to-all)",
            "gradient": GRADIENT_KIND,
        },
    )


@register_backend(
    "aer_noisy",
    summary="Aer with a fake device's noise (x noise_scale) or parametric noise; real shots incl. readout error",
)
@_takes(shots=1024, method="density_matrix")
def aer_noisy(**settings) -> BackendHandle:
    """Shot-based noisy simulation on ``device``'s ISA (see the module docstring for the noise).

    ``method`` is Aer's simulation method: the default, ``density_matrix``, evolves each
    parameter set once and samples every shot from it (Aer's ``automatic`` measured ~1.5x slower
    at 4 qubits, choosing per parameter set); beyond ~10 qubits ``statevector`` (one noisy
    trajectory per shot) may be the better trade.

    Raises:
        HybridQiskitError: bad shots, method, scale, probabilities, times or device name.
    """
    settings = {p: settings.get(p, d.default) for p, d in aer_noisy.__signature__.parameters.items()}
    shots, method = settings["shots"], settings["method"]
    if not isinstance(shots, int) or shots < 1:
        raise HybridQiskitError(f"shots must be a positive integer, got {shots!r}")
    if method not in METHODS:
        raise HybridQiskitError(f"unknown Aer method {method!r}; known: {', '.join(METHODS)}")
    noise = _Noise(settings)
    precision = shots_precision(shots)
    estimator = noise.estimator(
        lambda spec: AerShotEstimator(
            noise_model=spec.model, method=method, default_precision=precision, seed=settings["seed"]
        )
    )
    return _handle(
        "aer_noisy", noise, estimator, precision, settings,
        shots=shots,
        noise={**noise.summary, "readout_error_in_results": "measured (real shots)"},
        method=method,
        estimator="AerShotEstimator (measured Pauli bases on AerSimulator, real shots)",
    )


@register_backend(
    "aer_noisy_exact",
    summary="exact noisy expectation (Aer density matrix, no shots) with a device's or parametric noise",
)
@_takes()
def aer_noisy_exact(**settings) -> BackendHandle:
    """Exact density-matrix expectation under the same noise as ``aer_noisy``, no shot noise.

    Readout error is folded into the observables, so results are ``aer_noisy``'s mean.

    Raises:
        HybridQiskitError: bad scale, probabilities, times or device name.
    """
    settings = {p: settings.get(p, d.default) for p, d in aer_noisy_exact.__signature__.parameters.items()}
    noise = _Noise(settings)
    estimator = noise.estimator(lambda spec: ExactNoisyEstimator(spec, seed=settings["seed"]))
    return _handle(
        "aer_noisy_exact", noise, estimator, 0.0, settings,
        shots=None,
        noise={**noise.summary, "readout_error_in_results": "folded into the observables (exact mean)"},
        method="density_matrix (exact expectation)",
        estimator="ExactNoisyEstimator (Aer density-matrix EstimatorV2 + readout folding)",
    )
