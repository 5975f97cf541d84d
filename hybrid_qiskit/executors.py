"""Who runs independent jobs (a sweep's cells, a comparison's training runs): this process, a
local process pool, or a Ray cluster.

A :class:`Work` says what to run: ``work.fn(job.task)`` for each job, where the task is plain
data and ``fn`` a module-level function that returns a dict and never raises (failures come back
as ``{"error": text, "user": bool}``). Every executor yields ``(job, outcome)`` as jobs finish,
in any order. Executors never write files: the driver writes each finished job's result as it
arrives, so resuming works whatever ran the jobs.

* :class:`SerialExecutor` (``--workers 1``, the default): one job at a time in this process.
* :class:`PoolExecutor` (``--workers N``): N worker processes on this machine, one thread each
  (a training run sets torch's own: its config's ``threads``). It refuses an N whose jobs would
  not fit in memory, with one line.
* :class:`RayExecutor` (``--ray [ADDRESS]``): Ray tasks on a local Ray instance, or on a running
  cluster at ADDRESS. Ray is the optional extra ``[cluster]``, imported only here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from hybrid_qiskit import resources
from hybrid_qiskit.errors import HybridQiskitError

RAY_INSTALL = "pip install 'hybrid-qiskit[cluster]'"
# One thread per worker for every pool a numerical library keeps, set before the library loads
# (OpenMP reads its environment once): N workers use N cores, not N x cores.
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
# A worker's peak resident memory after a small digits cell, with torch, qiskit, Aer and the
# runtime loaded (getrusage: 0.9 GB; forked workers share part of it, so this errs on the safe side);
# after three small digits training runs, the same 0.9 GB.
BASE_BYTES = 2**30


@dataclass(frozen=True)
class Work:
    """What the executors run, and what each job needs.

    Attributes:
        fn: ``fn(job.task) -> dict``, module-level (a pool or Ray pickles it by name); never raises.
        needs: ``needs(job) -> (bytes, what)``: the job's memory on top of a worker process, and
            what that is in words (for the memory check's message); called in the driver only.
        unit: what one job is called in messages ("cell", "run").
        preload: modules the pool's server imports once, so that each worker starts at once.
        cpus: ``cpus(job)``: the cores a job uses (Ray reserves them).
    """

    fn: Callable[[object], dict]
    needs: Callable[[object], tuple[int, str]]
    unit: str
    preload: tuple[str, ...] = ()
    cpus: Callable[[object], int] = field(default=lambda job: 1)


def add_flags(p, unit: str) -> None:
    """The ``--workers`` / ``--ray`` flags of a command whose ``unit`` s (cells, runs) are jobs."""
    run = p.add_mutually_exclusive_group()
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help=f"{unit} at once, in N local worker processes (default 1: in this process)")
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help=f"run {unit} as Ray tasks: a local Ray instance, or the cluster at ADDRESS (e.g. "
                          f"HEAD_IP:6379, or auto); needs {RAY_INSTALL}")


def make_executor(work: Work, *, workers: int = 1, ray: str | None = None, jobs: Iterable = ()):
    """The executor the flags ask for. ``ray``: None (not Ray), "local" (a local instance) or an
    address; ``jobs``: the jobs to run, for the memory check of the local pool."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HybridQiskitError(f"--workers must be an integer >= 1, got {workers!r}")
    if ray is not None:
        if workers != 1:
            raise HybridQiskitError("give --workers or --ray, not both (Ray schedules its own workers)")
        return RayExecutor(work, None if ray == "local" else ray)
    check_memory(work, workers, jobs)
    return SerialExecutor(work) if workers == 1 else PoolExecutor(work, workers)


def check_memory(work: Work, workers: int, jobs: Iterable) -> None:
    """Refuse ``workers`` jobs at once that would not fit in the memory available now.

    A pool worker needs its own process and the largest job's own memory (a quantum state); in
    this process (``workers == 1``) only the job's memory is new."""
    largest = max((work.needs(j) for j in jobs), default=None, key=lambda need: need[0])
    available = resources.available_memory()
    if largest is None or available is None:
        return
    state, what = largest
    per_job = state + (BASE_BYTES if workers > 1 else 0)
    if workers * per_job <= available:
        return
    fit = available // per_job
    advice = (f"use --workers {fit} or fewer" if fit >= 1
              else f"even one {work.unit} does not fit: free memory or use a smaller model")
    raise HybridQiskitError(
        f"--workers {workers} needs about {_gb(workers * per_job)} ({_gb(per_job)} per {work.unit}: "
        + ("a worker process plus " if workers > 1 else "") + f"a {what}), but {_gb(available)} is "
        f"available; {advice}"
    )


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


class SerialExecutor:
    """One job at a time, in this process (a job's numbers are the same as in a worker's)."""

    description = "in this process"

    def __init__(self, work: Work):
        self.work = work

    def run(self, jobs: list) -> Iterator[tuple[object, dict]]:
        for job in jobs:
            yield job, self.work.fn(job.task)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class PoolExecutor:
    """``workers`` processes forked from a fresh server process (multiprocessing's forkserver).

    The server imports the work's modules (torch, qiskit, ...) once, with one thread per library,
    and has never run a thread pool: its forks start in well under a second and inherit no OpenMP
    state, which a fork of this (driver) process would. One server serves a driver process: the
    first pool's preload list is the one it keeps.
    """

    def __init__(self, work: Work, workers: int):
        self.work = work
        self.workers = workers
        self.description = f"on {workers} local worker processes"
        self._pool = None

    def __enter__(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(self.work.preload))
        saved = {k: os.environ.get(k) for k in THREAD_ENV}
        os.environ.update(THREAD_ENV)  # the server reads them before it loads any library
        try:
            forkserver.ensure_running()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=init_worker,
                                         initargs=(os.getpid(),))
        return self

    def run(self, jobs: list) -> Iterator[tuple[object, dict]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        futures = {self._pool.submit(self.work.fn, job.task): job for job in jobs}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                raise HybridQiskitError(
                    f"a worker process died (out of memory?); finished {self.work.unit}s are saved: rerun with "
                    "fewer --workers to resume"
                ) from None
            yield futures[future], outcome

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is None:
            return
        if exc_type is None:
            self._pool.shutdown(wait=True)
        else:  # interrupted or failed: stop the jobs in flight now (finished ones are saved)
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(5)
        self._pool = None


def init_worker(driver_pid: int | None = None) -> None:
    """Start of a pool worker: one thread per library, Ctrl-C is the driver's to handle, and the
    worker ends when the driver does (``driver_pid``), however the driver ended."""
    import signal

    os.environ.update(THREAD_ENV)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if driver_pid is not None:
        import threading

        threading.Thread(target=_exit_with, args=(driver_pid,), daemon=True, name="driver-watch").start()


def _exit_with(pid: int) -> None:
    """Wait for process ``pid`` to end, then end this one at once.

    A SIGKILLed driver runs no cleanup, and its workers would wait for work forever: each holds
    the write end of the pool's task queue, so no end-of-file ever reaches them, and they in turn
    keep the forkserver and the resource tracker alive (1.7 GB, idle). The workers are the
    forkserver's children, not the driver's, so a parent-death signal cannot tell them either."""
    import select

    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process has ended
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(1.0)
    os._exit(1)


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
    """Ray tasks of ``work.cpus(job)`` cores each; a local Ray instance (``address=None``) or a
    running cluster.

    Each task names its files by path: on a cluster they must be on a filesystem that every node
    mounts at the same path, and the project must be installed on every node.
    """

    def __init__(self, work: Work, address: str | None):
        self.work = work
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
        remote = ray.remote(self.work.fn)
        largest = max((float(n.get("Resources", {}).get("memory", 0)) for n in ray.nodes() if n.get("Alive")),
                      default=0.0)
        refs = {}
        for job in jobs:
            state, what = self.work.needs(job)
            memory = BASE_BYTES + state
            if largest and memory > largest:  # Ray would wait forever for a node that big
                raise HybridQiskitError(f"a {self.work.unit} needs about {_gb(memory)} (a process plus a {what}); "
                                        f"the largest Ray node offers {_gb(int(largest))}")
            # Ray packs tasks onto nodes by these requests: the job's cores and estimated memory.
            refs[remote.options(num_cpus=self.work.cpus(job), memory=memory).remote(job.task)] = job
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
        for ref in self._pending:  # interrupted or failed: stop the jobs in flight
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._pending = []
        self._ray.shutdown()  # a local instance stops; a cluster only loses this driver
