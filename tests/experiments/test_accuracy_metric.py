"""Known answers of every accuracy definition, of the parse-failure penalty and of the diagnostics.

The arrays are small enough to do by hand (P = 1 probe, 6 Voigt values; numbers in kPa)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.eval import accuracy as acc


def field(*values: float) -> np.ndarray:
    """A (1, 6) stress field from its first few Voigt values (the rest 0)."""
    out = np.zeros((1, 6))
    out[0, : len(values)] = values
    return out


# Three samples: norms 5, 1, 2; errors 1, 2, 0.
TRUE = np.stack([field(3, 4), field(0, 0, 0, 0, 0, 1), field(0, 0, 2)])
PRED = np.stack([field(4, 4), field(0, 0, 0, 0, 0, 3), field(0, 0, 2)])
LABELS = np.array(["a", "b", "b"])


def ctx(**kw: object) -> acc.MetricContext:
    base: dict[str, object] = dict(
        primary="floored_mean",
        floor_kpa=2.0,
        scale_group=("tissue",),
        group_scale_kpa={"a": 10.0, "b": 4.0},
        global_scale_kpa=8.0,
        failure_penalty=("zeros", "train_median"),
        fallback_fields={"zeros": np.zeros((1, 6)), "train_median": field(0, 0, 0, 0, 0, -1)},
    )
    base.update(kw)
    return acc.MetricContext(**base)  # type: ignore[arg-type]


def test_each_definition_known_answer() -> None:
    s = acc.score(PRED, TRUE, LABELS, ctx())
    assert s["pooled"] == pytest.approx(3 / 8)  # (1 + 2 + 0) / (5 + 1 + 2)
    assert s["per_sample_mean"] == pytest.approx((0.2 + 2.0 + 0.0) / 3)
    assert s["per_sample_median"] == pytest.approx(0.2)
    assert s["floored_mean"] == pytest.approx((1 / 5 + 2 / 2 + 0 / 2) / 3)  # floor 2 lifts the norm-1 sample
    assert s["group_scaled_mean"] == pytest.approx((1 / 10 + 2 / 4 + 0 / 4) / 3)
    assert s["rel_l2_primary"] == s["floored_mean"] and s["primary"] == "floored_mean"
    assert s["parse_failures"] == 0 and s["n_samples"] == 3


def test_zeros_score_one_under_the_relative_definitions() -> None:
    s = acc.score(np.zeros_like(TRUE), TRUE, LABELS, ctx())
    assert s["pooled"] == s["per_sample_mean"] == s["per_sample_median"] == pytest.approx(1.0)
    assert s["floored_mean"] == pytest.approx((1 + 1 / 2 + 1) / 3)  # 1 kPa error over the floor 2


def test_parse_failure_scores_the_worst_fallback_not_a_free_zero() -> None:
    parsed = np.array([True, False, True])
    # The unparsed row's prediction is ignored, even if it were exact.
    pred = PRED.copy()
    pred[1] = TRUE[1]
    s = acc.score(pred, TRUE, LABELS, ctx(), parsed=parsed)
    # Sample 1: zeros error ||true|| = 1, median error ||(0..0,1) - (0..0,-1)|| = 2 -> 2.
    assert acc.sample_errors(pred, TRUE, ctx(), parsed)[1] == pytest.approx(2.0)
    assert s["pooled"] == pytest.approx((1 + 2 + 0) / 8)
    assert s["parse_failures"] == 1 and s["parse_failure_rate"] == pytest.approx(1 / 3)
    # With zeros as the only fallback the failure costs exactly the sample's norm (relative error 1).
    only_zeros = ctx(failure_penalty=("zeros",))
    assert acc.sample_errors(pred, TRUE, only_zeros, parsed)[1] == pytest.approx(1.0)
    # A failure is never scored better than answering zeros, whatever the definition.
    exact = acc.score(TRUE, TRUE, LABELS, ctx(), parsed=np.array([False, False, False]))
    zeros = acc.score(np.zeros_like(TRUE), TRUE, LABELS, ctx())
    for m in acc.METRICS:
        assert exact[m] >= zeros[m]


def test_non_finite_parsed_prediction_is_refused() -> None:
    pred = PRED.copy()
    pred[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="parse failure"):
        acc.score(pred, TRUE, LABELS, ctx())
    # ... unless it is marked as a failure, which scores it with the penalty.
    assert acc.score(pred, TRUE, LABELS, ctx(), parsed=np.array([False, True, True]))["parse_failures"] == 1


def test_zero_norm_sample() -> None:
    true = np.stack([field(0), field(1)])
    exact = acc.score(true, true, np.array(["a", "a"]), ctx())
    assert exact["per_sample_mean"] == 0.0  # 0/0 counted as exact
    off = acc.score(true + 1, true, np.array(["a", "a"]), ctx())
    assert off["per_sample_mean"] == np.inf and np.isfinite(off["floored_mean"])


def test_weights_and_shares_known_answer() -> None:
    c = ctx()
    norms = acc.sample_norms(TRUE)
    scales = c.scales_for(LABELS)
    assert norms == pytest.approx([5, 1, 2])
    assert acc.weight_shares("pooled", norms, scales, c) == pytest.approx({"top1": 5 / 8, "top5": 1.0})
    assert acc.weight_shares("per_sample_mean", norms, scales, c)["top1"] == pytest.approx(1 / 3)
    # floored: w ~ n / max(n, 2) = 1, 0.5, 1
    assert acc.weight_shares("floored_mean", norms, scales, c)["top1"] == pytest.approx(1 / 2.5)
    # group-scaled: w ~ n / s = 0.5, 0.25, 0.5
    assert acc.weight_shares("group_scaled_mean", norms, scales, c)["top1"] == pytest.approx(0.5 / 1.25)
    assert acc.weight_shares("per_sample_median", norms, scales, c) is None
    e = acc.sample_errors(PRED, TRUE, c)
    # per-sample terms r = 0.2, 2, 0 -> top-1 share 2 / 2.2
    assert acc.contribution_shares("per_sample_mean", e, norms, scales, c)["top1"] == pytest.approx(2 / 2.2)
    assert acc.contribution_shares("pooled", e, norms, scales, c)["top1"] == pytest.approx(2 / 3)


def test_context_from_train_and_json_roundtrip() -> None:
    # Train norms 1..5 (one value each); groups x: {1, 2}, y: {3, 4, 5}.
    train = {
        "sample_id": np.arange(5),
        "tissue": np.array(["x", "x", "y", "y", "y"]),
        "stress": np.stack([field(v) for v in (1, 2, 3, 4, 5)]),
    }
    cfg = {"primary": "pooled", "floor_quantile": 0.5, "floor_kpa": None, "scale_group": ["tissue"],
           "failure_penalty": ["zeros", "train_median"]}  # fmt: skip
    c = acc.MetricContext.from_train(train, cfg)
    assert c.floor_kpa == pytest.approx(3.0)  # median of 1..5
    assert c.group_scale_kpa == pytest.approx({"x": 3.0, "y": 4.0})  # x's median 1.5 lifted to the floor
    assert c.global_scale_kpa == pytest.approx(3.0)
    assert c.fallback_fields["train_median"] == pytest.approx(field(3))
    assert c.scales_for(np.array(["y", "unseen"])) == pytest.approx([4.0, 3.0])
    fixed = acc.MetricContext.from_train(train, {**cfg, "floor_kpa": 0.5})
    assert fixed.floor_kpa == 0.5 and fixed.group_scale_kpa["x"] == pytest.approx(1.5)
    back = acc.MetricContext.from_json(c.to_json())
    labels = np.array(["x", "y", "y"])
    assert acc.score(PRED, TRUE, labels, back) == acc.score(PRED, TRUE, labels, c)


def test_bootstrap_sd_matches_the_standard_error_of_a_mean() -> None:
    rng = np.random.default_rng(1)
    n = 400
    norms = np.ones(n)
    e = rng.exponential(1.0, n)  # per-sample relative errors with SD about 1
    c = ctx()
    sd = acc.bootstrap_sd("per_sample_mean", e, norms, np.ones(n), c, n_resamples=2000, seed=0)
    assert sd == pytest.approx(e.std(ddof=1) / np.sqrt(n), rel=0.1)
    # Errors proportional to the norms give the same pooled value on every resample.
    norms2 = rng.uniform(0.1, 10, n)
    assert acc.bootstrap_sd("pooled", 0.3 * norms2, norms2, np.ones(n), c, 200, 0) == pytest.approx(
        0, abs=1e-12
    )


def test_group_labels() -> None:
    split = {"sample_id": np.arange(2), "tissue": np.array(["liver", "brain_grey"]),
             "scenario": np.array(["uniaxial", "indentation"])}  # fmt: skip
    assert list(acc.group_labels(split, ("tissue", "scenario"))) == [
        "liver/uniaxial",
        "brain_grey/indentation",
    ]


def test_score_texts_parses_and_penalises_failures() -> None:
    # P = 1: six numbers per sample; the second text is cut short and the third holds a non-number.
    texts = ["4 4 0 0 0 0<eos>", "0 0 0", "0 0 2 0 0 x"]
    s = acc.score_texts(texts, TRUE, LABELS, ctx())
    assert s["parse_failures"] == 2
    # Sample 0 error 1; sample 1 penalty 2 (see above); sample 2 penalty max(2, ||(0,0,2,0,0,1)||) = sqrt(5).
    assert s["pooled"] == pytest.approx((1 + 2 + np.sqrt(5)) / 8)
    with pytest.raises(ValueError, match="2 texts for 3 samples"):
        acc.score_texts(texts[:2], TRUE, LABELS, ctx())
