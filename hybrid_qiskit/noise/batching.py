"""Merge the QNN's per-observable PUBs into one, so each circuit is simulated once per image.

``EstimatorQNN`` sends one PUB per observable — ``(circuit, Z_q, values)`` for q = 0..n-1, all
with the same circuit and the same parameter values. A shot-based estimator then simulates every
image n times, and an exact density-matrix one evolves n identical states. Merged into one PUB
with an array of n observables, the shot estimator measures all Z_q from the same shots (as
hardware does: one readout of all qubits) and the exact one evolves each state once; the sweep
gets the same numbers (exact) or the same distribution (shots) n times faster.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveJob, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.observables_array import ObservablesArray


class MergingEstimator(BaseEstimatorV2):
    """Wraps a V2 estimator; PUBs that share circuit, parameter values and precision and carry
    one observable each run as one PUB. Others pass through unchanged."""

    def __init__(self, estimator):
        self._estimator = estimator

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> PrimitiveJob:
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        job = PrimitiveJob(self._run, coerced, precision)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub], precision: float | None) -> PrimitiveResult:
        groups: list[list[int]] = []
        for i, pub in enumerate(pubs):
            for group in groups:
                if pub.observables.shape == () and _same_run(pubs[group[0]], pub):
                    group.append(i)
                    break
            else:
                groups.append([i])
        merged = []
        for group in groups:
            first = pubs[group[0]]
            if len(group) == 1:
                merged.append(first)
                continue
            bshape = first.parameter_values.shape
            obs = np.empty(len(group), dtype=object)
            obs[:] = [pubs[i].observables.ravel().tolist()[0] for i in group]
            obs = obs.reshape((len(group),) + (1,) * len(bshape))  # broadcasts against the values
            merged.append(EstimatorPub(first.circuit, ObservablesArray(obs.tolist()), first.parameter_values,
                                       first.precision))
        raw = self._estimator.run(merged, precision=precision).result()
        results: list[PubResult | None] = [None] * len(pubs)
        for group, res in zip(groups, raw):
            if len(group) == 1:
                results[group[0]] = res
                continue
            evs = np.asarray(res.data.evs)
            stds = np.asarray(getattr(res.data, "stds", np.zeros_like(evs)))
            for k, i in enumerate(group):
                results[i] = PubResult(DataBin(evs=evs[k], stds=stds[k], shape=evs[k].shape), metadata=res.metadata)
        return PrimitiveResult(results, metadata=getattr(raw, "metadata", {}))


def _same_run(a: EstimatorPub, b: EstimatorPub) -> bool:
    if a.observables.shape != () or a.circuit is not b.circuit or a.precision != b.precision:
        return False
    va, vb = a.parameter_values, b.parameter_values
    if va.shape != vb.shape:
        return False
    params = list(a.circuit.parameters)
    return not params or np.array_equal(va.as_array(params), vb.as_array(params))
