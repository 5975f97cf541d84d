"""Who runs a sweep's cells: this process, a local process pool, or a Ray cluster.

Every executor takes plain-data :class:`~hybrid_qiskit.noise.cell.CellTask` s and yields
``(job, outcome)`` as cells finish, in any order; ``outcome`` is ``{"metrics": ...}`` or
``{"error": text, "user": bool}``. The driver writes each finished cell as it arrives: executors
never write files, so resuming works whatever ran the cells.

* :class:`SerialExecutor` (``--workers 1``, the default): one cell at a time in this process.
* :class:`PoolExecutor` (``--workers N``): N worker processes on this machine, one thread each.
  It refuses an N whose cells would not fit in memory, with one line.
* :class:`RayExecutor` (``--ray [ADDRESS]``): Ray tasks on a local Ray instance, or on a running
  cluster at ADDRESS. Ray is the optional extra ``[cluster]``, imported only here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hybrid_qiskit import resources
from hybrid_qiskit.errors import HybridQiskitError
from hybrid_qiskit.noise import cell

RAY_INSTALL = "pip install 'hybrid-qiskit[cluster]'"


def make_executor(*, workers: int = 1, ray: str | None = None, jobs: Iterable = ()):
    """The executor the flags ask for. ``ray``: None (not Ray), "local" (a local instance) or an
    address; ``jobs``: the cells to run, for the memory check of the local pool."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HybridQiskitError(f"--workers must be an integer >= 1, got {workers!r}")
    if ray is not None:
        if workers != 1:
            raise HybridQiskitError("give --workers or --ray, not both (Ray schedules its own workers)")
        return RayExecutor(None if ray == "local" else ray)
    check_memory(workers, jobs)
    return SerialExecutor() if workers == 1 else PoolExecutor(workers)


def check_memory(workers: int, jobs: Iterable) -> None:
    """Refuse ``workers`` cells at once that would not fit in the memory available now.

    A pool worker needs its own process and the largest cell's quantum state; in this process
    (``workers == 1``) only the state is new."""
    largest = max((cell.simulation_bytes(j.width, j.task.backend, j.task.settings, j.task.batch_size, j.chain)
                   for j in jobs), default=None, key=lambda need: need[0])
    available = resources.available_memory()
    if largest is None or available is None:
        return
    state, what = largest
    per_cell = state + (cell.BASE_BYTES if workers > 1 else 0)
    if workers * per_cell <= available:
        return
    fit = available // per_cell
    advice = f"use --workers {fit} or fewer" if fit >= 1 else "even one cell does not fit: free memory or use a smaller model"
    raise HybridQiskitError(
        f"--workers {workers} needs about {_gb(workers * per_cell)} ({_gb(per_cell)} per cell: "
        + ("a worker process plus " if workers > 1 else "") + f"a {what}), but {_gb(available)} is "
        f"available; {advice}"
    )


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


class SerialExecutor:
    """One cell at a time, in this process (the cells' numbers are the same as in a worker's)."""

    description = "in this process"

    def run(self, jobs: list) -> Iterator[tuple[object, dict]]:
        for job in jobs:
            yield job, cell.run_cell_safely(job.task)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class PoolExecutor:
    """``workers`` processes forked from a fresh server process (multiprocessing's forkserver).

    The server imports torch, qiskit and Aer once, with one thread per library, and has never run
    a thread pool: its forks start in well under a second and inherit no OpenMP state, which a
    fork of this (driver) process would.
    """

    # What a cell imports (the fake devices pull in qiskit_ibm_runtime; digits, sklearn). Not
    # hybrid_qiskit.cli: workers import the driver's main module themselves, and runpy warns if
    # `python -m hybrid_qiskit.cli` finds it loaded already.
    PRELOAD = ["hybrid_qiskit.noise.cell", "torch", "qiskit", "qiskit_aer", "qiskit_machine_learning",
               "qiskit_ibm_runtime", "sklearn.datasets", "backends", "backends.devices", "backends.noise",
               "hybrid_qiskit.data", "hybrid_qiskit.qnn", "hybrid_qiskit.primitives",
               "hybrid_qiskit.training", "hybrid_qiskit.checkpoints", "hybrid_qiskit.noise.mitigation"]

    def __init__(self, workers: int):
        self.workers = workers
        self.description = f"on {workers} local worker processes"
        self._pool = None

    def __enter__(self):
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self.PRELOAD)
        saved = {k: os.environ.get(k) for k in cell.THREAD_ENV}
        os.environ.update(cell.THREAD_ENV)  # the server reads them before it loads any library
        try:
            forkserver.ensure_running()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=cell.init_worker,
                                         initargs=(os.getpid(),))
        return self

    def run(self, jobs: list) -> Iterator[tuple[object, dict]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        futures = {self._pool.submit(cell.run_cell_safely, job.task): job for job in jobs}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                raise HybridQiskitError(
                    "a worker process died (out of memory?); finished cells are saved: rerun with "
                    "fewer --workers to resume"
                ) from None
            yield futures[future], outcome

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is None:
            return
        if exc_type is None:
            self._pool.shutdown(wait=True)
        else:  # interrupted or failed: stop the cells in flight now (finished ones are saved)
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(5)
        self._pool = None


def import_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise HybridQiskitError(f"--ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A ``HOST:PORT`` address that nothing answers is one line now, not minutes of Ray retrying."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise HybridQiskitError(
            f"no Ray head answers at {address} ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}); "
            "start one with `ray start --head` and pass the address it prints"
        ) from None


class RayExecutor:
    """Ray tasks of one CPU each; a local Ray instance (``address=None``) or a running cluster.

    Each task names its run directory: on a cluster it must be on a filesystem that every node
    mounts at the same path, and the project must be installed on every node.
    """

    def __init__(self, address: str | None):
        self.address = address
        self.description = f"as Ray tasks on {address}" if address else "as Ray tasks on a local Ray instance"
        self._ray = import_ray()
        self._pending: list = []

    def __enter__(self):
        import logging

        _check_reachable(self.address)
        try:
            # "local": always a new instance, even where a stopped `ray start` left its address
            self._ray.init(address=self.address or "local", include_dashboard=False,
                           logging_level=logging.WARNING, configure_logging=True)
        except Exception as exc:  # unreachable address, a cluster of another Ray version, ...
            where = self.address or "a local instance"
            raise HybridQiskitError(f"cannot start Ray on {where}: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        return self

    def run(self, jobs: list) -> Iterator[tuple[object, dict]]:
        ray = self._ray
        remote = ray.remote(cell.run_cell_safely)
        largest = max((float(n.get("Resources", {}).get("memory", 0)) for n in ray.nodes() if n.get("Alive")),
                      default=0.0)
        refs = {}
        for job in jobs:
            memory, what = cell.cell_memory(job.width, job.task.backend, job.task.settings, job.task.batch_size, job.chain)
            if largest and memory > largest:  # Ray would wait forever for a node that big
                raise HybridQiskitError(f"a cell needs about {_gb(memory)} (a process plus a {what}); the "
                                        f"largest Ray node offers {_gb(int(largest))}")
            # Ray packs tasks onto nodes by these requests: one core and the estimated memory each.
            refs[remote.options(num_cpus=1, memory=memory).remote(job.task)] = job
        self._pending = list(refs)
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            for ref in done:
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # a worker that died, a node that left
                    outcome = {"error": f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                               "user": False}
                yield refs[ref], outcome

    def __exit__(self, exc_type, *exc) -> None:
        for ref in self._pending:  # interrupted or failed: stop the cells in flight
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._pending = []
        self._ray.shutdown()  # a local instance stops; a cluster only loses this driver
