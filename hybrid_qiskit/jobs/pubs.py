"""The quantum head as Estimator PUBs: what a hardware job runs, and how its results come back.

A model's forward pass is ``decode(quantum(encode(images)))``. ``encode`` runs here; the head's
EstimatorQNN is one ISA circuit (transpiled by the backend handle's pass manager) with
parameters ``inputs`` (one angle per qubit, from ``encode``) and ``weights`` (trained); its
outputs are the laid-out observables. One PUB covers N samples:

    (isa_circuit, [[obs_0], [obs_1], ...], values)   values: (N, P), columns = circuit.parameters

The observables have shape (n, 1) and the values (N, P), so the result's ``evs`` broadcast to
(n, N); transposed, row i is sample i's ⟨Z⟩ vector, exactly what ``model.quantum`` returns.

With post-measurement normalization (:mod:`hybrid_qiskit.normalization`), every job also runs
the K rows of the calibration set after its samples: ``rows(a, b)`` has ``b - a + K`` rows, and
``fetch`` re-estimates each job's per-qubit statistics from its own calibration rows (same
device, same calibration, same moment as the samples they normalize).

Example:
    >>> pub = head_pub(model, angles)                         # doctest: +SKIP
    >>> job = handle.estimator.run([pub.rows(0, 100)])       # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit, qpy
from qiskit.quantum_info import SparsePauliOp

from hybrid_qiskit.errors import HybridQiskitError

# Per-job limits of IBM Quantum's job validation (quantum.cloud.ibm.com/docs/guides/job-limits):
# at most 5 million executions (circuits after broadcasting x shots; newer pages say 10 million
# for Sampler and split Estimator jobs, we keep the stricter figure), and a two-qubit-gate budget
# that "depends on the options", with any job under 10,000 two-qubit gates guaranteed to pass.
MAX_EXECUTIONS = 5_000_000
SAFE_TWO_QUBIT_GATES = 10_000
# Chunk sizes: hybrid_qiskit.jobs.cost.max_rows_per_job (mitigation overheads counted).
# Beyond the service's limits, keep each job to minutes of QPU time: a failed or cancelled job
# then costs little to run again, and results arrive in useful pieces.
DEFAULT_MAX_ROWS = 1000


@dataclass(frozen=True)
class HeadPub:
    """The quantum head of a model, ready to run on N samples."""

    circuit: QuantumCircuit  # the ISA circuit (as the QNN runs it)
    observables: tuple[SparsePauliOp, ...]  # laid out on the circuit's qubits
    values: np.ndarray  # (N, P) float64, columns in circuit.parameters order
    calibration: np.ndarray | None = None  # (K, P): calibration rows appended to every job (None: none)

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.circuit.parameters]

    @property
    def calibration_rows(self) -> int:
        return 0 if self.calibration is None else len(self.calibration)

    def rows(self, start: int, stop: int) -> tuple:
        """The PUB for samples [start, stop), followed by the calibration rows (if any)."""
        values = self.values[start:stop]
        if self.calibration is not None:
            values = np.concatenate([values, self.calibration])
        return (self.circuit, [[o] for o in self.observables], values)


def head_pub(model, angles: np.ndarray, calibration: np.ndarray | None = None) -> HeadPub:
    """The PUB that computes ``model.quantum(angles)`` (and, in every job, of the calibration
    set's angles ``calibration``, when given).

    Values are ordered by the circuit's own parameter order (what a PUB's columns follow),
    looked up parameter by parameter from the QNN's declared inputs and weights, so the result
    does not depend on how Qiskit happens to sort parameter names.

    Raises:
        HybridQiskitError: the model has no quantum head (the classical baseline).
    """
    qnn = getattr(getattr(model, "head", None), "neural_network", None)
    if qnn is None:
        raise HybridQiskitError("this model has no quantum head to run on hardware (a classical baseline?)")
    weights = model.head.weight.detach().cpu().numpy().astype(np.float64)
    circuit = qnn.circuit

    def values_of(angles) -> np.ndarray:
        angles = np.asarray(angles, dtype=np.float64)
        columns = {p: angles[:, i] for i, p in enumerate(qnn.input_params)}
        columns.update({p: np.full(len(angles), w) for p, w in zip(qnn.weight_params, weights)})
        missing = [p.name for p in circuit.parameters if p not in columns]
        if missing:
            raise HybridQiskitError(f"the head circuit has parameters that are neither inputs nor weights: {missing}")
        return np.stack([columns[p] for p in circuit.parameters], axis=1)

    return HeadPub(circuit, tuple(qnn.observables), values_of(angles),
                   None if calibration is None else values_of(calibration))


def expvals_of(pub_result) -> tuple[np.ndarray, np.ndarray | None]:
    """(evs, stds), each (rows, n): one row per sample, one column per observable."""
    data = pub_result.data
    evs = np.asarray(data.evs, dtype=np.float64)  # (n, rows): observables broadcast against rows
    n = evs.shape[0]
    stds = getattr(data, "stds", None)
    stds = None if stds is None else np.asarray(stds, dtype=np.float64).reshape(n, -1).T
    return evs.reshape(n, -1).T, stds


def chunks(num_rows: int, max_rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``max_rows``, as even as possible."""
    if max_rows < 1:
        raise HybridQiskitError(f"--max-rows must be at least 1, got {max_rows}")
    count = math.ceil(num_rows / max_rows)
    edges = np.linspace(0, num_rows, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


# ------------------------------------------------------------------ ledger serialization
def circuit_to_qpy(circuit: QuantumCircuit) -> bytes:
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return buf.getvalue()


def circuit_from_qpy(blob: bytes) -> QuantumCircuit:
    return qpy.load(io.BytesIO(blob))[0]


def observables_to_json(observables) -> list:
    return [[[label, c.real, c.imag] for label, c in op.to_list()] for op in observables]


def observables_from_json(data: list) -> tuple[SparsePauliOp, ...]:
    return tuple(SparsePauliOp.from_list([(label, complex(re, im)) for label, re, im in op]) for op in data)


def pub_from_ledger(submission: dict) -> HeadPub:
    """The submission's PUB rebuilt from the ledger alone (to run a lost or failed job again)."""
    circuit = circuit_from_qpy(submission["circuit_qpy"])
    names = [p.name for p in circuit.parameters]
    if names != submission["parameter_names"]:
        raise HybridQiskitError(
            f"the ledger's circuit of submission {submission['submission_id']} does not match its parameter "
            "columns; the ledger is damaged"
        )
    return HeadPub(circuit, observables_from_json(submission["observables"]), submission["parameter_values"],
                   submission.get("calibration_values"))
