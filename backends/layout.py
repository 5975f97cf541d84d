"""Where the head lands on a device: the physical qubits, chosen by the device's calibration.

Qiskit's preset pass manager at ``optimization_level=1`` keeps the trivial layout whenever it
needs no swaps, and a chain-shaped head (every head here: angle or ZZ encoding, ``reverse_linear``
ansatz) needs none on physical qubits 0..n-1 of a heavy-hex device. So an 8-qubit head lands on
qubits 0-7 whatever their errors: fake_torino's qubit 0 reads out wrong 16.7% of the time
(median 2.3%), fake_fez's cz(0,1) has 1.5% error (median 0.39%). Levels 2 and 3 score layouts
by calibration too, but only the first matches their search reaches (level 3 put the head on a
14.6% readout qubit of fake_torino, and on a worst-decile qubit of fake_fez).

``layout`` (a backend setting; ``--layout`` on ``submit``) chooses:

* ``noise_aware`` (the default): every placement of the head's two-qubit interaction graph on
  the device's coupling graph (rustworkx's VF2 subgraph matcher; a chain of 8 has a few thousand
  on a Heron) is scored by its estimated success probability from the device's current
  calibration, and the best one is used, so no swap is added and no bad qubit is chosen while a
  better placement exists (:func:`best_placement`)::

      log ESP = sum over qubits of log(1 - readout error) + 2 x (1q gates) x log(1 - sx error)
              + sum over couplings of (2q gates on it) x log(1 - two-qubit gate error)

  A head whose interaction graph has no placement without swaps gets the transpiler's own
  layout at the handle's optimization level.
* ``transpiler``: the preset pass manager's own choice at the optimization level (the old default).
* ``trivial``: physical qubits 0..n-1 (swaps added if they are not coupled as needed).
* physical qubits, e.g. ``"141,142,143,136,123,124,125,126"`` or a list: logical qubit i on the
  i-th one (a rehearsal's layout, pinned for the real submission).

Measured on fake_fez, fake_torino and fake_marrakesh with the 8-qubit digits head: the README's
hardware section (``experiments/layout_choice.py``).

Example:
    >>> from backends.devices import get_fake_backend
    >>> from hybrid_qiskit.circuits import build_head_circuit
    >>> pm = LayoutPassManager(get_fake_backend("fake_torino"), optimization_level=1, seed=0)
    >>> isa = pm.run(build_head_circuit(8).circuit)
    >>> 0 in physical_qubits(isa)   # qubit 0 reads out wrong 16.7% of the time
    False
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from hybrid_qiskit.errors import HybridQiskitError

LAYOUTS = ("noise_aware", "transpiler", "trivial")
DEFAULT_LAYOUT = "noise_aware"
# Placements scored at most, the best of them used: a count, not a time, so a seeded run places the
# head the same way on any machine (VF2's order is deterministic). A chain of 8 on a Heron has
# about 1,100-1,500 placements, of 16 about 8,100 (1 s); a chain of 24 stops here (about 2 s).
MAX_PLACEMENTS = 20_000
MAX_SECONDS = 60.0  # a safety net only (a pathological interaction graph)


def parse_layout(value) -> str | tuple[int, ...]:
    """A ``layout`` setting: one of :data:`LAYOUTS`, or physical qubits (``"3,4,5"``, a list).

    Raises:
        HybridQiskitError: anything else.
    """
    if value is None:
        return DEFAULT_LAYOUT
    if isinstance(value, str):
        text = value.strip()
        if text in LAYOUTS:
            return text
        parts = [p.strip() for p in text.strip("[]()").split(",") if p.strip()]
        value = parts if parts and all(p.isdigit() for p in parts) else None
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(q, int) and not isinstance(q, bool) and q >= 0 or isinstance(q, str) and q.isdigit()
            for q in value):
        qubits = tuple(int(q) for q in value)
        if len(set(qubits)) != len(qubits):
            raise HybridQiskitError(f"layout names a physical qubit twice: {','.join(map(str, qubits))}")
        return qubits
    raise HybridQiskitError(f"layout must be one of {', '.join(LAYOUTS)} or physical qubits like 3,4,5; got {value!r}")


def layout_text(layout: str | tuple[int, ...]) -> str:
    """A parsed layout as the description records it."""
    return layout if isinstance(layout, str) else ",".join(map(str, layout))


@dataclass(frozen=True)
class Placement:
    """The chosen physical qubits (logical qubit i on ``qubits[i]``) and how they were chosen."""

    qubits: tuple[int, ...]
    log_esp: float  # log of the estimated success probability (the score)
    candidates: int  # placements scored
    complete: bool  # every placement was scored (not stopped by the limits)


def _interactions(circuit):
    """(two-qubit gate count per logical pair, one-qubit gate count per logical qubit)."""
    pairs: dict[tuple[int, int], int] = {}
    ones = [0] * circuit.num_qubits
    for inst in circuit.data:
        if inst.operation.name in ("barrier", "delay", "measure", "reset"):
            continue
        qs = [circuit.find_bit(q).index for q in inst.qubits]
        if len(qs) == 1:
            ones[qs[0]] += 1
        elif len(qs) == 2:
            key = (min(qs), max(qs))
            pairs[key] = pairs.get(key, 0) + 1
        elif len(qs) > 2:
            return None, None  # multi-qubit gates: leave the layout to the transpiler
    return pairs, ones


def calibration(target):
    """(readout error per qubit, 1q (sx) error per qubit, two-qubit error per undirected
    coupling, the two-qubit gate's name) from a device target; missing numbers are None."""
    n = target.num_qubits
    readout = [None] * n
    if "measure" in target.operation_names:
        for qargs, props in target["measure"].items():
            if qargs is not None and props is not None:
                readout[qargs[0]] = props.error
    one = [None] * n
    for name in ("sx", "x"):
        if name in target.operation_names:
            for qargs, props in target[name].items():
                if qargs is not None and props is not None and one[qargs[0]] is None:
                    one[qargs[0]] = props.error
            break
    two: dict[tuple[int, int], float | None] = {}
    gate = None
    for name in target.operation_names:
        op = target.operation_from_name(name) if name in target.operation_names else None
        if getattr(op, "num_qubits", 0) != 2 or name in ("swap",) or getattr(op, "params", None):
            continue
        gate = gate or name
        for qargs, props in target[name].items():
            if qargs is None:
                continue
            key = (min(qargs), max(qargs))
            err = None if props is None else props.error
            if key not in two or (err is not None and (two[key] is None or err < two[key])):
                two[key] = err
    return readout, one, two, gate


def _log1m(err, fallback: float) -> float:
    err = fallback if err is None else err
    return math.log(max(1e-12, 1.0 - min(err, 1.0)))


def _median(values) -> float:
    known = sorted(v for v in values if v is not None and v < 1)
    return known[len(known) // 2] if known else 0.0


def best_placement(circuit, target, *, max_placements: int = MAX_PLACEMENTS,
                   max_seconds: float = MAX_SECONDS) -> Placement | None:
    """The placement of ``circuit``'s interaction graph on ``target``'s coupling graph with the
    highest estimated success probability; None when it has no placement without swaps (or
    gates on 3+ qubits). Missing error figures count as the device's median."""
    import rustworkx as rx

    pairs, ones = _interactions(circuit)
    n = circuit.num_qubits
    if pairs is None or n > target.num_qubits:
        return None
    readout, one, two, _ = calibration(target)
    usable = {k: e for k, e in two.items() if e is None or e < 1}  # 1.0 marks a broken coupler
    med_ro, med_1q, med_2q = _median(readout), _median(one), _median(usable.values())
    device = rx.PyGraph()
    device.add_nodes_from(range(target.num_qubits))
    device.add_edges_from_no_data(list(usable))
    q_cost = [_log1m(readout[q], med_ro) for q in range(target.num_qubits)]
    one_cost = [_log1m(one[q], med_1q) for q in range(target.num_qubits)]
    coupled = sorted({v for pair in pairs for v in pair})
    alone = [v for v in range(n) if v not in coupled]  # no two-qubit gate: any qubit will do

    def finish(phys: dict[int, int], score: float) -> tuple[float, tuple[int, ...]]:
        # Qubits without a two-qubit gate take the best free ones, the busiest first.
        free = set(range(target.num_qubits)) - set(phys.values())
        for v in sorted(alone, key=lambda v: -ones[v]):
            p = max(sorted(free), key=lambda q: q_cost[q] + 2 * ones[v] * one_cost[q])
            free.discard(p)
            phys[v] = p
            score += q_cost[p] + 2 * ones[v] * one_cost[p]
        return score, tuple(phys[v] for v in range(n))

    if not coupled:
        score, qubits = finish({}, 0.0)
        return Placement(qubits, score, 1, complete=True)
    head = rx.PyGraph()
    head.add_nodes_from(coupled)  # node i is logical qubit coupled[i]
    index = {v: i for i, v in enumerate(coupled)}
    head.add_edges_from_no_data([(index[a], index[b]) for a, b in pairs])
    best, count, t0 = None, 0, time.monotonic()
    for mapping in rx.vf2_mapping(device, head, subgraph=True, induced=False, id_order=False):
        count += 1  # mapping: device node -> head node
        phys = {coupled[i]: p for p, i in mapping.items()}
        score = sum(q_cost[p] + 2 * ones[v] * one_cost[p] for v, p in phys.items())
        for (a, b), k in pairs.items():
            pa, pb = phys[a], phys[b]
            score += k * _log1m(usable.get((min(pa, pb), max(pa, pb))), med_2q)
        if best is None or score > best[0]:
            best = (score, phys)
        if count >= max_placements or time.monotonic() - t0 > max_seconds:
            break
    if best is None:
        return None
    score, qubits = finish(dict(best[1]), best[0])
    return Placement(qubits, score, count, complete=count < max_placements and time.monotonic() - t0 <= max_seconds)


def physical_qubits(isa_circuit) -> tuple[int, ...]:
    """Where each logical qubit of a transpiled circuit is measured (its final physical qubit)."""
    layout = getattr(isa_circuit, "layout", None)
    if layout is None:
        return tuple(range(isa_circuit.num_qubits))
    return tuple(layout.final_index_layout())


class LayoutPassManager:
    """A preset pass manager whose layout is :data:`LAYOUTS`'s choice (``run`` as Qiskit's).

    The layout is fixed with ``initial_layout``, so the transpiler's own layout search and its
    post-routing ``VF2PostLayout`` leave it alone. ``last`` holds the last :class:`Placement`
    chosen by ``noise_aware`` (None otherwise, or when it fell back to the transpiler).
    """

    def __init__(self, backend, *, optimization_level: int, seed: int | None, layout=DEFAULT_LAYOUT):
        if optimization_level not in (0, 1, 2, 3):
            raise HybridQiskitError(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level}")
        self.backend, self.optimization_level, self.seed = backend, optimization_level, seed
        self.layout = parse_layout(layout)
        self.last: Placement | None = None
        self.note: str | None = None  # how the last circuit was placed, in words
        self._managers: dict = {}

    def _manager(self, initial):
        from qiskit.transpiler import generate_preset_pass_manager

        from backends.devices import guard_width

        key = None if initial is None else tuple(initial)
        if key not in self._managers:
            self._managers[key] = guard_width(generate_preset_pass_manager(
                optimization_level=self.optimization_level, backend=self.backend, seed_transpiler=self.seed,
                initial_layout=None if initial is None else list(initial)), self.backend)
        return self._managers[key]

    def initial_layout(self, circuit) -> tuple[int, ...] | None:
        """The physical qubits for ``circuit`` (None: the transpiler chooses)."""
        n, size = circuit.num_qubits, self.backend.num_qubits
        if n > size:
            return None  # guard_width says so in one line
        if self.layout == "transpiler":
            self.note = f"transpiler: the preset pass manager's own, optimization level {self.optimization_level}"
            return None
        if self.layout == "trivial":
            self.note = "trivial: physical qubits 0..n-1"
            return tuple(range(n))
        if self.layout == "noise_aware":
            self.last = best = best_placement(circuit, self.backend.target)
            self.note = ("noise_aware: no placement without swaps, so the transpiler's" if best is None else
                         f"noise_aware: the best of {best.candidates:,} placements by the device's calibration"
                         + ("" if best.complete else " (search stopped at its limit)"))
            return None if best is None else best.qubits
        self.note = "pinned"
        if len(self.layout) != n:
            raise HybridQiskitError(f"layout names {len(self.layout)} physical qubits but the circuit has {n}")
        if max(self.layout) >= size:
            raise HybridQiskitError(f"layout names qubit {max(self.layout)} but {self.backend.name} has {size}")
        return self.layout

    def run(self, circuits, **kwargs):
        if isinstance(circuits, (list, tuple)):
            return [self.run(c, **kwargs) for c in circuits]
        return self._manager(self.initial_layout(circuits)).run(circuits, **kwargs)


def _quantile(values, q: float) -> float | None:
    import numpy as np

    known = [v for v in values if v is not None and v < 1]
    return float(np.quantile(known, q)) if known else None


def placement_facts(isa_circuit, target) -> dict:
    """The physical qubits of a transpiled circuit and their calibration, beside the device's.

    Returns a JSON-able dict: ``qubits`` (where logical qubit i is measured), ``readout`` (their
    readout errors), ``gate`` (the two-qubit gate), ``couplings`` ([a, b, error, gates on it],
    in first-use order), and the device's ``median_*`` and worst-decile thresholds (``p90_*``).
    """
    readout, _, two, gate = calibration(target)
    qubits = physical_qubits(isa_circuit)
    used: dict[tuple[int, int], int] = {}
    for inst in isa_circuit.data:
        if inst.operation.num_qubits == 2 and inst.operation.name not in ("barrier",):
            a, b = sorted(isa_circuit.find_bit(q).index for q in inst.qubits)
            used[(a, b)] = used.get((a, b), 0) + 1
    return {
        "qubits": list(qubits),
        "readout": [readout[q] if q < len(readout) else None for q in qubits],
        "gate": gate,
        "couplings": [[a, b, two.get((a, b)), k] for (a, b), k in used.items()],
        "median_readout": _quantile(readout, 0.5), "p90_readout": _quantile(readout, 0.9),
        "median_2q": _quantile(two.values(), 0.5), "p90_2q": _quantile(two.values(), 0.9),
    }
