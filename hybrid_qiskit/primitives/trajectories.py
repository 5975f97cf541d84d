"""Noisy quantum trajectories, batched: one statevector column per sample, each its own noise.

A noisy circuit is simulated as a *Pauli-channel* circuit: after each gate instance a Pauli on
the gate's qubits is drawn from that gate's channel (gate error as depolarizing, thermal
relaxation as its Pauli twirl: :func:`gate_channel`), then measured outcomes are flipped by the
qubits' readout errors and, optionally, sampled with finite shots. Averaged over trajectories
this is the density-matrix result of the same Pauli channels, at statevector cost: states are
(2**n, columns) arrays, and a drawn error touches only the columns that drew it.

* :func:`compile_noisy_program` turns an ISA circuit (``rz``/``p`` carry the parameters; any other gate
  is fixed) into a list of ops with a channel per noisy op; adjacent ``rz`` on a qubit merge
  (they are noiseless frame changes, so no error can sit between them).
* :func:`sample_trajectories` draws every column's Paulis; :func:`simulate_trajectories` runs them forward.
* :func:`trajectory_gradient` replays the same Paulis in reverse (they are their own inverses up to
  a phase that ψ and the adjoint states share), so the gradient is the exact gradient of each
  column's trajectory expectation. Readout enters it through its linear map on the
  observables (:func:`fold_readout_diagonal`); shot noise does not (straight-through).

Only observables diagonal in the computational basis (sums of I/Z strings) are measured here:
that is what the heads read out (``Z`` per qubit, ``ZZ``-type products).

Example:
    >>> import numpy as np
    >>> from qiskit import QuantumCircuit
    >>> qc = QuantumCircuit(1); _ = qc.sx(0); _ = qc.sx(0)     # X: |1>
    >>> prog = compile_noisy_program(qc, lambda name, qubits: None, readout=[(0.0, 0.1)])
    >>> traj = sample_trajectories(prog, 4, np.random.default_rng(0))
    >>> probs = measured_probabilities(prog, simulate_trajectories(prog, np.zeros((4, 0)), traj))
    >>> (diagonal_observables([{"Z": 1.0}], 1) @ probs).round(6).tolist()   # (1-0.1)·(-1) + 0.1
    [[-0.8, -0.8, -0.8, -0.8]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from qiskit import QuantumCircuit

from hybrid_qiskit.errors import HybridQiskitError

from .angles import Angle, Const, compile_angle, sum_angles

PHASE_GATES = {"rz", "p"}  # diag(1, e^{iθ}) up to a global phase: the parametrized ISA gates
SKIPPED = {"barrier", "delay"}  # delays carry no error in Aer's device model either
# Up to this width a fixed gate runs on the statevector as a precomputed 2**n diagonal or index map
# (8 MB each at 20 qubits); wider, as a local matrix product, which needs no 2**n table per gate.
INDEX_MAP_QUBITS = 20
SAMPLE_CHUNK = 4 << 20  # uniforms per chunk when drawing trajectories (32 MB)


# ------------------------------------------------------------------------ Pauli channels
# A Pauli on k qubits is a code in [0, 4**k): two bits per qubit (x = bit 0, z = bit 1), the gate's
# first qubit lowest. Composing Paulis is XOR of codes (phases do not matter for expectations).


def depolarizing_channel(param: float, num_qubits: int) -> np.ndarray:
    """Probabilities of the 4**k Paulis for Aer's ``depolarizing_error(param, k)``:
    ``(1 - param)·ρ + param·I/2**k``, i.e. every Pauli (identity included) with ``param/4**k``."""
    d2 = 4**num_qubits
    probs = np.full(d2, param / d2)
    probs[0] = 1.0 - param * (d2 - 1) / d2
    return probs


def relaxation_twirl(t1: float, t2: float, time: float) -> np.ndarray:
    """The Pauli twirl of thermal relaxation (T1, T2, zero excited population) over ``time``.

    It keeps the channel's Pauli eigenvalues (X, Y decay as e^{-t/T2}, Z as e^{-t/T1}; the
    non-unital pull towards |0⟩ is what twirling drops), hence its process and average gate
    fidelity: p_x = p_y = (1 - e^{-t/T1})/4, p_z = (1 - e^{-t/T2})/2 - p_x (clipped at 0).
    Returned in code order I, X, Z, Y. ``t2`` is truncated to 2·T1 as Aer does.
    """
    t2 = min(t2, 2 * t1)
    px = (1.0 - np.exp(-time / t1)) / 4 if np.isfinite(t1) else 0.0
    pz = max((1.0 - np.exp(-time / t2)) / 2 - px, 0.0) if np.isfinite(t2) else 0.0
    return np.array([1.0 - 2 * px - pz, px, pz, px])


def compose_channels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Pauli channel of ``a`` then ``b`` (independent draws, same qubits): XOR convolution."""
    codes = np.arange(len(a))
    out = np.zeros(len(a))
    for j, pb in enumerate(b):
        if pb:
            out[codes ^ j] += a * pb
    return out


def tensor_channels(channels: Sequence[np.ndarray]) -> np.ndarray:
    """Independent one-qubit channels on a gate's qubits (first qubit lowest) as one channel."""
    out = np.ones(1)
    for ch in channels:
        out = np.outer(ch, out).ravel()  # the new qubit's two bits above the previous ones
    return out


def gate_channel(
    num_qubits: int,
    *,
    depolarizing: float,
    relaxation: Sequence[np.ndarray] | None,
) -> np.ndarray | None:
    """Depolarizing (``param`` of :func:`depolarizing_channel`), then per-qubit relaxation
    twirls: Aer's ``depolarizing_error(...).compose(thermal_relaxation ⊗ ...)`` order. None when
    nothing is left (no error)."""
    ch = depolarizing_channel(depolarizing, num_qubits) if depolarizing else None
    if relaxation is not None:
        rel = tensor_channels(relaxation)
        ch = rel if ch is None else compose_channels(ch, rel)
    if ch is None or ch[0] >= 1.0:
        return None
    return ch


# ------------------------------------------------------------------------ the program


@dataclass
class NoisyOp:
    """One gate instance: ``kind`` phase (rz/p on ``qubits[0]``, angle ``angle``; ``data`` its
    factor e^{iθ} when the angle is constant), fixed (``matrix``: 2**k x 2**k on ``qubits``, first
    qubit lowest), or noop (an id: only its noise). Simulators derive their own forms of a fixed
    gate from ``matrix`` when they first need them (``forms``): the statevector's 2**n index maps
    are never built for a circuit that runs as a chain."""

    kind: str
    qubits: tuple[int, ...]
    matrix: np.ndarray | None = None
    angle: Angle | None = None
    channel: np.ndarray | None = None  # Pauli probabilities after the gate (None: noiseless)
    data: complex | None = None
    forms: dict = field(default_factory=dict)


@dataclass
class NoisyProgram:
    """A compiled noisy circuit; ``readout[q]`` = (P(read 1 | 0), P(read 0 | 1))."""

    num_qubits: int
    parameters: tuple
    ops: list[NoisyOp]
    readout: np.ndarray  # (n, 2)
    noisy: list[int] = field(default_factory=list)  # indices of ops with a channel
    _masks: dict = field(default_factory=dict)
    forms: dict = field(default_factory=dict)  # other simulators' compiled forms (the noisy chain's)

    def x_index(self, mask: int) -> np.ndarray:
        key = ("x", mask)
        if key not in self._masks:
            self._masks[key] = np.arange(1 << self.num_qubits) ^ mask
        return self._masks[key]

    def z_sign(self, mask: int) -> np.ndarray:
        key = ("z", mask)
        if key not in self._masks:
            self._masks[key] = 1.0 - 2.0 * _parity(np.arange(1 << self.num_qubits) & mask)
        return self._masks[key]


def compile_noisy_program(
    circuit: QuantumCircuit,
    channel: Callable[[str, tuple[int, ...]], np.ndarray | None],
    readout: Sequence[tuple[float, float]] | None = None,
    parameters: Sequence | None = None,
) -> NoisyProgram:
    """Compile ``circuit`` (gates only) with ``channel(name, qubits)`` giving each gate's Pauli
    channel (None: noiseless).

    Raises:
        HybridQiskitError: a parametrized gate other than rz/p, or a non-unitary instruction.
    """
    params = tuple(circuit.parameters if parameters is None else parameters)
    index = {p: i for i, p in enumerate(params)}
    n = circuit.num_qubits
    ops: list[NoisyOp] = []
    last: dict[int, int] = {}  # qubit -> index of the last op on it
    for inst in circuit.data:
        op, name = inst.operation, inst.operation.name
        if name in SKIPPED:
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if inst.clbits or name in ("measure", "reset"):
            raise HybridQiskitError(f"noisy trajectories simulate unitary circuits; got {name}")
        noise = channel(name, qubits)
        if name in PHASE_GATES:
            angle = compile_angle(op.params[0], index)
            prev = ops[last[qubits[0]]] if qubits[0] in last else None
            if prev is not None and prev.kind == "phase" and prev.channel is None:
                prev.angle = sum_angles(prev.angle, angle)  # no error can sit between them
                prev.channel = noise
                continue
            ops.append(NoisyOp("phase", qubits, angle=angle, channel=noise))
        elif any(getattr(p, "parameters", None) for p in op.params):
            raise HybridQiskitError(
                f"noisy trajectories take parameters in rz/p gates only (ISA circuits); got {name}"
            )
        else:
            ops.append(_fixed_op(name, np.asarray(op.to_matrix(), dtype=complex), qubits, noise))
        for q in qubits:
            last[q] = len(ops) - 1
    for o in ops:  # a constant angle is one complex factor
        if o.kind == "phase" and isinstance(o.angle.value, Const):
            o.data = np.exp(1j * o.angle.value.value)
    ro = np.zeros((n, 2)) if readout is None else np.asarray(readout, dtype=float).reshape(n, 2)
    noisy = [i for i, o in enumerate(ops) if o.channel is not None]
    return NoisyProgram(n, params, ops, ro, noisy)


def _fixed_op(name: str, m: np.ndarray, qubits: tuple[int, ...], noise) -> NoisyOp:
    if name == "id" or np.allclose(m, np.eye(len(m))):
        return NoisyOp("noop", qubits, channel=noise)
    return NoisyOp("fixed", qubits, matrix=m, channel=noise)


def _statevector_form(op: NoisyOp, n: int) -> tuple:
    """``(kind, data, inverse)`` of a fixed gate on a 2**n statevector, built on first use: diag
    (the full diagonal), perm (new index order and its inverse), mat1 (2x2) or mat (dense)."""
    if "statevector" in op.forms:
        return op.forms["statevector"]
    m, qubits = op.matrix, op.qubits
    form = ("mat1" if len(qubits) == 1 else "mat", m, None)
    if n <= INDEX_MAP_QUBITS:
        local = np.zeros(1 << n, dtype=int)  # each basis state's bits on ``qubits`` (first lowest)
        full = np.arange(1 << n)
        for k, q in enumerate(qubits):
            local |= ((full >> q) & 1) << k
        absm = np.abs(m)
        if np.allclose(m, np.diag(np.diag(m))):
            d = np.diag(m)[local]
            form = ("diag", d.real.copy() if np.allclose(d.imag, 0) else d, None)
        elif np.allclose(absm.sum(0), 1) and np.allclose(m[absm > 0.5], 1):  # a 0/1 permutation
            dest = np.argmax(absm, axis=0)[local]
            out = full.copy()
            for k, q in enumerate(qubits):
                out = (out & ~(1 << q)) | (((dest >> k) & 1) << q)
            perm = np.empty_like(out)
            perm[out] = full  # new[out[i]] = old[i]  =>  new = old[perm]
            form = ("perm", perm, np.argsort(perm))
    op.forms["statevector"] = form
    return form


# ------------------------------------------------------------------------ trajectories


@dataclass(frozen=True)
class Trajectories:
    """The Paulis drawn for ``columns`` columns: op index -> [(columns, x mask, z mask)]."""

    columns: int
    errors: dict[int, list[tuple[np.ndarray, int, int]]]

    @property
    def count(self) -> int:
        """How many (op, column) errors were drawn."""
        return sum(len(c) for group in self.errors.values() for c, _, _ in group)

    def columns_slice(self, lo: int, hi: int) -> Trajectories:
        """The draws of columns lo .. hi - 1, renumbered from 0 (to simulate them as a block)."""
        errors: dict[int, list] = {}
        for i, group in self.errors.items():
            for cols, xm, zm in group:
                inside = cols[(cols >= lo) & (cols < hi)]
                if len(inside):
                    errors.setdefault(i, []).append((inside - lo, xm, zm))
        return Trajectories(hi - lo, errors)


def sample_trajectories(program: NoisyProgram, columns: int, rng: np.random.Generator) -> Trajectories:
    """Draw, for every noisy op and column, which Pauli (if any) follows the op."""
    errors: dict[int, list] = {}
    if not program.noisy or not columns:
        return Trajectories(columns, errors)
    width = max(len(program.ops[i].channel) for i in program.noisy)
    cum = np.ones((len(program.noisy), width))
    for r, i in enumerate(program.noisy):
        c = np.cumsum(program.ops[i].channel)
        cum[r, : len(c) - 1] = c[:-1]  # the last stays exactly 1: u < 1 never passes it
    # Columns a chunk at a time (about 32 MB of uniforms): a QPU-like evaluation draws one
    # trajectory per shot, hundreds of thousands of columns per call.
    chunk = max(1, SAMPLE_CHUNK // len(program.noisy))
    all_keys, all_cols = [], []
    for lo in range(0, columns, chunk):
        u = rng.random((len(program.noisy), min(chunk, columns - lo)))
        codes = np.empty(u.shape, dtype=np.int64)
        for r in range(len(program.noisy)):  # how many cumulative bounds each draw passes
            codes[r] = np.searchsorted(cum[r], u[r], side="right")
        rows, cols = np.nonzero(codes)
        all_keys.append(rows * width + codes[rows, cols])
        all_cols.append(cols + lo)
    keys, cols = np.concatenate(all_keys), np.concatenate(all_cols)
    if not len(keys):
        return Trajectories(columns, errors)
    order = np.argsort(keys, kind="stable")
    keys, cols = keys[order], cols[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(keys)]):
        r, code = divmod(int(keys[s]), width)
        op = program.ops[program.noisy[r]]
        xm = sum(1 << q for k, q in enumerate(op.qubits) if (code >> (2 * k)) & 1)
        zm = sum(1 << q for k, q in enumerate(op.qubits) if (code >> (2 * k + 1)) & 1)
        errors.setdefault(program.noisy[r], []).append((cols[s:e], xm, zm))
    return Trajectories(columns, errors)


# ------------------------------------------------------------------------ simulation


def _halves(state: np.ndarray, q: int) -> np.ndarray:
    dim, cols = state.shape
    return state.reshape(dim >> (q + 1), 2, 1 << q, cols)


def _apply(op: NoisyOp, state: np.ndarray, phase, program: NoisyProgram, adjoint: bool) -> np.ndarray:
    """``op`` (or its inverse) on every column of ``state``; may work in place."""
    if op.kind == "phase":
        _halves(state, op.qubits[0])[:, 1] *= np.conj(phase) if adjoint else phase
        return state
    if op.kind == "noop":
        return state
    kind, data, inverse = _statevector_form(op, program.num_qubits)
    if kind == "diag":
        state *= (np.conj(data) if adjoint else data)[:, None]
    elif kind == "perm":
        state = state[inverse if adjoint else data]
    elif kind == "mat1":
        m = data.conj().T if adjoint else data
        v = _halves(state, op.qubits[0])
        v0, v1 = v[:, 0], v[:, 1]
        new0 = m[0, 0] * v0 + m[0, 1] * v1
        v[:, 1] = m[1, 0] * v0 + m[1, 1] * v1
        v[:, 0] = new0
    else:
        state = _apply_dense(data.conj().T if adjoint else data, op.qubits, state, program.num_qubits)
    return state


def _apply_dense(m: np.ndarray, qubits, state: np.ndarray, n: int) -> np.ndarray:
    k, cols = len(qubits), state.shape[1]
    tensor = state.reshape([2] * n + [cols])
    axes = [n - 1 - q for q in reversed(qubits)]  # the matrix's row bits: last qubit first
    out = np.tensordot(m.reshape([2] * (2 * k)), tensor, axes=(list(range(k, 2 * k)), axes))
    return np.ascontiguousarray(np.moveaxis(out, list(range(k)), axes)).reshape(state.shape)


def _apply_errors(state: np.ndarray, group, program: NoisyProgram, blocks: int, width: int) -> np.ndarray:
    """Apply each drawn Pauli to its columns, repeated in ``blocks`` blocks of ``width``."""
    for cols, xm, zm in group:
        if blocks > 1:
            cols = (cols[None, :] + width * np.arange(blocks)[:, None]).ravel()
        sub = state[:, cols]
        if xm:
            sub = sub[program.x_index(xm)]
        if zm:
            sub *= program.z_sign(zm)[:, None]
        state[:, cols] = sub
    return state


def _phases(program: NoisyProgram, values: np.ndarray) -> list:
    """Each phase op's factor e^{iθ}: a scalar or one per column."""
    return [
        (o.data if o.data is not None else np.exp(1j * o.angle.value(values))) if o.kind == "phase" else None
        for o in program.ops
    ]


def simulate_trajectories(program: NoisyProgram, values: np.ndarray, traj: Trajectories) -> np.ndarray:
    """Final states (2**n, columns) of the trajectories on parameter sets ``values`` (columns, P)."""
    dim = 1 << program.num_qubits
    state = np.zeros((dim, traj.columns), dtype=complex)
    state[0] = 1.0
    for i, (op, phase) in enumerate(zip(program.ops, _phases(program, values))):
        state = _apply(op, state, phase, program, adjoint=False)
        if i in traj.errors:
            state = _apply_errors(state, traj.errors[i], program, 1, traj.columns)
    return state


# ------------------------------------------------------------------------ readout and observables


def _per_qubit(array: np.ndarray, program: NoisyProgram, transpose: bool) -> np.ndarray:
    """Apply every qubit's readout matrix R_q = [[1-a, b], [a, 1-b]] (column: true bit) to the
    leading (2**n) axis of ``array``, or its transpose (for observables)."""
    out = np.array(array, dtype=float)
    for q, (a, b) in enumerate(program.readout):
        if not (a or b):
            continue
        v = out.reshape(out.shape[0] >> (q + 1), 2, 1 << q, -1)
        v0, v1 = v[:, 0].copy(), v[:, 1].copy()
        if transpose:
            v[:, 0], v[:, 1] = (1 - a) * v0 + a * v1, b * v0 + (1 - b) * v1
        else:
            v[:, 0], v[:, 1] = (1 - a) * v0 + b * v1, a * v0 + (1 - b) * v1
    return out


def measured_probabilities(program: NoisyProgram, state: np.ndarray) -> np.ndarray:
    """Probabilities (2**n, columns) of each measured bitstring, readout errors included."""
    return _per_qubit(np.abs(state) ** 2, program, transpose=False)


def fold_readout_diagonal(program: NoisyProgram, diagonals: np.ndarray) -> np.ndarray:
    """Observables (K, 2**n) whose exact expectation is the readout-affected mean of ``diagonals``."""
    return _per_qubit(diagonals.T, program, transpose=True).T


def diagonal_observables(observables: Sequence[dict[str, complex]], num_qubits: int) -> np.ndarray:
    """(K, 2**n) diagonals of observables given as {Pauli label: coeff} of I/Z strings.

    Raises:
        HybridQiskitError: a term with X or Y (it is not measured in the computational basis).
    """
    idx = np.arange(1 << num_qubits)
    out = np.zeros((len(observables), 1 << num_qubits))
    for k, terms in enumerate(observables):
        for label, coeff in terms.items():
            if set(label) - {"I", "Z"}:
                raise HybridQiskitError(
                    f"noisy trajectories measure Z-type observables (I/Z strings) only, got {label!r}"
                )
            mask = sum(1 << q for q, ch in enumerate(reversed(label)) if ch == "Z")
            out[k] += np.real(coeff) * (1.0 - 2.0 * _parity(idx & mask))
    return out


def _parity(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).copy()
    for shift in (32, 16, 8, 4, 2, 1):
        x ^= x >> shift
    return x & 1


# ------------------------------------------------------------------------ gradient


def trajectory_gradient(
    program: NoisyProgram,
    values: np.ndarray,
    traj: Trajectories,
    final: np.ndarray,
    observables: np.ndarray,
) -> np.ndarray:
    """d⟨O_k⟩/d(parameter) of every column's own trajectory, (K, columns, P).

    Args:
        program: the compiled circuit.
        values: parameter sets (columns, P) that gave ``final``.
        traj: the trajectories that gave ``final`` (replayed in reverse).
        final: final states (2**n, columns) from :func:`simulate_trajectories`.
        observables: (K, 2**n) diagonals (readout already folded in, if it should count).
    """
    cols = traj.columns
    k = len(observables)
    blocks = k + 1
    # [ψ | λ_1 .. λ_K]: every gate and every drawn Pauli acts on all blocks alike.
    state = np.concatenate([final] + [observables[j][:, None] * final for j in range(k)], axis=1)
    grads = np.zeros((k, cols, len(program.parameters)))
    phases = _phases(program, values)
    for i in range(len(program.ops) - 1, -1, -1):
        op = program.ops[i]
        if i in traj.errors:
            state = _apply_errors(state, traj.errors[i], program, blocks, cols)
        phase = phases[i]
        if op.kind == "phase" and op.angle.partials:
            # d/dθ of diag(1, e^{iθ}) is i·Π1·U: dE/dθ = 2·Re⟨λ|iΠ1ψ⟩ = 2·Im Σ conj(ψ1)·λ1.
            v = _halves(state, op.qubits[0])[:, 1].reshape(-1, blocks, cols)
            dtheta = 2.0 * np.einsum("ac,akc->kc", v[:, 0].conj(), v[:, 1:]).imag  # (K, cols)
            for j, partial in op.angle.partials:
                d = partial.value if isinstance(partial, Const) else partial(values)
                grads[:, :, j] += dtheta * d
            phase = np.tile(phase, blocks)
        elif op.kind == "phase" and np.ndim(phase):
            phase = np.tile(phase, blocks)
        state = _apply(op, state, phase, program, adjoint=True)
    return grads
