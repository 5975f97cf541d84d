"""One cell of a sweep, runnable in any process: plain-data task in, the cell's metrics out.

A :class:`CellTask` names a run directory, the backend settings and the images; :func:`run_cell`
rebuilds the model and its backend from them and evaluates. The driver, a local pool worker or
a Ray task all call the same function, on one thread, so a cell gives the same numbers whatever
ran it. Nothing here writes files: only the driver writes results.

This module imports no heavy package at the top: pool workers set their thread limits before
numpy, torch or Aer load.
"""

from __future__ import annotations

import functools
import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.noise.grid import CALIBRATED


@dataclass(frozen=True)
class CellTask:
    """Everything a process needs to evaluate one cell, as plain data (picklable, no handles).

    ``run_dir`` must be readable at the same path wherever the task runs (on a cluster: a shared
    filesystem); ``model_sha`` makes sure it is the same checkpoint the driver planned with.
    """

    run_dir: str  # the model's run directory (config.json + model.pt)
    model_sha: str  # first 12 hex digits of model.pt's sha256
    data_run_dir: str  # the run whose config chooses the images (the sweep's main run)
    split: str  # test | val
    limit: int | None  # first N images only
    batch_size: int  # images per estimator call
    backend: str | None  # registry name; None: the classical baseline (no quantum stage)
    settings: dict = field(default_factory=dict)  # create_backend(backend, **settings); holds the seed
    mitigation: str = "none"  # none | readout (wraps the estimator) | normalize | refit; trex/zne are in settings
    normalize_stats: str = "calibration"  # normalize: calibration (set of training images) | batch
    calibration_samples: int = 64  # normalize: images of data_run_dir's training split


def load_checkpoint_of(run_dir: str):
    """(config, checkpoint payload, sha256[:12] of model.pt) of a run directory, loaded once per
    process for as long as its files are unchanged."""
    return _load_checkpoint(str(run_dir), _stamp(run_dir))


def load_images(run_dir: str, split: str, limit: int | None):
    """The ``split`` images of ``run_dir``'s dataset (first ``limit``), loaded once per process."""
    return _load_images(str(run_dir), _stamp(run_dir), split, limit)


def _stamp(run_dir) -> tuple:
    """What changes when a run's files do: the caches below are keyed on it."""
    stamp = []
    for name in ("config.json", "model.pt"):
        try:
            st = (Path(run_dir) / name).stat()
            stamp.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append(None)  # load_run says what is missing
    return tuple(stamp)


@functools.lru_cache(maxsize=8)
def _load_checkpoint(run_dir: str, stamp: tuple):
    from hybrid_qiskit.runs import load_run

    cfg, payload = load_run(run_dir)
    try:
        sha = hashlib.sha256((Path(run_dir) / "model.pt").read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise HybridQiskitError(f"cannot read {Path(run_dir) / 'model.pt'}: {exc.strerror or exc}") from None
    return cfg, payload, sha


@functools.lru_cache(maxsize=4)
def _load_images(run_dir: str, stamp: tuple, split: str, limit: int | None):
    from torch.utils.data import TensorDataset

    from hybrid_qiskit.runs import load_splits

    data = load_splits(_load_checkpoint(run_dir, stamp)[0]).images(split)
    if limit:
        data = TensorDataset(*(t[:limit] for t in data.tensors))
    return data


def load_calibration(run_dir: str, samples: int):
    """The calibration set of ``run_dir`` (drawn from its training split with its seed), images
    and labels: the same for every model and cell of a sweep."""
    return _load_calibration(str(run_dir), _stamp(run_dir), samples)


@functools.lru_cache(maxsize=4)
def _load_calibration(run_dir: str, stamp: tuple, samples: int):
    from hybrid_qiskit.adaptation import calibration_set
    from hybrid_qiskit.runs import load_splits

    cfg = _load_checkpoint(run_dir, stamp)[0]
    train = load_splits(cfg).train
    images, indices = calibration_set(train, samples, seed=cfg.seed)
    return images, train.tensors[1][indices]


@contextmanager
def single_threaded():
    """torch and every BLAS/OpenMP pool on one thread while a cell runs (restored after)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def run_cell(task: CellTask) -> dict:
    """Rebuild the task's model and backend in this process and evaluate: the cell's metrics."""
    cfg, payload, sha = load_checkpoint_of(task.run_dir)
    if sha != task.model_sha:
        raise HybridQiskitError(
            f"{task.run_dir}/model.pt here (sha {sha}) is not the checkpoint the sweep planned with "
            f"({task.model_sha}): the model.pt changed while the sweep ran (trained or resumed meanwhile?), "
            "or, on a cluster, the run directory is not the same file on every node"
        )
    data = load_images(task.data_run_dir, task.split, task.limit)
    calibration = None
    if task.mitigation in CALIBRATED:  # a sweep normalizes only when asked to: its layer never decides
        from hybrid_qiskit.adaptation import normalization_policy

        refit = task.mitigation == "refit"  # always from the calibration set, whatever normalize takes
        stats = normalization_policy(None if refit else task.normalize_stats, refit=refit, layer=False,
                                     other_backend=True)
        calibration = (stats, *load_calibration(task.data_run_dir, task.calibration_samples))
    with single_threaded():
        return evaluate_cell(payload, task.backend, task.settings, task.mitigation, data, task.batch_size,
                             calibration=calibration)


def run_cell_safely(task: CellTask) -> dict:
    """:func:`run_cell` for another process: failures come back as plain data, not exceptions
    that may not survive pickling. ``{"metrics": ...}`` or ``{"error": text, "user": bool}``."""
    try:
        return {"metrics": run_cell(task)}
    except HybridQiskitError as exc:
        return {"error": str(exc), "user": True}
    except Exception as exc:  # a simulator failure: reported by the driver, naming the cell
        return {"error": f"{type(exc).__name__}: {exc}", "user": False}


def evaluate_cell(payload: dict, backend: str | None, settings: dict, mitigation: str, data,
                  batch_size: int, *, calibration: tuple | None = None) -> dict:
    """Rebuild the checkpoint ``payload`` on the backend, evaluate it on ``data``: the metrics of one cell.

    ``calibration``: for ``mitigation`` normalize or refit, (statistics source, calibration images,
    their labels); see :func:`hybrid_qiskit.adaptation.adapt_to_backend` and ``refit_readout``."""
    import numpy as np

    from backends import create_backend
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.noise.mitigation import with_readout_mitigation
    from hybrid_qiskit.training import evaluate

    t0 = time.perf_counter()
    handle = None
    if backend:
        # The QNN already sends one PUB for all n ⟨Z_q⟩ (qnn.BroadcastEstimatorQNN).
        handle = create_backend(backend, **settings)
    if mitigation == "readout":
        handle = with_readout_mitigation(handle)
    net = restore_model(payload, handle)
    normalization = None
    if mitigation in CALIBRATED:
        normalization = _normalize(net, payload, calibration, settings.get("seed", 0), batch_size,
                                   refit=mitigation == "refit")
    result = evaluate(net, data, batch_size)
    out = {
        "accuracy": result.accuracy,
        "loss": result.loss,
        # The classical head's tanh outputs are not expectation values.
        "mean_abs_z": None if backend is None else float(np.abs(result.expvals).mean()),
        "seconds": time.perf_counter() - t0,
        "samples": len(data),
    }
    if mitigation == "readout":
        out["readout_calibration"] = {str(q): ab for q, ab in sorted(handle.estimator.calibration.items())}
        out["readout_uncorrected_qubits"] = handle.estimator.uncorrected
    if normalization is not None:
        out["normalization"] = normalization
    return out


def _normalize(net, payload: dict, calibration: tuple | None, seed: int, batch_size: int, *,
               refit: bool = False) -> dict:
    """Re-standardize ``net``'s ⟨Z⟩ with its noisy backend's statistics (the reference: its trained
    statistics, or the exact simulation's of the calibration images); with ``refit``, then re-fit
    its readout to the calibration images."""
    from hybrid_qiskit.adaptation import calibrate
    from hybrid_qiskit.models import is_quantum

    what = "refit" if refit else "normalize"
    if calibration is None:
        raise HybridQiskitError(f"mitigation {what} needs the calibration images")
    stats, images, labels = calibration
    if not is_quantum(net.config.kind):
        raise HybridQiskitError(f"mitigation {what} needs a model with a quantum head")
    info = calibrate(net, payload, stats, images, labels if refit else None, seed=seed, batch_size=batch_size)
    return {k: v for k, v in info.items() if k in ("stats", "reference", "calibration_samples", "refit")}


# ---------------------------------------------------------------- memory
def simulation_bytes(width: int, backend: str | None, settings: dict, batch_size: int, chain=None) -> tuple[int, str]:
    """Peak bytes of the quantum state(s) one cell holds, and how that was estimated
    (:func:`hybrid_qiskit.resources.estimate`, the estimate train and evaluate use too)."""
    from hybrid_qiskit import resources

    est = None
    if backend and width > 0:
        est = resources.estimate(backend, qubits=width, batch=batch_size, settings=settings, chain=chain)
    if est is None:
        return 0, "classical" if not backend or width <= 0 else f"{backend} (no local simulation)"
    return est.bytes, f"{width}-qubit {est.method} ({est.detail})"
