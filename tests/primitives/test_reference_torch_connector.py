"""qiskit-machine-learning's TorchConnector tests on EstimatorQNN, with our primitives substituted.

Adapted from qiskit-machine-learning's ``test/connectors/test_torch_connector.py``
(``test_estimator_qnn`` and its forward/backward/autograd checks; Apache-2.0, (C) IBM 2021,
2024). The estimator is ours, seeded; EstimatorQNN keeps its default precision (1/64), so the
forward pass is noisy and the checks hold only because every PUB draws the same seeded noise
(as with Qiskit's StatevectorEstimator): the noise cancels in the finite differences. The
gradient is qiskit-machine-learning's default parameter shift, or one of ours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit.library import real_amplitudes, z_feature_map
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning import QiskitMachineLearningError
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.connectors.torch_connector import _TorchNNFunction
from qiskit_machine_learning.neural_networks import EstimatorQNN

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
    BatchedStatevectorEstimator,
)

OBSERVABLES = [
    pytest.param(1, None, id="1-default"),
    pytest.param(1, SparsePauliOp.from_list([("Z", 1)]), id="1-Z"),
    pytest.param(2, None, id="2-default"),
    pytest.param(2, SparsePauliOp.from_list([("ZZ", 1)]), id="2-ZZ"),
    pytest.param(2, [SparsePauliOp.from_list([("ZI", 1)]), SparsePauliOp.from_list([("IZ", 1)])], id="2-ZI,IZ"),
]
GRADIENTS = [
    pytest.param(None, id="qml-param-shift"),
    pytest.param(AdjointEstimatorGradient, id="adjoint"),
    pytest.param(BatchedParamShiftEstimatorGradient, id="batched-param-shift"),
]


def _model(num_qubits, observables, gradient_cls) -> TorchConnector:
    fmap, ansatz = z_feature_map(num_qubits, reps=1), real_amplitudes(num_qubits, reps=1)
    qc = QuantumCircuit(num_qubits)
    qc.compose(fmap, inplace=True)
    qc.compose(ansatz, inplace=True)
    estimator = BatchedStatevectorEstimator(seed=12345)
    qnn = EstimatorQNN(
        circuit=qc,
        estimator=estimator,
        gradient=None if gradient_cls is None else gradient_cls(estimator),
        observables=observables,
        input_params=fmap.parameters,
        weight_params=ansatz.parameters,
        input_gradients=True,
    )
    assert qnn.default_precision > 0  # the noisy forward pass this test is about
    return TorchConnector(qnn)


def _fin_diff_weight_gradient(model: TorchConnector, inputs: torch.Tensor) -> np.ndarray:
    qnn, weights, eps = model.neural_network, model.weight.detach().numpy(), 1e-4
    grad = np.zeros((len(inputs), *qnn.output_shape, qnn.num_weights))
    for k in range(qnn.num_weights):
        delta = np.zeros_like(weights)
        delta[k] = eps
        grad[:, :, k] = (qnn.forward(inputs, weights + delta) - qnn.forward(inputs, weights - delta)) / (2 * eps)
    return grad


@pytest.mark.parametrize("gradient_cls", GRADIENTS)
@pytest.mark.parametrize("num_qubits,observables", OBSERVABLES)
def test_estimator_qnn(num_qubits, observables, gradient_cls):
    torch.manual_seed(12345)
    model = _model(num_qubits, observables, gradient_cls)
    qnn = model.neural_network
    for batch_size in (1, 2):  # forward: the connector gives the QNN's values
        inputs = torch.rand((batch_size, qnn.num_inputs))
        np.testing.assert_almost_equal(
            model(inputs).detach().numpy(), qnn.forward(inputs.numpy(), model.weight.detach().numpy())
        )
    with pytest.raises(QiskitMachineLearningError):
        model(torch.rand((1, qnn.num_inputs + 1)))
    for batch_size in (1, 2):  # backward: against finite differences and the QNN's own
        inputs = torch.rand((batch_size, qnn.num_inputs))
        model.zero_grad()
        torch.sum(model(inputs)).backward()
        _, qnn_backward = qnn.backward(inputs.numpy(), model.weight.detach().numpy())
        np.testing.assert_almost_equal(_fin_diff_weight_gradient(model, inputs.numpy()), qnn_backward, decimal=4)
        np.testing.assert_almost_equal(model.weight.grad.numpy(), np.sum(qnn_backward, axis=(0, 1)))
    args = (
        torch.randn(qnn.num_inputs, dtype=torch.double, requires_grad=True),
        torch.randn(qnn.num_weights, dtype=torch.double, requires_grad=True),
        qnn,
        False,
    )
    assert torch.autograd.gradcheck(_TorchNNFunction.apply, args, eps=1e-4, atol=1e-3)
