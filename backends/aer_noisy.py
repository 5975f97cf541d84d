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

* ``device="fake_manila"`` (any name from ``hybrid-qiskit backends --devices``) and no parametric
  setting: the device's calibration, every error rate times ``noise_scale`` (0 = noiseless,
  1 = the device, 2 = twice as noisy).
* any of ``depolarizing``, ``depolarizing_2q``, ``readout_error``, ``t1`` given: that parametric
  noise (times ``noise_scale``) replaces the calibration; the device still sets the coupling map
  and basis gates. ``device="all_to_all"``: no device, all-to-all coupling, basis rz/sx/x/cx.

The estimators themselves live in :mod:`backends.aer_estimators`.

Circuits are transpiled to the target's ISA once per model by the handle's pass manager
(``generate_preset_pass_manager(optimization_level, backend, seed_transpiler=seed)``); gradients
are batched parameter shifts on that same ISA circuit.

Example:
    >>> from backends import create_backend
    >>> handle = create_backend("aer_noisy", device="fake_manila", shots=1024, seed=7)
    >>> handle.description["noise"]["kind"]
    'device'
"""

from __future__ import annotations

from backends import BackendHandle, register_backend
from backends.aer_estimators import AerShotEstimator, ExactNoisyEstimator
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError

ALL_TO_ALL = "all_to_all"
GENERIC_BASIS = ("cx", "rz", "sx", "x")
METHODS = ("automatic", "density_matrix", "statevector", "matrix_product_state")
GRADIENT_KIND = "parameter-shift, batched (one PUB per circuit, on the ISA circuit)"


def _noise_and_target(device, noise_scale, parametric: dict):
    """(fake backend or None, NoiseSpec, description of the target) for the settings."""
    from backends.devices import describe_device, get_fake_backend
    from backends.noise import device_noise, parametric_noise

    use_parametric = any(
        parametric[k] is not None
        for k in ("depolarizing", "depolarizing_2q", "readout_error", "t1", "t2")
    )
    backend = None if device == ALL_TO_ALL else get_fake_backend(device)
    if backend is None:
        one_q, two_q = ["rz", "sx", "x"], ["cx"]
        target = {"name": ALL_TO_ALL, "basis_gates": list(GENERIC_BASIS), "coupling": "all-to-all"}
    else:
        info = describe_device(backend)
        two_q = info["two_qubit_gates"]
        one_q = [g for g in info["basis_gates"] if g not in two_q]
        target = info
    if use_parametric:
        given = {k: v for k, v in parametric.items() if v is not None}
        noise = parametric_noise(
            one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=noise_scale, **given
        )
    elif backend is not None:
        noise = device_noise(backend, noise_scale)
    else:
        noise = parametric_noise(
            one_qubit_gates=one_q, two_qubit_gates=two_q, noise_scale=noise_scale
        )
    return backend, noise, target


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


@register_backend(
    "aer_noisy",
    summary="Aer with a fake device's noise (x noise_scale) or parametric noise; real shots incl. readout error",
)
def aer_noisy(
    *,
    device: str = "fake_manila",
    shots: int = 1024,
    noise_scale: float = 1.0,
    depolarizing: float | None = None,
    depolarizing_2q: float | None = None,
    readout_error: float | None = None,
    t1: float | None = None,
    t2: float | None = None,
    gate_time_1q: float = 50.0,
    gate_time_2q: float = 300.0,
    method: str = "density_matrix",
    optimization_level: int = 1,
    seed: int | None = None,
) -> BackendHandle:
    """Shot-based noisy simulation on ``device``'s ISA (see the module docstring for the noise).

    T1/T2 are in µs, gate times in ns. ``method`` is Aer's simulation method: the default,
    ``density_matrix``, evolves each parameter set once and samples every shot from it (Aer's
    ``automatic`` measured ~1.5x slower at 4 qubits, choosing per parameter set); beyond ~10
    qubits ``statevector`` (one noisy trajectory per shot) may be the better trade.

    Raises:
        HybridQiskitError: bad shots, method, scale, probabilities, times or device name.
    """
    if not isinstance(shots, int) or shots < 1:
        raise HybridQiskitError(f"shots must be a positive integer, got {shots!r}")
    if method not in METHODS:
        raise HybridQiskitError(f"unknown Aer method {method!r}; known: {', '.join(METHODS)}")
    parametric = dict(
        depolarizing=depolarizing,
        depolarizing_2q=depolarizing_2q,
        readout_error=readout_error,
        t1=t1,
        t2=t2,
        gate_time_1q=gate_time_1q,
        gate_time_2q=gate_time_2q,
    )
    backend, noise, target = _noise_and_target(device, noise_scale, parametric)
    pass_manager = _pass_manager(backend, optimization_level, seed)
    precision = shots_precision(shots)
    estimator = AerShotEstimator(
        noise_model=noise.model, method=method, default_precision=precision, seed=seed
    )
    return BackendHandle(
        name="aer_noisy",
        estimator=estimator,
        gradient=_gradient(estimator, precision),
        pass_manager=pass_manager,
        precision=precision,
        exact=False,
        device=backend,
        description={
            "name": "aer_noisy",
            "device": target["name"],
            "target": target,
            "shots": shots,
            "noise": {**noise.summary, "readout_error_in_results": "measured (real shots)"},
            "method": method,
            "optimization_level": optimization_level,
            "seed": seed,
            "estimator": "AerShotEstimator (measured Pauli bases on AerSimulator, real shots)",
            "gradient": GRADIENT_KIND,
        },
    )


@register_backend(
    "aer_noisy_exact",
    summary="exact noisy expectation (Aer density matrix, no shots) with a device's or parametric noise",
)
def aer_noisy_exact(
    *,
    device: str = "fake_manila",
    noise_scale: float = 1.0,
    depolarizing: float | None = None,
    depolarizing_2q: float | None = None,
    readout_error: float | None = None,
    t1: float | None = None,
    t2: float | None = None,
    gate_time_1q: float = 50.0,
    gate_time_2q: float = 300.0,
    optimization_level: int = 1,
    seed: int | None = None,
) -> BackendHandle:
    """Exact density-matrix expectation under the same noise as ``aer_noisy``, no shot noise.

    Readout error is folded into the observables, so results are ``aer_noisy``'s mean.

    Raises:
        HybridQiskitError: bad scale, probabilities, times or device name.
    """
    parametric = dict(
        depolarizing=depolarizing,
        depolarizing_2q=depolarizing_2q,
        readout_error=readout_error,
        t1=t1,
        t2=t2,
        gate_time_1q=gate_time_1q,
        gate_time_2q=gate_time_2q,
    )
    backend, noise, target = _noise_and_target(device, noise_scale, parametric)
    pass_manager = _pass_manager(backend, optimization_level, seed)
    estimator = ExactNoisyEstimator(noise, seed=seed)
    return BackendHandle(
        name="aer_noisy_exact",
        estimator=estimator,
        gradient=_gradient(estimator, 0.0),
        pass_manager=pass_manager,
        precision=0.0,
        exact=True,
        device=backend,
        description={
            "name": "aer_noisy_exact",
            "device": target["name"],
            "target": target,
            "shots": None,
            "noise": {
                **noise.summary,
                "readout_error_in_results": "folded into the observables (exact mean)",
            },
            "method": "density_matrix (exact expectation)",
            "optimization_level": optimization_level,
            "seed": seed,
            "estimator": "ExactNoisyEstimator (Aer density-matrix EstimatorV2 + readout folding)",
            "gradient": GRADIENT_KIND,
        },
    )


def _gradient(estimator, precision: float):
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    return BatchedParamShiftEstimatorGradient(estimator, precision=precision)
