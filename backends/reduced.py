"""Simulate only what a circuit touches: the reduced device of a full-device ISA circuit.

A head is transpiled ONCE for the full device (layout, routing, ISA gates), exactly as a QPU
submission would be. Its active physical qubits then define a *reduced device*: those qubits,
their gates and couplings, gate errors and durations, T1/T2 and readout errors, renumbered from 0
in ascending physical order. Simulators run the compacted circuit on that device, so memory and
time follow the head's width, not the device's 120-156 qubits. (qiskit-ibm-runtime's local mode
measures and basis-rotates every qubit of the circuit it gets: on a full 156-qubit circuit Aer
runs out of memory.)

* :func:`reduce_device` builds the reduced fake device (a ``FakeBackendV2`` whose configuration
  and calibration are the parent's, restricted and renumbered), so everything that reads a fake
  device (Aer's ``NoiseModel.from_backend``, the runtime's local mode) reads it unchanged.
* :class:`ReducedDeviceEstimator` is a V2 estimator that takes full-device PUBs, compacts
  circuits and observables to the active qubits and hands them to an inner estimator built for
  the reduced device: for ``ibm_local`` the runtime's own ``Estimator`` whose ``mode=`` is the
  Aer simulator built from the reduced device (TREX, ZNE, twirling and DD run the runtime's
  code), Aer with the reduced device's noise model for ``aer_noisy``.

Example:
    >>> from backends.devices import get_fake_backend
    >>> small = reduce_device(get_fake_backend("fake_fez"), (3, 4, 16))
    >>> small.num_qubits, small.name, small.parent_qubits
    (3, 'fake_fez', (3, 4, 16))
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

from hybrid_qiskit.errors import HybridQiskitError

# Instructions that do not make a qubit part of the computation.
PASSIVE = frozenset({"barrier", "delay"})
# Per-qubit lists of the device configuration, restricted like the qubits themselves.
_PER_QUBIT_CONF = ("coords", "meas_lo_range", "qubit_lo_range")
# Pulse-level entries that name channels of the whole chip; nothing here uses them.
_PULSE_CONF = ("channels", "qubit_channel_mapping", "u_channel_lo", "hamiltonian")


def active_qubits(circuit: QuantumCircuit, observables: Iterable[str] = ()) -> tuple[int, ...]:
    """Sorted indices of the qubits that a gate of ``circuit`` or a Pauli label acts on."""
    used = {
        circuit.find_bit(q).index
        for inst in circuit.data
        if inst.operation.name not in PASSIVE
        for q in inst.qubits
    }
    n = circuit.num_qubits
    for label in observables:
        used.update(n - 1 - i for i, ch in enumerate(label) if ch != "I")
    return tuple(sorted(used))


class ReducedFakeDevice(FakeBackendV2):
    """A fake device restricted to some physical qubits of its parent (renumbered from 0).

    ``name`` stays the parent's (the noise IS that device's, on those qubits);
    ``parent_qubits`` maps each reduced index to the parent's physical qubit.
    """

    conf_filename = None
    props_filename = None
    dirname = None

    def __init__(self, parent: FakeBackendV2, qubits: Sequence[int]):
        from qiskit.providers import BackendV2

        self.backend_name = parent.name
        self.parent_qubits = tuple(qubits)
        index = {q: i for i, q in enumerate(self.parent_qubits)}
        if parent._props_dict is None:
            parent._set_props_dict_from_json()
        self._conf_dict = _reduce_configuration(parent._conf_dict, index)
        self._props_dict = _reduce_properties(parent._props_dict, index)
        BackendV2.__init__(
            self,
            provider=None,
            name=parent.name,
            description=f"{parent.name} restricted to physical qubits {list(self.parent_qubits)}",
            online_date=self._conf_dict.get("online_date"),
            backend_version=self._conf_dict.get("backend_version"),
        )
        self._target = None
        self.sim = None

    def _get_conf_dict_from_json(self):  # the restricted dict is already in place
        return self._conf_dict


def _remap(qubits: Sequence[int], index: dict[int, int]) -> list[int] | None:
    """``qubits`` in reduced numbering, or None when one of them is not kept."""
    try:
        return [index[q] for q in qubits]
    except KeyError:
        return None


def _reduce_configuration(conf: dict, index: dict[int, int]) -> dict:
    keep = sorted(index, key=index.get)
    out = {k: v for k, v in conf.items() if k not in _PULSE_CONF}
    out["n_qubits"] = len(keep)
    out["n_uchannels"] = 0
    out["open_pulse"] = False
    out["coupling_map"] = [e for e in (_remap(edge, index) for edge in conf.get("coupling_map") or []) if e]
    out["meas_map"] = [list(range(len(keep)))]
    for key in _PER_QUBIT_CONF:
        if isinstance(conf.get(key), list) and len(conf[key]) == conf["n_qubits"]:
            out[key] = [conf[key][q] for q in keep]
    gates = []
    for gate in conf.get("gates") or []:
        gate = dict(gate)
        if "coupling_map" in gate:
            gate["coupling_map"] = [
                e for e in (_remap(qs, index) for qs in gate["coupling_map"]) if e is not None
            ]
        gates.append(gate)
    out["gates"] = gates
    return out


def _reduce_properties(props: dict, index: dict[int, int]) -> dict:
    keep = sorted(index, key=index.get)
    out = dict(props)
    out["qubits"] = [props["qubits"][q] for q in keep]
    gates = []
    for gate in props.get("gates") or []:
        qubits = _remap(gate["qubits"], index)
        if qubits is None:
            continue
        name = gate.get("gate", "")
        gates.append({**gate, "qubits": qubits, "name": f"{name}{'_'.join(map(str, qubits))}"})
    out["gates"] = gates
    # Chip-wide figures (layer fidelities, couplings by qubit pair) do not survive renumbering.
    out["general"], out["general_qlists"] = [], []
    return out


_REDUCTIONS: dict[tuple, ReducedFakeDevice] = {}
_REDUCTIONS_LOCK = threading.Lock()


def reduce_device(backend, qubits: Sequence[int]) -> ReducedFakeDevice:
    """The reduced fake device of ``backend`` on physical ``qubits`` (cached by content).

    Raises:
        HybridQiskitError: ``backend`` is not a fake device with calibration data, or a qubit
            is out of range.
    """
    if not isinstance(backend, FakeBackendV2) or isinstance(backend, ReducedFakeDevice):
        raise HybridQiskitError(f"only fake devices can be reduced, not {backend.name}")
    qubits = tuple(sorted({int(q) for q in qubits}))
    if not qubits or qubits[-1] >= backend.num_qubits or qubits[0] < 0:
        raise HybridQiskitError(f"qubits {list(qubits)} are not all on {backend.name}")
    # Keyed by the device's class, name and version, not by the instance: two instances of
    # fake_fez share reductions.
    key = (type(backend).__qualname__, backend.name, backend.backend_version, qubits)
    with _REDUCTIONS_LOCK:
        if key not in _REDUCTIONS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                _REDUCTIONS[key] = ReducedFakeDevice(backend, qubits)
        return _REDUCTIONS[key]


def with_a_coupling(backend, qubits: Sequence[int]) -> tuple[int, ...]:
    """``qubits``, plus one neighbour of the first when no two of them are coupled.

    A device without a single coupling has no coupling map, and Aer (under the runtime's local
    mode) cannot build a simulator from it; one idle extra qubit costs nothing.
    """
    qubits = tuple(sorted(qubits))
    edges = backend.coupling_map.get_edges() if backend.coupling_map is not None else []
    kept = set(qubits)
    if any(a in kept and b in kept for a, b in edges):
        return qubits
    extra = next((b for a, b in edges if a == qubits[0] and b not in kept), None)
    return qubits if extra is None else tuple(sorted(kept | {extra}))


def compact_circuit(circuit: QuantumCircuit, qubits: Sequence[int]) -> QuantumCircuit:
    """``circuit`` on ``len(qubits)`` qubits: qubit ``qubits[i]`` becomes ``i``.

    Barriers keep their kept qubits; an instruction on a dropped qubit other than a barrier or
    delay is an error (the qubit was active after all).
    """
    index = {q: i for i, q in enumerate(qubits)}
    out = QuantumCircuit(len(qubits), circuit.num_clbits, name=circuit.name, global_phase=circuit.global_phase)
    for inst in circuit.data:
        old = [circuit.find_bit(q).index for q in inst.qubits]
        new = [index[q] for q in old if q in index]
        if len(new) != len(old):
            if inst.operation.name not in PASSIVE:
                raise HybridQiskitError(f"{inst.operation.name} acts on qubits outside {list(qubits)}")
            if not new:
                continue
            op = copy.copy(inst.operation)
            if op.name == "barrier":
                op = type(op)(len(new))
            out.append(op, [out.qubits[i] for i in new], [])
            continue
        clbits = [out.clbits[circuit.find_bit(c).index] for c in inst.clbits]
        out.append(inst.operation, [out.qubits[i] for i in new], clbits)
    return out


def compact_label(label: str, qubits: Sequence[int]) -> str:
    """A Pauli label (qubit 0 rightmost) restricted to ``qubits``; the rest must be identity."""
    n = len(label)
    if any(ch != "I" for i, ch in enumerate(label) if n - 1 - i not in set(qubits)):
        raise HybridQiskitError(f"observable {label} acts outside qubits {list(qubits)}")
    return "".join(label[n - 1 - q] for q in reversed(qubits))


def compact_observables(observables: ObservablesArray, qubits: Sequence[int]) -> ObservablesArray:
    """Every observable of the array restricted to ``qubits`` (same shape)."""
    flat = np.empty(observables.size, dtype=object)
    flat[:] = [
        {compact_label(label, qubits): coeff for label, coeff in terms.items()}
        for terms in observables.ravel().tolist()
    ]
    return ObservablesArray(flat.reshape(observables.shape).tolist())


class ReducedDeviceEstimator(BaseEstimatorV2):
    """A V2 estimator for full-device ISA PUBs that simulates only the qubits they touch.

    Each ``run`` finds the active qubits of its PUBs (gates and observables), builds (once per
    qubit set) the reduced device and an inner estimator for it with ``make_estimator``, and
    runs the compacted PUBs there. Results have the PUBs' own shapes, so callers see a normal
    estimator; the circuits they keep (and submit to a QPU) stay full-device.

    Args:
        device: the full fake device the PUBs' circuits are laid out on.
        make_estimator: ``reduced device -> BaseEstimatorV2``.
        cache_inner: keep one inner estimator per qubit set (for estimators that carry state,
            like a seeded generator); False builds a fresh one per run (for the runtime's
            Estimator, so options changed on :attr:`options` take effect).
        check: ``(reduced width, compacted PUBs) -> None``, called before anything is built
            for a run; it raises to refuse the run (a call too long for the simulator).
    """

    def __init__(self, device, make_estimator: Callable, *, cache_inner: bool = True, options=None,
                 check: Callable | None = None):
        self.device = device
        self._make = make_estimator
        self._check = check
        self._cache_inner = cache_inner
        self._inner: dict[tuple[int, ...], BaseEstimatorV2] = {}
        self._lock = threading.Lock()
        self.options = options
        self.last_qubits: tuple[int, ...] | None = None

    def reduced(self, qubits: Sequence[int]):
        """The reduced device on ``qubits`` (full-device numbering)."""
        return reduce_device(self.device, qubits)

    def inner(self, qubits: tuple[int, ...]) -> BaseEstimatorV2:
        """The estimator that runs PUBs on the reduced device of ``qubits``."""
        if not self._cache_inner:
            return self._make(self.reduced(qubits))
        with self._lock:  # pools of jobs may ask at once; build each inner estimator once
            if qubits not in self._inner:
                self._inner[qubits] = self._make(self.reduced(qubits))
            return self._inner[qubits]

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None):
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        if not coerced:
            raise HybridQiskitError("no PUBs to run")
        qubits: set[int] = set()
        for pub in coerced:
            labels = (label for terms in pub.observables.ravel().tolist() for label in terms)
            qubits.update(active_qubits(pub.circuit, labels))
        key = with_a_coupling(self.device, sorted(qubits))
        self.last_qubits = key
        compacted = [
            EstimatorPub(
                compact_circuit(pub.circuit, key),
                compact_observables(pub.observables, key),
                pub.parameter_values,
                pub.precision,
            )
            for pub in coerced
        ]
        if self._check is not None:
            self._check(len(key), compacted)
        return self.inner(key).run(compacted, precision=precision)
