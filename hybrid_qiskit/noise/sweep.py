"""Run a noise sweep: plan its cells, hand the unfinished ones to an executor, report.

The driver is the only writer. It holds the sweep folder's lock, appends each finished cell to
``cells.jsonl`` as it arrives from whichever executor ran it (this process, a local pool, Ray),
and writes the tables and plots at the end, in plan order, so the table is the same whatever ran
the cells. A rerun skips finished cells, including those of the run's other sweeps.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.executors import Work, make_executor
from hybrid_qiskit.fileio import ReaderLock, WriterLock
from hybrid_qiskit.noise import cell
from hybrid_qiskit.noise.grid import NOISE_KINDS
from hybrid_qiskit.noise.plan import SweepConfig, load_models, plan
from hybrid_qiskit.noise.report import markdown_table, write_outputs
from hybrid_qiskit.noise.store import CellStore, cell_key, finished_elsewhere

__all__ = ["SweepConfig", "run_sweep", "markdown_table", "sweep_dir"]


def _cell_bytes(job) -> tuple[int, str]:
    """The quantum state(s) a cell holds, for the executors' memory check and Ray's requests."""
    return cell.simulation_bytes(job.width, job.task.backend, job.task.settings, job.task.batch_size, job.chain)


# A cell for any executor. The pool's server preloads what a cell imports (the fake devices pull
# in qiskit_ibm_runtime; digits, sklearn). Not hybrid_qiskit.cli: workers import the driver's main
# module themselves, and runpy warns if `python -m hybrid_qiskit.cli` finds it loaded already.
CELLS = Work(fn=cell.run_cell_safely, needs=_cell_bytes, unit="cell", preload=(
    "hybrid_qiskit.noise.cell", "torch", "qiskit", "qiskit_aer", "qiskit_machine_learning", "qiskit_ibm_runtime",
    "sklearn.datasets", "backends", "backends.devices", "backends.noise", "hybrid_qiskit.data", "hybrid_qiskit.qnn",
    "hybrid_qiskit.primitives", "hybrid_qiskit.training", "hybrid_qiskit.checkpoints",
    "hybrid_qiskit.noise.mitigation"))


def sweep_dir(run_dir: str | Path, cfg: SweepConfig) -> Path:
    """Where a validated sweep's files go: ``RUN_DIR/noise/<name>/``."""
    return Path(run_dir) / "noise" / cfg.name


def run_sweep(run_dir: str | Path, cfg: SweepConfig, *, quiet: bool = False, workers: int = 1,
              ray: str | None = None) -> dict:
    """Run (or resume) the sweep into ``run_dir/noise/<name>/`` and write its table and plots.

    Args:
        workers: cells at once in local processes (1: in this process, one after another).
        ray: run the cells as Ray tasks: ``"local"`` (a local Ray instance) or a cluster address.

    Returns:
        The summary (also written to summary.json).

    Raises:
        HybridQiskitError: bad settings, another process writing the same sweep, a damaged cell
            log, a cell that failed (cells finished before it stay saved).
    """
    cfg = cfg.validated()
    with contextlib.ExitStack() as held:
        # The models must not change while their cells run: `train --resume` of one of these runs
        # is refused until the sweep ends (and a sweep waits for no training: it is refused).
        for folder in dict.fromkeys([run_dir, *cfg.compare, *([cfg.baseline] if cfg.baseline else [])]):
            held.enter_context(ReaderLock(folder, what="the noise sweep"))
        return _run_sweep(run_dir, cfg, quiet=quiet, workers=workers, ray=ray)


def _run_sweep(run_dir, cfg: SweepConfig, *, quiet: bool, workers: int, ray: str | None) -> dict:
    models, baseline = load_models(run_dir, cfg)
    data = cell.load_images(str(run_dir), cfg.split, cfg.limit)
    if len(data) == 0:
        raise HybridQiskitError(f"the {cfg.split} split of {run_dir} is empty")
    base_seed = models[0].config.seed if cfg.seed is None else cfg.seed
    jobs = plan(cfg, models, baseline, base_seed, run_dir)
    out_dir = sweep_dir(run_dir, cfg)
    with WriterLock(out_dir, what="noise-sweep"):
        store = CellStore(out_dir / "cells.jsonl")
        if store.warning():
            print(store.warning(), file=sys.stderr, flush=True)
        reused = _reuse_other_sweeps(store, jobs, out_dir)
        todo = [j for j in jobs if store.get(j.identity) is None]
        executor = make_executor(CELLS, workers=workers, ray=ray, jobs=todo)
        if not quiet:
            print(f"noise sweep {out_dir}: {len(jobs)} cells ({len(jobs) - len(todo) - reused} done already"
                  + (f", {reused} reused from the run's other sweeps" if reused else "")
                  + f"), {len(data)} {cfg.split} images" + (f", {executor.description}" if todo else ""),
                  flush=True)
        if todo:
            finished = [0]
            with executor, _heartbeat(finished, len(todo), quiet):
                for n, (job, outcome) in enumerate(executor.run(todo), 1):
                    record = _record(job, outcome)
                    store.append(record)
                    finished[0] = n
                    if not quiet:
                        print(f"[{n}/{len(todo)}] {_describe(record)}: accuracy {record['accuracy']:.3f} "
                              f"loss {record['loss']:.3f} ({record['seconds']:.1f}s)", flush=True)
        _check_unchanged([*models, *([baseline] if baseline else [])])
        records = [{**store.get(j.identity), **j.fields, "model": j.model} for j in jobs]
        try:
            return write_outputs(out_dir, cfg, records, models, baseline, run_dir)
        except OSError as exc:
            raise HybridQiskitError(f"cannot write the tables in {out_dir}: {exc.strerror or exc}; the cells "
                                    "are saved: fix the folder and rerun to write them") from None


def _heartbeat(finished: list[int], total: int, quiet: bool):
    """A line on stderr every 30 s while cells run: one cell can take minutes."""
    from hybrid_qiskit.progress import report_every

    if quiet:
        return contextlib.nullcontext()
    return report_every(lambda seconds: f"noise sweep: {finished[0]}/{total} cells finished, {seconds:.0f}s")


def _check_unchanged(models: list) -> None:
    """Refuse to write a summary beside a model that changed while the cells ran (a folder that
    held no lock: read-only, or on a file system without locks). Its cells stay saved under the
    old model's checksum; a rerun evaluates the new one."""
    for m in models:
        sha = cell.load_checkpoint_of(str(m.run_dir))[2]
        if sha != m.sha:
            raise HybridQiskitError(
                f"{m.run_dir}/model.pt changed while the sweep ran (sha {m.sha} when it started, {sha} now: "
                "trained or resumed meanwhile?); no summary written. The old model's cells are kept; "
                "rerun the sweep to evaluate the new one")


def _reuse_other_sweeps(store: CellStore, jobs: list, out_dir: Path) -> int:
    """Copy cells that another sweep of this run already finished into this sweep's log."""
    missing = [j for j in jobs if store.get(j.identity) is None]
    if not missing:
        return 0
    elsewhere = finished_elsewhere(out_dir.parent, out_dir)
    count = 0
    for job in missing:
        record = elsewhere.get(cell_key(job.identity))
        if record is not None:
            store.append(record)
            count += 1
    return count


def _record(job, outcome: dict) -> dict:
    """The cell's line in cells.jsonl, or a one-line error naming the cell."""
    if "error" in outcome:
        where = _describe({"model": job.model, **job.fields})
        if outcome.get("user"):
            raise HybridQiskitError(f"cell {where}: {outcome['error']}")
        raise HybridQiskitError(f"cell {where} failed: {outcome['error']} (finished cells are saved; "
                                "rerun to resume)")
    return {"identity": job.identity, "model": job.model, "run_dir": job.run_dir, **job.fields,
            "backend": job.task.backend or "none (classical)", **outcome["metrics"],
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _describe(r: dict) -> str:
    if r["noise"] in ("exact", "classical"):
        return f"{r['model']} {r['noise']} reference"
    return (f"{r['model']} {r['noise']}: {NOISE_KINDS[r['noise']].level_name}={r['level']} device={r['device']} "
            f"shots={r['shots']} mitigation={r['mitigation']} repeat={r['repeat']}")
