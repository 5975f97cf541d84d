"""Adapting a trained model to the backend it is evaluated on: its per-qubit ⟨Z⟩ statistics
re-estimated there, and its readout re-fitted (why: :mod:`hybrid_qiskit.normalization`, which
also holds the layers installed here).

* :func:`adapt_to_backend`, at evaluation on another backend: maps ⟨Z⟩ to
  ``(z - μ_backend) / σ_backend · σ_ref + μ_ref`` before the model's own normalization. For a
  model with the layer, ``ref`` is the layer's trained statistics, so this is the layer with its
  statistics replaced by the backend's. For a model without it, ``ref`` is the statistics of the
  same calibration images on exact simulation: the trained readout sees the distribution it was
  trained on. ``μ_backend, σ_backend`` come from a calibration set (default; see
  :data:`STATS_SOURCES`) or from each evaluated batch (QuantumNAT's choice).
* :func:`refit_readout` (mitigation ``refit``, ``--refit-readout``): after re-standardization,
  the readout Linear is re-fitted to the calibration images' ⟨Z⟩ on the backend and their labels,
  pulled towards the trained readout. Re-standardization gives every qubit the same spread, the
  noisy ones too; the re-fit learns how much each still tells apart.

Example:
    >>> images, _ = calibration_set(splits.train, 64, seed=0)          # doctest: +SKIP
    >>> ref = reference_statistics(model, payload, images, seed=0)      # doctest: +SKIP
    >>> adapt_to_backend(model, "calibration", ref, images)             # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.normalization import QubitNorm, Restandardize, Stats

# Where the backend's statistics come from. ``calibration`` is the default: the result then
# depends neither on the evaluation batch size nor on which images share a batch, and it works
# for one image (a hardware job of a single sample). ``batch`` needs no extra circuits.
# ``off``: none (a model with the layer keeps its trained statistics).
STATS_SOURCES = ("off", "calibration", "batch")
CALIBRATION_SAMPLES = 64  # training images; 64 put each qubit's mean within ~σ/8 of the split's


def calibration_set(train, samples: int = CALIBRATION_SAMPLES, *, seed: int = 0):
    """``samples`` images drawn from the training split (a ``TensorDataset``) with ``seed``,
    and their indices in it: never test images, and the same ones every time."""
    if samples < 2:
        raise HybridQiskitError(f"the calibration set needs at least 2 images, got {samples}")
    images = train.tensors[0]
    if samples > len(images):  # not clipped in silence: the result would name a set it did not use
        raise HybridQiskitError(f"--calibration-samples {samples} is more than the {len(images)} images of "
                                f"the training split it is drawn from; pass at most {len(images)}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:samples]
    return images[order], order.tolist()


def head_outputs(model, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """⟨Z⟩ of ``images`` on the model's own backend, (N, n) float64."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model.quantum(model.encode(images[start:start + batch_size])).double().numpy())
    return np.concatenate(out)


def reference_statistics(model, payload: dict, images: torch.Tensor, *, seed: int = 0) -> tuple[Stats, str]:
    """The statistics ⟨Z⟩ is mapped back to, and what they are: the layer's trained ones, or
    (a model without the layer) those of ``images`` on exact simulation of the same checkpoint."""
    if isinstance(getattr(model, "norm", None), QubitNorm):
        return model.norm.statistics(), "trained"
    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model

    exact = restore_model(payload, create_backend("statevector", seed=seed))
    return Stats.of(head_outputs(exact, images)), "exact simulation of the calibration set"


def adapt_to_backend(model, stats: str, reference: tuple[Stats, str], images: torch.Tensor | None = None,
                     *, batch_size: int = 256, outputs: np.ndarray | None = None) -> dict:
    """Make ``model`` re-standardize ⟨Z⟩ from its backend's statistics (see the module docstring).

    Args:
        stats: ``calibration`` (measure ``images`` on the model's backend now) or ``batch``.
        reference: from :func:`reference_statistics`.
        images: the calibration set (``calibration`` only).
        outputs: the calibration set's ⟨Z⟩ on this backend when already measured.

    Returns:
        What was done, for result files: source, samples, reference and the statistics.
    """
    ref, ref_kind = reference
    if stats == "calibration":
        if images is None:
            raise ValueError("calibration statistics need the calibration images")
        source = Stats.of(head_outputs(model, images, batch_size) if outputs is None else outputs)
    elif stats == "batch":
        source = None
    else:
        raise HybridQiskitError(f"unknown normalization statistics {stats!r}; known: calibration, batch")
    model.adapt = Restandardize(ref, source)
    out = {"stats": stats, "reference": ref_kind, "reference_stats": ref.to_dict()}
    if source is not None:
        out.update(calibration_samples=len(images), backend_stats=source.to_dict())
    return out


# ------------------------------------------------------------------ readout re-fit
# The pull of the re-fitted readout towards the trained one: this times the mean squared change
# of the calibration images' logits is added to their mean cross-entropy. A change of logits, not
# of weights, so that the pull does not depend on the scale of ⟨Z⟩. Chosen on the default model's
# ⟨Z⟩ on Aer (seed 0, fake_fez, 1024 shots, 64 and 256 calibration images, 5 draws each): at 0x
# every value from 0.01 to 0.3 kept 0.975; at 32x 0.3 and 0.1 held the readout too close to gain
# (0.75, 0.79 against 0.83-0.86 at 0.01). Without a pull the readout overfits 64 images (a plain
# logistic regression: 0.970 at 0x).
REFIT_ANCHOR = 1e-2


def refit_readout(model, z: np.ndarray, labels, *, anchor: float = REFIT_ANCHOR) -> dict:
    """Re-fit ``model.readout`` (the Linear from ⟨Z⟩ to logits) to the calibration images' ⟨Z⟩ ``z``
    on the model's backend and their ``labels``; the model keeps the re-fitted layer (evaluation
    only: the checkpoint is not touched).

    Why: normalization undoes a per-qubit scale and shift, but noise also shrinks some qubits
    more than others, so the readout weighs noisy qubits as much as clean ones. A re-fit weighs
    each by what it still tells apart. It starts from the trained readout and is pulled towards
    its logits (``anchor``), so a few dozen images do not overfit it, and where noise changed
    nothing it stays where it was. Full-batch L-BFGS on the cross-entropy, in float64 (milliseconds).

    Returns:
        What was done, for result files: images, anchor, and the calibration images' accuracy
        before and after.
    """
    readout = model.readout
    if not isinstance(readout, nn.Linear):
        raise HybridQiskitError(f"the readout re-fit needs a Linear readout, this model has {type(readout).__name__}")
    labels = np.asarray(labels, dtype=np.int64)
    model.eval()
    with torch.no_grad():  # what the readout sees: ⟨Z⟩ after re-standardization and the layer
        features = model.norm(model.adapt(torch.as_tensor(z, dtype=readout.weight.dtype))).double().numpy()
    w0 = readout.weight.detach().double().numpy()
    b0 = readout.bias.detach().double().numpy()
    w, b = _fit_anchored(features, labels, w0, b0, anchor)
    refit = nn.Linear(readout.in_features, readout.out_features).to(readout.weight.dtype)
    with torch.no_grad():
        refit.weight.copy_(torch.as_tensor(w))
        refit.bias.copy_(torch.as_tensor(b))
    before = float(((features @ w0.T + b0).argmax(1) == labels).mean())
    after = float(((features @ w.T + b).argmax(1) == labels).mean())
    model.readout = refit
    return {"samples": len(labels), "anchor": anchor, "calibration_accuracy_before": before,
            "calibration_accuracy_after": after}


def _fit_anchored(f: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: np.ndarray, anchor: float):
    """argmin over (W, b) of mean cross-entropy(f Wᵀ + b, y) + anchor · mean ||f ΔWᵀ + Δb||², with
    ΔW = W - w0, Δb = b - b0: L-BFGS on the exact gradient, in numpy (torch's per-call overhead
    made the same fit take seconds for 90 weights)."""
    from scipy.optimize import minimize

    n, classes = len(y), w0.shape[0]
    onehot = np.eye(classes)[y]
    fb = np.hstack([f, np.ones((n, 1))])  # the bias as a weight on a constant feature
    theta0 = np.hstack([w0, b0[:, None]])  # (classes, features + 1)

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(theta0.shape)
        logits = fb @ theta.T
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        change = fb @ (theta - theta0).T  # the change of every logit
        value = -(onehot * logp).sum() / n + anchor * (change**2).sum() / n
        grad = (np.exp(logp) - onehot).T @ fb / n + 2 * anchor * change.T @ fb / n
        return value, grad.ravel()

    theta = minimize(loss, theta0.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    theta = theta.reshape(theta0.shape)
    return theta[:, :-1], theta[:, -1]


def normalization_policy(stats: str | None, *, refit: bool = False, layer: bool, other_backend: bool,
                         quantum: bool = True) -> str:
    """The statistics source an evaluation uses: the one asked for (``--normalize-stats``),
    ``calibration`` for a readout re-fit, else :func:`default_stats`. The one place that decides
    it for ``evaluate``, ``submit`` and a sweep's cells, and the one wording of its errors.

    Args:
        stats: the source asked for, or None.
        refit: ``--refit-readout`` (it learns from the calibration set).
        layer: the model was trained with the normalization layer.
        other_backend: the evaluation's backend or settings differ from the training's.
        quantum: False for a classical model (no ⟨Z⟩ to normalize).

    Raises:
        HybridQiskitError: an unknown source; normalization of a classical model; a re-fit
            with another source than the calibration set.
    """
    if stats is not None and stats not in STATS_SOURCES:
        raise HybridQiskitError(f"unknown --normalize-stats {stats!r}; known: {', '.join(STATS_SOURCES)}")
    if not quantum:
        if stats not in (None, "off") or refit:
            flag = "--refit-readout" if refit else "--normalize-stats"
            raise HybridQiskitError(f"{flag} works on ⟨Z⟩ statistics: a classical model has no ⟨Z⟩")
        return "off"
    if refit and stats not in (None, "calibration"):
        raise HybridQiskitError(f"--refit-readout learns from the calibration set: it needs --normalize-stats "
                                f"calibration, not {stats}")
    return "calibration" if refit else stats or default_stats(layer, other_backend)


def default_stats(normalize: bool, other_backend: bool) -> str:
    """The statistics source when none is asked for: a model trained with the layer re-estimates
    them on any backend but its own (from the calibration set); a model without it is evaluated
    as it is (re-standardizing it is a mitigation one asks for)."""
    return "calibration" if normalize and other_backend else "off"


def normalize_for_backend(model, payload: dict, train, stats: str, *, samples: int = CALIBRATION_SAMPLES,
                          seed: int = 0, batch_size: int = 256, refit: bool = False) -> dict | None:
    """Draw the calibration set from ``train`` (the run's training split), find the reference
    statistics and adapt ``model`` to its backend (:func:`adapt_to_backend`); None for ``off``.
    With ``refit`` the readout is then re-fitted to the calibration images and their labels
    (:func:`refit_readout`; it needs ``calibration`` statistics).

    The returned dict also holds the calibration images' indices in the training split."""
    stats = normalization_policy(stats, refit=refit, layer=True, other_backend=True)  # checked as anywhere
    if stats == "off":
        return None
    needs_images = stats == "calibration" or not isinstance(getattr(model, "norm", None), QubitNorm)
    images, indices = calibration_set(train, samples, seed=seed) if needs_images else (None, None)
    labels = train.tensors[1][indices] if refit else None
    info = calibrate(model, payload, stats, images, labels, seed=seed, batch_size=batch_size)
    if indices is not None:
        info["calibration_indices"] = indices
    return info


def calibrate(model, payload: dict, stats: str, images: torch.Tensor | None, labels=None, *, seed: int = 0,
              batch_size: int = 256) -> dict:
    """Adapt ``model`` to its backend from the calibration ``images`` (see :func:`adapt_to_backend`;
    ``batch`` statistics use them for the reference only), then, given their ``labels``, re-fit
    its readout to them (:func:`refit_readout`). The calibration set runs once on the backend."""
    ref = reference_statistics(model, payload, images, seed=seed)
    outputs = head_outputs(model, images, batch_size) if stats == "calibration" else None
    info = adapt_to_backend(model, stats, ref, images if stats == "calibration" else None, batch_size=batch_size,
                            outputs=outputs)
    if labels is not None:
        info["refit"] = refit_readout(model, outputs, labels)
    return info
