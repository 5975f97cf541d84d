"""The Python API's own functions: train and load runs, evaluate models, send a run to hardware.

``import hybrid_qiskit`` exports these beside :class:`~hybrid_qiskit.qnn.QuantumHead`,
:class:`~hybrid_qiskit.config.TrainConfig`, ``load_dataset``, ``create_backend`` and
``list_backends``; they are thin, documented doors onto the modules the CLI uses, so a script
and ``hybrid-qiskit`` give the same numbers for the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_qiskit.errors import HybridQiskitError

if TYPE_CHECKING:
    from torch import nn

    from hybrid_qiskit.config import TrainConfig
    from hybrid_qiskit.data import DataSplits
    from hybrid_qiskit.jobs.tracking import Outcome
    from hybrid_qiskit.training import EvalResult


@dataclass
class Run:
    """A trained run directory, its model rebuilt on a backend (from :func:`load_run` or
    :func:`train`).

    Attributes:
        path: the run directory.
        config: its resolved :class:`~hybrid_qiskit.config.TrainConfig` (``config.json``).
        model: the best checkpoint (``model.pt``), in evaluation mode, on :attr:`backend`.
        backend: the backend handle the model's head runs on (None for a classical model).
        history: per-epoch loss and accuracy (``history.json``).
        metrics: test metrics of the best checkpoint (``metrics.json``; None if absent).
        checkpoint: the checkpoint as loaded (model config, weights, run id).

    Example:
        >>> import tempfile
        >>> from hybrid_qiskit import TrainConfig, load_run, train
        >>> config = TrainConfig(qubits=2, reps=1, epochs=1, limit_train=60, limit_test=20,
        ...                      out=tempfile.mkdtemp(), name="tiny")
        >>> _ = train(config, quiet=True)  # doctest: +ELLIPSIS
        test loss ...
        >>> run = load_run(f"{config.out}/tiny", backend="aer_noisy", device="fake_fez", shots=1024)
        >>> info = run.calibrate(samples=32)  # ⟨Z⟩ statistics of 32 training images on fake_fez
        >>> info["stats"], info["calibration_samples"]
        ('calibration', 32)
        >>> run.evaluate(limit=10).accuracy <= 1
        True
    """

    path: Path
    config: TrainConfig
    model: nn.Module
    backend: Any
    history: list[dict]
    metrics: dict | None
    checkpoint: dict = field(repr=False)
    _splits: DataSplits | None = field(default=None, init=False, repr=False)

    def data(self) -> DataSplits:
        """The run's dataset splits (train / val / test), loaded as the run was (its seed, classes
        and limits) on first use."""
        if self._splits is None:
            from hybrid_qiskit.runs import load_splits

            self._splits = load_splits(self.config)
        return self._splits

    def evaluate(self, split: str = "test", *, limit: int | None = None, batch_size: int | None = None) -> EvalResult:
        """Loss and accuracy of :attr:`model` on ``split`` (``test`` or ``val``), its first ``limit``
        images only if given: what ``hybrid-qiskit evaluate RUN_DIR --limit N`` reports."""
        if split not in ("test", "val"):
            raise HybridQiskitError(f"split must be test or val, got {split!r}")
        data = self.data().images(split)
        if limit is not None:
            data = data[:limit]
        return evaluate(self.model, data, batch_size=batch_size or self.config.eval_batch_size)

    def calibrate(self, stats: str = "calibration", *, samples: int | None = None,
                  refit_readout: bool = False) -> dict | None:
        """Post-measurement normalization on :attr:`backend`, as ``evaluate --normalize-stats``:
        re-standardize the head's ⟨Z⟩ per qubit with this backend's statistics, measured on
        ``samples`` training images (``calibration``, default 64) or on each evaluated batch
        (``batch``); ``refit_readout`` then re-fits the readout to those images' ⟨Z⟩ and labels.
        The checkpoint is not touched. Returns what was done (None for ``off``).

        Why and how: :mod:`hybrid_qiskit.normalization` and :mod:`hybrid_qiskit.adaptation`."""
        from hybrid_qiskit.adaptation import CALIBRATION_SAMPLES, normalize_for_backend

        if self.backend is None:
            raise HybridQiskitError("normalization works on ⟨Z⟩ statistics: a classical model has no ⟨Z⟩")
        return normalize_for_backend(self.model, self.checkpoint, self.data().train, stats,
                                     samples=samples or CALIBRATION_SAMPLES, seed=self.config.seed,
                                     batch_size=self.config.eval_batch_size, refit=refit_readout)

    def close(self) -> None:
        """Close the backend's Session or Batch, if it opened one (a no-op for simulators)."""
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_run(run_dir: str | Path, backend: str | None = None, **settings: Any) -> Run:
    """Load a run directory that ``train`` wrote, its best checkpoint rebuilt on a backend.

    Args:
        run_dir: the run directory (``config.json``, ``model.pt``, ``history.json``).
        backend: a registry name; default: the run's own backend.
        **settings: backend settings (``device``, ``shots``, ...). With ``backend``, they are the
            new backend's (its defaults otherwise); without, they change the run's own. The seed
            defaults to the run's.

    Raises:
        HybridQiskitError: not a run directory, a damaged file (one line naming it), an unknown
            backend or setting.

    Example:
        >>> import tempfile
        >>> from hybrid_qiskit import TrainConfig, load_run, train
        >>> out = tempfile.mkdtemp()
        >>> _ = train(TrainConfig(qubits=2, reps=1, epochs=1, limit_train=60, limit_test=20, out=out,
        ...                       name="tiny"), quiet=True)  # doctest: +ELLIPSIS
        test loss ...
        >>> run = load_run(f"{out}/tiny")
        >>> run.config.qubits, run.backend.name, len(run.history)
        (2, 'statevector', 1)
        >>> load_run(f"{out}/tiny", backend="aer_noisy", shots=100).backend.description["shots"]
        100
    """
    from hybrid_qiskit import runs
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.fileio import read_json
    from hybrid_qiskit.models import is_quantum

    path = Path(run_dir)
    cfg, payload = runs.load_run(path)
    handle = None
    if is_quantum(cfg.model):
        from backends import create_backend

        if backend is None:
            handle = create_backend(cfg.backend, **{**cfg.backend_kwargs(), **settings})
        else:
            handle = create_backend(backend, **{"seed": cfg.seed, **settings})
    elif backend is not None or settings:
        raise HybridQiskitError(f"{path} holds a classical model ({cfg.model}): it runs on no backend")
    try:
        model = restore_model(payload, handle)
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    metrics_path = path / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else None
    return Run(path, cfg, model, handle, runs.read_history(path), metrics, payload)


def train(config: TrainConfig | None = None, *, resume: bool = False, overwrite: bool = False,
          quiet: bool = False, **settings: Any) -> Run:
    """Train, checkpoint and test one model into ``<out>/<name>/``, as ``hybrid-qiskit train``.

    Args:
        config: the settings (default: ``TrainConfig()``, the digits defaults).
        resume: continue the run in that folder from ``last.pt`` (on a finished run: only load it).
        overwrite: replace the run in that folder.
        quiet: no progress or per-epoch lines (the test accuracy and the folder are printed).
        **settings: fields of :class:`~hybrid_qiskit.config.TrainConfig` that replace the
            config's (``qubits=4``, ``epochs=3``...), each checked.

    Returns:
        The finished :class:`Run`, its best checkpoint on the backend it trained on.

    Raises:
        HybridQiskitError: a bad setting (one line naming it), a run that exists (without
            ``resume`` or ``overwrite``), a head too large for memory.

    Example:
        >>> import tempfile
        >>> from hybrid_qiskit import TrainConfig, train
        >>> config = TrainConfig(qubits=2, reps=1, epochs=2, limit_train=60, limit_test=20)
        >>> run = train(config, out=tempfile.mkdtemp(), name="tiny", quiet=True)  # doctest: +ELLIPSIS
        test loss ... test accuracy ... (20 images)
        run directory: .../tiny
        >>> [h["epoch"] for h in run.history], run.metrics["test_samples"]
        ([1, 2], 20)
    """
    from hybrid_qiskit.config import TrainConfig, checked
    from hybrid_qiskit.training import train as train_run

    cfg = checked(config or TrainConfig(), settings) if settings else (config or TrainConfig())
    train_run(cfg, resume=resume, quiet=quiet, overwrite=overwrite)
    return load_run(Path(cfg.out) / cfg.run_name())


def evaluate(model: nn.Module, data, *, batch_size: int = 256) -> EvalResult:
    """Mean cross-entropy and accuracy of a classifier on labelled images, without gradients.

    Args:
        model: any ``nn.Module`` mapping images to logits (a project model also records the
            head's ⟨Z⟩ in ``expvals``).
        data: a ``TensorDataset`` of (images, labels), or an ``(images, labels)`` pair of tensors.
        batch_size: images per forward pass (a shot-based backend runs one PUB per batch).

    Returns:
        ``EvalResult``: ``loss``, ``accuracy``, ``predictions``, ``labels`` (and ``expvals``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from hybrid_qiskit import QuantumHead, evaluate
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Sigmoid(), QuantumHead(2, reps=1),
        ...                       nn.Linear(2, 3))
        >>> result = evaluate(model, (torch.randn(8, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])))
        >>> len(result.predictions), 0 <= result.accuracy <= 1
        (8, True)
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hybrid_qiskit.models import StagedClassifier
    from hybrid_qiskit.training import EvalResult
    from hybrid_qiskit.training import evaluate as evaluate_staged

    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise HybridQiskitError("data must be a TensorDataset or an (images, labels) pair")
        data = TensorDataset(torch.as_tensor(data[0]), torch.as_tensor(data[1]))
    if isinstance(model, StagedClassifier):
        return evaluate_staged(model, data, batch_size)
    model.eval()
    loss, predictions, labels = 0.0, [], []
    with torch.no_grad():
        for images, targets in DataLoader(data, batch_size=batch_size):
            logits = model(images)
            loss += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            predictions.append(logits.argmax(1).numpy())
            labels.append(targets.numpy())
    p, y = np.concatenate(predictions), np.concatenate(labels)
    return EvalResult(loss / len(y), float((p == y).mean()), p, y)


def submit(run_dir: str | Path, *, backend: str, samples: int, split: str = "test", dry_run: bool = False,
           wait: bool = False, yes: bool = False, normalize_stats: str | None = None,
           calibration_samples: int | None = None, refit_readout: bool = False,
           max_rows: int | None = None, **settings: Any) -> Outcome:
    """Run a trained model's quantum head as hardware jobs, as ``hybrid-qiskit submit``: the CNN
    runs here, the plan (jobs, circuits, shots, estimated QPU time) is printed, then each job id
    goes into ``RUN_DIR/jobs.sqlite`` before anything waits on it.

    Args:
        run_dir: a trained run directory.
        backend: ``ibm_runtime`` (an IBM QPU; needs an account) or ``ibm_local`` (a fake device,
            offline, run in this process and waited for).
        samples: submit the first N images of ``split``.
        dry_run: print the plan only; nothing is sent or written.
        wait: wait for IBM Quantum jobs too, and fetch them.
        yes: send an IBM Quantum plan above 1 QPU-minute (without it, such a plan is an error).
        normalize_stats, calibration_samples, refit_readout: post-measurement normalization on
            the device (``hybrid-qiskit submit --help``).
        max_rows: images per job (default: sized to the service's job limits).
        **settings: backend settings: ``device``, ``shots``, ``resilience_level``, ``mode``,
            ``layout``, ``seed``...

    Returns:
        What was sent: ``submission_ids``, ``job_ids``, ``summaries`` (finished submissions:
        accuracy, exact-simulation accuracy, agreement), ``pending``, ``failed``; ``sent`` is
        False for a dry run.

    Example:
        >>> import tempfile
        >>> from hybrid_qiskit import TrainConfig, submit, train
        >>> run = train(TrainConfig(qubits=2, reps=1, epochs=1, limit_train=60, limit_test=20,
        ...                         out=tempfile.mkdtemp(), name="tiny"), quiet=True)  # doctest: +ELLIPSIS
        test loss ...
        >>> plan = submit(run.path, backend="ibm_local", device="fake_fez", samples=5, shots=1024,
        ...               resilience_level=0, dry_run=True)  # doctest: +ELLIPSIS
        plan: 1 job(s), 5 PUB row(s) (images), ...
        ...
        >>> plan.sent
        False
    """
    from hybrid_qiskit.jobs.submit import submit as submit_jobs

    return submit_jobs(run_dir, backend=backend, settings=settings, samples=samples, split=split,
                       max_rows=max_rows, wait=wait, dry_run=dry_run, yes=yes,
                       normalize_stats=normalize_stats, calibration_samples=calibration_samples,
                       refit_readout=refit_readout)


def fetch(*job_ids: str, run_dir: str | Path | None = None, all_pending: bool = False, wait: bool = False,
          rerun: bool = False) -> Outcome:
    """Collect job results, as ``hybrid-qiskit fetch``: store them in the run's ledger and, for a
    submission whose every job is in, decode them with the run's checkpoint and write
    ``RUN_DIR/jobs/<submission>/predictions.csv`` and ``result.json``. Fetching again changes
    nothing.

    Args:
        *job_ids: the jobs to collect (their run is found in the job index, or ``run_dir``).
        run_dir: the run whose ledger holds them.
        all_pending: every job not finished yet (of ``run_dir``, or of every indexed run).
        wait: wait until the jobs finish.
        rerun: submit the rows of failed or cancelled jobs again.

    Returns:
        ``summaries`` of the submissions finished now, ``pending`` and ``failed`` job ids.

    Example:
        >>> from hybrid_qiskit import fetch
        >>> fetch("no-such-job")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hybrid_qiskit.errors.HybridQiskitError: ...no-such-job...
    """
    from hybrid_qiskit.jobs.fetch import fetch as fetch_jobs

    return fetch_jobs(list(job_ids), run_dir=None if run_dir is None else str(run_dir), all_pending=all_pending,
                      wait=wait, rerun=rerun)
