"""Free memory, and the refusals that need nothing but it: how many bytes this process may
still allocate, and whether a number of shots fits while Aer samples them.

The backends ask this before they allocate (shots, trajectories); :mod:`hybrid_qiskit.resources`
builds its per-backend estimates on it. It imports nothing of the project but its errors, so
every layer can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from hybrid_qiskit.errors import HybridQiskitError

# Memory left free for everything else in the process (torch, the data, Python itself).
HEADROOM = 0.85


def size_text(n: float) -> str:
    """``n`` bytes for a message: ``1.5 GiB``, ``300.0 MiB``, ``12 KiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n / scale < 10**6 else f"{n / scale:.2e} {unit}"
    return f"{n / 2**10:.0f} KiB"


def available_memory() -> int:
    """Bytes this process may still allocate: the smaller of the kernel's MemAvailable and what
    the cgroup (container) limit leaves."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            candidates.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return 2**63
    return max(0, min(candidates))


# Aer keeps every shot's outcome while it samples: 2**31 shots on aer_statevector grew to 23.7 GB.
SHOT_BYTES = 12


def check_shots(backend: str, shots: int | None, available: int | None = None) -> None:
    """Refuse, before Aer allocates them, more shots than this machine can hold.

    Raises:
        HybridQiskitError: one line with the estimate.
    """
    if not shots:
        return
    free = available_memory() if available is None else available
    need = shots * SHOT_BYTES
    if need > HEADROOM * free:
        raise HybridQiskitError(
            f"{backend}: {shots:,} shots need about {size_text(need)} while Aer samples them ({SHOT_BYTES} bytes per "
            f"shot), but only {size_text(free)} is free; lower --shots (a million shots already put the shot noise "
            f"near 0.001)")
