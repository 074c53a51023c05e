"""The numbers criteria are decided on: one function per metric name in conf/criteria/*.yaml.

Each returns a :class:`Measure`: a value (or a one-sided bound from an OOM run), its bootstrap CI,
paired p-values with the attainable minimum, and, when there is no value, the reason. Ratios pool
pairs as the geometric mean of treatment/reference ratios, so that a 7B and a 13B pair weigh alike.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis import stats
from analysis.load import Sweep
from analysis.pairs import (
    cell_label,
    gib,
    group_by_model,
    is_diverged,
    loss_at_step,
    memory_of,
    pair_runs,
    quality_of,
)

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
QUALITY_KEYS = {
    "rel_l2_error_change": "rel_l2_error",
    "tokens_per_s_drop": "tokens_per_s",
    "final_loss_change": "final_loss",
}


@dataclass
class Measure:
    """What a metric function found: the number (or bound), its uncertainty and the reasons."""

    value: float | None = None
    bound: str | None = None  # "lower": the true value is at least `value`; "upper": at most
    ci: tuple[float, float] | None = None
    p_values: dict[str, float | None] = field(default_factory=dict)
    attainable_min_p: float | None = None
    n_pairs: int = 0
    holds: bool | None = None  # set by metrics that decide themselves (counts, "at any size")
    decided: bool = False
    text: str = ""
    notes: list[str] = field(default_factory=list)
    missing: str | None = None  # why there is no value


def label(cfg: Any, arm: str) -> str:
    return str(cfg.arm_labels.get(arm, arm)) if cfg.arm_labels else arm


def decide(value: float, comparator: str, threshold: float, bound: str | None) -> bool | None:
    """Whether ``value comparator threshold`` holds; None when a one-sided bound cannot tell."""
    holds = OPS[comparator](value, threshold)
    if bound is None:
        return holds
    greater_side = comparator in (">=", ">")
    # A lower bound proves the true value is at least `value`: it can prove `>=`, or disprove `<`.
    if bound == "lower":
        return holds if holds == greater_side else None
    return holds if holds != greater_side else None


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


FRACTION_METRICS = (
    "peak_mem_reduction",
    "min_peak_mem_reduction_by_model",
    "rel_l2_error_change",
    "tokens_per_s_drop",
    "final_loss_change",
)


# Pooled over seed/grid-matched pairs: too few pairs make them not_evaluable (cfg.min_pairs).
PAIRED_METRICS = (
    "peak_mem_reduction",
    "rel_l2_error_change",
    "tokens_per_s_drop",
    "final_loss_change",
    "peak_mem_paired_p",
)


def fmt_metric(metric: str, x: float) -> str:
    """A value or threshold in the metric's unit: percent for fractions, p for p-values, else a count."""
    if metric in FRACTION_METRICS:
        return f"{100 * x:.4g}%"
    if metric == "peak_mem_paired_p":
        return f"{x:.3g}"
    return f"{x:g}"


# ---------------------------------------------------------------------------------------------- memory
def _memory_groups(sweep: Sweep, cfg: Any, arm: str, ref: str) -> tuple[list, list, list, list[str]]:
    pairing = pair_runs(sweep, arm, ref)
    exact, lower, upper, reasons = [], [], [], list(pairing.missing)
    for cell, seed, tr, rr in pairing.pairs:
        tm, rm = memory_of(tr, cfg), memory_of(rr, cfg)
        if tm.bytes is None or rm.bytes is None:
            reasons.append(tm.why_missing or rm.why_missing or "no memory value")
        elif tm.is_lower_bound and rm.is_lower_bound:
            reasons.append(f"both {arm} and {ref} ran out of memory at {cell_label(cell)}, seed {seed}")
        elif rm.is_lower_bound:
            lower.append((cell, seed, tm.bytes, rm.bytes))
        elif tm.is_lower_bound:
            upper.append((cell, seed, tm.bytes, rm.bytes))
        else:
            exact.append((cell, seed, tm.bytes, rm.bytes))
    return exact, lower, upper, reasons


def _reduction(cfg: Any, arm: str, ref: str, exact: list, lower: list, upper: list) -> Measure:
    """1 - T/R pooled over exact pairs (geometric mean of ratios), else the bound from OOM pairs."""
    m = Measure()
    if exact:
        ratios = [t / r for _, _, t, r in exact]
        m.value = 1.0 - stats.geomean_ratio(np.asarray(ratios))
        ci = stats.bootstrap_ratio_ci(
            ratios,
            n_resamples=cfg.bootstrap.n_resamples,
            seed=cfg.bootstrap.seed,
            confidence=cfg.bootstrap.confidence,
        )
        m.ci = None if ci is None else (1.0 - ci[1], 1.0 - ci[0])
        test = stats.paired_test([t for *_, t, _ in exact], [r for *_, r in exact], cfg.memory_test_scale)
        m.p_values = {"t_test": test.t_p, "wilcoxon_exact": test.wilcoxon_p}
        m.attainable_min_p, m.n_pairs = test.attainable_min_p, test.n_pairs
        m.text = f"{pct(m.value)} ({len(exact)} pairs)"
        if test.exact_across_seeds:
            m.notes.append("difference exact across seeds")
        if lower:
            lb = min(1 - t / d for *_, t, d in lower)
            m.notes.append(
                f"{len(lower)} more pairs where {label(cfg, ref)} ran out of memory "
                f"(reduction there at least {pct(lb)})"
            )
    elif lower:
        _, _, t, d = min(lower, key=lambda it: 1 - it[2] / it[3])
        m.value, m.bound, m.n_pairs = 1 - t / d, "lower", 0
        m.text = (
            f"{label(cfg, ref)} did not fit in {gib(d)}; {label(cfg, arm)} used {gib(t)}, "
            f"so the reduction is at least {math.floor(1000 * m.value) / 10:.1f}%"
        )
    elif upper:
        _cell, _, d, r = max(upper, key=lambda it: 1 - it[2] / it[3])
        m.value, m.bound = 1 - d / r, "upper"
        m.text = (
            f"{label(cfg, arm)} did not fit in {gib(d)} where {label(cfg, ref)} used {gib(r)}, "
            f"so the reduction is at most {math.ceil(1000 * m.value) / 10:.1f}%"
        )
    return m


def metric_peak_mem_reduction(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    exact, lower, upper, reasons = _memory_groups(sweep, cfg, arm, ref)
    m = _reduction(cfg, arm, ref, exact, lower, upper)
    if m.value is None:
        m.missing = _first_reasons(reasons) or f"no {arm}/{ref} pairs"
    elif reasons:
        m.notes.append(f"{len(reasons)} pairs without a value: {_first_reasons(reasons)}")
    return m


def _per_model(sweep: Sweep, cfg: Any, arm: str, ref: str) -> tuple[dict[str, Measure], list[str]]:
    exact, lower, upper, reasons = _memory_groups(sweep, cfg, arm, ref)
    by = {k: group_by_model(v) for k, v in (("exact", exact), ("lower", lower), ("upper", upper))}
    models = sorted(
        set().union(*by.values()) | {str(r.grid.get("model")) for r in sweep.runs if r.arm == arm}
    )
    return {
        mo: _reduction(
            cfg, arm, ref, by["exact"].get(mo, []), by["lower"].get(mo, []), by["upper"].get(mo, [])
        )
        for mo in models
    }, reasons


def metric_min_peak_mem_reduction_by_model(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    """Holds when the reduction is below threshold at ANY model size (exact value or decisive bound)."""
    per, reasons = _per_model(sweep, cfg, arm, ref)
    m = Measure()
    decisions = {
        mo: (None if v.value is None else decide(v.value, spec.comparator, spec.threshold, v.bound))
        for mo, v in per.items()
    }
    known = [v.value for v in per.values() if v.value is not None]
    m.value = min(known) if known else None
    m.bound = (
        None
        if not known
        else per[min(per, key=lambda k: per[k].value if per[k].value is not None else math.inf)].bound
    )
    m.text = "; ".join(f"{mo}: {v.text or 'no value'}" for mo, v in per.items())
    m.n_pairs = sum(v.n_pairs for v in per.values())
    if any(d is True for d in decisions.values()):
        m.holds, m.decided = True, True
    elif decisions and all(d is False for d in decisions.values()):
        m.holds, m.decided = False, True
    else:
        undecided = [mo for mo, d in decisions.items() if d is None]
        m.missing = f"undecided at model size(s) {', '.join(undecided)}: " + (
            _first_reasons(reasons) or "the OOM bound does not decide it"
        )
    return m


def metric_model_sizes_meeting_reduction(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    per, reasons = _per_model(sweep, cfg, arm, ref)
    need = float(spec.params["min_reduction"])
    verdicts = {
        mo: (None if v.value is None else decide(v.value, ">=", need, v.bound)) for mo, v in per.items()
    }
    yes = sum(d is True for d in verdicts.values())
    unknown = sum(d is None for d in verdicts.values())
    m = Measure(value=float(yes), n_pairs=sum(v.n_pairs for v in per.values()))
    m.text = (
        f"{yes} of {len(per)} model sizes reach a {pct(need)} reduction ("
        + "; ".join(f"{mo}: {v.text or 'no value'}" for mo, v in per.items())
        + ")"
    )
    if OPS[spec.comparator](yes, spec.threshold):
        m.holds, m.decided = True, True
    elif not OPS[spec.comparator](yes + unknown, spec.threshold):
        m.holds, m.decided = False, True
    else:
        m.missing = f"{unknown} model sizes undecided: {_first_reasons(reasons) or 'bound does not decide'}"
    return m


def metric_peak_mem_paired_p(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    exact, lower, _upper, reasons = _memory_groups(sweep, cfg, arm, ref)
    m = Measure()
    if len(exact) < 2:
        m.missing = (
            "fewer than 2 pairs with measured memory"
            + (
                f" ({len(lower)} pairs where {label(cfg, ref)} ran out of memory: no paired "
                "difference to test, see the reduction bound)"
                if lower
                else ""
            )
            + (f": {_first_reasons(reasons)}" if reasons else "")
        )
        return m
    test = stats.paired_test([t for *_, t, _ in exact], [r for *_, r in exact], cfg.memory_test_scale)
    m.p_values = {"t_test": test.t_p, "wilcoxon_exact": test.wilcoxon_p}
    m.attainable_min_p, m.n_pairs = test.attainable_min_p, test.n_pairs
    m.notes.append(test.note)
    scale_word = "log peak memory" if cfg.memory_test_scale == "log" else "peak memory bytes"
    if test.exact_across_seeds:
        m.text = f"exact across seeds ({test.n_pairs} pairs, identical differences; t undefined)"
        m.holds, m.decided = bool(cfg.zero_variance_is_significant), True
    elif test.t_p is None:
        m.text = "no difference in any pair"
        m.holds, m.decided = False, True
    else:
        m.value = test.t_p
        m.text = f"p = {test.t_p:.3g} (paired t-test on {scale_word}, {test.n_pairs} pairs)"
    return m


def metric_quality_change(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    """rel_l2_error_change / final_loss_change = gm(T/R) - 1; tokens_per_s_drop = 1 - gm(T/R)."""
    key = QUALITY_KEYS[spec.metric]
    pairing = pair_runs(sweep, arm, ref)
    ts, rs, reasons = [], [], list(pairing.missing)
    for cell, seed, tr, rr in pairing.pairs:
        t, why_t = quality_of(tr, key, cfg)
        r, why_r = quality_of(rr, key, cfg)
        steps_t, steps_r = tr.num("steps_completed"), rr.num("steps_completed")
        if key == "final_loss" and t is not None and r is not None and steps_t != steps_r:
            # "after the same number of steps": compare at the last step both logged.
            common = int(min(steps_t or 0, steps_r or 0))
            t, r = loss_at_step(tr, common), loss_at_step(rr, common)
            if t is None or r is None:
                reasons.append(
                    f"{cell_label(cell)}, seed {seed}: steps differ ({steps_t} vs {steps_r}) "
                    f"and no loss logged at step {common} in both"
                )
                continue
        if t is None or r is None:
            reasons.append(why_t or why_r or "no value")
            continue
        ts.append(t)
        rs.append(r)
    m = Measure()
    if not ts:
        m.missing = _first_reasons(reasons) or f"no {arm}/{ref} pairs"
        return m
    ratios = [t / r for t, r in zip(ts, rs)]
    gm = stats.geomean_ratio(np.asarray(ratios))
    ci = stats.bootstrap_ratio_ci(
        ratios,
        n_resamples=cfg.bootstrap.n_resamples,
        seed=cfg.bootstrap.seed,
        confidence=cfg.bootstrap.confidence,
    )
    if spec.metric == "tokens_per_s_drop":
        m.value, m.ci = 1.0 - gm, (None if ci is None else (1.0 - ci[1], 1.0 - ci[0]))
    else:
        m.value, m.ci = gm - 1.0, (None if ci is None else (ci[0] - 1.0, ci[1] - 1.0))
    test = stats.paired_test(ts, rs, "log")
    m.p_values = {"t_test": test.t_p, "wilcoxon_exact": test.wilcoxon_p}
    m.attainable_min_p, m.n_pairs = test.attainable_min_p, test.n_pairs
    m.text = f"{pct(m.value)} ({len(ts)} pairs; {key} {label(cfg, arm)}/{label(cfg, ref)} = {gm:.3f})"
    if reasons:
        m.notes.append(f"{len(reasons)} pairs without a value: {_first_reasons(reasons)}")
    return m


def metric_diverged_seeds(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    runs = [r for r in sweep.runs if r.arm == arm]
    m = Measure()
    if not runs:
        m.missing = f"no {arm} runs"
        return m
    by_cell: dict[Any, list[tuple[Any, str | None]]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append((r.seed, is_diverged(r, cfg)))
    worst_cell = max(by_cell, key=lambda c: sum(w is not None for _, w in by_cell[c]))
    worst = [(s, w) for s, w in by_cell[worst_cell] if w is not None]
    m.value = float(len(worst))
    m.n_pairs = len(by_cell[worst_cell])
    m.text = f"{len(worst)} of {len(by_cell[worst_cell])} seeds diverged at {cell_label(worst_cell)}" + (
        ": " + "; ".join(f"seed {s}: {w}" for s, w in worst) if worst else ""
    )
    return m


def _norm_dtype(d: Any) -> str:
    return str(d).removeprefix("torch.").lower()


def metric_state_artifact_runs(sweep: Sweep, cfg: Any, arm: str, ref: str, spec: Any) -> Measure:
    runs = [r for r in sweep.runs if r.arm == arm and r.status in cfg.memory_statuses]
    quantized = {_norm_dtype(d) for d in cfg.quantized_state_dtypes}
    bad, unknown = [], []
    for r in runs:
        mat, dtypes = r.summary.get("state_materialised"), r.summary.get("optimizer_state_dtypes")
        if r.summary.get("state_problem"):
            bad.append(f"{r.run_id}: {r.summary['state_problem']}")
        elif mat is False:
            bad.append(f"{r.run_id}: optimizer state not materialised")
        elif isinstance(dtypes, list) and dtypes and not quantized & {_norm_dtype(d) for d in dtypes}:
            bad.append(
                f"{r.run_id}: optimizer state dtypes {sorted(map(_norm_dtype, dtypes))} include none of "
                f"{sorted(quantized)}"
            )
        elif mat is None or not isinstance(dtypes, list) or not dtypes:
            unknown.append(r.run_id)
    m = Measure(value=float(len(bad)), n_pairs=len(runs))
    if not runs:
        m.value, m.missing = None, f"no finished {arm} runs"
    elif bad:
        m.text = f"{len(bad)} of {len(runs)} runs: " + "; ".join(bad[:3])
    elif unknown:
        m.value, m.missing = (
            None,
            (
                f"{len(unknown)} of {len(runs)} runs lack state_materialised/"
                f"optimizer_state_dtypes (e.g. {unknown[0]})"
            ),
        )
    else:
        m.text = f"all {len(runs)} runs: state materialised, 8-bit dtypes present"
    return m


METRICS = {
    "peak_mem_reduction": metric_peak_mem_reduction,
    "min_peak_mem_reduction_by_model": metric_min_peak_mem_reduction_by_model,
    "model_sizes_meeting_reduction": metric_model_sizes_meeting_reduction,
    "peak_mem_paired_p": metric_peak_mem_paired_p,
    "rel_l2_error_change": metric_quality_change,
    "tokens_per_s_drop": metric_quality_change,
    "final_loss_change": metric_quality_change,
    "diverged_seeds": metric_diverged_seeds,
    "state_artifact_runs": metric_state_artifact_runs,
}


def _first_reasons(reasons: list[str], k: int = 2) -> str:
    uniq = list(dict.fromkeys(reasons))
    return "; ".join(uniq[:k]) + (f" (+{len(uniq) - k} more)" if len(uniq) > k else "")
