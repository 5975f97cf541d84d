"""Rows of a batch are independent: wide batches run in blocks of rows, on both cores.

Why blocks: a 20-qubit state is 8 MB (float64), so 10,000 rows at once would be 84 GB; and the
adjoint sweep is 15-25% faster when one block's stack stays in cache through every layer.

Why threads over blocks, not BLAS threads: numpy releases the GIL in every kernel the simulator
uses, so two Python threads each working on their own block keep two cores busy with no
synchronisation inside a kernel. OpenBLAS's own threads spin-wait for each other at every
small product: on this shared 2-core machine, with another process on one core, a 16x16
chunk product was measured 1.2-4x *slower* on two BLAS threads than on one. A block that a busy
core delays only delays itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Threads that run blocks. Two: the machines this targets (laptops, CI runners) have at least
# two cores, and a third thread on two cores only adds switching.
WORKERS = max(1, min(2, os.cpu_count() or 1))

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


# Work below this many bytes of state stays on the calling thread: an 8-qubit batch of 32 (64 KB)
# takes well under a millisecond, too little to pay for handing blocks to another thread.
PARALLEL_BYTES = 1 << 20


def row_blocks(rows: int, row_bytes: int, block_bytes: int) -> list[slice]:
    """Slices that cut ``rows`` rows of ``row_bytes`` each into blocks of about ``block_bytes``
    (at least one row each), of nearly equal size so that the workers finish together."""
    per = max(1, block_bytes // max(1, row_bytes))
    count = -(-rows // per)
    if rows * row_bytes >= PARALLEL_BYTES:
        count = max(count, WORKERS)
    if count > 1 and count % WORKERS:
        count += WORKERS - count % WORKERS  # an even share per worker: no straggler at the end
    count = min(rows, count) or 1
    bounds = [rows * i // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def map_blocks(fn: Callable[[slice], T], blocks: Sequence[slice]) -> list[T]:
    """``[fn(b) for b in blocks]``, on :data:`WORKERS` threads when there is more than one block.

    A call made from inside a worker (a nested simulation) runs in that worker's thread.
    """
    if len(blocks) < 2 or WORKERS < 2 or getattr(_local, "inside", False):
        return [fn(b) for b in blocks]
    return list(_executor().map(_inside(fn), blocks))


def _inside(fn: Callable[[slice], T]) -> Callable[[slice], T]:
    def run(block: slice) -> T:
        _local.inside = True
        try:
            return fn(block)
        finally:
            _local.inside = False

    return run


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="hybrid-qiskit-rows")
        return _pool
