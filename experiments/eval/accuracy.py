"""The accuracy metric of predicted stress: definitions, parse-failure scoring, and their diagnostics.

Every definition aggregates the per-sample L2 error ``e_i = ||pred_i - true_i||_2`` (over the
sample's P x 6 Cauchy stress values, kPa) against the per-sample norm ``n_i = ||true_i||_2``:

``pooled``
    ``sum_i e_i / sum_i n_i`` (the study's original rel-L2). Equal to ``mean_i e_i / d`` with one
    denominator ``d = mean_i n_i`` for all samples, i.e. a weighted mean of the per-sample relative
    errors ``r_i = e_i / n_i`` with weights ``n_i / sum n``: a sample with a large stress norm
    carries the metric (pilot test: one sample, 62% of the weight).
``per_sample_mean`` / ``per_sample_median``
    mean / median over samples of ``r_i``. The mean weighs samples equally, so a near-zero ``n_i``
    makes ``r_i`` huge for any informed prediction ("predict zero" scores exactly 1 and wins).
``floored_mean``
    ``mean_i e_i / max(n_i, floor)``: per-sample relative error where the sample's stress is
    larger than ``floor`` (kPa), absolute error in units of ``floor`` below it. ``floor`` is the
    ``floor_quantile`` quantile of the training split's ``n_i`` (or ``floor_kpa`` when set): the
    stress scale below which the data set holds no signal a relative error should be measured
    against.
``group_scaled_mean``
    ``mean_i e_i / s_g(i)``: each error in units of the median training norm ``s_g`` of the sample's
    group (``scale_group`` fields, e.g. tissue, behaviour, law, scenario); a group absent from the
    training split uses the median of all training norms; ``s_g`` is at least ``floor``.

All but the median are ``mean_i w_i r_i`` with weights ``w_i = n_i / d_i`` for the definition's
per-sample denominator ``d_i`` (:func:`weights`); the share of the largest weights says how few
samples can carry the metric (:func:`weight_shares`).

Parse failures. An output that does not parse gets the per-sample error of the WORST of the
``failure_penalty`` fallback predictors (default: all zeros and the training-median field), i.e.
``e_i = max_f ||fallback_f - true_i||``. So a failure is never better than answering the
simplest non-learned guess (``r_i >= 1`` with zeros among the fallbacks), and never infinitely
bad (a fixed huge penalty would let one failure swamp the mean); it is the same size under every
definition above because it enters as an error, not as a score. Failures are counted and returned.

The primary definition (``metric.primary`` in ``conf/baselines/default.yaml``) is chosen from
measured evidence in ``docs/accuracy-endpoint.md``. Callers score predictions with :func:`score`
and a :class:`MetricContext` built from the training split (:meth:`MetricContext.from_train`) or
read back from ``baselines.json`` (:meth:`MetricContext.from_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.eval.textdata import parse_stress

METRICS = ("pooled", "per_sample_mean", "per_sample_median", "floored_mean", "group_scaled_mean")
FALLBACKS = ("zeros", "train_median", "train_mean")
GROUP_FIELDS = ("tissue", "behaviour", "material_model", "scenario")


def sample_norms(x: np.ndarray) -> np.ndarray:
    """(N, P, 6) -> (N,) L2 norm of each sample's stress values (kPa)."""
    x = np.asarray(x, dtype=np.float64)
    return np.linalg.norm(x.reshape(x.shape[0], -1), axis=1)


def group_labels(split: Mapping[str, Any], fields: Sequence[str] = GROUP_FIELDS) -> np.ndarray:
    """One string per sample, ``"liver/hyperelastic/neo_hookean/uniaxial"`` for the given fields."""
    cols = [np.asarray(split[f]).astype(str) for f in fields]
    n = len(split["sample_id"]) if "sample_id" in split else len(cols[0])
    return np.array(["/".join(c[i] for c in cols) for i in range(n)], dtype=str)


@dataclass(frozen=True)
class MetricContext:
    """What a metric needs from the training split: the floor, the group scales, the fallbacks."""

    primary: str
    floor_kpa: float
    scale_group: tuple[str, ...]
    group_scale_kpa: dict[str, float]
    global_scale_kpa: float
    failure_penalty: tuple[str, ...]
    fallback_fields: dict[str, np.ndarray] = field(repr=False)  # name -> (P, 6) kPa

    @classmethod
    def from_train(cls, train: Mapping[str, Any], metric_cfg: Mapping[str, Any]) -> MetricContext:
        stress = np.asarray(train["stress"], dtype=np.float64)
        norms = sample_norms(stress)
        if metric_cfg.get("floor_kpa") is not None:
            floor = float(metric_cfg["floor_kpa"])
        else:
            floor = float(np.quantile(norms, float(metric_cfg["floor_quantile"])))
        scale_group = tuple(metric_cfg["scale_group"])
        labels = group_labels(train, scale_group)
        scales = {g: max(float(np.median(norms[labels == g])), floor) for g in np.unique(labels)}
        fallbacks = {
            "zeros": np.zeros(stress.shape[1:]),
            "train_median": np.median(stress, axis=0),
            "train_mean": stress.mean(axis=0),
        }
        return cls(
            primary=str(metric_cfg["primary"]),
            floor_kpa=floor,
            scale_group=scale_group,
            group_scale_kpa=scales,
            global_scale_kpa=max(float(np.median(norms)), floor),
            failure_penalty=tuple(metric_cfg["failure_penalty"]),
            fallback_fields=fallbacks,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "floor_kpa": self.floor_kpa,
            "scale_group": list(self.scale_group),
            "group_scale_kpa": dict(self.group_scale_kpa),
            "global_scale_kpa": self.global_scale_kpa,
            "failure_penalty": list(self.failure_penalty),
            "fallback_fields": {k: v.tolist() for k, v in self.fallback_fields.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MetricContext:
        return cls(
            primary=d["primary"],
            floor_kpa=float(d["floor_kpa"]),
            scale_group=tuple(d["scale_group"]),
            group_scale_kpa={k: float(v) for k, v in d["group_scale_kpa"].items()},
            global_scale_kpa=float(d["global_scale_kpa"]),
            failure_penalty=tuple(d["failure_penalty"]),
            fallback_fields={k: np.asarray(v, dtype=np.float64) for k, v in d["fallback_fields"].items()},
        )

    def scales_for(self, labels: np.ndarray) -> np.ndarray:
        """(N,) group scale of each sample (labels over ``scale_group``), kPa."""
        return np.array([self.group_scale_kpa.get(str(g), self.global_scale_kpa) for g in labels])


def sample_errors(
    pred: np.ndarray, true: np.ndarray, ctx: MetricContext, parsed: np.ndarray | None = None
) -> np.ndarray:
    """(N,) per-sample L2 error (kPa). Rows where ``parsed`` is False get the failure penalty:
    the largest error among ``ctx.failure_penalty``'s fallback fields (their ``pred`` is ignored)."""
    true = np.asarray(true, dtype=np.float64)
    n = true.shape[0]
    pred = np.asarray(pred, dtype=np.float64)
    ok = np.ones(n, bool) if parsed is None else np.asarray(parsed, bool)
    err = np.full(n, np.nan)
    if ok.any():
        err[ok] = np.linalg.norm((pred[ok] - true[ok]).reshape(int(ok.sum()), -1), axis=1)
    if (~ok).any():
        bad = true[~ok].reshape(int((~ok).sum()), -1)
        penalties = [
            np.linalg.norm(bad - ctx.fallback_fields[f].reshape(1, -1), axis=1) for f in ctx.failure_penalty
        ]
        err[~ok] = np.max(penalties, axis=0)
    if not np.all(np.isfinite(err)):
        raise ValueError("a parsed prediction holds a non-finite value; mark it as a parse failure")
    return err


def relative_errors(e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(N,) per-sample relative errors ``e / n``; a zero norm gives 0 for a zero error, else inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = e / n
    return np.where(n > 0, r, np.where(e > 0, np.inf, 0.0))


def denominators(metric: str, norms: np.ndarray, scales: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """(N,) per-sample denominators ``d_i`` with ``metric = mean_i e_i / d_i`` (not the median)."""
    if metric == "pooled":
        return np.full(norms.shape, norms.mean())
    if metric == "per_sample_mean":
        return norms
    if metric == "floored_mean":
        return np.maximum(norms, ctx.floor_kpa)
    if metric == "group_scaled_mean":
        return scales
    raise ValueError(f"no per-sample denominator for metric {metric!r}; one of {METRICS[:1] + METRICS[3:]}")


def aggregate(metric: str, e: np.ndarray, norms: np.ndarray, scales: np.ndarray, ctx: MetricContext) -> float:
    """The metric from per-sample errors ``e``, norms and group scales (all (N,))."""
    if len(e) == 0:
        return float("nan")
    if metric == "pooled":
        return float(e.sum() / norms.sum()) if norms.sum() > 0 else float("nan")
    if metric == "per_sample_median":
        return float(np.median(relative_errors(e, norms)))
    if metric == "per_sample_mean":
        return float(np.mean(relative_errors(e, norms)))
    if metric in METRICS:
        return float(np.mean(e / denominators(metric, norms, scales, ctx)))
    raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")


def score(
    pred: np.ndarray,
    true: np.ndarray,
    labels: np.ndarray,
    ctx: MetricContext,
    parsed: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score predictions (N, P, 6) kPa against ``true`` under every definition.

    ``labels``: (N,) group label of each sample over ``ctx.scale_group`` (:func:`group_labels`);
    ``parsed``: (N,) bool, False where the output did not parse (that row of ``pred`` is ignored
    and scored with the failure penalty). Returns ``{metric: value for METRICS}`` plus
    ``rel_l2_primary`` (the value of ``ctx.primary``), ``primary``, ``n_samples``,
    ``parse_failures`` and ``parse_failure_rate``."""
    true = np.asarray(true, dtype=np.float64)
    e = sample_errors(pred, true, ctx, parsed)
    norms = sample_norms(true)
    scales = ctx.scales_for(np.asarray(labels))
    out: dict[str, Any] = {m: aggregate(m, e, norms, scales, ctx) for m in METRICS}
    failed = np.zeros(len(e), bool) if parsed is None else ~np.asarray(parsed, bool)
    failures = int(failed.sum())
    out.update(
        primary=ctx.primary,
        rel_l2_primary=out[ctx.primary],
        n_samples=len(e),
        parse_failures=failures,
        parse_failure_rate=failures / len(e) if len(e) else float("nan"),
        **failure_size(e, norms, scales, ctx, failed),
    )
    return out


def failure_size(
    e: np.ndarray, norms: np.ndarray, scales: np.ndarray, ctx: MetricContext, failed: np.ndarray
) -> dict[str, float | None]:
    """What the parse failures were scored at under the primary definition: ``parse_failure_term``,
    the mean per-sample term ``e_i / d_i`` of the failed samples (their relative error, or for
    ``pooled`` their error over the mean norm), and ``parse_failure_share``, the share of the
    primary value they carry (``sum`` of their terms over all terms). None without failures, and
    for the median (no per-sample terms)."""
    if not failed.any() or ctx.primary == "per_sample_median":
        return {"parse_failure_term": None, "parse_failure_share": None}
    terms = (
        relative_errors(e, norms)
        if ctx.primary == "per_sample_mean"
        else e / denominators(ctx.primary, norms, scales, ctx)
    )
    total = float(terms.sum())
    return {
        "parse_failure_term": float(terms[failed].mean()),
        "parse_failure_share": float(terms[failed].sum() / total) if total > 0 else None,
    }


def score_strata(
    pred: np.ndarray,
    true: np.ndarray,
    labels: np.ndarray,
    ctx: MetricContext,
    strata: Mapping[str, np.ndarray],
    parsed: np.ndarray | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{field: {value: {"n": count, metric: value for METRICS}}}``: every definition on the samples
    of each value of each stratifying field (``strata[field]``: (N,) values), failures penalised as
    in :func:`score`."""
    true = np.asarray(true, dtype=np.float64)
    e = sample_errors(pred, true, ctx, parsed)
    norms = sample_norms(true)
    scales = ctx.scales_for(np.asarray(labels))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for f, raw in strata.items():
        values = np.asarray(raw).astype(str)
        out[f] = {}
        for v in sorted(set(values)):
            rows = values == v
            out[f][v] = {"n": int(rows.sum())}
            out[f][v].update({m: aggregate(m, e[rows], norms[rows], scales[rows], ctx) for m in METRICS})
    return out


def parse_texts(
    texts: Sequence[str],
    n_probes: int,
    shape: tuple[int, ...],
    number_format: str = "sci",
    significant_digits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(pred, parsed) from generated texts: unparsable rows are zeros with ``parsed`` False. With
    ``significant_digits`` a field the format cannot write is unparsable too
    (:func:`experiments.eval.textdata.parse_stress`)."""
    pred = np.zeros(shape)
    parsed = np.zeros(len(texts), bool)
    for i, text in enumerate(texts):
        values = parse_stress(text, n_probes, number_format, significant_digits)
        if values is not None:
            pred[i], parsed[i] = values, True
    return pred, parsed


def score_texts(
    texts: Sequence[str], true: np.ndarray, labels: np.ndarray, ctx: MetricContext
) -> dict[str, Any]:
    """Parse generated texts (:func:`experiments.eval.textdata.parse_stress`) and :func:`score` them;
    an unparsable text is a parse failure (scored with the penalty, counted)."""
    true = np.asarray(true, dtype=np.float64)
    if len(texts) != len(true):
        raise ValueError(f"{len(texts)} texts for {len(true)} samples")
    pred, parsed = parse_texts(texts, true.shape[1], true.shape)
    return score(pred, true, labels, ctx, parsed=parsed)


def weights(metric: str, norms: np.ndarray, scales: np.ndarray, ctx: MetricContext) -> np.ndarray | None:
    """Normalised weights ``w_i`` of the per-sample relative errors ``r_i`` in ``metric`` (sum 1);
    None for the median (no weights: half the samples must move to move it)."""
    if metric == "per_sample_median":
        return None
    w = (
        norms / denominators(metric, norms, scales, ctx)
        if metric != "per_sample_mean"
        else np.ones_like(norms)
    )
    return w / w.sum()


def top_shares(values: np.ndarray, tops: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of ``sum(values)`` carried by the largest 1, 5, ... entries."""
    v = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    total = v.sum()
    return {f"top{k}": float(v[:k].sum() / total) if total > 0 else float("nan") for k in tops}


def weight_shares(
    metric: str, norms: np.ndarray, scales: np.ndarray, ctx: MetricContext, tops: Sequence[int] = (1, 5)
) -> dict[str, float] | None:
    """Share of the metric's weight (:func:`weights`) on its top-1/top-5 samples; predictor-free."""
    w = weights(metric, norms, scales, ctx)
    return None if w is None else top_shares(w, tops)


def contribution_shares(
    metric: str,
    e: np.ndarray,
    norms: np.ndarray,
    scales: np.ndarray,
    ctx: MetricContext,
    tops: Sequence[int] = (1, 5),
) -> dict[str, float] | None:
    """Share of a predictor's metric value carried by its top-1/top-5 per-sample terms ``e_i / d_i``."""
    if metric == "per_sample_median":
        return None
    if metric == "per_sample_mean":
        return top_shares(relative_errors(e, norms), tops)
    return top_shares(e / denominators(metric, norms, scales, ctx), tops)


def bootstrap_sd(
    metric: str,
    e: np.ndarray,
    norms: np.ndarray,
    scales: np.ndarray,
    ctx: MetricContext,
    n_resamples: int,
    seed: int,
) -> float:
    """SD of ``metric`` over ``n_resamples`` resamples (with replacement) of the samples."""
    rng = np.random.default_rng(seed)
    n = len(e)
    if n < 2:
        return float("nan")
    vals = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = rng.integers(0, n, n)
        vals[b] = aggregate(metric, e[idx], norms[idx], scales[idx], ctx)
    return float(np.std(vals, ddof=1))
