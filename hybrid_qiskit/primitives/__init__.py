"""Fast primitives for the quantum head: an exact batched V2 estimator and its adjoint gradient.

They plug into qiskit-machine-learning's ``EstimatorQNN(estimator=..., gradient=...)`` unchanged;
the stock path (``StatevectorEstimator`` + ``ParamShiftEstimatorGradient``) stays available as
the ``statevector_reference`` backend for comparison.
"""

from .adjoint_gradient import AdjointEstimatorGradient
from .estimator import BatchedStatevectorEstimator
from .param_shift import BatchedParamShiftEstimatorGradient

__all__ = [
    "AdjointEstimatorGradient",
    "BatchedParamShiftEstimatorGradient",
    "BatchedStatevectorEstimator",
]
