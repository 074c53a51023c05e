"""Statistics that are right for three seeds.

* Pairs: a treatment run and a reference run with the same seed and grid point.
* Paired t-test on the differences ``d_i = g(T_i) - g(R_i)`` (``g`` = log for a ratio scale, identity
  for bytes): ``t = mean(d) / (sd(d)/sqrt(n))`` with ``n-1`` degrees of freedom. When every ``d_i`` is
  the same (peak memory is nearly deterministic), ``sd(d) = 0`` and ``t`` is undefined: we say that the
  difference is *exact across seeds* instead of printing inf or nan.
* Exact Wilcoxon signed-rank test, two-sided. Its smallest attainable p-value with ``n`` non-zero pairs
  is ``2 / 2**n`` (all signs equal): 0.25 for 3 pairs, 0.0625 for 5, 0.03125 for 6. A p-value at that
  floor says the design cannot show more, not that there is no effect.
* Bootstrap confidence intervals (percentile, seeded, deterministic) of the geometric-mean ratio
  ``exp(mean(log(T_i/R_i)))`` resampling pairs.
* Holm's step-down correction over a family of p-values: sort ``p_(1) <= ... <= p_(m)``, adjusted
  ``p~_(i) = max_{j<=i} min(1, (m-j+1) p_(j))``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

# Relative spread below which paired differences count as identical (bytes are integers; a
# log-ratio of identical byte counts can differ in the last bits).
ZERO_SPREAD_REL_TOL = 1e-9


def attainable_min_p_wilcoxon(n_pairs: int) -> float | None:
    """Smallest two-sided exact Wilcoxon signed-rank p-value with ``n_pairs`` non-zero pairs."""
    return None if n_pairs < 1 else min(1.0, 2.0 / 2**n_pairs)


def _signed_rank_exact_p(d: np.ndarray) -> float:
    """Exact two-sided p of the signed-rank statistic under random signs, ties allowed.

    Zeros are dropped first (Wilcoxon's convention). Average ranks are multiples of 1/2, so doubled
    ranks are integers and the null distribution of 2*W+ (each rank in or out with probability 1/2)
    is a subset-sum count: a dynamic programme over ranks, O(n * sum of ranks), exact for any n.
    """
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 1.0
    ranks2 = np.rint(2 * sps.rankdata(np.abs(d))).astype(np.int64)
    total = int(ranks2.sum())
    counts = np.zeros(total + 1, dtype=float)  # counts[s] = number of sign patterns with 2*W+ = s
    counts[0] = 1.0
    for r in ranks2:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[:-r] if r > 0 else counts
        counts = counts + shifted
    observed = int(ranks2[d > 0].sum())
    dev = abs(2 * observed - total)  # |2*(2W+) - total|, symmetric around total/2
    sums = np.arange(total + 1)
    extreme = np.abs(2 * sums - total) >= dev
    return float(min(1.0, counts[extreme].sum() / counts.sum()))


def wilcoxon_exact_p(d: np.ndarray) -> float:
    """Two-sided exact Wilcoxon signed-rank p-value of paired differences ``d``."""
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0
    has_ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if has_ties or nonzero.size < d.size:
        return _signed_rank_exact_p(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return float(sps.wilcoxon(d, method="exact").pvalue)
        except (Warning, ValueError):
            return _signed_rank_exact_p(d)


@dataclass
class PairedTest:
    n_pairs: int
    mean_difference: float | None  # on the test scale (log ratio or bytes)
    t_statistic: float | None
    t_p: float | None
    wilcoxon_p: float | None
    attainable_min_p: float | None
    exact_across_seeds: bool  # every paired difference identical and non-zero
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(treatment: list[float], reference: list[float], scale: str = "log") -> PairedTest:
    """Paired t-test and exact Wilcoxon of treatment vs reference (same order = same pair)."""
    t = np.asarray(treatment, dtype=float)
    r = np.asarray(reference, dtype=float)
    n = int(t.size)
    if n == 0:
        return PairedTest(0, None, None, None, None, None, False, "no pairs")
    d = np.log(t) - np.log(r) if scale == "log" else t - r
    mean_d = float(d.mean())
    amin = attainable_min_p_wilcoxon(n)
    w_p = wilcoxon_exact_p(d)
    spread = float(np.ptp(d))
    scale_ref = max(float(np.max(np.abs(d))), 1e-300)
    identical = spread <= ZERO_SPREAD_REL_TOL * scale_ref
    if n < 2:
        return PairedTest(
            n, mean_d, None, None, w_p, amin, False, "one pair: the t-test needs at least 2 pairs"
        )
    if identical and mean_d == 0.0:
        return PairedTest(
            n,
            0.0,
            None,
            None,
            w_p,
            amin,
            False,
            f"no difference in any of {n} pairs: the t statistic is undefined (0/0)",
        )
    if identical:
        return PairedTest(
            n,
            mean_d,
            None,
            None,
            w_p,
            amin,
            True,
            f"difference exact across seeds: identical in all {n} pairs (zero variance), "
            "so the t statistic is undefined; the difference is deterministic, not noise",
        )
    res = sps.ttest_rel(t if scale == "bytes" else np.log(t), r if scale == "bytes" else np.log(r))
    note = ""
    if amin is not None and w_p <= amin + 1e-12:
        note = (
            f"Wilcoxon p = {w_p:.4g} is the smallest a two-sided exact test can give with {n} pairs "
            "(all pairs agree in sign)"
        )
    elif amin is not None and amin >= 0.05:
        note = (
            f"with {n} pairs the exact Wilcoxon test cannot go below p = {amin:.4g}: "
            "its p-value is no evidence either way"
        )
    return PairedTest(n, mean_d, float(res.statistic), float(res.pvalue), w_p, amin, False, note)


def geomean_ratio(ratios: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(ratios))))


def bootstrap_ratio_ci(
    ratios: list[float], *, n_resamples: int, seed: int, confidence: float
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the geometric-mean ratio, resampling pairs (deterministic)."""
    x = np.asarray(ratios, dtype=float)
    if x.size == 0:
        return None
    if x.size == 1 or np.ptp(np.log(x)) == 0.0:
        v = geomean_ratio(x)
        return (v, v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    boots = np.exp(np.log(x)[idx].mean(axis=1))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values; entries that are None stay None and do not count in the family."""
    present = sorted(((p, k) for k, p in p_values.items() if p is not None and not math.isnan(p)))
    m = len(present)
    out: dict[str, float | None] = {k: None for k in p_values}
    running = 0.0
    for i, (p, k) in enumerate(present):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out
