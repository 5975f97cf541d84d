"""Exact simulation backends (no noise).

* ``statevector``: the fast path, used by default. A batched numpy statevector V2 estimator
  with an adjoint gradient (``hybrid_qiskit.primitives``): one simulation per PUB instead of one
  per parameter set.
* ``statevector_reference``: the stock stack, Qiskit's ``StatevectorEstimator`` with
  qiskit-machine-learning's ``ParamShiftEstimatorGradient``, kept so anyone can compare.
* ``aer_statevector``: Aer's statevector method; exact with ``shots=None``, or shot-sampled
  (real measurements in each Pauli basis) with ``shots=N``. Each sampled run gets its own
  simulator seed, drawn from the handle's seed: fresh shot noise on every step and evaluation,
  and the same sequence in every process.
"""

from __future__ import annotations

import math

from backends.registry import BackendHandle, register_backend
from backends.settings import (
    AerStatevectorSettings,
    StatevectorReferenceSettings,
    StatevectorSettings,
)
from hybrid_qiskit.errors import HybridQiskitError


def shots_precision(shots: int) -> float:
    """The precision that makes shot-based V2 estimators run exactly ``shots`` shots.

    They take ``ceil(1 / precision**2)`` shots; the nudge keeps rounding from adding one.
    """
    if shots < 1:
        raise ValueError("shots must be >= 1")
    return (1.0 / math.sqrt(shots)) * (1 + 1e-12)


@register_backend("statevector", summary="exact; fast batched numpy statevector (or MPS chain) + exact gradient",
                  settings=StatevectorSettings)
def statevector(*, seed: int | None = None, single_precision: bool = False, method: str = "auto") -> BackendHandle:
    """``single_precision=True`` (``--backend-setting single_precision=true``) simulates in
    float32: ~2x faster from 12 qubits, values within ~2e-7 and gradients within ~1.5e-6 of the
    exact ones.

    ``method``: ``auto`` (default) runs circuits whose two-qubit gates act on neighbouring
    qubits (all the heads we ship) as an exact matrix-product state from 10 qubits up, the
    rest as a statevector; ``statevector`` or ``mps`` force one (``mps`` where it applies).
    """
    from hybrid_qiskit.primitives import AdjointEstimatorGradient, BatchedStatevectorEstimator
    from hybrid_qiskit.primitives.mps import METHODS

    if method not in METHODS:
        raise HybridQiskitError(f"unknown method {method!r} for statevector; known: {', '.join(METHODS)}")
    estimator = BatchedStatevectorEstimator(seed=seed, single_precision=single_precision, method=method)
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
            "single_precision": bool(single_precision),
            "method": method,
            "seed": seed,
        },
    )


@register_backend(
    "statevector_reference",
    summary="exact; Qiskit's StatevectorEstimator + parameter-shift gradient (stock, slow)",
    settings=StatevectorReferenceSettings,
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
    settings=AerStatevectorSettings,
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
        from hybrid_qiskit.memory import check_shots

        check_shots("aer_statevector", shots)
        # Measures every Pauli basis with real shots, so shot noise is genuine sampling noise.
        backend = AerSimulator(method="statevector")
        precision = shots_precision(shots)
        estimator = _reseeded_estimator(backend, precision, seed)
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


def _reseeded_estimator(backend, precision: float, seed: int | None):
    """A ``BackendEstimatorV2`` whose every run gets a simulator seed drawn from ``seed``.

    A fixed ``seed_simulator`` would repeat the same shot noise on every call. Runs compute
    before ``run`` returns (as our own estimators do), so the seed set for a run is the one it
    uses even when several threads share the estimator.
    """
    import threading

    import numpy as np
    from qiskit.primitives import BackendEstimatorV2
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    from hybrid_qiskit.primitives.estimator import EagerJob

    class ReseededBackendEstimator(BackendEstimatorV2):
        def __init__(self):
            super().__init__(backend=backend, options={"default_precision": precision})
            self._seeds = None if seed is None else np.random.default_rng(seed)
            self._lock = threading.Lock()

        def run(self, pubs, *, precision=None):
            if precision is None:
                precision = self.options.default_precision
            coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
            self._validate_pubs(coerced)
            with self._lock:
                if self._seeds is not None:
                    self.options.seed_simulator = int(self._seeds.integers(2**31))
                job = EagerJob(self._run, coerced)
                job._submit()
            return job

    return ReseededBackendEstimator()
