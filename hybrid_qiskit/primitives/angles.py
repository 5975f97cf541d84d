"""Gate angles as vectorized functions of a parameter array, with their partial derivatives.

Angles may be any ParameterExpression (the ZZ feature map uses products of inputs): each is
turned into a numpy function of the (batch, P) parameter array, together with its partial
derivatives, for the adjoint gradient's chain rule and the parameter-shift gradient's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression


class Const:
    """A constant function of the parameter array (a callable, so that it can stand wherever an
    angle or partial derivative function can; ``value`` lets callers skip the multiply)."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.full(values.shape[0], self.value)


@dataclass(frozen=True)
class Angle:
    """A gate angle as a vectorized function of the circuit's parameter array (batch, P)."""

    value: Callable[[np.ndarray], np.ndarray]
    # (parameter index, d angle / d parameter as a function of the parameter array)
    partials: tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]

    @property
    def columns(self) -> tuple[int, ...]:
        """The parameter columns this angle depends on."""
        return tuple(j for j, _ in self.partials)


def _column(j: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: v[:, j]


def compile_angle(expr, index: dict[Parameter, int]) -> Angle:
    """Turn a gate parameter (float or ParameterExpression) into an :class:`Angle`.

    Partial derivatives are taken by sympy on ``expr.sympify()``: qiskit's own
    ``ParameterExpression.gradient`` sympifies wrongly for plain products (d(a·b)/db came back
    as ``b``, qiskit 2.6).
    """
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        return Angle(Const(float(expr)), ())
    if isinstance(expr, Parameter):
        j = index[expr]
        return Angle(_column(j), ((j, Const(1.0)),))
    import sympy

    params = sorted(expr.parameters, key=lambda p: index[p])
    symbols = {p: sympy.Symbol(p.name) for p in params}
    body = expr.sympify()
    partials = []
    for p in params:
        d = sympy.diff(body, symbols[p])
        partials.append((index[p], Const(float(d)) if not d.free_symbols else _lambdify(d, symbols, index)))
    if all(isinstance(f, Const) for _, f in partials):
        # a·x + b: evaluated as a dot product, with no symbolic machinery per call.
        cols = np.array([j for j, _ in partials])
        coeffs = np.array([f.value for _, f in partials])
        offset = float(body.subs({s: 0 for s in symbols.values()}))
        return Angle(lambda v, c=cols, a=coeffs, b=offset: v[:, c] @ a + b, tuple(partials))
    return Angle(_lambdify(body, symbols, index), tuple(partials))


def _lambdify(body, symbols: dict, index: dict[Parameter, int]):
    """A sympy expression of the parameters as a vectorized function of the parameter array."""
    import sympy

    used = [p for p, s in symbols.items() if s in body.free_symbols]
    fn = sympy.lambdify([symbols[p] for p in used], body, modules="numpy", dummify=True)
    cols = [index[p] for p in used]

    def value(v: np.ndarray) -> np.ndarray:
        out = fn(*(v[:, j] for j in cols))
        return np.broadcast_to(np.asarray(out, dtype=float), (v.shape[0],))

    return value


def sum_angles(a: Angle, b: Angle) -> Angle:
    if isinstance(a.value, Const) and isinstance(b.value, Const):
        return Angle(Const(a.value.value + b.value.value), ())
    return Angle(lambda v, f=a.value, g=b.value: f(v) + g(v), a.partials + b.partials)

