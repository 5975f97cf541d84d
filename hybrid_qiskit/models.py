"""Models: the hybrid LeNet, its classical baseline, and a quantum-only classifier.

Every model has the same three stages, so that the quantum stage can be run elsewhere (a QPU job)
and the rest finished locally:

    encode(images) -> angles (B, n)   classical: CNN features -> Linear -> x = π·sigmoid(z)
    quantum(angles) -> ⟨Z⟩ (B, n)     TorchConnector(EstimatorQNN) on the chosen backend
    decode(⟨Z⟩) -> logits (B, C)      [post-measurement normalization] -> Linear; trained with
                                      cross-entropy on the logits

``classical`` replaces the quantum stage by ``tanh(Linear)`` of the same width, and sizes it so
that its trainable parameters match the hybrid model's (the fair baseline: same CNN, same
bottleneck, same training budget).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from hybrid_qiskit.errors import CheckpointError, HybridQiskitError

MODEL_KINDS = ("hybrid", "classical", "quantum", "pixel_classical")
# The kinds with a quantum stage. Everything that must know (backends, sweeps, submissions, the
# CLI) asks :func:`is_quantum`: the model kinds are defined here and nowhere else.
QUANTUM_KINDS = ("hybrid", "quantum")


def is_quantum(kind: str) -> bool:
    """Whether models of ``kind`` have a quantum stage (a head to run on a backend).

    The classical ones (``classical``, ``pixel_classical``) are the baselines of the quantum
    ones (``hybrid``, ``quantum``): same data, same budget, ``tanh(Linear)`` for the head.

    Raises:
        HybridQiskitError: for an unknown kind.
    """
    if kind not in MODEL_KINDS:
        raise HybridQiskitError(f"unknown model {kind!r}; known: {', '.join(MODEL_KINDS)}")
    return kind in QUANTUM_KINDS


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (saved inside every checkpoint)."""

    kind: str = "hybrid"  # hybrid | classical | quantum | pixel_classical
    num_qubits: int = 8  # head width: inputs = outputs = qubits
    feature_map: str = "angle"  # angle | zz
    ansatz: str = "real_amplitudes"  # real_amplitudes | efficient_su2
    reps: int = 2  # ansatz repetitions per layer
    reuploads: int = 1  # data re-uploading layers
    # The ansatz's (and ZZ map's) entangling pairs; checkpoints from before the field load as
    # reverse_linear, the head they were trained with.
    entanglement: str = "reverse_linear"
    in_channels: int = 1  # 1: digits/MNIST-like, 3: CIFAR-10
    image_size: int = 28  # 28 (digits upsampled, MNIST) or 32 (CIFAR-10)
    num_classes: int = 10
    dropout: float = 0.0  # before each fully connected layer after the convolutions (training only)
    cnn_width: int = 1  # LeNet's channels and fully connected widths times this (checkpoints before it: 1)
    batch_norm: bool = False  # batch normalization after each convolution (checkpoints before it: none)
    # Post-measurement normalization (QuantumNAT): per-qubit standardization of ⟨Z⟩ before the
    # readout, so that a backend's per-qubit shrink and shift can be undone (normalization.py).
    normalize: bool = False

    def __post_init__(self):
        is_quantum(self.kind)  # refuses an unknown kind

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise CheckpointError(f"checkpoint model config has unknown field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


class LeNetFeatures(nn.Module):
    """LeNet-5's feature extractor: conv 6, pool, conv 16, pool, fc 120, fc 84; every width times
    ``width`` (1: LeNet-5 itself). ``batch_norm`` puts a BatchNorm2d between each convolution and
    its ReLU (the layers of a model without it keep their checkpoint keys)."""

    def __init__(self, in_channels: int, image_size: int, dropout: float = 0.0, width: int = 1,
                 batch_norm: bool = False):
        super().__init__()
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width

        def block(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout)] if batch_norm else []
            return [nn.Conv2d(cin, cout, 5), *norm, nn.ReLU(), nn.MaxPool2d(2)]

        self.conv = nn.Sequential(*block(in_channels, c1), *block(c1, c2), nn.Flatten())
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise HybridQiskitError(f"LeNet needs images of at least 16x16 pixels, got {image_size}")
        self.fc = nn.Sequential(nn.Linear(c2 * side * side, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU())
        self.out_features = f2
        # Applied in forward, not inserted into fc: fc's indices (the checkpoint keys) stay put.
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.conv(x))
        x = self.drop(self.fc[1](self.fc[0](x)))
        return self.fc[3](self.fc[2](x))


def to_angles(z: torch.Tensor) -> torch.Tensor:
    """The bounded map from features to rotation angles: x = π·sigmoid(z) ∈ (0, π)."""
    return math.pi * torch.sigmoid(z)


class StagedClassifier(nn.Module):
    """encode -> quantum -> decode (see the module docstring).

    ``decode`` runs ``adapt`` (re-standardization to another backend's statistics, installed at
    evaluation by :func:`hybrid_qiskit.adaptation.adapt_to_backend`; never saved), then ``norm``
    (the trained post-measurement normalization, when the config asks for it), then the readout.
    Both are ``nn.Identity`` otherwise: a model without them has the same state dict as before.
    """

    config: ModelConfig
    norm: nn.Module
    adapt: nn.Module

    def _init_post_measurement(self, width: int) -> None:
        from hybrid_qiskit.normalization import QubitNorm

        c = self.config
        self.norm = QubitNorm(width) if c.normalize else nn.Identity()
        self.adapt = nn.Identity()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def quantum(self, angles: torch.Tensor) -> torch.Tensor:
        return self.head(angles)

    def decode(self, expvals: torch.Tensor) -> torch.Tensor:
        return self.readout(self.norm(self.adapt(expvals)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quantum(self.encode(images)))


class HybridLeNet(StagedClassifier):
    """LeNet-5 features -> Linear to n qubits -> angles -> quantum head -> Linear to logits."""

    def __init__(self, config: ModelConfig, quantum_layer: nn.Module):
        super().__init__()
        self.config = config
        self.features = LeNetFeatures(config.in_channels, config.image_size, config.dropout, config.cnn_width,
                                      config.batch_norm)
        self.to_qubits = nn.Linear(self.features.out_features, config.num_qubits)
        self.head = quantum_layer
        self._init_post_measurement(config.num_qubits)
        self.readout = nn.Linear(config.num_qubits, config.num_classes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return to_angles(self.to_qubits(self.features(images)))


class ClassicalLeNet(StagedClassifier):
    """The baseline: the hybrid model with its quantum layer replaced by ``tanh(Linear(n, n))``,
    its bottleneck widened just enough to match the hybrid model's parameter count."""

    def __init__(self, config: ModelConfig, width: int):
        super().__init__()
        self.config = config
        self.features = LeNetFeatures(config.in_channels, config.image_size, config.dropout, config.cnn_width,
                                      config.batch_norm)
        self.to_qubits = nn.Linear(self.features.out_features, width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.Tanh())  # bounded, like ⟨Z⟩
        self._init_post_measurement(width)  # the same layer as its hybrid model: the comparison stays matched
        self.readout = nn.Linear(width, config.num_classes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return to_angles(self.to_qubits(self.features(images)))


class QuantumOnly(StagedClassifier):
    """A pure QNN classifier: the image average-pooled to n pixels, one angle per qubit,
    the quantum head, and a linear readout of ⟨Z⟩ (no CNN).

    With ``quantum_layer=None`` it is its classical baseline (``pixel_classical``): the same
    pooled pixels through ``tanh(Linear(n, n))`` instead of the QNN."""

    def __init__(self, config: ModelConfig, quantum_layer: nn.Module | None):
        super().__init__()
        self.config = config
        side = math.isqrt(config.num_qubits)
        if side * side != config.num_qubits:
            raise HybridQiskitError("the quantum-only model pools images to a square: use 1, 4, 9 or 16 qubits")
        self.pool = nn.AdaptiveAvgPool2d(side)
        n = config.num_qubits
        self.head = quantum_layer if quantum_layer is not None else nn.Sequential(nn.Linear(n, n), nn.Tanh())
        self._init_post_measurement(n)
        self.readout = nn.Linear(n, config.num_classes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return to_angles(self.pool(images.mean(dim=1, keepdim=True)).flatten(1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def quantum_weight_count(config: ModelConfig) -> int:
    from hybrid_qiskit.circuits import ansatz_num_parameters

    return ansatz_num_parameters(config.ansatz, config.num_qubits, config.reps) * config.reuploads


def matched_width(config: ModelConfig) -> int:
    """Bottleneck width m of the classical baseline whose parameter count is closest to the
    hybrid model's: with F = 84·cnn_width CNN features, the hybrid head has (F+1)n + P + (n+1)C
    parameters after the CNN, the classical one (F+1)m + (m² + m) + (m+1)C. Narrower than n when
    P is small, wider when the head has many weights (m = n costs (F+1)n + n² + n + (n+1)C)."""
    n, c, p = config.num_qubits, config.num_classes, quantum_weight_count(config)
    f = 84 * config.cnn_width
    target = (f + 1) * n + p + (n + 1) * c

    def cost(m: int) -> int:
        return abs((f + 1) * m + m * m + m + (m + 1) * c - target)

    # The classical count grows faster than (F+2)m, so no width past target/(F+2) + 1 can be closer.
    return min(range(1, max(n, target // (f + 2) + 1) + 1), key=cost)


def build_model(config: ModelConfig, backend=None, *, seed: int = 0) -> StagedClassifier:
    """Build the model ``config.kind``; quantum models need a backend handle.

    The seed fixes the classical initialisation (torch) and the quantum weights (numpy).
    """
    torch.manual_seed(seed)
    if config.kind == "classical":
        return ClassicalLeNet(config, matched_width(config))
    if not is_quantum(config.kind):  # pixel_classical: the quantum-only model's baseline
        return QuantumOnly(config, None)
    if backend is None:
        raise ValueError(f"model {config.kind!r} needs a backend handle")
    from hybrid_qiskit.qnn import QuantumHead

    # A TorchConnector underneath: the state dict keys (head.weight, head._weights) are the ones
    # every checkpoint already has.
    layer = QuantumHead(
        config.num_qubits,
        feature_map=config.feature_map,
        ansatz=config.ansatz,
        reps=config.reps,
        reuploads=config.reuploads,
        entanglement=config.entanglement,
        backend=backend,
        seed=seed,
    )
    if config.kind == "hybrid":
        return HybridLeNet(config, layer)
    return QuantumOnly(config, layer)
