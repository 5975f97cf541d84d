"""Fast primitives for the quantum head: an exact batched V2 estimator and its adjoint gradient.

They plug into qiskit-machine-learning's ``EstimatorQNN(estimator=..., gradient=...)`` unchanged;
the stock path (``StatevectorEstimator`` + ``ParamShiftEstimatorGradient``) stays available as
the ``statevector_reference`` backend for comparison.

Two exact simulators sit underneath: a batched statevector (:mod:`.simulate`, :mod:`.kernels`,
with the adjoint sweep of :mod:`.adjoint_sweep`), and an uncompressed matrix-product state
(:mod:`.mps`, :mod:`.mps_sweeps`) wherever that costs less (:mod:`.chain_cost`).
"""

from .adjoint_gradient import AdjointEstimatorGradient
from .estimator import BatchedStatevectorEstimator
from .param_shift import BatchedParamShiftEstimatorGradient

__all__ = [
    "AdjointEstimatorGradient",
    "BatchedParamShiftEstimatorGradient",
    "BatchedStatevectorEstimator",
]
