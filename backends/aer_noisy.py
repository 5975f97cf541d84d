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

from backends.aer_estimators import AerShotEstimator, ExactNoisyEstimator
from backends.layout import layout_text, parse_layout
from backends.noise_source import NoiseSource, noisy_pass_manager
from backends.registry import BackendHandle, register_backend
from backends.settings import AerNoisyExactSettings, AerNoisySettings
from backends.statevector import shots_precision
from hybrid_qiskit.errors import HybridQiskitError

METHODS = ("auto", "automatic", "density_matrix", "statevector", "matrix_product_state")
GRADIENT_KIND = "parameter-shift, batched (one PUB per circuit, on the ISA circuit)"


def _handle(name: str, source: NoiseSource, primitive, precision: float, settings: dict, **facts) -> BackendHandle:
    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    return BackendHandle(
        name=name,
        estimator=primitive,
        gradient=BatchedParamShiftEstimatorGradient(primitive, precision=precision),
        pass_manager=noisy_pass_manager(source.backend, settings["optimization_level"], settings["seed"],
                                         settings["layout"]),
        precision=precision,
        exact=precision == 0,
        device=source.backend,
        description={
            "name": name,
            "device": source.target["name"],
            "target": source.target,
            **facts,
            "optimization_level": settings["optimization_level"],
            "layout": layout_text(parse_layout(settings["layout"])) if source.backend is not None else None,
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
    settings=AerNoisySettings,
)
def aer_noisy(**settings) -> BackendHandle:
    """Shot-based noisy simulation on ``device``'s ISA (see the module docstring for the noise).

    ``method`` is Aer's simulation method. The default, ``auto``, picks it by the reduced
    circuit's width (:func:`backends.noise_source.aer_method`): ``density_matrix`` (each
    parameter set evolved once, every shot sampled from it; Aer's ``automatic`` measured ~1.5x
    slower at 4 qubits) up to 10 qubits, ``statevector`` (one noisy trajectory per shot) up to
    13, and past that a one-line refusal naming ``noisy_trajectories``.

    Raises:
        HybridQiskitError: bad shots, method, scale, probabilities, times or device name.
    """
    shots, method = settings["shots"], settings["method"]
    if method not in METHODS:
        raise HybridQiskitError(f"unknown Aer method {method!r}; known: {', '.join(METHODS)}")
    noise = NoiseSource(settings)
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
    settings=AerNoisyExactSettings,
)
def aer_noisy_exact(**settings) -> BackendHandle:
    """Exact density-matrix expectation under the same noise as ``aer_noisy``, no shot noise.

    Readout error is folded into the observables, so results are ``aer_noisy``'s mean.

    Raises:
        HybridQiskitError: bad scale, probabilities, times or device name.
    """
    noise = NoiseSource(settings)
    estimator = noise.estimator(lambda spec: ExactNoisyEstimator(spec, seed=settings["seed"]))
    return _handle(
        "aer_noisy_exact", noise, estimator, 0.0, settings,
        shots=None,
        noise={**noise.summary, "readout_error_in_results": "folded into the observables (exact mean)"},
        method="density_matrix (exact expectation)",
        estimator="ExactNoisyEstimator (Aer density-matrix EstimatorV2 + readout folding)",
    )
