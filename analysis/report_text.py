"""Report content shared by report.html and report.md: the method, the criteria rows, the run
accounting, the sequential rule, and the answer to "do savings disappear at long sequences?"."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.context import ReportContext
from analysis.criteria import CriterionResult, fmt_metric
from analysis.decide import PAIRS_NEEDED_FORMULA


def method_text(ctx: ReportContext) -> list[str]:
    cfg = ctx.cfg
    d = cfg.decision
    look, conf, seeds = ctx.look
    seq = cfg.criteria.sequential
    return [
        "Runs are paired by seed within each grid cell (model size x sequence length x batch x behaviour). "
        "Each pair gives d = log(treatment / reference); a criterion is a statement about the mean of d, "
        "decided on one-sided confidence bounds from a paired t-interval "
        + (f"(BCa bootstrap from {d.bootstrap.min_pairs} pairs on) " if d.interval == "bca" else "")
        + f"at level {conf:.4g} (look {look} of the {seq.name} rule, {seeds} seeds per cell). A success "
        "criterion passes when the bound on its side clears the margin in every cell, fails when the "
        "opposite bound misses it in some cell, and is otherwise undecided; a failure criterion holds "
        "(NO-GO) only when its bound is beyond the margin. Margins on the log scale: ln(1 + X) for an "
        "error or loss increase X, ln(1 - X) for a throughput drop or memory reduction X.",
        f"Multiplicity across cells: {_multiplicity(cfg)}.",
        "Memory criteria are decided on the most conservative of "
        + ", ".join(cfg.memory_metrics)
        + " (all shown per cell); peak memory is deterministic across seeds, which the table says instead "
        "of a test on zero variance. The exact two-sided Wilcoxon p cannot go below 2/2^n with n pairs "
        "(0.25 for 3): a p at that floor is no evidence of no effect.",
        f"Pairs needed (undecided criteria, power {d.power:g}): {PAIRS_NEEDED_FORMULA}.",
        "A run stopped by an abort gate is a failure of that gate's endpoint ("
        + ", ".join(f"gate {g}: {e}" for g, e in cfg.gate_endpoints.items())
        + "), never missing data.",
    ]


def _multiplicity(cfg: Any) -> str:
    if cfg.decision.multiplicity == "bonferroni":
        return (
            "Bonferroni over the K cells of a criterion for claims about some cell (a success criterion "
            "failing, a failure criterion holding: each cell at 1 - alpha/K); claims about every cell (a "
            "pass) need each cell at the nominal level (an intersection-union test, no correction needed)"
        )
    return "none (decision.multiplicity=none)"


def sequential_text(ctx: ReportContext) -> str:
    seq = ctx.cfg.criteria.sequential
    look, conf, seeds = ctx.look
    alpha = 1 - ctx.cfg.decision.confidence
    shares = ", ".join(
        f"look {i + 1} at {k} seeds: alpha {alpha * a:.4g}"
        for i, (k, a) in enumerate(zip(seq.looks, seq.alpha_shares))
    )
    rec = (ctx.sweep.sweep_json or {}).get("sequential") or {}
    looks = rec.get("looks") or []
    if looks:
        ran = rec.get("rule") or {}
        taken = " | ".join(
            f"{k.get('model')}, look {k.get('look')} at {k.get('seeds')} seeds: {k.get('reason')}"
            for k in looks
        )
        added = "; ".join(
            f"{a.get('model')}: seeds {a.get('seeds')} after look {a.get('look')}"
            for a in rec.get("seeds_added") or []
        )
        did = (
            f"the sweep ran rule '{ran.get('name', '?')}' (looks {ran.get('looks', '?')}, fixed before its first run): "
            f"{taken}; seeds added: {added or 'none'}"
        )
    else:
        did = (
            "the sweep recorded no look of the rule (gate F off, or a sweep older than the rule): "
            "it ran its planned seeds"
        )
    return (
        f"Pre-registered seed-adding rule '{seq.name}' (conf/criteria, fixed before any run): {shares} "
        f"(Bonferroni over looks). Endpoints that may ask for seeds: {', '.join(seq.endpoints)}; "
        f"futility stop: {seq.futility_stop}. This analysis is look {look} ({seeds} seeds per cell, "
        f"one-sided level {conf:.4g}); {did}."
    )


def criteria_rows(results: list[CriterionResult]) -> list[dict[str, str]]:
    rows = []
    for r in results:
        bound = "—"
        if r.ci:
            lo, hi = (fmt_metric(r.metric, r.ci[0]), fmt_metric(r.metric, r.ci[1]))
            bound = f"[{lo}, {hi}]"
            if r.bound == "lower":
                bound = f"at least {fmt_metric(r.metric, r.ci[0])} (OOM bound)"
            elif r.bound == "upper":
                bound = f"at most {fmt_metric(r.metric, r.ci[1])} (OOM bound)"
        value = "—" if r.value is None else fmt_metric(r.metric, r.value)
        if r.bound:
            value = "—"
        rows.append(
            {
                "id": r.id,
                "kind": r.kind,
                "criterion": r.text,
                "estimate": value,
                "bounds": bound,
                "margin": r.margin,
                "rule": r.rule,
                "pairs needed": (
                    "—" if r.outcome != "undecided" else (str(r.pairs_needed) if r.pairs_needed else "n/a")
                ),
                "n": str(r.n_pairs),
                "outcome": r.outcome,
                "why": r.why,
            }
        )
    return rows


def accounting_frame(ctx: ReportContext) -> pd.DataFrame:
    rows = [r for r in ctx.accounting.rows if r["state"] != "completed"]
    return pd.DataFrame(rows, columns=["run_id", "arm", "seed", "state", "detail", "blocks"])


def long_sequences(ctx: ReportContext) -> tuple[pd.DataFrame, str]:
    """Per cell of the primary arm: the memory reduction vs the reference, its lower bound and the
    S1/F1 states, and the one-line answer for sequence lengths above ``long_seq_len``."""
    cfg = ctx.cfg
    by_id = {r.id: r for r in ctx.primary.criteria}
    s1 = next(
        (
            r
            for r in ctx.primary.criteria
            if r.metric == "peak_mem_reduction" and r.reference_arm == cfg.reference_arm
        ),
        None,
    )
    f1 = next((r for r in ctx.primary.criteria if r.metric == "min_peak_mem_reduction_by_model"), None)
    if s1 is None or not s1.cells:
        return pd.DataFrame(), "no memory reduction was decided (no measured pairs)"
    f1_state = {c["cell"]: c["state"] for c in (f1.cells if f1 else [])}
    rows = []
    for c in s1.cells:
        cell = dict(part.split("=", 1) for part in c["cell"].split(", ") if "=" in part)
        seq = int(cell["seq_len"]) if str(cell.get("seq_len", "")).isdigit() else None
        rows.append(
            {
                "cell": c["cell"],
                "model": cell.get("model"),
                "seq_len": seq,
                "reduction": c["value"],
                "lower_bound": c["lower"],
                "metric": c["source"],
                f"{s1.id} (>= {fmt_metric(s1.metric, s1.threshold)})": c["state"],
                **(
                    {f"{f1.id} (< {fmt_metric(f1.metric, f1.threshold)})": f1_state.get(c["cell"], "—")}
                    if f1
                    else {}
                ),
            }
        )
    df = pd.DataFrame(rows)
    long = df[df["seq_len"].notna() & (df["seq_len"] > cfg.long_seq_len)]
    if long.empty:
        seqs = sorted({int(x) for x in df["seq_len"].dropna()})
        return df, (
            f"not answered by this sweep: its sequence lengths are {seqs or 'unknown'}, none above "
            f"{cfg.long_seq_len} (the full design's grid answers it)"
        )
    s1_col = next(c for c in df.columns if c.startswith(s1.id))
    kept = int((long[s1_col] == "holds").sum())
    lost = long[long[s1_col] == "does_not_hold"]
    f1_col = next((c for c in df.columns if f1 is not None and c.startswith(f1.id)), None)
    vanish = int((long[f1_col] == "holds").sum()) if f1_col else 0
    answer = (
        f"at sequence lengths > {cfg.long_seq_len}: {kept} of {len(long)} cells keep a reduction of at least "
        f"{fmt_metric(s1.metric, s1.threshold)} (lower bound), {len(lost)} fall below it"
        + (
            f", and in {vanish} the reduction is below {fmt_metric(f1.metric, f1.threshold)} (savings vanish, {f1.id})"
            if f1
            else ""
        )
        + f"; decided per cell with {by_id[s1.id].rule.split(';')[0] if s1.rule else 'bounds'}"
    )
    if kept == len(long):
        answer = "No: " + answer
    elif vanish:
        answer = "Yes: " + answer
    else:
        answer = "Partly: " + answer
    return df, answer
