"""The quantum head: an ``EstimatorQNN`` wrapped in ``TorchConnector``, built for one backend.

The backend handle owns everything backend-specific (estimator, gradient, pass manager,
precision); this module only wires them together, so the same model code runs everywhere.
On a backend with a pass manager the circuit is transpiled to the target's ISA ONCE, here, and
the observables follow the layout with ``apply_layout``.

:class:`QuantumHead` is that layer as users (and :mod:`hybrid_qiskit.models`) put it in a model:
built from the head's settings and a backend name, movable to another backend with its weights.

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

from typing import Any

import numpy as np
import torch
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN
from torch import nn

from backends import BackendHandle
from hybrid_qiskit.circuits import HeadCircuit, build_head_circuit
from hybrid_qiskit.errors import HybridQiskitError


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

    @property
    def has_vjp(self) -> bool:
        """Whether the gradient computes vector-Jacobian products (:meth:`vjp`)."""
        return callable(getattr(self.gradient, "vjp", None))

    def vjp(self, input_data: np.ndarray, weights: np.ndarray, cotangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(input_grad, weight_grad)``: Σ_k cotangent[b, k] ∂output[b, k]/∂x (B, inputs) per row and
        Σ_b Σ_k cotangent[b, k] ∂output[b, k]/∂w (weights,), from one call of the gradient's
        ``vjp``: what a loss's backward pass needs of :meth:`backward`'s (B, K, ·) Jacobians."""
        values, _ = self._preprocess_forward(input_data, weights)  # the rows the forward pass sent
        g = self.gradient.vjp(self._circuit, self._observables, values, cotangent)
        return g[:, :self.num_inputs], g[:, self.num_inputs:].sum(axis=0)


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


class _HeadFunction(torch.autograd.Function):
    """The QNN as an autograd function whose backward pass asks its gradient for one
    vector-Jacobian product (``gradient.vjp``) instead of TorchConnector's K Jacobians: the loss
    needs only Σ_k g_k ∂⟨O_k⟩/∂θ per row. On an exact chain that is one weighted sweep instead of
    K readouts' (RealAmplitudes reps 6 at 16 qubits: ``experiments/bench_heads.py``). Values and
    gradients are TorchConnector's (tested); the forward pass is the QNN's own."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weights: torch.Tensor, qnn: BroadcastEstimatorQNN) -> torch.Tensor:
        ctx.qnn = qnn
        ctx.save_for_backward(inputs, weights)  # torch refuses the backward pass if either changed in place
        out = qnn.forward(inputs.detach().cpu().numpy(), weights.detach().cpu().numpy())
        return torch.as_tensor(out, dtype=torch.float).to(inputs.device)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        inputs, weights = ctx.saved_tensors
        # The same arrays as the forward pass: the estimator kept those rows' final states.
        input_grad, weight_grad = ctx.qnn.vjp(inputs.detach().cpu().numpy(), weights.detach().cpu().numpy(),
                                              grad_output.detach().cpu().double().numpy())
        input_grad = torch.as_tensor(input_grad, dtype=torch.float).to(inputs.device) if ctx.needs_input_grad[0] else None
        weight_grad = torch.as_tensor(weight_grad, dtype=torch.float).to(weights.device) if ctx.needs_input_grad[1] else None
        return input_grad, weight_grad, None


def _handle(backend: str | BackendHandle, settings: dict[str, Any], seed: int) -> tuple[BackendHandle, bool]:
    """The handle for ``backend`` and whether the head built it (then the head closes it)."""
    if isinstance(backend, BackendHandle):
        if settings:
            raise HybridQiskitError(f"backend settings ({', '.join(sorted(settings))}) go with a backend name; "
                                    f"a handle from create_backend already has its own")
        return backend, False
    if not isinstance(backend, str):
        raise HybridQiskitError(f"backend must be a registry name or a handle from create_backend, "
                                f"got {type(backend).__name__}")
    from backends import create_backend

    return create_backend(backend, **{"seed": seed, **settings}), True


class QuantumHead(TorchConnector):
    """A quantum layer for PyTorch: (batch, num_qubits) angles -> (batch, num_qubits) ⟨Z⟩.

    ``[feature map -> ansatz] x reuploads`` on ``num_qubits`` qubits, read out by Z on each qubit
    (:func:`~hybrid_qiskit.circuits.build_head_circuit`), as an ``EstimatorQNN`` in
    ``TorchConnector`` on a backend of the registry: the same layer the project's own models use,
    with the same fast exact simulators (a batched statevector, or an exact matrix-product state
    for chain heads from 10 qubits) and gradients, so it trains at the ``statevector`` backend's
    speed. Its trainable weights are one parameter (``weight``, also saved as ``_weights``, as
    ``TorchConnector`` does), so ``state_dict`` / ``load_state_dict`` save and restore it.

    Inputs are rotation angles: map unbounded features into (0, π) first, e.g.
    ``torch.pi * torch.sigmoid(z)``, as the project's models do (with angle encoding, ⟨Z⟩ of a
    lone qubit is cos x, which covers (-1, 1) exactly once on that range).

    Args:
        num_qubits: width; also the number of inputs and of outputs.
        feature_map: ``angle`` (one RY per qubit) or ``zz`` (Qiskit's ZZ feature map).
        ansatz: ``real_amplitudes`` or ``efficient_su2``.
        reps: ansatz repetitions per layer.
        reuploads: data re-uploading layers (1: plain encoding).
        entanglement: the ansatz's entangling pairs: ``reverse_linear`` (default), ``linear``,
            ``circular`` or ``full`` (Qiskit's names). All but ``full`` run as an exact
            matrix-product chain at width (``circular``'s closing gate is carried along it).
        backend: a registry name (``list_backends()``) or a handle from ``create_backend``.
        seed: seeds the initial weights (uniform in [-π/4, π/4]) and, with a backend name, the
            backend (simulator and transpiler), unless ``settings`` give it a ``seed`` of its own.
        **settings: the backend's settings (``device``, ``shots``, ...; see
            ``hybrid-qiskit backends``), with a backend name only.

    Raises:
        HybridQiskitError: an unknown backend, feature map or ansatz, a setting the backend
            does not take, settings given with a handle.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hybrid_qiskit import QuantumHead
        >>> head = QuantumHead(4, reps=1)                  # exact simulation ("statevector")
        >>> head(torch.zeros(2, 4)).shape                  # ⟨Z⟩ of each qubit, per row
        torch.Size([2, 4])
        >>> model = nn.Sequential(nn.Linear(16, 4), nn.Sigmoid(), QuantumHead(4), nn.Linear(4, 3))
        >>> model(torch.randn(5, 16)).shape
        torch.Size([5, 3])
        >>> saved = head.state_dict()                      # the weights, as for any layer
        >>> copy = QuantumHead(4, reps=1, seed=1)
        >>> copy.load_state_dict(saved)
        <All keys matched successfully>
        >>> torch.equal(copy.weight, head.weight)
        True
        >>> head.to_backend("aer_noisy", device="fake_fez", shots=1024) is head   # same weights
        True
        >>> head.backend.description["device"]
        'fake_fez'
    """

    def __init__(
        self,
        num_qubits: int,
        *,
        feature_map: str = "angle",
        ansatz: str = "real_amplitudes",
        reps: int = 2,
        reuploads: int = 1,
        entanglement: str = "reverse_linear",
        backend: str | BackendHandle = "statevector",
        seed: int = 0,
        **settings: Any,
    ):
        circuit = build_head_circuit(num_qubits, feature_map=feature_map, ansatz=ansatz, reps=reps,
                                     reuploads=reuploads, entanglement=entanglement)
        handle, owned = _handle(backend, settings, seed)
        try:
            qnn = build_qnn(circuit, handle)
        except BaseException:
            if owned:
                handle.close()
            raise
        super().__init__(qnn, initial_weights=initial_weights(qnn.num_weights, seed))
        self.num_qubits, self.feature_map, self.ansatz = num_qubits, feature_map, ansatz
        self.reps, self.reuploads, self.entanglement, self.seed = reps, reuploads, entanglement, seed
        self.circuit = circuit
        self._backend, self._owns_backend = handle, owned
        # ⟨Z⟩ re-standardization to another backend's statistics (calibrate); no saved state.
        self.restandardize: nn.Module = nn.Identity()

    @property
    def backend(self) -> BackendHandle:
        """The handle of the backend the head runs on (its ``description`` says what it is)."""
        return self._backend

    def forward(self, input_data: torch.Tensor | None = None) -> torch.Tensor:
        qnn = self._neural_network
        if (input_data is not None and input_data.ndim == 2 and not self._sparse
                and isinstance(qnn, BroadcastEstimatorQNN) and qnn.has_vjp):
            if input_data.shape[1] != qnn.num_inputs:
                return self.restandardize(super().forward(input_data))  # TorchConnector's error
            return self.restandardize(_HeadFunction.apply(input_data, self.weight, qnn))
        return self.restandardize(super().forward(input_data))

    def to_backend(self, backend: str | BackendHandle = "statevector", **settings: Any) -> QuantumHead:
        """Run the head on another backend from now on, with the weights it has; returns the
        head (like ``nn.Module.to``). The circuit is transpiled for the new target once, here.

        A calibration (:meth:`calibrate`) belongs to the old backend and is dropped. A backend
        the head built from a name is closed (its Session or Batch, if any); a handle passed in
        stays its caller's to close.

        Args:
            backend: a registry name or a handle from ``create_backend``.
            **settings: the backend's settings, with a name only; the seed defaults to the head's.
        """
        handle, owned = _handle(backend, settings, self.seed)
        try:
            qnn = build_qnn(self.circuit, handle)
        except BaseException:
            if owned:
                handle.close()
            raise
        old, old_owned = self._backend, self._owns_backend
        self._neural_network = qnn
        self._backend, self._owns_backend = handle, owned
        self.restandardize = nn.Identity()
        if old_owned:
            old.close()
        return self

    def calibrate(self, inputs: torch.Tensor | None, *, batch_size: int = 256) -> dict | None:
        """Re-standardize ⟨Z⟩ per qubit on this backend (post-measurement normalization at
        evaluation; :mod:`hybrid_qiskit.normalization` says why).

        The head runs ``inputs`` (a calibration set of head inputs, e.g. the angles of a few
        dozen training images) on its backend and on exact simulation, and from then on maps each
        output to ``(z - μ_backend) / σ_backend · σ_exact + μ_exact``, per qubit: the layers after
        it see ⟨Z⟩ distributed as on the exact simulator they were trained on, whatever per-qubit
        shrink and shift the backend's noise adds. ``calibrate(None)`` turns it off;
        :meth:`to_backend` drops it. Nothing of it is saved in ``state_dict``.

        Returns:
            The two sets of statistics (``{"reference_stats": ..., "backend_stats": ...}``), or
            None when turned off.
        """
        from backends import create_backend
        from hybrid_qiskit.normalization import Restandardize, Stats

        if inputs is None:
            self.restandardize = nn.Identity()
            return None
        inputs = torch.as_tensor(inputs).detach()
        weights = self.weight.detach().double().numpy()
        exact = build_qnn(self.circuit, create_backend("statevector", seed=self.seed))
        self.restandardize = nn.Identity()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                outputs.append(super().forward(inputs[start:start + batch_size]).double().numpy())
        reference = Stats.of(exact.forward(inputs.double().numpy(), weights))
        source = Stats.of(np.concatenate(outputs))
        self.restandardize = Restandardize(reference, source)
        return {"samples": len(inputs), "reference_stats": reference.to_dict(), "backend_stats": source.to_dict()}

    def close(self) -> None:
        """Close the backend if the head built it (its Session or Batch, if any); safe twice."""
        if self._owns_backend:
            self._backend.close()

    def extra_repr(self) -> str:
        return (f"{self.num_qubits}, feature_map={self.feature_map!r}, ansatz={self.ansatz!r}, reps={self.reps}, "
                f"reuploads={self.reuploads}, entanglement={self.entanglement!r}, backend={self._backend.name!r}")
