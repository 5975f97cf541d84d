"""Random test circuits that use every gate the simulator applies natively."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

ROT_1Q = ["rx", "ry", "rz", "p"]
ROT_2Q = ["rzz", "rxx", "ryy", "crx", "cry", "crz", "cp"]
FIXED_1Q = ["x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg", "id"]
FIXED_2Q = ["cx", "cy", "cz", "swap", "ecr"]


def random_circuit(n: int, depth: int, seed: int, num_params: int = 4, expressions: bool = True) -> QuantumCircuit:
    """``depth`` random gates on ``n`` qubits; rotation angles are parameters, linear
    combinations of them, products (nonlinear), or constants."""
    rng = np.random.default_rng(seed)
    theta = ParameterVector("t", num_params)
    qc = QuantumCircuit(n)
    used = set()

    def angle():
        kind = rng.integers(4 if expressions else 1)
        i, j = rng.choice(num_params, 2, replace=False)
        used.update((i, j) if kind in (1, 2) else (i,) if kind == 0 else ())
        if kind == 0:
            return theta[i]
        if kind == 1:
            return 0.5 * theta[i] - 1.5 * theta[j] + 0.3
        if kind == 2:
            return theta[i] * theta[j]
        return float(rng.uniform(-3, 3))

    for _ in range(depth):
        pick = rng.integers(4) if n > 1 else rng.integers(2)
        if pick == 0:
            getattr(qc, str(rng.choice(ROT_1Q)))(angle(), int(rng.integers(n)))
        elif pick == 1:
            getattr(qc, str(rng.choice(FIXED_1Q)))(int(rng.integers(n)))
        else:
            a, b = (int(q) for q in rng.choice(n, 2, replace=False))
            if pick == 2:
                getattr(qc, str(rng.choice(ROT_2Q)))(angle(), a, b)
            else:
                getattr(qc, str(rng.choice(FIXED_2Q)))(a, b)
    for i in range(num_params):  # every parameter appears at least once
        if i not in used:
            qc.ry(theta[i], i % n)
    return qc
