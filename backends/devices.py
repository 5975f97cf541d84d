"""Fake IBM devices (``qiskit_ibm_runtime.fake_provider``), looked up by name.

A fake device is a snapshot of a real one: coupling map, basis gates, gate and readout errors,
T1/T2 and gate times. The noisy Aer backend and the local runtime backend take one by name
(``--device fake_fez``); ``hybrid-qiskit backends --devices`` lists them with their processor,
size, median errors, calibration date and whether IBM Quantum still runs that generation.

The default is ``fake_fez`` (Heron r2, 156 qubits), today's fleet: IBM's documentation lists
Heron r2/r3 (ibm_fez, ibm_marrakesh, ibm_kingston, ibm_boston, ibm_pittsburgh, ibm_aachen) and
Nighthawk (ibm_miami) as the QPUs in service; Falcon, Hummingbird, Eagle and Heron r1 devices are
retired. fake_fez is the longest-serving Heron r2 of the fleet, with mid-range calibration (median
two-qubit error 0.38%, readout 0.76%); ``experiments/bench_backends.py`` times every current
device.

Example:
    >>> get_fake_backend("fake_fez").num_qubits
    156
    >>> facts = {d["name"]: d for d in list_fake_devices()}
    >>> facts["fake_fez"]["processor"], facts["fake_fez"]["status"]
    ('Heron r2', 'current')
"""

from __future__ import annotations

import difflib
from functools import cache, lru_cache

from hybrid_qiskit.errors import HybridQiskitError

DEFAULT_DEVICE = "fake_fez"
ALL_TO_ALL = "all_to_all"  # no device: all-to-all coupling (parametric noise only)
# Processor generations IBM Quantum runs today (family, revision); every other one is retired.
CURRENT_PROCESSORS = {("Heron", "2"), ("Heron", "3"), ("Nighthawk", "1")}


@lru_cache(maxsize=1)
def _devices() -> dict[str, tuple[type, int]]:
    """Device name -> (its class, its qubit count), read once from the runtime's fake provider.

    The qubit count comes from the device's configuration (loaded with the instance); asking
    ``num_qubits`` would build every device's full target and take ~10 s for all of them.
    """
    import warnings

    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():  # some snapshots warn that their numbers are not typical
        warnings.simplefilter("ignore", UserWarning)
        return {
            b.name: (type(b), b.configuration().n_qubits)
            for b in FakeProviderForBackendV2().backends()
        }


def normalize_device_name(name: str) -> str:
    """``FakeManilaV2``, ``manila`` and ``fake-manila`` all mean ``fake_manila``."""
    key = name.strip().lower().replace("-", "_")
    if key.endswith("v2"):
        key = key[:-2]
    if key.startswith("fake") and not key.startswith("fake_"):
        key = "fake_" + key[4:]
    return key if key.startswith("fake_") else "fake_" + key


def fake_device_names() -> list[str]:
    """Names of every fake device (``fake_fez``, ``fake_miami``, ...), sorted."""
    return sorted(_devices())


def list_fake_devices() -> list[dict]:
    """Every fake device's facts (:func:`device_facts`), sorted by name (JSON-able)."""
    return [device_facts(name) for name in fake_device_names()]


def device_table(devices: list[dict]) -> str:
    """:func:`list_fake_devices` as a text table, current devices first."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    rows = sorted(devices, key=lambda d: (d["status"] != "current", d["name"]))
    head = f"{'device':<18} {'processor':<14} {'qubits':>6} {'2q error':>9} {'readout':>8}  {'calibrated':<10}  status"
    lines = [head, "-" * len(head)] + [
        f"{d['name']:<18} {d['processor']:<14} {d['num_qubits']:>6} {pct(d['median_error_2q']):>9} "
        f"{pct(d['median_readout_error']):>8}  {d['calibrated'] or '-':<10}  {d['status']}"
        for d in rows
    ]
    return "\n".join(lines) + "\n(2q error, readout: medians over the device's calibration snapshot)"


@cache
def device_facts(name: str) -> dict:
    """JSON-able facts of fake device ``name``, read from its snapshot without building a target.

    Keys: name, num_qubits, processor (e.g. ``Heron r2``), status (``current`` or ``retired``),
    median_error_2q, median_readout_error, calibrated (the snapshot's date).
    """
    import json
    import os
    import statistics

    cls, n = _devices()[normalize_device_name(name)]
    backend = cls()
    conf = backend._conf_dict
    # The raw snapshot: the runtime's own loader also parses every timestamp (~10x slower).
    with open(os.path.join(backend.dirname, backend.props_filename)) as fh:
        props = json.load(fh)
    proc = conf.get("processor_type") or {}
    family, revision = proc.get("family"), str(proc.get("revision", ""))

    def param(entries, key):
        return [p["value"] for p in entries if p.get("name") == key and p.get("value") is not None]

    two_q = [e for g in props.get("gates", []) if len(g.get("qubits", [])) == 2 for e in param(g.get("parameters", []), "gate_error")]
    two_q = [e for e in two_q if e < 1]  # 1.0 marks a broken coupler, not an error rate
    readout = [e for q in props.get("qubits", []) for e in param(q, "readout_error")]
    date = str(props.get("last_update_date") or "")[:10] or None
    return {
        "name": backend.name,
        "num_qubits": n,
        "processor": f"{family} r{revision}" if family else "unknown",
        "status": "current" if (family, revision) in CURRENT_PROCESSORS else "retired",
        "median_error_2q": statistics.median(two_q) if two_q else None,
        "median_readout_error": statistics.median(readout) if readout else None,
        "calibrated": date,
    }


def get_fake_backend(name: str):
    """A fresh instance of fake device ``name``.

    Args:
        name: a device name as :func:`list_fake_devices` gives it (``fake_`` and a ``V2`` suffix
            may be left out).

    Returns:
        The fake backend (a ``BackendV2`` with the device's target and calibration).

    Raises:
        HybridQiskitError: an unknown name; the message lists close and common names.
    """
    import warnings

    key = normalize_device_name(name)
    classes = {name: cls for name, (cls, _) in _devices().items()}
    if key not in classes:
        # Match without the shared "fake_" prefix, which would make every name look close.
        close = difflib.get_close_matches(key[5:], [k[5:] for k in classes], n=3, cutoff=0.6)
        examples = [f"fake_{c}" for c in close] or [
            "fake_fez",
            "fake_marrakesh",
            "fake_kingston",
            "fake_miami",
        ]
        raise HybridQiskitError(
            f"unknown fake device {name!r}; e.g. {', '.join(examples)} "
            f"({len(classes)} in all: hybrid-qiskit backends --devices)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return classes[key]()


def describe_device(backend) -> dict:
    """JSON-able facts about a device: name, qubits, basis gates, two-qubit gates, coupling edges."""
    target = backend.target
    gates = sorted(
        name
        for name in target.operation_names
        if name
        not in {
            "measure",
            "reset",
            "delay",
            "for_loop",
            "if_else",
            "switch_case",
            "while_loop",
            "box",
        }
    )
    two_q = [g for g in gates if target.operation_from_name(g).num_qubits == 2]
    return {
        "name": backend.name,
        "num_qubits": backend.num_qubits,
        "basis_gates": gates,
        "two_qubit_gates": two_q,
        "coupling_edges": len(target.build_coupling_map().get_edges()) if two_q else 0,
    }


def guard_width(pass_manager, backend):
    """Make ``pass_manager`` fail with one clear line when a circuit is wider than ``backend``.

    The transpiler's own error is a traceback deep inside layout; this check runs first
    (prepended to the ``pre_init`` stage of the preset pass manager) and names the fix.

    Args:
        pass_manager: a preset ``StagedPassManager``.
        backend: the device it targets.

    Returns:
        ``pass_manager`` (modified in place).
    """
    from qiskit.transpiler import PassManager
    from qiskit.transpiler.basepasses import AnalysisPass

    name, size = backend.name, backend.num_qubits

    class FitsDevice(AnalysisPass):
        def run(self, dag):
            if dag.num_qubits() > size:
                raise HybridQiskitError(
                    f"the circuit has {dag.num_qubits()} qubits but {name} has {size}; "
                    "use fewer qubits or a larger device (hybrid-qiskit backends --devices)"
                )

    checked = PassManager([FitsDevice()])
    if pass_manager.pre_init is not None:
        checked.append(pass_manager.pre_init.to_flow_controller())
    pass_manager.pre_init = checked
    return pass_manager
