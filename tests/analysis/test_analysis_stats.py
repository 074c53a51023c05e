"""Statistics for three seeds: attainable p, exact Wilcoxon with ties, zero variance, bootstrap, Holm."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from analysis import stats


@pytest.mark.parametrize(("n", "expected"), [(3, 0.25), (5, 0.0625), (6, 0.03125)])
def test_attainable_min_p_matches_the_protocol(n: int, expected: float) -> None:
    assert stats.attainable_min_p_wilcoxon(n) == pytest.approx(expected)
    # ... and it is what the exact test gives when every pair agrees in sign.
    d = np.arange(1.0, n + 1)
    assert stats.wilcoxon_exact_p(d) == pytest.approx(expected)


def test_sign_flip_enumeration_agrees_with_scipy_exact_without_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        d = rng.normal(size=int(rng.integers(3, 9)))
        ours = stats._signed_rank_exact_p(d)
        ref = sps.wilcoxon(d, method="exact").pvalue
        assert ours == pytest.approx(ref, rel=1e-12)


def test_wilcoxon_with_ties_and_zeros_is_exact_and_quiet() -> None:
    d = np.array([0.0, 2.0, 2.0, -1.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = stats.wilcoxon_exact_p(d)
    # By hand: zero dropped; |d| = 2,2,1,3 -> ranks 2.5,2.5,1,4; W+ = 9 of total 10, expected 5.
    # Sign patterns with |W+ - 5| >= 4: W+ in {0, 1, 9, 10}: 4 of 16.
    assert p == pytest.approx(4 / 16)


def test_identical_differences_say_exact_across_seeds_without_nan_or_warnings() -> None:
    reference = [80e9, 81e9, 79e9]
    treatment = [r - 30e9 for r in reference]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = stats.paired_test(treatment, reference, scale="bytes")
    assert res.exact_across_seeds
    assert res.t_p is None and res.t_statistic is None
    assert "exact across seeds" in res.note
    assert res.wilcoxon_p == pytest.approx(0.25)
    assert res.attainable_min_p == pytest.approx(0.25)
    assert all(v is None or math.isfinite(v) for v in (res.mean_difference, res.wilcoxon_p))


def test_no_difference_at_all_is_not_significant() -> None:
    res = stats.paired_test([5.0, 6.0, 7.0], [5.0, 6.0, 7.0])
    assert not res.exact_across_seeds and res.t_p is None and res.wilcoxon_p == 1.0


def test_paired_t_matches_the_textbook_formula() -> None:
    t = np.array([10.0, 12.0, 11.5, 9.0])
    r = np.array([11.0, 12.5, 13.0, 9.2])
    res = stats.paired_test(list(t), list(r), scale="bytes")
    d = t - r
    t_stat = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    assert res.t_statistic == pytest.approx(t_stat)
    assert res.t_p == pytest.approx(2 * sps.t.sf(abs(t_stat), d.size - 1))


def test_bootstrap_is_deterministic_and_brackets_the_estimate() -> None:
    ratios = [0.58, 0.61, 0.60, 0.63, 0.59]
    a = stats.bootstrap_ratio_ci(ratios, n_resamples=2000, seed=0, confidence=0.95)
    b = stats.bootstrap_ratio_ci(ratios, n_resamples=2000, seed=0, confidence=0.95)
    assert a == b
    assert a is not None and a[0] <= stats.geomean_ratio(np.array(ratios)) <= a[1]
    assert min(ratios) <= a[0] < a[1] <= max(ratios)
    assert stats.bootstrap_ratio_ci([0.6, 0.6, 0.6], n_resamples=200, seed=0, confidence=0.95) == (
        pytest.approx(0.6),
        pytest.approx(0.6),
    )


def test_holm_against_hand_computed_values() -> None:
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 with multipliers 3, 2, 1 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert adj["a"] == pytest.approx(0.03)
    assert adj["c"] == pytest.approx(0.06)
    assert adj["b"] == pytest.approx(0.06)
    assert adj["d"] is None


def test_holm_never_lowers_a_p_value_and_is_monotone() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        ps = {str(i): float(p) for i, p in enumerate(rng.uniform(size=6))}
        adj = stats.holm(ps)
        assert all(adj[k] >= ps[k] - 1e-15 and adj[k] <= 1 for k in ps)
        for a, b in itertools.combinations(ps, 2):
            if ps[a] <= ps[b]:
                assert adj[a] <= adj[b] + 1e-15


def test_decide_on_a_bound_only_claims_what_the_bound_proves() -> None:
    import math

    from hypothesis import given
    from hypothesis import strategies as st

    from analysis.decide import UNDECIDED, decide

    @given(
        bound_value=st.floats(-1, 1),
        slack=st.floats(0, 1),
        threshold=st.floats(-1, 1),
        comparator=st.sampled_from([">=", ">", "<=", "<"]),
        kind=st.sampled_from(["lower", "upper"]),
    )
    def check(bound_value: float, slack: float, threshold: float, comparator: str, kind: str) -> None:
        # Any true value consistent with a one-sided (OOM) bound must agree with a decided outcome.
        true_value = bound_value + slack if kind == "lower" else bound_value - slack
        lo, hi = (bound_value, math.inf) if kind == "lower" else (-math.inf, bound_value)
        decided = str(decide(comparator, threshold, lo, hi))
        if decided != UNDECIDED:
            assert decided == str(decide(comparator, threshold, true_value, true_value))

    check()
