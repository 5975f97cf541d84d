"""A run directory: reading it back, and owning it while it is written.

Reading (``load_run``, ``read_config``, ``read_history``): every file of a run that is damaged
(empty, cut off, not JSON, the wrong shape, values of the wrong type, a checkpoint from another
run) becomes ONE line that names the file, says what is wrong and what to do.

Owning (``owned`` + ``prepare``): ``train`` holds the folder's :class:`~hybrid_qiskit.fileio.WriterLock`
for the whole run, so a second writer is refused in one line naming the holder. Under the lock a
run that already exists is never replaced unless ``--overwrite`` says so, whatever of its files
are missing; ``--resume`` continues it only when ``config.json``, ``history.json`` and the
checkpoints carry the same run id (written into each when the run starts), so files of two
different runs are never mixed. A folder made for a run that failed before writing anything is
removed again.

Example:
    >>> cfg, payload = load_run("runs/digits-hybrid-statevector")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_qiskit.errors import CheckpointError, HybridQiskitError
from hybrid_qiskit.fileio import TMP_SUFFIX, WriterLock

RUN_ID = "run_id"  # the key under which config.json, history entries and checkpoints carry it
# What `train` writes; --overwrite removes exactly these (plus evaluate's eval-*.json).
RUN_FILES = ("config.json", "backend.json", "versions.json", "data.json", "history.json", "model.pt",
             "last.pt", "metrics.json", "curves.png", "predictions.png", "confusion.png", "train.log")
LOCK = ".lock"


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


# --------------------------------------------------------------------------- reading


def read_json_file(path: Path, *, fix: str) -> Any:
    """The JSON in ``path``; a missing, unreadable, empty, binary or cut-off file is one line
    ending in ``fix`` (what the user can do)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HybridQiskitError(f"{path} is missing; {fix}") from None
    except IsADirectoryError:
        raise HybridQiskitError(f"{path} is a directory, not a file; {fix}") from None
    except OSError as exc:
        raise HybridQiskitError(f"cannot read {path}: {exc.strerror or exc}; fix its permissions") from None
    if not raw.strip():
        raise HybridQiskitError(f"{path} is empty (a write was cut off?); {fix}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HybridQiskitError(f"{path} is not text (binary junk); {fix}") from None
    except json.JSONDecodeError as exc:
        raise HybridQiskitError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}; cut off or edited?); {fix}") from None


def _retrain_hint(run_dir: Path) -> str:
    return (f"restore it from a copy, or train the run again with "
            f"`hybrid-qiskit train --out {run_dir.parent} --name {run_dir.name} --overwrite`")


def read_config(run_dir: str | Path):
    """(TrainConfig, run id or None) from ``run_dir/config.json``, every value checked."""
    from hybrid_qiskit.config import FIELD_NAMES, TrainConfig, checked

    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise HybridQiskitError(f"{run_dir} is not a run directory (no such folder); pass the folder `train` wrote")
    if not path.exists():
        raise HybridQiskitError(f"{run_dir} is not a run directory (no config.json); pass the folder `train` wrote")
    data = read_json_file(path, fix=_retrain_hint(run_dir))
    if not isinstance(data, dict):
        raise HybridQiskitError(f"{path} holds a JSON {type(data).__name__}, not the run's settings; "
                                f"{_retrain_hint(run_dir)}")
    run_id = data.pop(RUN_ID, None)
    unknown = sorted(set(data) - FIELD_NAMES)
    if unknown:
        raise HybridQiskitError(f"{path} has unknown setting(s) {', '.join(unknown)} (written by another "
                                f"version?); remove them or use the version that wrote the run")
    if run_id is not None and not isinstance(run_id, str):
        raise HybridQiskitError(f"{path}: run_id = {run_id!r} is not a string; {_retrain_hint(run_dir)}")
    cfg = checked(TrainConfig(), data, source=f"in {path}")
    return cfg, run_id


def read_history(run_dir: str | Path, *, required: bool = True) -> list[dict] | None:
    """The per-epoch records of ``run_dir/history.json`` (None if absent and not ``required``)."""
    path = Path(run_dir) / "history.json"
    if not path.exists() and not required:
        return None
    data = read_json_file(path, fix=_retrain_hint(Path(run_dir)))
    if not isinstance(data, list) or not all(isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in data):
        raise HybridQiskitError(f"{path} is not a list of per-epoch records; {_retrain_hint(Path(run_dir))}")
    return data


def _history_id(history: list[dict]) -> str | None:
    ids = {h.get(RUN_ID) for h in history}
    return ids.pop() if len(ids) == 1 else "<mixed>"


def load_run(run_dir: str | Path):
    """(config, best checkpoint payload) of a run directory, with clear errors: a damaged
    config.json, a missing or corrupt model.pt, or a model.pt from another run."""
    from hybrid_qiskit.checkpoints import load_checkpoint

    path = Path(run_dir)
    cfg, run_id = read_config(path)
    payload = load_checkpoint(path / "model.pt")
    if payload.get(RUN_ID) != run_id:
        raise CheckpointError(f"{path / 'model.pt'} belongs to another run than {path / 'config.json'} "
                              f"(run ids {payload.get(RUN_ID)} and {run_id}); {_retrain_hint(path)}")
    return cfg, payload


def load_splits(cfg):
    """The train/val/test splits a run was made with (its dataset, classes, limits and seed: the
    same images, in the same order, as when it trained)."""
    from hybrid_qiskit.data import load_dataset, parse_classes

    return load_dataset(
        cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        classes=parse_classes(cfg.classes),
        limit_train=cfg.limit_train,
        limit_test=cfg.limit_test,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
    )


# --------------------------------------------------------------------------- owning


@dataclass(frozen=True)
class RunStart:
    """What ``prepare`` decided: the run id, and the last.pt state to resume from (or None)."""

    run_id: str | None  # None only when resuming a run written before run ids existed
    state: dict | None = None

    @property
    def resume(self) -> bool:
        return self.state is not None


def _present(run_dir: Path) -> list[str]:
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def prepare(run_dir: Path, cfg, *, resume: bool, overwrite: bool) -> RunStart:
    """Decide, under the run's lock, whether ``train`` starts, resumes or refuses.

    Raises:
        HybridQiskitError: the folder holds a run and neither --resume nor --overwrite was given;
            --resume on files that are damaged, belong to different runs or to other settings.
    """
    if resume and overwrite:
        raise HybridQiskitError("--resume and --overwrite contradict each other; pass one")
    present = _present(run_dir)
    if not present:
        return RunStart(new_run_id())  # --resume of a run that never started simply starts it
    if overwrite:
        clear(run_dir)
        return RunStart(new_run_id())
    if not resume:
        raise HybridQiskitError(
            f"{run_dir} already holds a run ({_describe(run_dir)}); pass --resume to continue it, "
            f"--overwrite to replace it, or --name for a new one")
    return _resume_checks(run_dir, cfg)


def _describe(run_dir: Path) -> str:
    try:
        epochs = len(read_history(run_dir, required=False) or [])
    except HybridQiskitError:
        return "with a damaged history.json"
    finished = (run_dir / "metrics.json").exists()
    return f"{'finished' if finished else 'unfinished'}, {epochs} epoch(s) recorded"


def _resume_checks(run_dir: Path, cfg) -> RunStart:
    from hybrid_qiskit.checkpoints import load_checkpoint

    hint = "pass --overwrite to start the run again, or --name for a new one"
    if not (run_dir / "config.json").exists():
        raise HybridQiskitError(f"cannot resume {run_dir}: its config.json is missing, so nothing shows which "
                                f"run the other files belong to; {hint}")
    missing = missing_settings(run_dir)
    if missing:  # resuming would continue on defaults the run may never have been trained with
        raise HybridQiskitError(
            f"cannot resume {run_dir}: its config.json lacks {', '.join(missing)} (cut or edited?), so "
            f"nothing shows what the run was trained with; restore them, or {hint}")
    diff, run_id = settings_diff(run_dir, cfg)
    if diff:  # even the epoch count must match: the learning-rate schedule spans the whole run
        raise HybridQiskitError(f"--resume needs the run's own settings; these differ: {', '.join(diff)}")
    last, state = run_dir / "last.pt", None
    owners = {"config.json": run_id}
    if last.exists():
        state = load_checkpoint(last)
        missing = [k for k in ("state_dict", "optimizer", "scheduler", "shuffle_rng", "torch_rng", "history",
                               "best_val_accuracy", "epoch") if k not in state]
        if missing:
            raise CheckpointError(f"{last} lacks {', '.join(missing)}: it is not a resumable checkpoint; {hint}")
        owners["last.pt"] = state.get(RUN_ID)
    if (run_dir / "model.pt").exists():
        owners["model.pt"] = load_checkpoint(run_dir / "model.pt").get(RUN_ID)
    elif state is not None and state["epoch"] > 0:
        raise HybridQiskitError(f"cannot resume {run_dir}: model.pt (the best checkpoint) is missing; {hint}")
    history = read_history(run_dir, required=False)
    if history:
        owners["history.json"] = _history_id(history)
    if len(set(owners.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in owners.items())
        raise HybridQiskitError(f"cannot resume {run_dir}: its files come from different runs (run ids: {listed}); "
                                f"{hint}")
    if state is not None:  # a run written before run ids existed keeps None: its files stay consistent
        return RunStart(run_id, state)
    # No last.pt: killed before the first epoch ended; the run starts again under the same id.
    return RunStart(run_id or new_run_id())


def missing_settings(run_dir: Path) -> list[str]:
    """The settings that ``run_dir/config.json`` lacks. Every version writes all of its settings,
    so a missing one means a damaged or edited file: evaluation reads it as its default, but a
    run must not be continued (or reused by ``compare``) on a guess."""
    from hybrid_qiskit.config import FIELD_NAMES, LATER_SETTINGS

    data = read_json_file(run_dir / "config.json", fix=_retrain_hint(run_dir))
    return sorted(FIELD_NAMES - set(data) - LATER_SETTINGS) if isinstance(data, dict) else []


def settings_diff(run_dir: Path, cfg) -> tuple[list[str], str | None]:
    """The settings in which the run in ``run_dir`` differs from ``cfg``, and the run's id.

    Where the run lives (out, name) is not a setting: a moved or copied run compares equal. A
    setting added since the run was made reads as its default.
    """
    saved, run_id = read_config(run_dir)
    diff = sorted(k for k, v in saved.to_dict().items()
                  if k not in ("out", "name") and _json(v) != _json(getattr(cfg, k)))
    return diff, run_id


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def clear(run_dir: Path) -> None:
    """Remove a run's files for --overwrite; anything else in the folder (a job ledger, sweeps:
    results made from the old model) stops it before anything is removed."""
    others = sorted(p.name for p in run_dir.iterdir()
                    if p.name not in RUN_FILES and p.name != LOCK and not p.name.endswith(TMP_SUFFIX)
                    and not (p.name.startswith("eval-") and p.suffix == ".json"))
    if others:
        raise HybridQiskitError(
            f"--overwrite would orphan {', '.join(others)} in {run_dir} (made from the old model); move "
            f"them away first, or choose another --name")
    for p in run_dir.iterdir():
        if p.name != LOCK:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


@contextmanager
def owned(run_dir: str | Path, *, what: str) -> Iterator[Path]:
    """Hold ``run_dir``'s writer lock; if the command fails before writing any file of a run,
    the folder it made (or emptied) is removed again, so no half-made run is left."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    reason = writable(run_dir) if run_dir.is_dir() else None
    if reason:  # the lock file may be writable in a folder that is not (mode bits on the folder)
        raise HybridQiskitError(f"cannot write to {run_dir}: {reason}; make it writable, or copy the run "
                                f"to a writable --out")
    with WriterLock(run_dir, what=what):
        try:
            yield run_dir
        except BaseException:
            leftovers = [p for p in run_dir.iterdir() if p.name != LOCK and not p.name.endswith(TMP_SUFFIX)]
            if not leftovers and (not existed or not _present(run_dir)):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def writable(folder: str | Path) -> str | None:
    """None if a file can be created in ``folder``, else why not (a real probe: permissions,
    a read-only mount, a full disk; root's bypass of permission bits is taken into account)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe.", suffix=TMP_SUFFIX):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)
