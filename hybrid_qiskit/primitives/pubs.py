"""What every V2 estimator here does with a PUB: its parameter sets as rows, and results
broadcast back to the PUB's shape (observables against parameter sets)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit.circuit import Parameter
from qiskit.primitives.containers.estimator_pub import EstimatorPub


def num_rows(pub: EstimatorPub) -> int:
    """How many parameter sets the PUB binds (1 for an unparametrized circuit)."""
    shape = pub.parameter_values.shape
    return int(np.prod(shape)) if shape else 1


def parameter_rows(pub: EstimatorPub, parameters: Sequence[Parameter] | None = None) -> np.ndarray:
    """The PUB's parameter sets as a float64 (rows, P) array, columns in ``parameters`` order
    (default: ``pub.circuit.parameters``, the order the V2 primitives bind in)."""
    if parameters is None:
        parameters = list(pub.circuit.parameters)
    rows, width = num_rows(pub), len(parameters)
    if not width:
        return np.zeros((rows, 0))
    bindings = pub.parameter_values
    data = bindings.data
    if len(data) == 1 and next(iter(data)) == tuple(p.name for p in parameters):
        values = next(iter(data.values()))  # already in column order: skip the name lookup
    else:
        values = bindings.as_array(parameters)
    return np.ascontiguousarray(values, dtype=float).reshape(rows, width)


def broadcast_rows(pub: EstimatorPub, table: np.ndarray) -> np.ndarray:
    """An (observables, rows) table of results, observables in ``pub.observables.ravel()`` order
    and rows in :func:`parameter_rows` order, broadcast to the PUB's shape."""
    bshape, oshape = pub.parameter_values.shape, pub.observables.shape
    if not oshape:  # one observable (EstimatorQNN's PUBs): nothing to broadcast
        return table[0].reshape(bshape)
    oi, bi = np.broadcast_arrays(np.arange(table.shape[0]).reshape(oshape), np.arange(table.shape[1]).reshape(bshape))
    return table[oi, bi]


def distinct_rows(values: np.ndarray, num_observables: int) -> tuple[np.ndarray, np.ndarray]:
    """Parameter sets to simulate, and the one each row of ``values`` uses.

    EstimatorQNN repeats its batch once per observable (``np.tile``): that is recognized
    without sorting and keeps the batch's row order (the noisy trajectory backend finds a
    forward pass's trajectories again by it); anything else goes through ``np.unique``.
    """
    m = len(values)
    if num_observables > 1 and m % num_observables == 0:
        blocks = values.reshape(num_observables, m // num_observables, values.shape[1])
        if (blocks == blocks[0]).all():
            return np.ascontiguousarray(blocks[0]), np.tile(np.arange(m // num_observables), num_observables)
    if num_observables == 1:
        return np.ascontiguousarray(values), np.arange(m)
    rows, row_of = np.unique(values, axis=0, return_inverse=True)
    return rows, row_of.ravel()
