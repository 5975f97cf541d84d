"""Evaluate a trained run on any backend: what ``hybrid-qiskit evaluate`` does, without the CLI.

:func:`evaluate_run` restores a run's best checkpoint on the run's own backend or another one,
refuses up front what would not fit in memory, adapts the head's ⟨Z⟩ statistics to the backend
as :func:`~hybrid_qiskit.adaptation.normalization_policy` decides, evaluates a split, and saves
the result beside the run under a name that tells it from every other evaluation
(:func:`result_name`). A read-only run still evaluates: the result is returned, not saved.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run.

    Attributes:
        result: what the result file holds (split, samples, loss, accuracy, seconds, backend,
            normalization).
        path: where it is (or would be) saved.
        replaced: an evaluation with the same settings was there before and was replaced.
        unwritable: why the run directory cannot take the result (None: saved).
    """

    result: dict
    path: Path
    replaced: bool
    unwritable: str | None


def backend_for_run(cfg, backend: str | None, settings: dict[str, Any], seed: int | None):
    """The handle to evaluate on: ``backend`` with the given settings, else the run's own with
    the given settings over its saved ones; None for a classical model."""
    from backends import create_backend
    from hybrid_qiskit.models import is_quantum

    if not is_quantum(cfg.model):
        return None
    seed = cfg.seed if seed is None else seed
    if backend:
        return create_backend(backend, **{**settings, "seed": seed})
    return create_backend(cfg.backend, **{**cfg.backend_kwargs(), **settings, "seed": seed})


def evaluate_run(run_dir: str | Path, *, split: str = "test", backend: str | None = None,
                 settings: dict[str, Any] | None = None, seed: int | None = None, limit: int | None = None,
                 batch_size: int = 256, normalize_stats: str | None = None,
                 calibration_samples: int | None = None, refit_readout: bool = False) -> Evaluation:
    """Evaluate ``run_dir``'s best checkpoint on ``split``, and save the result beside it.

    Args:
        backend: another backend than the run's (None: the run's own).
        settings: backend settings given for this evaluation (None values are dropped).
        seed: simulator/transpiler seed (default: the run's).
        limit: only the first ``limit`` images (one past the split: the whole split).
        normalize_stats, calibration_samples, refit_readout: ⟨Z⟩ adaptation to the backend
            (:func:`~hybrid_qiskit.adaptation.normalization_policy`).

    Raises:
        HybridQiskitError: a damaged run, a head that does not fit in memory, bad settings.
    """
    from torch.utils.data import TensorDataset

    from hybrid_qiskit import runs
    from hybrid_qiskit.adaptation import (
        CALIBRATION_SAMPLES,
        normalization_policy,
        normalize_for_backend,
    )
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.fileio import write_json
    from hybrid_qiskit.models import is_quantum
    from hybrid_qiskit.training import evaluate

    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    cfg, payload = runs.load_run(run_dir)
    _check_memory(cfg, backend, settings, batch_size)
    unwritable = runs.writable(run_dir)
    # Another backend, or the run's own with other settings (--shots, --noise-scale...): not the
    # outputs the layer's statistics were trained on.
    stats = normalization_policy(normalize_stats, refit=refit_readout, layer=cfg.normalize,
                                 other_backend=bool(backend or settings), quantum=is_quantum(cfg.model))
    handle = backend_for_run(cfg, backend, settings, seed)
    try:
        model = restore_model(payload, handle)
        splits = runs.load_splits(cfg)
        data = splits.images(split)
        if limit and limit >= len(data):  # the whole split (the result says how many images), named so
            limit = None
        if limit:
            data = TensorDataset(*(t[:limit] for t in data.tensors))
        t0 = time.perf_counter()
        normalization = None if handle is None else normalize_for_backend(
            model, payload, splits.train, stats, seed=cfg.seed, batch_size=batch_size,
            samples=calibration_samples or CALIBRATION_SAMPLES, refit=refit_readout)
        res = evaluate(model, data, batch_size, progress=f"evaluate {split}")
    finally:
        if handle is not None:
            handle.close()  # a Session or Batch opened for this evaluation ends with it
    result = {
        "split": split, "samples": len(data), "loss": res.loss, "accuracy": res.accuracy,
        "seconds": time.perf_counter() - t0,
        "backend": handle.description if handle else None,
        "normalization": normalization,
    }
    path = Path(run_dir) / result_name(handle, settings, seed=seed, limit=limit, split=split, stats=stats,
                                       calibration_samples=calibration_samples, refit=refit_readout)
    replaced = path.exists()
    if not unwritable:
        write_json(path, result)
    return Evaluation(result, path, replaced, unwritable)


def _check_memory(cfg, backend: str | None, settings: dict, batch_size: int) -> None:
    """Before anything is allocated: refuse a head that would not fit in memory, with the
    settings the backend will be built with (:func:`backend_for_run`)."""
    from hybrid_qiskit import resources
    from hybrid_qiskit.models import is_quantum

    if is_quantum(cfg.model):
        resources.check_memory(backend or cfg.backend, qubits=cfg.qubits, batch=batch_size,
                               real=resources.is_real_head(cfg.feature_map, cfg.ansatz), what="evaluate",
                               settings=settings if backend else {**cfg.backend_settings, **settings},
                               chain=resources.head_chain(cfg))


def result_name(handle, settings: dict[str, Any], *, seed: int | None, limit: int | None, split: str,
                stats: str, calibration_samples: int | None, refit: bool) -> str:
    """``eval-<backend>[-<device>][-<N>shots][-<setting>...][-first<N>]-<split>.json``: named by
    every setting that tells one evaluation from another, so fake_fez, fake_marrakesh and a
    ``--limit 20`` run each keep their own file."""
    desc = handle.description if handle else {}
    parts = [handle.name if handle else "classical"]
    if desc.get("device"):
        parts.append(str(desc["device"]))
    if desc.get("shots"):
        parts.append(f"{desc['shots']}shots")
    for key in ("noise_scale", "optimization_level", "resilience_level"):
        if settings.get(key) is not None:
            parts.append(f"{key.replace('_', '')}{settings[key]}")
    parts += [f"{k}{v}" for k, v in sorted(settings.items()) if v is not None and k not in (
        "device", "shots", "noise_scale", "optimization_level", "resilience_level")]
    if seed is not None:
        parts.append(f"seed{seed}")
    if limit:
        parts.append(f"first{limit}")
    if stats != "off":  # off: the name an evaluation had before normalization existed
        parts.append(f"norm{stats}" + (f"{calibration_samples}" if stats == "calibration" and calibration_samples
                                       else ""))
    if refit:
        parts.append("refit")
    parts.append(split)
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "eval-" + "-".join(parts)) + ".json"
