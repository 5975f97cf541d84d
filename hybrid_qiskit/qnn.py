"""The quantum head: an ``EstimatorQNN`` wrapped in ``TorchConnector``, built for one backend.

The backend handle owns everything backend-specific (estimator, gradient, pass manager,
precision); this module only wires them together, so the same model code runs everywhere.
On a backend with a pass manager the circuit is transpiled to the target's ISA ONCE, here, and
the observables follow the layout with ``apply_layout``.

Example:
    >>> import torch
    >>> from backends import create_backend
    >>> from hybrid_qiskit.circuits import build_head_circuit
    >>> head = build_head_circuit(2, reps=1)
    >>> layer = build_quantum_layer(head, create_backend("statevector"), seed=0)
    >>> layer(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import numpy as np
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN

from backends import BackendHandle
from hybrid_qiskit.circuits import HeadCircuit


class BroadcastEstimatorQNN(EstimatorQNN):
    """An EstimatorQNN whose forward pass sends ONE PUB for all observables.

    The stock forward sends one PUB per observable, each with the same parameter array: a
    shot-based backend then runs every circuit once per observable (n times the shots for n
    Z readouts that one measurement gives at once). Here the observables form a (K, 1) array
    broadcast against the (N, P) parameter array, so commuting observables share shots, as on
    hardware. Values are the stock ones (exact backends: identical; sampled: same distribution).
    """

    def _forward(self, input_data, weights):
        parameter_values, num_samples = self._preprocess_forward(input_data, weights)
        observables = [[obs] for obs in self._observables]
        job = self.estimator.run([(self._circuit, observables, parameter_values)], precision=self._default_precision)
        evs = np.asarray(job.result()[0].data.evs).reshape(len(observables), num_samples)
        return evs.T


def build_qnn(head: HeadCircuit, handle: BackendHandle) -> EstimatorQNN:
    """An EstimatorQNN for ``head`` on ``handle``'s backend.

    ``input_gradients=True``: TorchConnector needs it to pass gradients to the CNN below.
    """
    circuit, observables = head.circuit, list(head.observables)
    if handle.pass_manager is not None:
        circuit = handle.pass_manager.run(circuit)
        observables = [o.apply_layout(circuit.layout) for o in observables]
    return BroadcastEstimatorQNN(
        circuit=circuit,
        estimator=handle.estimator,
        gradient=handle.gradient,
        observables=observables,
        input_params=list(head.input_params),
        weight_params=list(head.weight_params),
        input_gradients=True,
        default_precision=handle.precision,
    )


def initial_weights(num_weights: int, seed: int) -> np.ndarray:
    """Seeded initial weights, uniform in [-π/4, π/4]: small enough to avoid starting on a
    barren plateau, large enough to break symmetry."""
    return np.random.default_rng(seed).uniform(-np.pi / 4, np.pi / 4, num_weights)


def build_quantum_layer(head: HeadCircuit, handle: BackendHandle, *, seed: int = 0) -> TorchConnector:
    """``TorchConnector(EstimatorQNN)``: maps (batch, n_inputs) angles to (batch, n_outputs) ⟨Z⟩."""
    qnn = build_qnn(head, handle)
    return TorchConnector(qnn, initial_weights=initial_weights(qnn.num_weights, seed))
