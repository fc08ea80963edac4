"""Statistics over seeds, for reading an ablation: pure functions on plain numbers (no pandas, no
scipy; tested against ``scipy.stats``).

    summarize([66.0, 66.7, 67.4])                      # n, mean, std, 95 % CI (Student t)
    compare({0: 25.0, 1: 25.0, 2: 25.0},               # a setting's runs by seed ...
            {0: 65.9, 1: 66.7, 2: 67.4})               # ... against the baseline's
    holm([0.01, 0.04, 0.30])                           # step-down adjusted p values

``compare`` pairs the runs by seed (the paired t-test over the seeds both have: a seed's noise
cancels); where fewer than 2 seeds are shared it falls back to Welch's unequal-variance test and
says so; with fewer than 2 runs on a side there is no test and nothing is marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

LEVEL = 0.95


# ----------------------------------------------------------------------------- Student's t
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


@lru_cache(maxsize=4096)
def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (bisection on ``t_sf``;
    cached: a table's intervals share a few degrees of freedom)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile must be in (0, 1), got {q!r}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - q:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_sf(middle, df) > 1.0 - q:
            low = middle
        else:
            high = middle
        if high - low < 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def two_sided_p(t: float, df: float) -> float:
    return min(1.0, 2.0 * t_sf(abs(t), df))


# ----------------------------------------------------------------------------- one setting's runs
@dataclass(frozen=True)
class Summary:
    """``n`` runs of one setting (its seeds): mean, sample standard deviation and the Student-t
    confidence interval of the mean (``low``, ``high``; None with one run)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def _finite(values: Sequence[float], what: str) -> list[float]:
    values = [float(v) for v in values]
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what} holds non-finite values {bad}: a record never reports one as a result")
    return values


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    values = _finite(values, "the runs")
    n = len(values)
    if n == 0:
        raise ValueError("no runs to summarize")
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_ppf(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


# ----------------------------------------------------------------------------- a setting against the baseline
@dataclass(frozen=True)
class Delta:
    """A setting's mean minus the baseline's, with its confidence interval and two-sided p.

    ``test``: ``"paired"`` (over ``n`` shared seeds), ``"welch"`` (unpaired runs; ``n`` = the smaller
    side) or ``"none"`` (fewer than 2 runs on a side: ``low``, ``high``, ``p`` are None);
    ``significant``: the interval excludes 0 (never with ``test="none"``); ``note`` says why a
    test was chosen."""

    delta: float
    low: float | None
    high: float | None
    p: float | None
    test: str
    n: int
    significant: bool
    note: str


def _interval(delta: float, scale: float, df: float, level: float) -> tuple[float, float, float]:
    """(low, high, p) for an estimate ``delta`` with standard error ``scale``."""
    if scale == 0.0:  # every run agrees: the interval is the point, and any difference is certain
        return delta, delta, (1.0 if delta == 0.0 else 0.0)
    half = t_ppf(0.5 + level / 2.0, df) * scale
    return delta - half, delta + half, two_sided_p(delta / scale, df)


def compare(candidate: Mapping[int, float], baseline: Mapping[int, float], level: float = LEVEL) -> Delta:
    """``candidate`` against ``baseline``, each a mapping seed → metric."""
    a = dict(zip(candidate, _finite(list(candidate.values()), "the setting's runs")))
    b = dict(zip(baseline, _finite(list(baseline.values()), "the baseline's runs")))
    if not a or not b:
        raise ValueError("compare needs at least one run of the setting and of the baseline")
    shared = sorted(set(a) & set(b))
    delta = math.fsum(a.values()) / len(a) - math.fsum(b.values()) / len(b)
    if len(shared) >= 2:
        differences = [a[s] - b[s] for s in shared]
        n = len(differences)
        mean = math.fsum(differences) / n
        scale = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1) / n)
        low, high, p = _interval(mean, scale, n - 1, level)
        unpaired = (len(a) - n) + (len(b) - n)
        note = f"paired over {n} shared seeds" + (f" ({unpaired} unpaired run(s) left out)" if unpaired else "")
        return Delta(mean, low, high, p, "paired", n, not (low <= 0.0 <= high), note)
    if len(a) >= 2 and len(b) >= 2:
        va = math.fsum((v - math.fsum(a.values()) / len(a)) ** 2 for v in a.values()) / (len(a) - 1)
        vb = math.fsum((v - math.fsum(b.values()) / len(b)) ** 2 for v in b.values()) / (len(b) - 1)
        sa, sb = va / len(a), vb / len(b)
        scale = math.sqrt(sa + sb)
        df = (sa + sb) ** 2 / ((sa ** 2 / (len(a) - 1) if sa else 0.0) + (sb ** 2 / (len(b) - 1) if sb else 0.0)) \
            if scale else 1.0
        low, high, p = _interval(delta, scale, df, level)
        return Delta(delta, low, high, p, "welch", min(len(a), len(b)), not (low <= 0.0 <= high),
                     f"seeds do not pair ({len(shared)} shared): Welch's test on {len(a)} and {len(b)} runs")
    return Delta(delta, None, None, None, "none", min(len(a), len(b)), False,
                 f"{len(a)} and {len(b)} run(s), {len(shared)} shared seed(s): too few for a test, nothing marked")


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``p_values`` (one family: many settings against one baseline);
    None (no test) stays None and does not count."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
