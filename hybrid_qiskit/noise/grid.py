"""The sweep's grid: noise kinds, their levels, and the backend settings of one cell.

A cell is (model, noise kind, device, level, shots, mitigation, repeat). Its backend is
``aer_noisy`` (real shots, readout error measured) or, for ``shots = exact``, ``aer_noisy_exact``
(density matrix, readout error folded in exactly); ``trex`` / ``zne`` cells run the runtime's
local testing mode (``ibm_local``), which applies the runtime's own error mitigation. Heads wider
than Aer runs here (or every head, with ``simulator = "trajectories"``) run on
``noisy_trajectories`` with one trajectory per shot: the same noise, twirled, as a matrix-product
state for chain heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backends.devices import ALL_TO_ALL, DEFAULT_DEVICE
from hybrid_qiskit.errors import HybridQiskitError

SIMULATORS = ("auto", "aer", "trajectories")


@dataclass(frozen=True)
class NoiseKind:
    """One ``--noise`` choice: what its level means and the defaults of its grid."""

    name: str
    level_name: str  # short name of the level (legends, progress lines)
    level_meaning: str  # axis label of the plots
    default_levels: tuple[str, ...]
    default_devices: tuple[str, ...]
    increasing: bool = True  # larger level = more noise (False for T1)


NOISE_KINDS = {
    k.name: k
    for k in (
        NoiseKind("depolarizing", "p", "depolarizing probability p per gate",
                  ("0", "0.001", "0.003", "0.01", "0.03", "0.1"), (ALL_TO_ALL,)),
        NoiseKind("readout", "p_readout", "readout flip probability", ("0", "0.01", "0.02", "0.05", "0.1", "0.2"), (ALL_TO_ALL,)),
        NoiseKind("thermal", "T1", "T1 = T2 (µs)", ("inf", "200", "100", "50", "20", "10"), (ALL_TO_ALL,), increasing=False),
        NoiseKind("device", "noise_scale", "noise scale (x the device's calibrated errors)", ("0", "0.5", "1", "2", "4"),
                  (DEFAULT_DEVICE,)),
    )
}
# normalize: re-standardize ⟨Z⟩ per qubit with the noisy backend's own statistics; refit: that, then
# re-fit the readout to the calibration images' ⟨Z⟩ and labels (adaptation.py)
MITIGATIONS = ("none", "readout", "normalize", "refit", "trex", "zne")
CALIBRATED = ("normalize", "refit")  # mitigations that run the calibration set
RUNTIME_MITIGATION = {"trex": 1, "zne": 2}  # ibm_local resilience_level


def level_label(value: float) -> str:
    """The canonical text of a level: ``0.001``, ``1``, ``inf`` (keys, tables and tick labels)."""
    return "inf" if math.isinf(value) else f"{value:g}"


def parse_levels(kind: str, items) -> tuple[str, ...]:
    """Validated, canonical levels of noise ``kind`` (comma text or a list), in the given order.

    Raises:
        HybridQiskitError: a level that is not a number or is out of range, naming it.
    """
    values = _split(items)
    if not values:
        raise HybridQiskitError("--levels is empty")
    out = []
    for item in values:
        try:
            x = float(item)
        except (TypeError, ValueError):
            raise HybridQiskitError(f"bad {kind} level {item!r}: not a number") from None
        if math.isnan(x) or x < 0:
            raise HybridQiskitError(f"bad {kind} level {item!r}: must be >= 0")
        if kind in ("depolarizing", "readout") and x > (1 if kind == "depolarizing" else 0.5):
            top = "1" if kind == "depolarizing" else "0.5"
            raise HybridQiskitError(f"bad {kind} level {item!r}: a probability in [0, {top}]")
        if kind == "thermal" and x == 0:
            raise HybridQiskitError("bad thermal level '0': T1 must be > 0 µs (inf = no relaxation)")
        if kind != "thermal" and math.isinf(x):
            raise HybridQiskitError(f"bad {kind} level {item!r}: must be finite")
        out.append(level_label(x))
    if len(set(out)) != len(out):
        raise HybridQiskitError(f"--levels repeats a value: {', '.join(out)}")
    return tuple(out)


def parse_shots(items) -> tuple[int | None, ...]:
    """``128,1024,exact`` -> (128, 1024, None); None means exact (density matrix, no shots)."""
    out: list[int | None] = []
    for item in _split(items):
        if str(item).strip().lower() in ("exact", "none", "inf"):
            out.append(None)
            continue
        try:
            n = int(str(item))
        except ValueError:
            raise HybridQiskitError(f"bad --shots value {item!r}: a positive integer or 'exact'") from None
        if n < 1:
            raise HybridQiskitError(f"bad --shots value {item!r}: a positive integer or 'exact'")
        out.append(n)
    if not out:
        raise HybridQiskitError("--shots is empty")
    return tuple(dict.fromkeys(out))


def parse_choices(items, known, flag: str) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(str(x).strip() for x in _split(items)))
    bad = [x for x in out if x not in known]
    if bad or not out:
        raise HybridQiskitError(f"bad {flag} value {', '.join(bad) or '(empty)'}; known: {', '.join(known)}")
    return out


def parse_devices(items) -> tuple[str, ...]:
    """Device names, normalised (``fez`` -> ``fake_fez``); ``all_to_all`` = no device."""
    from backends.devices import normalize_device_name

    names = [str(x).strip() for x in _split(items)]
    if not names:
        raise HybridQiskitError("--devices is empty")
    return tuple(dict.fromkeys(n if n == ALL_TO_ALL else normalize_device_name(n) for n in names))


def _split(items) -> list:
    if items is None:
        return []
    if isinstance(items, str):
        return [s.strip() for s in items.split(",") if s.strip()]
    if isinstance(items, (int, float)):
        return [items]
    return list(items)


def shots_label(shots: int | None) -> str:
    return "exact" if shots is None else str(shots)


def shot_axis(cfg) -> list[str]:
    """The shot counts in increasing order, exact last (the x axis of accuracy_vs_shots)."""
    return [shots_label(s) for s in sorted(cfg.shots, key=lambda s: float("inf") if s is None else s)]


@dataclass(frozen=True)
class Cell:
    """One evaluation of the sweep. ``shots=None``: exact density-matrix expectation."""

    noise: str
    device: str
    level: str
    shots: int | None
    mitigation: str
    repeat: int


# What names one setting of the grid (a cell but its repeat, and the model): the summary's rows
# aggregate the repeats of each, and the figures draw one line per value of those that vary.
GROUP_FIELDS = ("model", "noise", "device", "level", "shots", "mitigation")


def backend_for_cell(cell: Cell, *, seed: int, optimization_level: int, two_qubit_factor: float,
                     width: int = 0, simulator: str = "auto") -> tuple[str, dict]:
    """(registry name, settings) that realise ``cell``'s noise for a ``width``-qubit head: on
    the noisy Aer backends, or on ``noisy_trajectories`` with one trajectory per shot (a QPU's
    shot statistics) where ``simulator`` says so or, under ``auto``, the head is wider than Aer
    runs here (:func:`backends.noise_source.aer_method`).

    Raises:
        HybridQiskitError: a cell no simulator can run for this width (one line).
    """
    from backends.noise_source import AER_FAST_QUBITS, EXACT_QUBITS

    limit = EXACT_QUBITS if cell.shots is None else AER_FAST_QUBITS
    trajectories = simulator == "trajectories" or (simulator == "auto" and width > limit)
    if cell.mitigation in RUNTIME_MITIGATION and width > AER_FAST_QUBITS:
        raise HybridQiskitError(
            f"--mitigation {cell.mitigation} runs the runtime's local mode on Aer, which takes at most "
            f"{AER_FAST_QUBITS} qubits here; a {width}-qubit head can sweep none, normalize, refit or readout")
    if trajectories and cell.shots is None and cell.mitigation not in RUNTIME_MITIGATION:
        raise HybridQiskitError(
            f"--shots exact is Aer's density matrix (at most {EXACT_QUBITS} qubits, --simulator aer); a "
            f"{width}-qubit head or --simulator trajectories takes finite --shots")
    if cell.mitigation in RUNTIME_MITIGATION:
        return "ibm_local", {
            "device": cell.device, "shots": cell.shots, "optimization_level": optimization_level,
            "resilience_level": RUNTIME_MITIGATION[cell.mitigation], "seed": seed,
        }
    settings: dict = {"device": cell.device, "optimization_level": optimization_level, "seed": seed}
    level = float(cell.level)
    if cell.noise == "depolarizing":
        settings.update(depolarizing=level, depolarizing_2q=min(level * two_qubit_factor, 1.0))
    elif cell.noise == "readout":
        settings.update(readout_error=level)
    elif cell.noise == "thermal":
        if math.isfinite(level):
            settings.update(t1=level)  # T2 defaults to T1
        else:  # no relaxation; a zero parametric setting keeps a device's calibration out
            settings.update(depolarizing=0.0)
    elif cell.noise == "device":
        settings.update(noise_scale=level)
    else:  # parse_choices guards the CLI; this guards library callers
        raise HybridQiskitError(f"unknown noise kind {cell.noise!r}; known: {', '.join(NOISE_KINDS)}")
    if trajectories:
        return "noisy_trajectories", {**settings, "shots": cell.shots, "trajectories": cell.shots}
    if cell.shots is None:
        return "aer_noisy_exact", settings
    return "aer_noisy", {**settings, "shots": cell.shots}


def check_runtime_cells(noise: str, levels, shots, mitigations) -> None:
    """``trex``/``zne`` run the runtime's local mode, which simulates a fake device as calibrated."""
    wanted = [m for m in mitigations if m in RUNTIME_MITIGATION]
    if not wanted:
        return
    if noise != "device" or any(float(lv) != 1 for lv in levels) or None in shots:
        raise HybridQiskitError(
            f"--mitigation {','.join(wanted)} runs qiskit-ibm-runtime's local mode on the fake device as "
            "calibrated: use it with --noise device --levels 1 and finite --shots"
        )
