"""Every criterion decided in one place, per grid cell, on confidence bounds; and the verdict.

A criterion (conf/criteria/*.yaml) is the statement ``value <comparator> threshold``. In each grid cell
it *holds*, *does not hold* or is *undecided* (:func:`analysis.decide.decide` on the cell's one-sided
bounds; memory on the most conservative of the configured memory metrics). Across cells:

* a success criterion passes when it holds in every cell (each cell at the nominal level: an
  intersection-union test needs no correction) and fails when it does not hold in some cell;
* a failure criterion fails the study when it holds in some cell and passes when it does not hold in
  any cell.

Claims about *some* cell use Bonferroni-corrected bounds (level ``1 - alpha / K`` over the K cells).
Outcomes: ``pass``, ``fail``, ``undecided`` (the bounds straddle the margin: the report says how many
seed pairs the observed spread would need), ``not_evaluable`` (no data: reason given),
``not_applicable`` (another design; does not block GO).

Verdict: INCONCLUSIVE by rule at a smoke scale; else NO-GO if any failure criterion fails; else GO
only when every applicable criterion passes, every planned run is accounted for, and the accuracy
endpoint has shown it can see a degradation; else INCONCLUSIVE with the reasons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from analysis import stats
from analysis.accounting import assay_sensitivity
from analysis.decide import (
    HOLDS,
    NOT_HOLDS,
    OPS,
    TRANSFORMS,
    UNDECIDED,
    Interval,
    corrected_level,
    decide,
    interval,
    pairs_needed,
    worst_case_lower,
)
from analysis.load import Sweep
from analysis.metrics import (
    CellEvidence,
    Source,
    diverged_by_cell,
    evidence,
    first_reasons,
    fmt_metric,
    label,
    pct,
    state_artifacts,
)
from analysis.pairs import cell_label, model_of

__all__ = ["CriterionResult", "decide_metric", "evaluate", "fmt_metric", "label", "sweep_design", "verdict"]

NO_DATA = "no_data"
# Metrics decided as a fraction through a theta transform (F1 is "reduction < X in some cell").
THETA_METRIC = {
    "peak_mem_reduction": "peak_mem_reduction",
    "min_peak_mem_reduction_by_model": "peak_mem_reduction",
    "rel_l2_error_change": "rel_l2_error_change",
    "tokens_per_s_drop": "tokens_per_s_drop",
    "final_loss_change": "final_loss_change",
}


@dataclass
class CellDecision:
    cell: str
    state: str  # holds | does_not_hold | undecided | no_data
    n_pairs: int
    value: float | None  # the estimate on the metric scale (deciding source)
    lower: float | None  # one-sided bounds on the metric scale, nominal level
    upper: float | None
    source: str  # the deciding source (e.g. peak_mem_reserved_bytes)
    method: str
    pairs_needed: int | None
    text: str
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # every source's value and bounds
    bound: str | None = None  # an OOM bound: "lower" (the value is at least `lower`) or "upper"


@dataclass
class CriterionResult:
    id: str
    text: str
    kind: str
    metric: str
    threshold: float
    comparator: str
    designs: list[str]
    uses_p_value: bool
    arm: str
    reference_arm: str
    value: float | None
    value_text: str
    bound: str | None
    ci: list[float] | None
    p_values: dict[str, float | None]
    attainable_min_p: float | None
    n_pairs: int
    outcome: str
    why: str
    rule: str = ""
    margin: str = ""
    confidence: float | None = None
    method: str = ""
    pairs_needed: int | None = None
    pairs_needed_text: str = ""
    cells: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_design(sweep: Sweep, cfg: Any) -> str:
    if cfg.design != "auto":
        return str(cfg.design)
    if sweep.sweep_json and sweep.sweep_json.get("design") in ("mvt", "full"):
        return str(sweep.sweep_json["design"])
    return "full" if len(sweep.model_sizes()) > 1 else "mvt"


def look_confidence(cfg: Any, n_pairs: int) -> tuple[int, float]:
    """(look number, one-sided confidence) of the pre-registered sequential rule at ``n_pairs`` pairs.

    The look is the last one whose seed count ``n_pairs`` reaches (the first when it reaches none);
    its bound spends ``alpha_shares[look] * alpha`` (Bonferroni over looks).
    """
    seq = cfg.criteria.sequential
    alpha = 1.0 - cfg.decision.confidence
    look = max([i for i, k in enumerate(seq.looks) if n_pairs >= k], default=0)
    return look + 1, 1.0 - alpha * float(seq.alpha_shares[look])


def sweep_look(sweep: Sweep, cfg: Any) -> tuple[int, float, int]:
    """(look, confidence, seeds per cell) of the sweep: seeds = the fewest treatment seeds in a cell."""
    per_cell: dict[Any, set[str]] = {}
    for r in sweep.runs:
        if r.arm == cfg.treatment_arm:
            per_cell.setdefault(r.cell, set()).add(str(r.seed))
    seeds = min((len(v) for v in per_cell.values()), default=0)
    look, conf = look_confidence(cfg, seeds)
    return look, conf, seeds


# --------------------------------------------------------------------------------- one cell, one source
def _source_interval(src: Source, conf: float, conf_k: float, cfg: Any) -> Interval:
    if src.d:
        return interval(src.d, conf, conf_k, cfg)
    lo = -math.inf if src.theta_lo is None else src.theta_lo
    hi = math.inf if src.theta_hi is None else src.theta_hi
    return Interval(0, None, None, lo, hi, lo, hi, "OOM bound" if src.bound_text else "no pairs")


def _badness(kind: str, state: str) -> int:
    """Higher = worse for the treatment."""
    if state == NO_DATA:
        return 1
    if kind == "success":
        return {HOLDS: 0, UNDECIDED: 1, NOT_HOLDS: 2}[state]
    return {NOT_HOLDS: 0, UNDECIDED: 1, HOLDS: 2}[state]


def worst_case_interval(src: Source, iv: Interval, increasing: bool, conf: float, conf_k: float) -> Interval:
    """``iv`` with ``src.worst_case`` stopped seeds imputed least favourably to the treatment.

    The side of theta that is worse for the treatment (higher for an error or loss, lower for
    throughput: ``increasing``) gets the most adverse bound any values of the stopped pairs could give
    (:func:`analysis.decide.worst_case_lower`, paired t); the other side is unbounded (a stopped seed
    can never support a pass).
    """
    j = len(src.worst_case)
    sign = 1.0 if increasing else -1.0
    y = [sign * x for x in src.d]
    lo, lo_k = worst_case_lower(y, j, conf), worst_case_lower(y, j, conf_k)
    how = f"{'paired t' if iv.exact else iv.method}, {j} stopped seed(s) imputed least favourably"
    if increasing:
        return replace(
            iv, n=iv.n + j, lower=lo, lower_k=lo_k, upper=math.inf, upper_k=math.inf, method=how, exact=False
        )
    return replace(
        iv, n=iv.n + j, lower=-math.inf, lower_k=-math.inf, upper=-lo, upper_k=-lo_k, method=how, exact=False
    )


def decide_source(spec: Any, src: Source, conf: float, conf_k: float, cfg: Any) -> tuple[str, Interval, str]:
    """State of ``spec`` on one source of one cell, its interval (theta scale), and why."""
    tf = TRANSFORMS[THETA_METRIC[spec.metric]]
    op, theta0 = tf.op(spec.comparator), tf.theta(float(spec.threshold))
    success = spec.kind == "success"
    iv = _source_interval(src, conf, conf_k, cfg)
    if src.worst_case and src.d:
        iv = worst_case_interval(src, iv, tf.increasing, conf, conf_k)
    bad_state = NOT_HOLDS if success else HOLDS  # what an endpoint failure means for this criterion
    if src.gate_no_number:
        return bad_state, iv, "; ".join(src.gate_no_number) + " (a gate abort fails its endpoint)"
    if not src.has_data:
        return NO_DATA, iv, first_reasons(src.missing + src.no_pass) or "no pairs"
    # nominal bounds prove the every-cell claim, corrected bounds the some-cell claim
    if success:
        state = decide(op, theta0, iv.lower, iv.upper, iv.lower_k, iv.upper_k)
    else:
        state = decide(op, theta0, iv.lower_k, iv.upper_k, iv.lower, iv.upper)
    state = str(state)
    why = ""
    if success and src.gate_with_number:
        return NOT_HOLDS, iv, "; ".join(src.gate_with_number) + " (a gate abort fails its endpoint)"
    good_state = HOLDS if success else NOT_HOLDS
    if state in (good_state, UNDECIDED) and src.no_pass:
        state = UNDECIDED
        why = "a treatment seed failed without a number: " + first_reasons(src.no_pass)
    elif state == good_state and src.d and iv.n < cfg.min_pairs:
        state, why = UNDECIDED, f"only {iv.n} pair(s); a cell needs at least {cfg.min_pairs} (min_pairs)"
    return state, iv, why


def _cell_decision(spec: Any, ev: CellEvidence, conf: float, conf_k: float, cfg: Any) -> CellDecision:
    tf = TRANSFORMS[THETA_METRIC[spec.metric]]
    theta0 = tf.theta(float(spec.threshold))
    per = []
    for src in ev.sources:
        state, iv, why = decide_source(spec, src, conf, conf_k, cfg)
        per.append((src, state, iv, why))
    # the most conservative source decides (worst for the treatment, then nearest the margin)
    src, state, iv, why = max(
        per,
        key=lambda p: (
            _badness(spec.kind, p[1]),
            -abs((p[2].mean if p[2].mean is not None else 0.0) - theta0),
        ),
    )
    lo_v, hi_v = tf.bounds(iv.lower, iv.upper)
    value = None if iv.mean is None else float(tf.value(iv.mean))
    need = None
    if state == UNDECIDED and iv.mean is not None:
        op = tf.op(spec.comparator)
        toward_holds = OPS[op](iv.mean, theta0)
        proves_every = toward_holds == (spec.kind == "success")
        level = conf if proves_every else conf_k
        need = pairs_needed(iv.mean, iv.sd, theta0, level, cfg.decision.power, cfg.decision.pairs_needed_cap)
    text = _source_text(spec, src, iv, value, lo_v, hi_v)
    if why:
        text = f"{text}; {why}" if text else why
    sources = {}
    for s, st, v, _ in per:
        slo, shi = tf.bounds(v.lower, v.upper)
        sources[s.name] = {
            "state": st,
            "n_pairs": v.n,
            "value": None if v.mean is None else float(tf.value(v.mean)),
            "lower": slo,
            "upper": shi,
            "method": v.method,
        }
    bound = None
    if iv.method == "OOM bound":
        only_upper_theta = math.isinf(iv.lower) and not math.isinf(iv.upper)
        bound = "upper" if only_upper_theta == tf.increasing else "lower"
    return CellDecision(
        bound=bound,
        cell=ev.label,
        state=state,
        n_pairs=iv.n,
        value=value,
        lower=lo_v,
        upper=hi_v,
        source=src.name,
        method=iv.method,
        pairs_needed=need,
        text=text,
        sources=sources,
    )


def _source_text(spec: Any, src: Source, iv: Interval, value: float | None, lo: float, hi: float) -> str:
    if iv.method == "OOM bound":
        return src.bound_text
    if value is None:
        return ""
    m = spec.metric
    bounds = f"[{fmt_metric(m, lo)}, {fmt_metric(m, hi)}]"
    if iv.exact:
        return f"{fmt_metric(m, value)} ({src.name}, deterministic across {iv.n} seeds)"
    return f"{fmt_metric(m, value)} ({src.name}, {iv.n} pairs, bounds {bounds} by {iv.method})"


# ------------------------------------------------------------------------------------ one criterion
def _aggregate(kind: str, states: list[str]) -> str:
    if kind == "success":
        if NOT_HOLDS in states:
            return "fail"
        if NO_DATA in states:
            return "not_evaluable"
        return "pass" if all(s == HOLDS for s in states) else "undecided"
    if HOLDS in states:
        return "fail"
    if NO_DATA in states:
        return "not_evaluable"
    return "pass" if all(s == NOT_HOLDS for s in states) else "undecided"


def _levels(cfg: Any, conf: float, k: int) -> float:
    return corrected_level(conf, k) if cfg.decision.multiplicity == "bonferroni" else conf


def _ratio_criterion(spec: Any, ev: list[CellEvidence], conf: float, cfg: Any) -> dict[str, Any]:
    k = max(1, len(ev))
    conf_k = _levels(cfg, conf, k)
    cells = [_cell_decision(spec, e, conf, conf_k, cfg) for e in ev]
    states = [c.state for c in cells]
    outcome = _aggregate(spec.kind, states) if cells else "not_evaluable"
    worst = max(cells, key=lambda c: _badness(spec.kind, c.state), default=None)
    tf = TRANSFORMS[THETA_METRIC[spec.metric]]
    rule = _rule_text(spec, tf, conf, conf_k, k)
    out: dict[str, Any] = {"cells": cells, "rule": rule, "outcome": outcome, "confidence": conf}
    if worst is None:
        out["why"] = "no pairs of these arms"
        return out
    undecided = [c for c in cells if c.state == UNDECIDED]
    needs = [c.pairs_needed for c in undecided]
    if undecided:
        out["pairs_needed"] = None if any(n is None for n in needs) else max(needs)  # type: ignore[type-var]
        out["pairs_needed_text"] = (
            f"the observed spread needs about {out['pairs_needed']} seed pairs per cell to decide it "
            f"(power {cfg.decision.power:g})"
            if out["pairs_needed"] is not None
            else "the pairs needed cannot be computed (no spread observed, an estimate on the margin, or "
            f"more than {cfg.decision.pairs_needed_cap})"
        )
    out["worst"] = worst
    if len(cells) == 1:
        out["why"] = worst.text
    else:
        counts = {s: states.count(s) for s in dict.fromkeys(states)}
        out["why"] = (
            f"{len(cells)} cells ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
            f"worst: {worst.cell}: {worst.text}"
        )
    return out


def _rule_text(spec: Any, tf: Any, conf: float, conf_k: float, k: int) -> str:
    m = spec.metric
    thr = fmt_metric(m, float(spec.threshold))
    theta0 = tf.theta(float(spec.threshold))
    op = tf.op(spec.comparator)
    side = "upper" if op in ("<=", "<") else "lower"
    other = "lower" if side == "upper" else "upper"
    every = "every cell" if k > 1 else "the cell"
    corr = f", Bonferroni over {k} cells: {conf_k:.4g}" if k > 1 and conf_k != conf else ""
    if spec.kind == "success":
        return (
            f"passes when the one-sided {conf:.4g} {side} bound of log(T/R) is {op} ln-margin "
            f"{theta0:.4f} ({thr}) in {every}; fails when the {other} bound{corr} misses it in any cell"
        )
    return (
        f"holds (NO-GO) when the one-sided {side} bound of log(T/R){corr or f' ({conf:.4g})'} is {op} "
        f"{theta0:.4f} ({thr}) in any cell; passes when the {other} {conf:.4g} bound excludes it in {every}"
    )


def _model_sizes(spec: Any, ev: list[CellEvidence], conf: float, cfg: Any) -> dict[str, Any]:
    """S6: how many model sizes reach params.min_reduction in all their cells (decided per cell)."""
    need = float(spec.params["min_reduction"])
    sub = _spec_like(spec, metric="peak_mem_reduction", comparator=">=", threshold=need, kind="success")
    conf_k = _levels(cfg, conf, max(1, len(ev)))
    by_model: dict[str, list[CellDecision]] = {}
    for e in ev:
        by_model.setdefault(model_of(e.cell), []).append(_cell_decision(sub, e, conf, conf_k, cfg))
    yes = [m for m, cs in by_model.items() if all(c.state == HOLDS for c in cs)]
    no = [m for m, cs in by_model.items() if any(c.state == NOT_HOLDS for c in cs)]
    unknown = [m for m in by_model if m not in yes and m not in no]
    f = OPS[spec.comparator]
    if f(len(yes), spec.threshold):
        state = "holds"
    elif not f(len(yes) + len(unknown), spec.threshold):
        state = "not"
    else:
        state = "undecided"
    outcome = {"holds": "pass", "not": "fail", "undecided": "undecided"}[state]
    text = (
        f"{len(yes)} of {len(by_model)} model sizes reach {pct(need)} in every cell ("
        + "; ".join(f"{m}: " + ("yes" if m in yes else "no" if m in no else "undecided") for m in by_model)
        + ")"
    )
    return {
        "outcome": outcome,
        "value": float(len(yes)),
        "why": text,
        "cells": [c for cs in by_model.values() for c in cs],
        "rule": f"passes when at least {spec.threshold:g} model sizes reach {pct(need)} in every cell "
        "(each cell decided on its bounds)",
        "confidence": conf,
    }


def _spec_like(spec: Any, **kw: Any) -> Any:
    d = {
        "id": spec.id,
        "metric": spec.metric,
        "comparator": spec.comparator,
        "threshold": spec.threshold,
        "kind": spec.kind,
    }
    d.update(kw)
    return type("Spec", (), d)()


def _memory_p(spec: Any, ev: list[CellEvidence], cfg: Any) -> dict[str, Any]:
    """S5: the treatment's memory is lower in every cell: deterministic across seeds, or a one-sided
    paired t-test on log memory below ``threshold`` (every cell: no correction needed)."""
    cells, ps, states, texts, wil, amin = [], [], [], [], [], []
    for e in ev:
        worst_state, worst_text, worst_p = HOLDS, "", None
        for src in e.sources:
            d = np.asarray(src.d)
            if d.size < 2:
                st, p = NO_DATA, None
                tx = f"{src.name}: {d.size} pair(s) with measured memory" + (
                    f" ({first_reasons(src.missing)})" if src.missing else ""
                )
                if src.theta_hi is not None:
                    st, tx = UNDECIDED, f"{src.name}: reference out of memory, no paired difference to test"
            else:
                test = stats.paired_test(src.t_values, src.r_values, cfg.memory_test_scale)
                wil.append(test.wilcoxon_p)
                amin.append(test.attainable_min_p)
                if test.exact_across_seeds:
                    lower = test.mean_difference is not None and test.mean_difference < 0
                    st = HOLDS if lower and cfg.zero_variance_is_significant else NOT_HOLDS
                    tx = f"{src.name}: deterministic across {test.n_pairs} seeds (identical differences)"
                    p = None
                elif test.t_statistic is None:
                    st, tx, p = NOT_HOLDS, f"{src.name}: no difference in any pair", None
                else:
                    p = float(sps.t.cdf(test.t_statistic, test.n_pairs - 1))  # one-sided: T < R
                    st = HOLDS if OPS[spec.comparator](p, spec.threshold) else UNDECIDED
                    tx = f"{src.name}: one-sided paired t p = {p:.3g} ({test.n_pairs} pairs)"
            if _badness("success", st) > _badness("success", worst_state) or not worst_text:
                worst_state, worst_text, worst_p = st, tx, p
        states.append(worst_state)
        texts.append(f"{e.label}: {worst_text}" if len(ev) > 1 else worst_text)
        ps.append(worst_p)
        cells.append(
            CellDecision(
                e.label,
                worst_state,
                len(e.sources[0].d),
                worst_p,
                None,
                None,
                "",
                "paired t",
                None,
                worst_text,
            )
        )
    outcome = _aggregate("success", states) if states else "not_evaluable"
    known = [p for p in ps if p is not None]
    return {
        "outcome": outcome,
        "n_pairs": min((c.n_pairs for c in cells), default=0),
        "value": max(known) if known else None,
        "why": first_reasons([t for t, s in zip(texts, states) if s != HOLDS] or texts, 3),
        "cells": cells,
        "p_values": {
            "t_test": max(known) if known else None,
            "wilcoxon_exact": max([w for w in wil if w is not None], default=None),
        },
        "attainable_min_p": max([a for a in amin if a is not None], default=None),
        "rule": f"passes when, in every cell, the memory difference is deterministic across seeds or a "
        f"one-sided paired t-test on log memory gives p {spec.comparator} {spec.threshold:g}",
    }


def _diverged(spec: Any, sweep: Sweep, cfg: Any, arm: str) -> dict[str, Any]:
    by_cell = diverged_by_cell(sweep, cfg, arm)
    if not by_cell:
        return {"outcome": "not_evaluable", "why": f"no {arm} runs"}
    worst_cell = max(by_cell, key=lambda c: sum(w is not None for _, w in by_cell[c]))
    worst = [(s, w) for s, w in by_cell[worst_cell] if w is not None]
    holds = OPS[spec.comparator](len(worst), spec.threshold)
    text = f"{len(worst)} of {len(by_cell[worst_cell])} seeds diverged at {cell_label(worst_cell)}" + (
        ": " + "; ".join(f"seed {s}: {w}" for s, w in worst) if worst else ""
    )
    return {
        "outcome": "fail" if holds else "pass",
        "value": float(len(worst)),
        "why": text,
        "n_pairs": len(by_cell[worst_cell]),
        "rule": f"holds (NO-GO) when {spec.comparator} {spec.threshold:g} seeds of one cell diverged "
        "(a run stopped by gate A counts as diverged)",
    }


def _artifacts(spec: Any, sweep: Sweep, cfg: Any, arm: str) -> dict[str, Any]:
    bad, unknown, n = state_artifacts(sweep, cfg, arm)
    rule = f"holds (NO-GO) when {spec.comparator} {spec.threshold:g} runs show an artifact"
    if n == 0:
        return {"outcome": "not_evaluable", "why": f"no finished {arm} runs", "rule": rule}
    if OPS[spec.comparator](len(bad), spec.threshold):
        return {
            "outcome": "fail",
            "value": float(len(bad)),
            "why": f"{len(bad)} of {n} runs: " + "; ".join(bad[:3]),
            "rule": rule,
            "n_pairs": n,
        }
    if unknown:
        return {
            "outcome": "not_evaluable",
            "why": f"{len(unknown)} of {n} runs lack state_materialised/optimizer_state_dtypes "
            f"(e.g. {unknown[0]})",
            "rule": rule,
        }
    return {
        "outcome": "pass",
        "value": 0.0,
        "why": f"all {n} runs: state materialised, 8-bit dtypes present",
        "rule": rule,
        "n_pairs": n,
    }


def answered(cfg: Any, criterion_id: str) -> bool:
    """Whether this sweep answers the criterion (analysis ``answers``: null = every criterion)."""
    return cfg.get("answers") is None or criterion_id in cfg.answers


def evaluate(sweep: Sweep, cfg: Any, arm: str) -> list[CriterionResult]:
    """Every criterion of ``cfg.criteria`` for treatment ``arm``."""
    design = sweep_design(sweep, cfg)
    _look, conf, _seeds = sweep_look(sweep, cfg)
    out: list[CriterionResult] = []
    cache: dict[tuple[str, str], list[CellEvidence]] = {}
    for spec in cfg.criteria.entries:
        ref = spec.reference_arm or cfg.reference_arm
        r: dict[str, Any]
        if design not in spec.designs:
            r = {
                "outcome": "not_applicable",
                "why": f"applies to the {'/'.join(spec.designs)} design; this sweep is {design}",
            }
        elif not answered(cfg, spec.id):
            r = {
                "outcome": "not_evaluable",
                "why": f"answered by another sweep: this one answers {', '.join(cfg.answers)} (analysis "
                "answers=...), so it cannot give GO alone",
            }
        elif spec.metric == "diverged_seeds":
            r = _diverged(spec, sweep, cfg, arm)
        elif spec.metric == "state_artifact_runs":
            r = _artifacts(spec, sweep, cfg, arm)
        else:
            key = (
                ref,
                "memory" if "peak_mem" in spec.metric or "model_sizes" in spec.metric else spec.metric,
            )
            if key not in cache:
                cache[key] = evidence(
                    sweep, cfg, arm, ref, spec.metric if key[1] != "memory" else "peak_mem_reduction"
                )
            ev = cache[key]
            if spec.metric == "peak_mem_paired_p":
                r = _memory_p(spec, ev, cfg)
            elif spec.metric == "model_sizes_meeting_reduction":
                r = _model_sizes(spec, ev, conf, cfg)
            else:
                r = _ratio_criterion(spec, ev, conf, cfg)
            if spec.metric in ACCURACY_METRICS and cfg.assay_sensitivity.required:
                r = _assay_gate(r, sweep, cfg)
        out.append(_result(spec, arm, ref, r))
    return out


# The accuracy endpoint's criteria: not_evaluable until it has shown it can see a degradation.
ACCURACY_METRICS = ("rel_l2_error_change",)


def _assay_gate(r: dict[str, Any], sweep: Sweep, cfg: Any) -> dict[str, Any]:
    """Issue 14: an accuracy criterion is ``not_evaluable`` unless the reference arm beats the best
    non-learned baseline by ``assay_sensitivity.factor`` (:func:`analysis.accounting.assay_sensitivity`
    says by how much it missed); what the data would have said stays in ``why``."""
    shown, why = assay_sensitivity(sweep, cfg)
    if shown is True:
        return r
    had = f" (without this rule: {r['outcome']}: {r.get('why', '')})" if r.get("why") else ""
    return {**r, "outcome": "not_evaluable", "why": why + had, "pairs_needed_text": ""}


def decide_metric(sweep: Sweep, cfg: Any, arm: str, spec: Any) -> CriterionResult:
    """One ratio criterion ``spec`` (id, text, metric, comparator, threshold, kind, designs,
    uses_p_value, reference_arm) for ``arm`` against ``spec.reference_arm``, decided exactly as the
    criteria are (cells, bounds, sequential look), without the assay-sensitivity rule: the
    accuracy endpoint's controls (:mod:`analysis.controls`)."""
    _look, conf, _seeds = sweep_look(sweep, cfg)
    ev = evidence(sweep, cfg, arm, spec.reference_arm, spec.metric)
    return _result(spec, arm, spec.reference_arm, _ratio_criterion(spec, ev, conf, cfg))


def _result(spec: Any, arm: str, ref: str, r: dict[str, Any]) -> CriterionResult:
    worst: CellDecision | None = r.get("worst")
    cells: list[CellDecision] = r.get("cells") or []
    value = r.get("value", None if worst is None else worst.value)
    ci = None
    if worst is not None and worst.lower is not None and worst.upper is not None:
        ci = [float(worst.lower), float(worst.upper)]
    bound = None
    if worst is not None and worst.bound is not None:
        bound = worst.bound
        value = worst.lower if bound == "lower" else worst.upper
    why = r.get("why", "")
    if r.get("pairs_needed_text"):
        why = f"{why}; {r['pairs_needed_text']}"
    return CriterionResult(
        id=spec.id,
        text=spec.text,
        kind=spec.kind,
        metric=spec.metric,
        threshold=float(spec.threshold),
        comparator=spec.comparator,
        designs=list(spec.designs),
        uses_p_value=bool(spec.uses_p_value),
        arm=arm,
        reference_arm=ref,
        value=None if value is None else float(value),
        value_text=(worst.text if worst is not None else r.get("why", "")) or "",
        bound=bound,
        ci=ci,
        p_values=dict(r.get("p_values") or {}),
        attainable_min_p=r.get("attainable_min_p"),
        n_pairs=int(r.get("n_pairs", worst.n_pairs if worst is not None else 0)),
        outcome=r["outcome"],
        why=why,
        rule=r.get("rule", ""),
        margin=f"{spec.comparator} {fmt_metric(spec.metric, float(spec.threshold))}",
        confidence=r.get("confidence"),
        method="" if worst is None else worst.method,
        pairs_needed=r.get("pairs_needed"),
        pairs_needed_text=r.get("pairs_needed_text", ""),
        cells=[asdict(c) for c in cells],
    )


def verdict(
    results: list[CriterionResult],
    scale: str,
    cfg: Any,
    n_treatment_runs: int,
    blockers: list[str] | None = None,
) -> tuple[str, list[str]]:
    """GO / NO-GO / INCONCLUSIVE with the reasons. ``blockers``: sweep-level reasons GO is not allowed
    (unaccounted runs, the accuracy endpoint's assay sensitivity not shown)."""
    reasons: list[str] = []
    failures = [r for r in results if r.kind == "failure" and r.outcome == "fail"]
    blocking = [
        r for r in results if r.outcome in ("fail", "undecided", "not_evaluable") and r not in failures
    ]
    if scale in cfg.inconclusive_scales:
        reasons.append(
            f"{scale} scale: exercises the pipeline, is no evidence about the hypothesis "
            "(INCONCLUSIVE by rule)"
        )
        reasons += [f"{r.id} {r.outcome}: {r.why}" for r in failures + blocking]
        return "INCONCLUSIVE", reasons + list(blockers or [])
    if n_treatment_runs == 0:
        return "INCONCLUSIVE", [f"no runs of the treatment arm {cfg.treatment_arm!r} in this sweep"]
    if failures:
        return "NO-GO", [f"{r.id} ({r.text}) holds: {r.why}" for r in failures]
    if not blocking and not blockers:
        return "GO", ["every applicable success criterion passes and no failure criterion holds"]
    return "INCONCLUSIVE", [f"{r.id} {r.outcome}: {r.why}" for r in blocking] + list(blockers or [])
