"""fit / evaluate / checkpoint / history.

``train(config)`` runs a whole training job into ``runs/<name>/``: per-epoch train and val loss
and accuracy (history.json), the best checkpoint by val accuracy (model.pt; with ``val_fraction``
0, no validation images, the last epoch's) and the last one with
optimizer and RNG state (last.pt, for ``--resume``), then the test metrics of the best model
(metrics.json) and the plots. One seed reaches torch, numpy, the data split and the backend, so
the same command gives the same numbers.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hybrid_qiskit.checkpoints import load_checkpoint, package_versions, save_checkpoint
from hybrid_qiskit.config import TrainConfig
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.fileio import read_json, write_json
from hybrid_qiskit.models import ModelConfig, StagedClassifier, build_model, count_parameters
from hybrid_qiskit.runs import load_splits


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    predictions: np.ndarray  # (N,) predicted labels
    labels: np.ndarray  # (N,) true labels
    expvals: np.ndarray | None = None  # (N, n) head outputs, when the model has a head


def evaluate(model: StagedClassifier, data: TensorDataset, batch_size: int = 256, *,
             progress: str | None = None, quiet: bool = False) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (no gradients).

    ``progress``: a label; with it, a slow evaluation (a shot-based or remote backend) shows
    progress (a bar on a terminal, a line every 30 s elsewhere) instead of minutes of silence."""
    from hybrid_qiskit.progress import Progress

    model.eval()
    losses, preds, labels, evs = [], [], [], []
    loader = DataLoader(data, batch_size=batch_size)
    with torch.no_grad(), Progress(total=len(loader), desc=progress or "", quiet=quiet or not progress) as bar:
        for images, targets in loader:
            z = model.quantum(model.encode(images))
            logits = model.decode(z)
            losses.append(nn.functional.cross_entropy(logits, targets, reduction="sum").item())
            preds.append(logits.argmax(1).numpy())
            labels.append(targets.numpy())
            evs.append(z.detach().numpy())
            bar.update(1)
    n = len(data)
    p, y = np.concatenate(preds), np.concatenate(labels)
    return EvalResult(sum(losses) / n, float((p == y).mean()), p, y, np.concatenate(evs))


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """Cosine decay of the learning rate over the whole run, stepped per batch ("constant": none).

    Measured on digits: a constant rate plateaus and wobbles a few points below the cosine run."""
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if cfg.lr_schedule != "cosine":
        raise HybridQiskitError(f"unknown lr_schedule {cfg.lr_schedule!r}; known: cosine, constant")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs * steps_per_epoch))


def _train_epoch(model, loader, optimizer, scheduler, progress, augment=None,
                 label_smoothing: float = 0.0) -> tuple[float, float]:
    """One epoch; returns the mean training loss and accuracy. The loss reported is plain
    cross-entropy, whatever the loss trained on (label smoothing), so that it reads beside the
    validation and test losses."""
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for images, targets in loader:
        if augment is not None:
            images = augment(images)
        optimizer.zero_grad()
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if label_smoothing:
            with torch.no_grad():
                loss = nn.functional.cross_entropy(logits, targets)
        total += len(targets)
        loss_sum += loss.item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        progress.update(1)
        progress.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.3f}")
    return loss_sum / total, correct / total


def model_config_for(cfg: TrainConfig, splits) -> ModelConfig:
    return ModelConfig(
        kind=cfg.model,
        num_qubits=cfg.qubits,
        feature_map=cfg.feature_map,
        ansatz=cfg.ansatz,
        reps=cfg.reps,
        reuploads=cfg.reuploads,
        entanglement=cfg.entanglement,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        num_classes=splits.num_classes,
        dropout=cfg.dropout,
        cnn_width=cfg.cnn_width,
        batch_norm=cfg.batch_norm,
        normalize=cfg.normalize,
    )


def make_backend(cfg: TrainConfig):
    """The backend handle for a quantum model, or None for the classical baseline."""
    from hybrid_qiskit.models import is_quantum

    if not is_quantum(cfg.model):
        return None
    from backends import create_backend

    return create_backend(cfg.backend, **cfg.backend_kwargs())


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False, overwrite: bool = False) -> dict:
    """Train, checkpoint and test one model; returns the final metrics (also in metrics.json).

    The run directory is owned for the whole run (one writer; a second ``train`` of the same
    name is refused), an existing run is never replaced unless ``overwrite``, and a simulation
    that cannot fit in memory is refused before anything is allocated. torch runs on
    ``cfg.threads`` threads (restored afterwards): the setting is part of the run's config, so the
    same config gives the same numbers on a 2-core and a 16-core machine.
    """
    from hybrid_qiskit import resources, runs

    resources.check_config(cfg, what="train")
    if cfg.patience is not None and cfg.val_fraction == 0:
        raise HybridQiskitError("--patience stops on validation accuracy, and val_fraction 0 leaves no validation "
                                "images: drop --patience or set val_fraction above 0")
    run_dir = Path(cfg.out) / cfg.run_name()
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with runs.owned(run_dir, what="train"):
            start = runs.prepare(run_dir, cfg, resume=resume, overwrite=overwrite)
            return _train(cfg, run_dir, start, quiet=quiet)
    finally:
        torch.set_num_threads(before)


def make_optimizer(cfg: TrainConfig, model):
    """Adam, or AdamW (decoupled weight decay) when ``weight_decay`` is set."""
    if cfg.weight_decay:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def make_augment(cfg: TrainConfig, in_channels: int):
    """The training-batch augmentation of ``cfg`` (None: off)."""
    if not cfg.augment:
        return None
    from hybrid_qiskit.augment import augment_batch

    flip = in_channels == 3 if cfg.augment_flip is None else cfg.augment_flip
    return lambda images: augment_batch(images, shift=cfg.augment_shift / 28, degrees=cfg.augment_degrees,
                                        flip=flip, erase=cfg.augment_erase)


def _train(cfg: TrainConfig, run_dir: Path, start, *, quiet: bool = False) -> dict:
    from hybrid_qiskit.progress import RunLog

    log = RunLog(quiet=quiet)
    # runs.prepare decided: a new run, or the resumption of this one (its files checked to belong
    # together and to these settings). --resume of a run that never started simply starts it (so
    # `make train` can always pass it); on a finished run it only re-reports its metrics.
    resume = start.resume
    if resume:
        log.attach(run_dir / "train.log")
        log(f"resuming {run_dir}")

    seed_everything(cfg.seed)
    splits = load_splits(cfg)
    handle = make_backend(cfg)
    try:
        return _fit(cfg, run_dir, start, splits, handle, log, quiet=quiet)
    finally:
        if handle is not None:
            handle.close()  # a Session or Batch opened for this run ends with it


def _fit(cfg: TrainConfig, run_dir: Path, start, splits, handle, log, *, quiet: bool) -> dict:
    from hybrid_qiskit.progress import Progress

    resume, last_path = start.resume, run_dir / "last.pt"
    model = build_model(model_config_for(cfg, splits), handle, seed=cfg.seed)
    optimizer = make_optimizer(cfg, model)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(splits.train, batch_size=cfg.batch_size, shuffle=True, generator=shuffle)
    scheduler = make_scheduler(cfg, optimizer, len(loader))

    history: list[dict] = []
    best_acc, start_epoch, stopped = -1.0, 0, False
    if resume:
        state = start.state
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        history, best_acc, start_epoch = state["history"], state["best_val_accuracy"], state["epoch"]
        stopped = state.get("stopped", False)
        if stopped or start_epoch >= cfg.epochs:
            saved = _saved_metrics(run_dir, log)
            if saved is not None:
                return _report_finished(run_dir, saved, log)  # only re-report: metrics.json stays as it is
            # Missing or damaged: the loop below is done, and finish() tests the best checkpoint again.
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.attach(run_dir / "train.log")
        write_json(run_dir / "config.json", {**_comparable(cfg), "run_id": start.run_id})
        write_json(run_dir / "backend.json", handle.description if handle else {"name": "none (classical model)"})
        write_json(run_dir / "versions.json", package_versions())
        write_json(run_dir / "data.json", {
            "dataset": splits.name, "class_names": splits.class_names,
            "train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
        })

    if not resume:
        log(f"training {cfg.run_name()}: {cfg.model} on {splits.name} ({len(splits.train)} train, {len(splits.val)} val, "
            f"{len(splits.test)} test images), backend {cfg.backend if handle else 'none'}, {cfg.epochs} epochs, "
            f"seed {cfg.seed}, torch threads {cfg.threads}")
    augment = make_augment(cfg, splits.in_channels)
    for epoch in range(start_epoch, 0 if stopped else cfg.epochs):
        t0 = time.perf_counter()
        with Progress(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", quiet=quiet) as bar:
            train_loss, train_acc = _train_epoch(model, loader, optimizer, scheduler, bar, augment,
                                                 cfg.label_smoothing)
        if not np.isfinite(train_loss):  # never a NaN in history.json, model.pt or metrics.json
            raise HybridQiskitError(f"training diverged in epoch {epoch + 1} (train loss {train_loss}); "
                                    f"lower --lr (was {cfg.lr:g}) and start again with --overwrite")
        seconds = time.perf_counter() - t0
        # Without validation images (val_fraction 0: every image trains) the last epoch is the model.
        val = evaluate(model, splits.val, cfg.eval_batch_size) if len(splits.val) else None
        val_loss, val_acc = (val.loss, val.accuracy) if val else (None, None)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                        "val_loss": val_loss, "val_accuracy": val_acc, "seconds": seconds, "run_id": start.run_id})
        log(f"epoch {epoch + 1}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            + (f"val loss {val_loss:.4f} acc {val_acc:.4f}  " if val else "") + f"({seconds:.1f}s)")
        if val is None or val_acc > best_acc:  # without validation images, the newest epoch is kept
            best_acc = best_acc if val is None else val_acc
            save_checkpoint(run_dir / "model.pt", model, epoch=epoch + 1, val_accuracy=val_acc,
                            dataset=splits.name, class_names=splits.class_names, seed=cfg.seed,
                            run_id=start.run_id)
        # history.json first, then last.pt: a crash between them only repeats one epoch on resume.
        stopped = False
        if cfg.patience is not None:  # train() refused it without validation images
            best_epoch = max(history, key=lambda h: h["val_accuracy"])["epoch"]  # the first best
            stopped = epoch + 1 - best_epoch >= cfg.patience and epoch + 1 < cfg.epochs
        write_json(run_dir / "history.json", history)
        save_checkpoint(last_path, model, epoch=epoch + 1, optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(),
                        shuffle_rng=shuffle.get_state(), torch_rng=torch.get_rng_state(),
                        history=history, best_val_accuracy=best_acc, stopped=stopped, run_id=start.run_id)
        if stopped:
            log(f"early stop: no better val accuracy for {cfg.patience} epochs (best: epoch {best_epoch})")
            break

    return finish(cfg, run_dir, splits, handle, history, quiet=quiet, log=log, run_id=start.run_id)


# What a finished run's metrics.json must hold (compare reads all of them).
METRIC_KEYS = ("test_loss", "test_accuracy", "test_samples", "epochs", "train_seconds", "parameters")


def _saved_metrics(run_dir: Path, log) -> dict | None:
    """A finished run's metrics.json, or None when it is missing or damaged (truncated, empty,
    not an object, keys missing): then the best checkpoint is tested again and the file
    rewritten, so nothing is lost (a note says so)."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = read_json(path)
        missing = [k for k in METRIC_KEYS if not isinstance(metrics.get(k), (int, float))]
        why = f"no {', '.join(missing)}" if missing else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        metrics, why = None, f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    if why is None:
        return metrics
    log(f"note: {path} is damaged ({why}); testing the best checkpoint again to rewrite it", always=True)
    return None


def _report_finished(run_dir: Path, metrics: dict, log) -> dict:
    """A finished run, resumed: print its saved test metrics; recompute and overwrite nothing."""
    log(f"{run_dir} is finished; its saved test metrics (nothing recomputed):")
    log(f"test loss {metrics['test_loss']:.4f}  test accuracy {metrics['test_accuracy']:.4f}  "
        f"({metrics['test_samples']} images)", always=True)
    log(f"run directory: {run_dir}", always=True)
    return metrics


def finish(cfg: TrainConfig, run_dir: Path, splits, handle, history, *, quiet: bool = False, log=None,
           run_id: str | None = None) -> dict:
    """Test the best checkpoint, write metrics.json and the plots."""
    from hybrid_qiskit import plots
    from hybrid_qiskit.checkpoints import restore_model
    from hybrid_qiskit.progress import RunLog

    log = log or RunLog(run_dir / "train.log", quiet=quiet)
    model = restore_model(load_checkpoint(run_dir / "model.pt"), handle)
    test = evaluate(model, splits.test, cfg.eval_batch_size, progress="test", quiet=quiet)
    metrics = {
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_samples": len(splits.test),
        "best_val_accuracy": max((h["val_accuracy"] for h in history if h["val_accuracy"] is not None), default=None),
        "epochs": len(history),
        "train_seconds": sum(h["seconds"] for h in history),
        "parameters": count_parameters(model),
        "model": cfg.model,
        "backend": handle.description if handle else None,
        "torch_threads": torch.get_num_threads(),
        "run_id": run_id,
    }
    write_json(run_dir / "metrics.json", metrics)
    plots.training_curves(history, run_dir / "curves.png")
    plots.prediction_grid(splits.test, test.predictions, splits.class_names, run_dir / "predictions.png")
    plots.confusion_matrix(test.labels, test.predictions, splits.class_names, run_dir / "confusion.png")
    log(f"test loss {test.loss:.4f}  test accuracy {test.accuracy:.4f}  ({len(splits.test)} images)", always=True)
    log(f"run directory: {run_dir}", always=True)
    return metrics


def _comparable(cfg: TrainConfig) -> dict:
    """The config as saved in config.json (JSON round-trip, so it compares with a reloaded one)."""
    import json

    return json.loads(json.dumps(cfg.to_dict()))
