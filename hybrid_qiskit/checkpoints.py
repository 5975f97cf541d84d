"""Run directories and checkpoints, written atomically (temporary file + rename).

A run directory holds: config.json (resolved config), backend.json (backend description),
versions.json (package versions), history.json (per-epoch metrics), model.pt (best
checkpoint), last.pt (latest, with optimizer and RNG state for --resume), metrics.json and plots.
A checkpoint holds the model config, so it can be rebuilt on ANY backend: the circuit is rebuilt
and transpiled for the new target.
"""

from __future__ import annotations

import io
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from hybrid_qiskit.errors import CheckpointError
from hybrid_qiskit.fileio import atomic_write_bytes
from hybrid_qiskit.models import ModelConfig, StagedClassifier, build_model

FORMAT = "hybrid_qiskit.checkpoint/1"
PACKAGES = ("hybrid-qiskit", "qiskit", "qiskit-aer", "qiskit-machine-learning", "qiskit-ibm-runtime",
            "torch", "torchvision", "numpy", "scikit-learn")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def weights_sha256(state_dict: dict[str, Any]) -> str:
    """SHA-256 of the weights (name, dtype, shape and bytes of every tensor, in name order)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: StagedClassifier, **extra: Any) -> None:
    """Save the state dict with the model config (and ``extra``: epoch, metrics, optimizer...),
    and a checksum of the weights: bytes flipped inside a tensor still load as numbers, so only
    the checksum tells a damaged file from a trained one."""
    state = model.state_dict()
    payload = {"format": FORMAT, "model_config": model.config.to_dict(), "state_dict": state,
               "weights_sha256": weights_sha256(state), **extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; missing or corrupt files raise one clear CheckpointError."""
    path = Path(path)
    if path.is_dir() and path.suffix != ".pt":  # a run directory: its best checkpoint
        path = path / "model.pt"
    fix = "restore it from a copy, or train the run again (hybrid-qiskit train --overwrite)"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train first (hybrid-qiskit train) or pass a run directory")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint; {fix}")
    try:
        with open(path, "rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}; fix its permissions") from None
    if empty:
        raise CheckpointError(f"checkpoint {path} is empty (a write was cut off?); {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a hybrid_qiskit checkpoint ({type(exc).__name__}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hybrid_qiskit checkpoint (format {FORMAT} expected); {fix}")
    if not isinstance(payload.get("model_config"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} lacks its model config or weights; {fix}")
    saved = payload.get("weights_sha256")  # checkpoints from before the checksum have none
    if saved is not None:
        try:
            same = weights_sha256(payload["state_dict"]) == saved
        except (AttributeError, TypeError, RuntimeError):
            same = False
        if not same:
            raise CheckpointError(f"checkpoint {path} is damaged: its weights do not match their checksum; {fix}")
    return payload


def restore_model(payload: dict[str, Any], backend=None, *, expect: dict[str, Any] | None = None) -> StagedClassifier:
    """Rebuild the checkpoint's model on ``backend`` and load its weights.

    Args:
        payload: from :func:`load_checkpoint`.
        backend: a backend handle (any backend: the circuit is rebuilt for its target).
        expect: model-config fields the caller requires (e.g. from CLI flags); a difference is
            an error naming the field.
    """
    config = ModelConfig.from_dict(payload["model_config"])
    for key, wanted in (expect or {}).items():
        have = getattr(config, key, None)
        if wanted is not None and have != wanted:
            raise CheckpointError(f"checkpoint does not match the requested model: {key} is {have!r} in the checkpoint, {wanted!r} was requested")
    model = build_model(config, backend, seed=0)
    state = payload["state_dict"]
    own = model.state_dict()
    for key in sorted(set(own) | set(state)):
        if key not in state or key not in own or own[key].shape != state[key].shape:
            raise CheckpointError(
                f"checkpoint weights do not fit the model rebuilt from its config (parameter {key!r}); the file is damaged or from another version"
            )
    model.load_state_dict(state)
    model.eval()
    return model
