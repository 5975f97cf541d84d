"""Small-sample statistics of per-seed results: mean, sample standard deviation, the t-interval
of the mean, and the paired differences of two models run on the same seeds.

Plain Python on lists of floats (scipy only for the t quantile), so that ``compare`` and the
plots share one definition without importing each other.

Example:
    >>> lo, hi = t_interval([1.0, 2.0, 3.0])
    >>> round(lo, 3), round(hi, 3)
    (-0.484, 4.484)
"""

from __future__ import annotations

import math


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t-interval of the mean of ``values`` (None for fewer than two values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    m, s = mean(values), std(values)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * s / math.sqrt(n)
    return m - half, m + half


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def std(values: list[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summary(values: list[float]) -> dict:
    """``{"mean", "std", "n"}`` of ``values`` (compare.json's per-model figures)."""
    return {"mean": mean(values), "std": std(values), "n": len(values)}


def paired_difference(a: list[float], b: list[float]) -> dict:
    """``a - b`` per seed, with its mean, standard deviation and 95% t-interval, and how many
    seeds ``a`` was ahead on or tied (compare.json's ``difference``)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    ci = t_interval(d)
    return {"per_seed": d, "mean": mean(d), "std": std(d), "ci95": list(ci) if ci else None,
            "interval": "95% t-interval of the mean paired difference (n - 1 degrees of freedom)",
            "first_better": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d)}
