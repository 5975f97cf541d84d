"""Fake IBM devices (``qiskit_ibm_runtime.fake_provider``), looked up by name.

A fake device is a snapshot of a real one: coupling map, basis gates, gate and readout errors,
T1/T2 and gate times. The noisy Aer backend and the local runtime backend take one by name
(``--device fake_manila``); ``hybrid-qiskit backends --devices`` lists them.

Example:
    >>> get_fake_backend("fake_manila").num_qubits
    5
    >>> {"name": "fake_brisbane", "num_qubits": 127} in list_fake_devices()
    True
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from hybrid_qiskit.errors import HybridQiskitError


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
    """Names of every fake device (``fake_manila``, ``fake_brisbane``, ...), sorted."""
    return sorted(_devices())


def list_fake_devices() -> list[dict]:
    """Every fake device as ``{"name": ..., "num_qubits": ...}``, sorted by name (JSON-able)."""
    return [{"name": name, "num_qubits": _devices()[name][1]} for name in fake_device_names()]


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
            "fake_manila",
            "fake_lima",
            "fake_brisbane",
            "fake_torino",
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
