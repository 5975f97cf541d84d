"""Readout-error mitigation, calibrated from circuits on the same (noisy) backend.

Each measured qubit q is calibrated by two circuits run through the backend's own estimator:
all measured qubits in |0> and all in |1> (an ``x`` gate each). Their ⟨Z_q⟩ give the flip
probabilities a = P(read 1 | 0) = (1 - ⟨Z_q⟩₀)/2 and b = P(read 0 | 1) = (1 + ⟨Z_q⟩₁)/2, and
every later result is corrected per qubit with

    ⟨Z⟩_true = (⟨Z⟩_measured - (b - a)) / (1 - a - b),

the inverse of the average effect of independent, possibly asymmetric, bit flips on a ±1 outcome.
Like calibration on hardware, the |1> circuits also carry the ``x`` gate's own error, and with
finite shots the calibration has shot noise of its own. A qubit whose readout is nearly random
(1 - a - b < 0.05) is left uncorrected: inverting it would amplify shot noise twentyfold or more.

Example:
    >>> handle = create_backend("aer_noisy_exact", device="all_to_all", readout_error=0.05)
    >>> mitigated = with_readout_mitigation(handle)   # use it like any other handle
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.errors import HybridQiskitError

MIN_CONTRAST = 0.05  # 1 - a - b below this: the readout carries almost no information


def mitigate_z(z_measured, a, b):
    """Undo independent readout flips P(1|0)=a, P(0|1)=b on ⟨Z⟩ (arrays broadcast)."""
    return (np.asarray(z_measured) - (b - a)) / (1.0 - a - b)


def calibrate_readout(estimator, qubits: Iterable[int], num_qubits: int, *, precision: float = 0.0) -> dict[int, tuple[float, float]]:
    """Measure (a, b) = (P(read 1 | 0), P(read 0 | 1)) of ``qubits`` through ``estimator``.

    Args:
        estimator: a V2 estimator (shot-based or exact) carrying the noise to calibrate.
        qubits: physical qubits to calibrate.
        num_qubits: width of the circuits the estimator runs (the device's ISA width).
        precision: passed to ``estimator.run`` (its shots for shot-based estimators).

    Returns:
        qubit -> (a, b).
    """
    qubits = sorted(set(qubits))
    zero, one = QuantumCircuit(num_qubits), QuantumCircuit(num_qubits)
    for q in qubits:
        one.x(q)  # ISA on every IBM device and on the all-to-all target
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], num_qubits) for q in qubits]
    result = estimator.run([(zero, observables), (one, observables)], precision=precision).result()
    z0, z1 = np.asarray(result[0].data.evs, dtype=float), np.asarray(result[1].data.evs, dtype=float)
    return {q: (float((1 - m0) / 2), float((1 + m1) / 2)) for q, m0, m1 in zip(qubits, z0, z1)}


def _single_z(terms: dict) -> tuple[int, float] | None:
    """(qubit, coefficient) when the observable is c·Z_q; None for anything else."""
    if len(terms) != 1:
        return None
    (label, coeff), = terms.items()
    support = [i for i, p in enumerate(reversed(label)) if p != "I"]
    if len(support) != 1 or label[len(label) - 1 - support[0]] != "Z":
        return None
    return support[0], float(np.real(coeff))


class ReadoutMitigatedEstimator(BaseEstimatorV2):
    """Wraps a V2 estimator: calibrates the qubits it sees on first use, corrects every ⟨c·Z_q⟩.

    Observables must be one weighted Z on one qubit (the head's ⟨Z_q⟩ readout); anything else
    raises, rather than silently going uncorrected. ``uncorrected`` lists the qubits whose
    readout was too close to random to invert.
    """

    def __init__(self, estimator):
        self._estimator = estimator
        self.calibration: dict[int, tuple[float, float]] = {}

    @property
    def uncorrected(self) -> list[int]:
        return sorted(q for q, (a, b) in self.calibration.items() if 1 - a - b < MIN_CONTRAST)

    def _offset_contrast(self, qubit: int, coeff: float) -> tuple[float, float]:
        """(offset, contrast) of ⟨coeff·Z_qubit⟩: measured = offset + contrast·true."""
        if qubit in self.uncorrected:
            return 0.0, 1.0
        a, b = self.calibration[qubit]
        return coeff * (b - a), 1 - a - b  # c·Z: the offset scales with c, the contrast does not

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> PrimitiveJob:
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        job = PrimitiveJob(self._run, coerced, precision)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub], precision: float | None) -> PrimitiveResult:
        targets = []
        for pub in pubs:
            flat = [_single_z(terms) for terms in pub.observables.ravel().tolist()]
            if any(t is None for t in flat):
                raise HybridQiskitError("readout mitigation supports observables of one Pauli Z on one qubit")
            targets.append(flat)
            missing = {q for q, _ in flat} - set(self.calibration)
            if missing:
                self.calibration.update(calibrate_readout(
                    self._estimator, missing, pub.circuit.num_qubits,
                    precision=pub.precision if precision is None else precision,
                ))
        raw = self._estimator.run(pubs, precision=precision).result()
        results = []
        for pub, flat, res in zip(pubs, targets, raw):
            offset, contrast = (np.array(v).reshape(pub.observables.shape)
                                for v in zip(*(self._offset_contrast(q, c) for q, c in flat)))
            evs = (np.asarray(res.data.evs) - offset) / contrast
            stds = np.asarray(getattr(res.data, "stds", np.zeros_like(evs))) / contrast
            results.append(PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape),
                                     metadata={**res.metadata, "readout_mitigation": "calibrated per qubit"}))
        return PrimitiveResult(results, metadata={"version": 2})


def with_readout_mitigation(handle):
    """A copy of backend ``handle`` whose estimator corrects readout error (calibrated lazily).

    The gradient stays on the raw estimator: the sweep only evaluates.
    """
    mitigated = ReadoutMitigatedEstimator(handle.estimator)
    return dataclasses.replace(
        handle, estimator=mitigated,
        description={**handle.description, "mitigation": "readout (per-qubit calibration circuits, same backend)"},
    )
