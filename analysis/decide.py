"""The decision layer: confidence bounds on paired log ratios, and what a bound can and cannot decide.

Every continuous criterion is a statement about ``theta``, the mean over seed pairs of
``d_i = log(T_i / R_i)`` (treatment over reference, same seed, same grid cell). Each criterion metric
is a monotone function of ``theta`` (:data:`TRANSFORMS`): an error or loss change is
``exp(theta) - 1`` (increasing), a throughput drop or a memory reduction is ``1 - exp(theta)``
(decreasing), so a threshold X maps to ``theta0 = ln(1 + X)`` or ``ln(1 - X)``.

Bounds. With ``n`` pairs, mean ``m`` and sample SD ``s`` of the ``d_i``, the one-sided bounds at level
``c`` (default 0.975) are the paired t-interval ``m -/+ t_{c, n-1} s / sqrt(n)``. Each alone is a
one-sided ``c`` bound; together a two-sided ``2c - 1`` interval. Identical ``d_i`` (peak memory is
deterministic) give ``s = 0``: the bounds collapse onto ``m`` and the result says *exact across
seeds*. One pair gives no bound. With ``n >= bootstrap_min_pairs`` a BCa bootstrap may replace the
t-interval (never the bare percentile bootstrap, whose coverage at 3 pairs is about 75%).

Decision of one statement ``theta <op> theta0``:

* ``<=`` / ``<``: it *holds* when the upper bound satisfies it, it *does not hold* when the lower bound
  violates it, otherwise it is *undecided*;
* ``>=`` / ``>``: it holds when the lower bound satisfies it, does not hold when the upper bound
  violates it, otherwise undecided.

So a success criterion "worse by at most X" passes only when the upper bound of the degradation is at
or under ``ln(1 + X)`` and fails only when the lower bound is above it; a failure criterion holds
(NO-GO) only when its bound is beyond the margin. Everything here is numpy-vectorised over leading
axes, so the operating-characteristics benchmark calls the very functions the report uses.

Pairs needed. For an undecided statement the report gives the smallest ``m`` with
``(t_{c', m-1} + t_{p, m-1}) * s / sqrt(m) <= |m_hat - theta0|`` (``c'`` the level of the side the
estimate points to, ``p`` the configured power): how many seed pairs the observed spread would need
for the bound to clear the margin with probability ``p`` if the observed mean were the truth.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}
# Relative spread below which paired log ratios count as identical (bytes are integers; a log ratio
# of identical byte counts can differ in the last bits).
ZERO_SPREAD_REL_TOL = 1e-9
HOLDS, NOT_HOLDS, UNDECIDED = "holds", "does_not_hold", "undecided"
PAIRS_NEEDED_FORMULA = (
    "m = smallest m >= 2 with (t[c, m-1] + t[p, m-1]) * s / sqrt(m) <= |mean - theta0|, where s and mean "
    "are the observed SD and mean of the per-seed log ratios, theta0 the margin on the log scale, c the "
    "one-sided confidence level of the deciding side and p the power"
)


@dataclass(frozen=True)
class Transform:
    """A metric as a function of theta = mean log(T/R): ``value = sign * expm1(theta)``-style."""

    increasing: bool  # True: value = exp(theta) - 1; False: value = 1 - exp(theta)

    def value(self, theta: Any) -> Any:
        with np.errstate(over="ignore"):
            v = np.expm1(theta)
        return v if self.increasing else -v

    def theta(self, value: float) -> float:
        """The log-ratio threshold of a metric threshold (``-inf``/``inf`` outside the domain)."""
        x = value if self.increasing else -value
        return math.log1p(x) if x > -1 else -math.inf

    def op(self, comparator: str) -> str:
        """The comparator on the theta scale."""
        return comparator if self.increasing else FLIP[comparator]

    def bounds(self, lo: float, hi: float) -> tuple[float, float]:
        """Theta bounds -> metric bounds (ordered low, high)."""
        a, b = float(self.value(lo)), float(self.value(hi))
        return (a, b) if self.increasing else (b, a)


TRANSFORMS = {
    "rel_l2_error_change": Transform(increasing=True),
    "final_loss_change": Transform(increasing=True),
    "tokens_per_s_drop": Transform(increasing=False),
    "peak_mem_reduction": Transform(increasing=False),
}


@dataclass
class Interval:
    """One-sided bounds on theta from the paired log ratios of one cell (at two levels)."""

    n: int
    mean: float | None
    sd: float | None
    lower: float  # at the nominal level (every-cell claims)
    upper: float
    lower_k: float  # at the multiplicity-corrected level (any-cell claims)
    upper_k: float
    method: str  # "paired t", "BCa bootstrap", "exact across seeds", "no bound (one pair)", "OOM bound"
    exact: bool = False


def t_bounds(d: Any, confidence: float | Any) -> tuple[Any, Any, Any, Any, Any]:
    """Paired t one-sided bounds over the last axis of ``d``: (mean, sd, lower, upper, exact).

    Vectorised over leading axes (``d`` of shape ``(..., n)``). ``confidence`` is the one-sided level.
    Zero spread gives lower = upper = mean and ``exact`` True; fewer than 2 pairs give infinite bounds.
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    if n < 2:
        inf = np.full_like(mean, np.inf)
        return mean, np.full_like(mean, np.nan), -inf, inf, np.zeros(mean.shape, dtype=bool)
    sd = d.std(axis=-1, ddof=1)
    scale = np.maximum(np.abs(d).max(axis=-1), 1e-300)
    exact = np.ptp(d, axis=-1) <= ZERO_SPREAD_REL_TOL * scale
    q = sps.t.ppf(confidence, n - 1)
    half = np.where(exact, 0.0, q * sd / math.sqrt(n))
    return mean, np.where(exact, 0.0, sd), mean - half, mean + half, exact


def bca_bounds(d: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """BCa bootstrap one-sided bounds (lower, upper) of the mean of ``d`` at ``confidence`` each side."""
    d = np.asarray(d, dtype=float)
    n = d.size
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    m = float(d.mean())
    prop = float(np.mean(boots < m)) + 0.5 * float(np.mean(boots == m))
    z0 = float(sps.norm.ppf(min(max(prop, 1.0 / n_resamples), 1 - 1.0 / n_resamples)))
    jack = (d.sum() - d) / (n - 1)
    dev = jack.mean() - jack
    denom = 6.0 * float(np.sum(dev**2)) ** 1.5
    a = float(np.sum(dev**3)) / denom if denom > 0 else 0.0
    out = []
    for z_alpha in (sps.norm.ppf(1 - confidence), sps.norm.ppf(confidence)):
        adj = sps.norm.cdf(z0 + (z0 + z_alpha) / (1 - a * (z0 + z_alpha)))
        out.append(float(np.quantile(boots, adj)))
    return out[0], out[1]


def interval(d: list[float] | np.ndarray, confidence: float, confidence_k: float, cfg: Any) -> Interval:
    """Bounds of one cell's log ratios at the nominal and the corrected level (``cfg.decision``)."""
    d = np.asarray(d, dtype=float)
    n = int(d.size)
    if n == 0:
        return Interval(0, None, None, -math.inf, math.inf, -math.inf, math.inf, "no pairs")
    mean, sd, lo, hi, exact = t_bounds(d, confidence)
    _, _, lo_k, hi_k, _ = t_bounds(d, confidence_k)
    if n < 2:
        return Interval(1, float(mean), None, -math.inf, math.inf, -math.inf, math.inf, "no bound (one pair)")
    if bool(exact):
        m = float(mean)
        return Interval(n, m, 0.0, m, m, m, m, "exact across seeds", exact=True)
    method = "paired t"
    dc = cfg.decision
    if dc.interval == "bca" and n >= dc.bootstrap.min_pairs:
        lo, hi = bca_bounds(d, confidence, dc.bootstrap.n_resamples, dc.bootstrap.seed)
        lo_k, hi_k = bca_bounds(d, confidence_k, dc.bootstrap.n_resamples, dc.bootstrap.seed)
        method = "BCa bootstrap"
    return Interval(n, float(mean), float(sd), float(lo), float(hi), float(lo_k), float(hi_k), method)


def decide(op: str, theta0: float, lo: Any, hi: Any, lo_k: Any = None, hi_k: Any = None) -> Any:
    """HOLDS / NOT_HOLDS / UNDECIDED for ``theta <op> theta0`` (vectorised over array bounds).

    ``lo``/``hi`` (nominal level) prove the statement; ``lo_k``/``hi_k`` (corrected level, default the
    same) disprove it. The caller chooses which claim is the every-cell one (see criteria.py).
    """
    lo_k = lo if lo_k is None else lo_k
    hi_k = hi if hi_k is None else hi_k
    f = OPS[op]
    if op in ("<=", "<"):
        holds, not_holds = f(hi, theta0), np.logical_not(f(lo_k, theta0))
    else:
        holds, not_holds = f(lo, theta0), np.logical_not(f(hi_k, theta0))
    return np.where(holds, HOLDS, np.where(not_holds, NOT_HOLDS, UNDECIDED))


def worst_case_lower(y: Any, j: int, confidence: float) -> float:
    """The largest one-sided paired-t lower bound of ``m = len(y)`` observed log ratios and ``j`` more
    pairs whose value is unknown: ``max over x`` of the bound with the ``j`` unknowns all equal to ``x``.

    The bound ``mean - t_{c, n-1} sd / sqrt(n)`` is concave in the unknowns (the mean is linear, the SD
    convex) and symmetric in them, so equal unknowns attain the maximum. With ``u = x - ybar``,
    ``S = sum (y - ybar)^2``, ``n = m + j``, ``c^2 = t^2 / (n (n - 1))`` and ``a = m j / n`` the bound is
    ``ybar + (j / n) u - c sqrt(S + a u^2)``; it is maximal at ``u = sqrt(S / (c^2 m^2 - a))`` where it
    equals ``ybar - u (c^2 m - j / n)``, and unbounded (``+inf``) when ``c^2 m^2 <= a``. No observed
    pair (``m == 0``) gives ``+inf``. So whatever number a stopped run would have had, its pair could
    not have made the lower bound larger than this.
    """
    y = np.asarray(y, dtype=float)
    m = int(y.size)
    n = m + int(j)
    if j <= 0:
        return float(t_bounds(y, confidence)[2])
    if m == 0 or n < 2:
        return math.inf
    ybar = float(y.mean())
    ss = float(np.sum((y - ybar) ** 2))
    if ss <= (ZERO_SPREAD_REL_TOL * max(float(np.abs(y).max()), 1e-300)) ** 2:
        ss = 0.0
    c2 = float(sps.t.ppf(confidence, n - 1)) ** 2 / (n * (n - 1))
    a = m * j / n
    if c2 * m * m <= a:
        return math.inf
    u = math.sqrt(ss / (c2 * m * m - a))
    return ybar - u * (c2 * m - j / n)


def pairs_needed(
    mean: float | None, sd: float | None, theta0: float, confidence: float, power: float, cap: int
) -> int | None:
    """Seed pairs the observed spread needs to decide ``theta0`` (None: no spread known, or never)."""
    if mean is None or sd is None or not math.isfinite(sd) or sd <= 0 or not math.isfinite(theta0):
        return None
    gap = abs(mean - theta0)
    if gap == 0:
        return None
    for m in range(2, cap + 1):
        if (sps.t.ppf(confidence, m - 1) + sps.t.ppf(power, m - 1)) * sd / math.sqrt(m) <= gap:
            return m
    return None


def corrected_level(confidence: float, k: int) -> float:
    """Bonferroni: each of ``k`` any-cell claims at one-sided level ``1 - (1 - confidence) / k``."""
    return 1.0 - (1.0 - confidence) / max(1, k)
