"""Post-measurement normalization of the head's ⟨Z⟩ (QuantumNAT: Wang et al., DAC 2022).

Why: a noisy backend changes ⟨Z_q⟩ per qubit. Gate noise shrinks it (roughly a per-qubit scale),
readout error scales and shifts it, ⟨Z⟩ -> (1 - p01 - p10)·⟨Z⟩ + (p10 - p01), relaxation pulls it
towards +1, and finite shots add variance. The readout Linear absorbs a uniform scale only: a
per-qubit scale or shift moves the logits. Standardizing each qubit's ⟨Z⟩ with statistics
measured on the backend that produced it undoes any per-qubit scale and shift, whatever caused it
(it cannot undo shot noise, nor signal the noise has erased).

The layers and the statistics they use, the model's side (this module imports nothing above it):

* :class:`QubitNorm`, a layer of the model (``normalize = true``): like a batch norm without
  affine weights (the readout Linear is the affine map), per qubit; training uses each batch's
  mean and variance and keeps running averages, evaluation uses the running averages.
  (QuantumNAT's post-measurement quantization was measured too and did not help: README.)
* :class:`Stats` (per-qubit mean and σ of ⟨Z⟩), :func:`restandardize` and the
  :class:`Restandardize` layer: ⟨Z⟩ -> ``(z - μ_backend) / σ_backend · σ_ref + μ_ref``, which
  evaluation on another backend puts before the model's own normalization.

Measuring those statistics on a backend, and re-fitting the readout there, restore and run whole
models: that is :mod:`hybrid_qiskit.adaptation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hybrid_qiskit.errors import HybridQiskitError

EPS = 1e-5  # the layer's: added to variances, as BatchNorm does (a constant qubit: no division by zero)
# Re-estimated statistics guard against zero only: 1e-5 would be 10% of the variance of a qubit
# whose ⟨Z⟩ noise has shrunk to a spread of 0.01, and restandardization would miss it by 5%.
STATS_EPS = 1e-12


@dataclass(frozen=True)
class Stats:
    """Per-qubit mean and standard deviation of ⟨Z⟩ (float64 arrays of the head's width)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, z) -> Stats:
        """The statistics of ``z`` (rows = images, columns = qubits); σ includes :data:`STATS_EPS`."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or len(z) < 2:
            raise HybridQiskitError(f"per-qubit statistics need at least 2 images, got {len(z) if z.ndim else 0}")
        return cls(z.mean(0), np.sqrt(z.var(0) + STATS_EPS))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Stats:
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["std"], dtype=np.float64))


def restandardize(z, source: Stats, reference: Stats):
    """``(z - μ_source) / σ_source · σ_ref + μ_ref``, per qubit (numpy arrays)."""
    return (np.asarray(z, dtype=np.float64) - source.mean) / source.std * reference.std + reference.mean


class QubitNorm(nn.Module):
    """Per-qubit standardization of ⟨Z⟩: a batch norm without affine weights (the readout after
    it is the affine map). Training normalizes with each batch's statistics and updates running
    averages (momentum 0.1, unbiased variance, as ``nn.BatchNorm1d``); evaluation uses them. A
    training batch of one image uses the running averages (BatchNorm would raise).

    Args:
        width: qubits (columns of ⟨Z⟩).
    """

    def __init__(self, width: int, *, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training and len(z) > 1:
            mean, var = z.mean(0), z.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * len(z) / (len(z) - 1), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        return (z - mean) / torch.sqrt(var + EPS)

    def statistics(self) -> Stats:
        """The trained statistics, as :func:`hybrid_qiskit.adaptation.adapt_to_backend` needs them."""
        return Stats(self.running_mean.double().numpy().copy(),
                     torch.sqrt(self.running_var.double() + EPS).numpy().copy())

    def extra_repr(self) -> str:
        return f"{len(self.running_mean)}, momentum={self.momentum}"


class Restandardize(nn.Module):
    """Evaluation only: ⟨Z⟩ -> ``(z - μ_src) / σ_src · σ_ref + μ_ref``, with ``source`` fixed
    (calibration) or, when None, each batch's own statistics. Its buffers are not saved."""

    def __init__(self, reference: Stats, source: Stats | None):
        super().__init__()
        self.batch = source is None
        for name, value in (("ref_mean", reference.mean), ("ref_std", reference.std),
                            ("src_mean", None if source is None else source.mean),
                            ("src_std", None if source is None else source.std)):
            self.register_buffer(name, None if value is None else torch.as_tensor(value, dtype=torch.float32),
                                 persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.batch:
            if len(z) < 2:
                raise HybridQiskitError("batch statistics need at least 2 images per batch; use the calibration "
                                        "set (--normalize-stats calibration) or a larger batch")
            mean, std = z.mean(0), torch.sqrt(z.var(0, unbiased=False) + STATS_EPS)
        else:
            mean, std = self.src_mean.to(z.dtype), self.src_std.to(z.dtype)
        return (z - mean) / std * self.ref_std.to(z.dtype) + self.ref_mean.to(z.dtype)
