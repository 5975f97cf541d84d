"""``BatchedParamShiftEstimatorGradient``: the parameter-shift rule in one or two PUBs per circuit.

For shot-based and noisy estimators (Aer, the IBM runtime) the gradient must come from circuit
evaluations. The stock gradient submits one PUB per shifted parameter set; this one gives every
rotation of the circuit its own parameter φ_g (once per circuit, cached), and evaluates all
shifted points of all distinct parameter sets together: an observables array of shape (K, 1)
broadcast against a parameter array of all shifted sets. Commuting observables (Z on each qubit)
are then measured from the same shots, and the estimator sees one large job instead of thousands.

An exact estimator (precision 0, by the gradient's ``precision`` or the estimator's
``default_precision``) gets ONE PUB per circuit, of shape (K, 2·G·R). Any other gets TWO of
shape (K, G·R): the +π/2 shifts and the −π/2 shifts, element for element. A seeded estimator
(``StatevectorEstimator``, ours) draws its noise afresh for every PUB, so the pair then carries
the same noise, which cancels in the difference, as it does for the stock gradient's one PUB per
shift; in one PUB every row would draw its own (measured: gradient errors ~1e-2 at precision
0.01 in the TorchConnector reference tests, against ~1e-16).

The rule: for U = exp(-iφP/2) with P a Pauli (rx, ry, rz, rxx, ryy, rzz, rzx, and p up to a
global phase), d⟨O⟩/dφ = (⟨O⟩(φ+π/2) − ⟨O⟩(φ−π/2)) / 2. The chain rule through each gate's angle
expression (vectorized, as in the statevector program) gives d⟨O⟩/d(circuit parameter). The
circuit run is the one given (an ISA circuit stays an ISA circuit: only parameters change).
Other parametrized gates are first decomposed into these (``TranslateParameterizedGates``);
parametrized ``AnnotatedOperation``s are synthesized first (``HighLevelSynthesis``: inverse,
control, integer powers); gates inside a ``box`` are shifted inside it, the box kept. Any other
instruction that holds parameters and cannot be decomposed is refused by name, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import (
    AnnotatedOperation,
    BoxOp,
    ControlFlowOp,
    Parameter,
    ParameterExpression,
    ParameterVector,
)
from qiskit.providers import Options
from qiskit.transpiler.passes import HighLevelSynthesis, TranslateParameterizedGates
from qiskit.transpiler.passmanager import BasePassManager
from qiskit_machine_learning.gradients import DerivativeType, EstimatorGradientResult

from .angles import Angle, compile_angle
from .caches import CircuitCache
from .gradient_base import BatchedEstimatorGradient

SHIFTABLE_GATES = ("rx", "ry", "rz", "p", "rxx", "ryy", "rzz", "rzx")


@dataclass(frozen=True)
class ShiftCircuit:
    """A circuit whose parametrized gates each carry a unique parameter φ_g."""

    circuit: QuantumCircuit  # parameters: exactly phi, in order
    phi: tuple[Parameter, ...]
    angles: tuple[Angle, ...]  # φ_g as a function of the original circuit's parameters
    parameters: tuple[Parameter, ...]  # the original circuit's parameters (column order)


def make_shift_circuit(circuit: QuantumCircuit) -> ShiftCircuit:
    """Rewrite ``circuit`` so that each parametrized gate has its own parameter.

    Raises:
        ValueError: for a parametrized instruction that is not, and cannot be decomposed into,
            one of :data:`SHIFTABLE_GATES` (named in the message).
    """
    circuit = _shiftable(circuit)
    params = tuple(circuit.parameters)
    index = {p: i for i, p in enumerate(params)}
    phi = ParameterVector("φ", _count_shifted(circuit))
    angles: list[Angle] = []
    out = _rewrite(circuit, phi, angles, index)
    return ShiftCircuit(out, tuple(phi), tuple(angles), params)


def _is_symbolic(value) -> bool:
    return isinstance(value, ParameterExpression) and bool(value.parameters)


def _shifted(op) -> bool:
    """Whether ``op`` is a gate that gets its own φ (its angle depends on parameters)."""
    return not isinstance(op, ControlFlowOp) and bool(op.params) and _is_symbolic(op.params[0])


def _refusal(name: str, why: str) -> ValueError:
    why = " ".join(why.split())  # one line, whatever the underlying error's text
    return ValueError(f"the parameter-shift gradient cannot differentiate through the instruction {name!r}: "
                      f"{why}; its parametrized gates must be, or decompose into, {', '.join(SHIFTABLE_GATES)}")


def _shiftable(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with every parametrized gate one of :data:`SHIFTABLE_GATES`, in boxes too."""
    if any(isinstance(inst.operation, AnnotatedOperation) and any(map(_is_symbolic, inst.operation.params))
           for inst in circuit.data):
        circuit = _synthesize_annotated(circuit)
    translate, boxes = False, False
    for inst in circuit.data:
        op = inst.operation
        if isinstance(op, ControlFlowOp):
            if any(block.parameters for block in op.blocks):
                if not isinstance(op, BoxOp):
                    raise _refusal(op.name, "parameters inside control flow other than a box")
                boxes = True
        elif any(map(_is_symbolic, op.params)) and op.name not in SHIFTABLE_GATES:
            translate = True
    if boxes:  # TranslateParameterizedGates leaves box bodies as they are: do them here
        out = circuit.copy_empty_like()
        for inst in circuit.data:
            op = inst.operation
            if isinstance(op, BoxOp) and op.blocks[0].parameters:
                inst = inst.replace(operation=op.replace_blocks([_shiftable(op.blocks[0])]))
            out.append(inst)
        circuit = out
    if translate:
        try:
            circuit = TranslateParameterizedGates(list(SHIFTABLE_GATES))(circuit)
        except Exception as exc:  # a gate without a definition: name the ones that could be it
            names = sorted({inst.operation.name for inst in circuit.data
                            if not isinstance(inst.operation, ControlFlowOp) and inst.operation.name not in SHIFTABLE_GATES
                            and any(map(_is_symbolic, inst.operation.params))})
            raise _refusal(", ".join(names), f"it could not be decomposed ({exc})") from None
    return circuit


def _synthesize_annotated(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with its parametrized AnnotatedOperations replaced by their synthesis."""
    out = circuit.copy_empty_like()
    for inst in circuit.data:
        op = inst.operation
        if isinstance(op, AnnotatedOperation) and any(map(_is_symbolic, op.params)):
            sub = QuantumCircuit(op.num_qubits)
            sub.append(op, sub.qubits)
            try:
                sub = HighLevelSynthesis()(sub)
            except Exception as exc:
                modifiers = ", ".join(type(m).__name__ for m in op.modifiers)
                raise _refusal(f"annotated {op.base_op.name}", f"{modifiers} could not be synthesized ({exc})") from None
            out.compose(sub, qubits=list(inst.qubits), inplace=True)
        else:
            out.append(inst)
    return out


def _count_shifted(circuit: QuantumCircuit) -> int:
    return sum(
        _count_shifted(inst.operation.blocks[0]) if isinstance(inst.operation, BoxOp) else _shifted(inst.operation)
        for inst in circuit.data
    )


def _rewrite(circuit: QuantumCircuit, phi: ParameterVector, angles: list[Angle], index: dict) -> QuantumCircuit:
    """``circuit`` with its g-th shifted gate (boxes' gates in order) on φ_g; appends the angles."""
    out = circuit.copy_empty_like()
    # A transpiled circuit's global phase can depend on the inputs (zz feature map on an ISA
    # target); it never changes an expectation value, and left in it would add parameters.
    out.global_phase = 0.0
    for inst in circuit.data:
        op = inst.operation
        if _shifted(op):
            op = op.to_mutable()
            angles.append(compile_angle(op.params[0], index))
            op.params = [phi[len(angles) - 1]]
            inst = inst.replace(operation=op)
        elif isinstance(op, BoxOp) and op.blocks[0].parameters:
            inst = inst.replace(operation=op.replace_blocks([_rewrite(op.blocks[0], phi, angles, index)]))
        out.append(inst)
    return out


class BatchedParamShiftEstimatorGradient(BatchedEstimatorGradient):
    """Parameter-shift gradient for any V2 estimator, batched into one PUB per circuit (two, the
    + and the − shifts, unless the estimator is known to be exact: see the module docstring).

    Args:
        estimator: any ``BaseEstimatorV2`` (Aer, BackendEstimatorV2, the IBM runtime's).
        options: default run options, recorded in each result (as by the base class).
        derivative_type: ``DerivativeType.REAL`` only.
        pass_manager: transpiles each circuit once before its shifted copies run; observables
            follow its layout.
        precision: passed to ``estimator.run``; None (the default, as in
            qiskit-machine-learning) lets the estimator use its own default precision.
        cache_size: how many circuits' rewritten forms to keep.
    """

    def __init__(
        self,
        estimator,
        options: Options | None = None,
        derivative_type: DerivativeType = DerivativeType.REAL,
        pass_manager: BasePassManager | None = None,
        *,
        precision: float | None = None,
        cache_size: int = 32,
    ):
        super().__init__(estimator, options, derivative_type, pass_manager, cache_size=cache_size)
        self._precision = precision
        self._shift_circuits: CircuitCache[ShiftCircuit] = CircuitCache(make_shift_circuit, cache_size)

    def shift_circuit(self, circuit: QuantumCircuit) -> ShiftCircuit:
        """The rewritten circuit for ``circuit`` (built once, rebuilt after an in-place edit)."""
        return self._shift_circuits.get(circuit)

    def _run(self, circuits, observables, parameter_values, parameters, **options) -> EstimatorGradientResult:
        gradients: list = [None] * len(circuits)
        metadata: list = [None] * len(circuits)
        groups: dict[int, list[int]] = {}
        for i, circuit in enumerate(circuits):
            groups.setdefault(id(circuit), []).append(i)

        # Build every group's PUBs first and submit them together: one estimator job. An exact
        # estimator gets one PUB per group; any other two, the + and the − shifts, so that a
        # seeded one draws the same noise for both and it cancels (see the module docstring).
        precision = self._precision
        if precision is None:
            precision = getattr(self._estimator, "default_precision", None)
        split = precision is None or precision != 0  # None: the estimator's own, unknown
        plans, pubs = [], []
        for members in groups.values():
            shift = self.shift_circuit(self.to_run(circuits[members[0]], observables[members[0]])[0])
            values = np.asarray([parameter_values[i] for i in members], dtype=float)
            if values.ndim != 2 or values.shape[1] != len(shift.parameters):
                raise ValueError(
                    f"a circuit with {len(shift.parameters)} parameters got parameter sets "
                    f"of shape {values.shape}"
                )
            rows, row_of = np.unique(values, axis=0, return_inverse=True)
            obs_list, obs_of, seen = [], np.empty(len(members), dtype=int), {}
            for k, i in enumerate(members):
                key = id(observables[i])
                if key not in seen:
                    seen[key] = len(obs_list)
                    obs_list.append(self.to_run(circuits[i], observables[i])[1])
                obs_of[k] = seen[key]
            R, G = len(rows), len(shift.phi)
            phi = np.stack([a.value(rows) for a in shift.angles], axis=1) if G else np.zeros((R, 0))
            # shifted[s, g, r] = phi[r] with φ_g moved by +π/2 (s=0) or -π/2 (s=1)
            shifted = np.broadcast_to(phi, (2, G, R, G)).copy()
            eye = np.eye(G)[:, None, :] * (np.pi / 2)
            shifted[0] += eye
            shifted[1] -= eye
            obs_array = [[o] for o in obs_list]  # shape (K, 1): broadcast over all shifted sets
            if G and split:
                pubs.append((shift.circuit, obs_array, shifted[0].reshape(G * R, G)))
                pubs.append((shift.circuit, obs_array, shifted[1].reshape(G * R, G)))
            elif G:
                pubs.append((shift.circuit, obs_array, shifted.reshape(2 * G * R, G)))
            plans.append((members, shift, rows, row_of.ravel(), obs_of, len(obs_list), R, G))

        results = self._estimator.run(pubs, precision=self._precision).result() if pubs else []
        result_iter = iter(results)
        for members, shift, rows, row_of, obs_of, K, R, G in plans:
            grads = np.zeros((K, R, len(shift.parameters)))
            if G:
                if split:
                    plus = np.asarray(next(result_iter).data.evs).reshape(K, G, R)
                    minus = np.asarray(next(result_iter).data.evs).reshape(K, G, R)
                else:
                    evs = np.asarray(next(result_iter).data.evs).reshape(K, 2, G, R)
                    plus, minus = evs[:, 0], evs[:, 1]
                dphi = (plus - minus) / 2  # (K, G, R)
                for g, angle in enumerate(shift.angles):
                    for j, partial in angle.partials:
                        grads[:, :, j] += dphi[:, g, :] * partial(rows)
            column = {p: j for j, p in enumerate(shift.parameters)}
            for k, i in enumerate(members):
                full = grads[obs_of[k], row_of[k]]
                params = parameters[i] if parameters[i] is not None else shift.parameters
                try:
                    gradients[i] = full[[column[p] for p in params]]
                except KeyError as exc:
                    raise ValueError(f"parameter {exc.args[0]} is not in the circuit") from None
                metadata[i] = {"parameters": list(params)}
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))
