"""qiskit-machine-learning's TorchConnector tests on EstimatorQNN, with our primitives substituted.

Adapted from qiskit-machine-learning's ``test/connectors/test_torch_connector.py`` (Apache-2.0,
(C) IBM 2021, 2025; the file of the 0.9 branch, unchanged since but for its copyright lines;
0.9.1 is installed). ``test_estimator_qnn`` and its helpers ``_validate_forward``,
``_validate_backward``, ``_evaluate_fin_diff_gradient`` and ``_validate_backward_automatically``
keep upstream's seeds (torch 12345, estimator 123), estimator precision (0.01), EstimatorQNN's
own default precision (1/64) for the forward pass, assertions and tolerances. Upstream's
``QMLEstimator(default_precision=0.01, seed=123)`` is our
``BatchedStatevectorEstimator(default_precision=0.01, seed=123)``: both add seeded Gaussian
noise, drawn afresh for every PUB. Upstream's gradient is EstimatorQNN's default (qml's
``ParamShiftEstimatorGradient`` on the estimator); each case runs with it and with each of ours.
The finite-difference checks hold only because the noise cancels: in the forward differences
(same PUBs, same draws) and in the parameter-shift differences (the stock gradient sends one PUB
per shift; ours sends the + and the − shifts as two PUBs of one shape).

22 upstream tests (ddt counts each case: 16 ``test_sampler_qnn``, 5 ``test_estimator_qnn``, 1
``test_get_einsum_signature``), 5 adapted here (each run with 3 gradients: 15 test items), 17
deviations, all tests left out because nothing of ours is in them:

* the 16 ``test_sampler_qnn`` cases (2 widths x sparse connector x sparse QNN x interpret):
  SamplerQNN on qml's ``QMLSampler``; we have no sampler;
* ``test_get_einsum_signature``: qml's private ``_get_einsum_signature`` and a convolutional
  layer on SamplerQNN.
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
from qiskit_machine_learning.utils import algorithm_globals

from hybrid_qiskit.primitives import (
    AdjointEstimatorGradient,
    BatchedParamShiftEstimatorGradient,
)
from hybrid_qiskit.primitives import BatchedStatevectorEstimator as Estimator

GRADIENTS = [
    pytest.param(None, id="qml-default-param-shift"),
    pytest.param(AdjointEstimatorGradient, id="adjoint"),
    pytest.param(BatchedParamShiftEstimatorGradient, id="batched-param-shift"),
]
_device = None  # upstream's TestTorch._device


@pytest.fixture(autouse=True)
def setup_test():
    """Upstream's ``setup_test`` (TestTorchConnector's, then TestTorch's)."""
    algorithm_globals.random_seed = 123
    algorithm_globals.random_seed = 12345
    torch.manual_seed(algorithm_globals.random_seed)


def _validate_backward_automatically(model: TorchConnector) -> None:
    func = _TorchNNFunction.apply  # (input, weights, qnn)
    input_data = (
        torch.randn(model.neural_network.num_inputs, dtype=torch.double, requires_grad=True, device=_device),
        torch.randn(model.neural_network.num_weights, dtype=torch.double, requires_grad=True, device=_device),
        model.neural_network,
        False,
    )
    test = torch.autograd.gradcheck(func, input_data, eps=1e-4, atol=1e-3)  # type: ignore
    assert test


def _validate_forward(model: TorchConnector):
    for batch_size in [1, 2]:
        input_data = torch.rand((batch_size, model.neural_network.num_inputs))
        connector_output = model(input_data).detach()
        qnn_output = model.neural_network.forward(input_data.detach().numpy(), model.weight.detach().numpy())
        assert connector_output.is_sparse == model.sparse
        if model.sparse:
            connector_output = connector_output.to_dense()
        if model.neural_network.sparse:
            import sparse

            assert isinstance(qnn_output, sparse.SparseArray)
            qnn_output = qnn_output.todense()
        np.testing.assert_almost_equal(connector_output.numpy(), qnn_output)
    # test with a wrong input size
    wrong_input = torch.rand((1, model.neural_network.num_inputs + 1))
    with pytest.raises(QiskitMachineLearningError):
        model(wrong_input)


def _validate_backward(model: TorchConnector):
    for batch_size in [1, 2]:
        input_data = torch.rand((batch_size, model.neural_network.num_inputs))
        model.zero_grad()
        connector_fwd_out = model(input_data)
        if model.sparse:
            connector_fwd_out = connector_fwd_out.to_dense()
        # we need a scalar function to trigger gradients
        torch.sum(connector_fwd_out).backward()
        connector_backward = model.weight.grad
        assert connector_backward.is_sparse == model.sparse
        if model.sparse:
            assert connector_backward.is_sparse
            connector_backward = connector_backward.to_dense()
        _, qnn_backward = model.neural_network.backward(input_data.detach().numpy(), model.weight.detach().numpy())
        if model.neural_network.sparse:
            import sparse

            assert isinstance(qnn_backward, sparse.SparseArray)
            qnn_backward = qnn_backward.todense()
        fin_diff_grad = _evaluate_fin_diff_gradient(model, input_data)
        np.testing.assert_almost_equal(fin_diff_grad, qnn_backward, decimal=4)
        # sum up across batch size and across all parameters
        qnn_backward = np.sum(qnn_backward, axis=(0, 1))
        np.testing.assert_almost_equal(connector_backward.numpy(), qnn_backward)


def _evaluate_fin_diff_gradient(model: TorchConnector, input_data):
    qnn = model.neural_network
    weights = model.weight.detach().numpy()
    eps = 1e-4
    grad = np.zeros((len(input_data), *qnn.output_shape, qnn.num_weights))
    for k in range(qnn.num_weights):
        delta = np.zeros_like(weights)
        delta[k] += eps
        f_1 = qnn.forward(input_data, weights + delta)
        f_2 = qnn.forward(input_data, weights - delta)
        if qnn.sparse:
            f_1 = f_1.todense()
            f_2 = f_2.todense()
        grad[:, :, k] = (f_1 - f_2) / (2 * eps)
    return grad


# upstream's _evaluate_fin_diff_gradient hands torch tensors to qnn.forward (np.array(tensor))
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("gradient_cls", GRADIENTS)
@pytest.mark.parametrize(
    "num_qubits,observables",
    [
        pytest.param(1, None, id="1-None"),
        pytest.param(1, SparsePauliOp.from_list([("Z", 1)]), id="1-Z"),
        pytest.param(2, None, id="2-None"),
        pytest.param(2, SparsePauliOp.from_list([("ZZ", 1)]), id="2-ZZ"),
        pytest.param(2, [SparsePauliOp.from_list([("ZI", 1)]), SparsePauliOp.from_list([("IZ", 1)])], id="2-ZI,IZ"),
    ],
)
def test_estimator_qnn(num_qubits, observables, gradient_cls):
    """Test TorchConnector on EstimatorQNN."""
    fmap = z_feature_map(num_qubits, reps=1)
    ansatz = real_amplitudes(num_qubits, reps=1)
    qc = QuantumCircuit(num_qubits)
    qc.compose(fmap, inplace=True)
    qc.compose(ansatz, inplace=True)
    estimator = Estimator(default_precision=0.01, seed=123)
    qnn = EstimatorQNN(
        estimator=estimator,
        gradient=None if gradient_cls is None else gradient_cls(estimator),
        circuit=qc,
        observables=observables,
        input_params=fmap.parameters,
        weight_params=ansatz.parameters,
        input_gradients=True,
    )
    model = TorchConnector(qnn)
    _validate_forward(model)
    _validate_backward(model)
    _validate_backward_automatically(model)
