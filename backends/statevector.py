"""Exact simulation backends (no noise).

* ``statevector``: the fast path, used by default. A batched numpy statevector V2 estimator
  with an adjoint gradient (``hybrid_qiskit.primitives``): one simulation per PUB instead of one
  per parameter set.
* ``statevector_reference``: the stock stack, Qiskit's ``StatevectorEstimator`` with
  qiskit-machine-learning's ``ParamShiftEstimatorGradient``, kept so anyone can compare.
* ``aer_statevector``: Aer's statevector method; exact with ``shots=None``, or shot-sampled
  (real measurements in each Pauli basis) with ``shots=N``.
"""

from __future__ import annotations

import math

from backends import BackendHandle, register_backend


def shots_precision(shots: int) -> float:
    """The precision that makes shot-based V2 estimators run exactly ``shots`` shots.

    They take ``ceil(1 / precision**2)`` shots; the nudge keeps rounding from adding one.
    """
    if shots < 1:
        raise ValueError("shots must be >= 1")
    return (1.0 / math.sqrt(shots)) * (1 + 1e-12)


@register_backend("statevector", summary="exact; fast batched numpy statevector + adjoint gradient")
def statevector(*, seed: int | None = None) -> BackendHandle:
    from hybrid_qiskit.primitives import AdjointEstimatorGradient, BatchedStatevectorEstimator

    estimator = BatchedStatevectorEstimator(seed=seed)
    return BackendHandle(
        name="statevector",
        estimator=estimator,
        gradient=AdjointEstimatorGradient(estimator),
        description={
            "name": "statevector",
            "target": "ideal (all-to-all, any gate)",
            "shots": None,
            "noise": None,
            "estimator": "BatchedStatevectorEstimator",
            "gradient": "adjoint",
            "seed": seed,
        },
    )


@register_backend(
    "statevector_reference",
    summary="exact; Qiskit's StatevectorEstimator + parameter-shift gradient (stock, slow)",
)
def statevector_reference(*, seed: int | None = None) -> BackendHandle:
    from qiskit.primitives import StatevectorEstimator
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

    estimator = StatevectorEstimator(seed=seed)
    return BackendHandle(
        name="statevector_reference",
        estimator=estimator,
        gradient=ParamShiftEstimatorGradient(estimator),
        description={
            "name": "statevector_reference",
            "target": "ideal (all-to-all, any gate)",
            "shots": None,
            "noise": None,
            "estimator": "qiskit.primitives.StatevectorEstimator",
            "gradient": "parameter-shift (qiskit-machine-learning)",
            "seed": seed,
        },
    )


@register_backend(
    "aer_statevector",
    summary="Aer statevector; exact (shots unset) or sampled with N shots, no noise",
)
def aer_statevector(*, shots: int | None = None, seed: int | None = None) -> BackendHandle:
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2 as AerEstimator

    from hybrid_qiskit.primitives import BatchedParamShiftEstimatorGradient

    if shots is None:
        # Exact expectation values from Aer's own save_expectation_value path.
        estimator = AerEstimator(options={"backend_options": {"method": "statevector", "seed_simulator": seed}})
        precision = 0.0
        kind = "qiskit_aer.primitives.EstimatorV2 (exact)"
    else:
        from qiskit.primitives import BackendEstimatorV2

        # Measures every Pauli basis with real shots, so shot noise is genuine sampling noise.
        backend = AerSimulator(method="statevector", seed_simulator=seed)
        precision = shots_precision(shots)
        estimator = BackendEstimatorV2(
            backend=backend, options={"default_precision": precision, "seed_simulator": seed}
        )
        kind = "qiskit.primitives.BackendEstimatorV2(AerSimulator)"
    return BackendHandle(
        name="aer_statevector",
        estimator=estimator,
        gradient=BatchedParamShiftEstimatorGradient(estimator, precision=precision),
        precision=precision,
        exact=shots is None,
        description={
            "name": "aer_statevector",
            "target": "ideal (all-to-all, any gate)",
            "shots": shots,
            "noise": None,
            "estimator": kind,
            "gradient": "parameter-shift, batched (one PUB per circuit and observable)",
            "seed": seed,
        },
    )
