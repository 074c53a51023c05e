"""The evidence criteria are decided on, per grid cell: paired log ratios, OOM bounds, gate failures.

This module only gathers numbers; :mod:`analysis.criteria` decides every criterion from them (one
place). Pairs are (treatment run, reference run) with the same seed in the same grid cell. For a
ratio endpoint each pair gives ``d = log(T / R)``; memory gives one *source* per configured memory
metric (peak allocated, peak reserved, NVML process memory) so the decision can take the most
conservative. What cannot be a number is said: an OOM is a bound, a run stopped by an abort gate is a
failure of that gate's endpoint (never missing data), a treatment seed that diverged or was stopped
by a gate before it measured an endpoint cannot support a pass and is imputed least favourably on it
(so stopping can never make the verdict better), and every other missing pair is listed with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.load import Run, Sweep
from analysis.pairs import (
    cell_label,
    fired_gate,
    gate_failure,
    gib,
    is_diverged,
    loss_at_step,
    memory_of,
    pair_runs,
    quality_of,
)

QUALITY_KEYS = {
    "rel_l2_error_change": "rel_l2_error",
    "tokens_per_s_drop": "tokens_per_s",
    "final_loss_change": "final_loss",
}
MEMORY_CRITERION_METRICS = (
    "peak_mem_reduction",
    "min_peak_mem_reduction_by_model",
    "model_sizes_meeting_reduction",
    "peak_mem_paired_p",
)
FRACTION_METRICS = (
    "peak_mem_reduction",
    "min_peak_mem_reduction_by_model",
    "model_sizes_meeting_reduction_param",
    "rel_l2_error_change",
    "tokens_per_s_drop",
    "final_loss_change",
)
# Decided per grid cell on paired seeds: a cell with fewer pairs than cfg.min_pairs cannot pass them.
PAIRED_METRICS = (
    "peak_mem_reduction",
    "min_peak_mem_reduction_by_model",
    "rel_l2_error_change",
    "tokens_per_s_drop",
    "final_loss_change",
    "peak_mem_paired_p",
)

Cell = tuple[tuple[str, str], ...]


def label(cfg: Any, arm: str) -> str:
    return str(cfg.arm_labels.get(arm, arm)) if cfg.arm_labels else arm


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def fmt_metric(metric: str, x: float) -> str:
    """A value or threshold in the metric's unit: percent for fractions, p for p-values, else a count."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if metric in FRACTION_METRICS:
        return f"{100 * x:.4g}%"
    if metric == "peak_mem_paired_p":
        return f"{x:.3g}"
    return f"{x:g}"


@dataclass
class Source:
    """One measured quantity in one cell: the per-seed log ratios and what else is known."""

    name: str  # the summary key (rel_l2_error, peak_mem_reserved_bytes, ...)
    d: list[float] = field(default_factory=list)  # log(T/R) per pair with exact values
    seeds: list[str] = field(default_factory=list)
    t_values: list[float] = field(default_factory=list)
    r_values: list[float] = field(default_factory=list)
    theta_lo: float | None = None  # OOM bound: theta >= this (the treatment did not fit)
    theta_hi: float | None = None  # OOM bound: theta <= this (the reference did not fit)
    bound_text: str = ""
    gate_no_number: list[str] = field(default_factory=list)  # gate failure of this endpoint, no number
    gate_with_number: list[str] = field(default_factory=list)  # gate failure, number still measured
    no_pass: list[str] = field(default_factory=list)  # treatment failed otherwise (diverged, crashed)
    # treatment seeds without a number because the run diverged or an abort gate stopped it: their
    # pair is imputed least favourably to the treatment (analysis.decide.worst_case_lower)
    worst_case: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # pairs without a value and why

    @property
    def has_data(self) -> bool:
        return (
            bool(self.d)
            or self.theta_lo is not None
            or self.theta_hi is not None
            or bool(self.gate_no_number)
        )


@dataclass
class CellEvidence:
    cell: Cell
    sources: list[Source]

    @property
    def label(self) -> str:
        return cell_label(self.cell)


def memory_evidence(sweep: Sweep, cfg: Any, arm: str, ref: str) -> list[CellEvidence]:
    """Per cell, one source per memory metric: exact log ratios, or the OOM bound."""
    pairing = pair_runs(sweep, arm, ref)
    by: dict[Cell, list[tuple[Any, Run, Run]]] = {}
    for cell, seed, tr, rr in pairing.pairs:
        by.setdefault(cell, []).append((seed, tr, rr))
    out = []
    for cell in sorted(set(by) | _cells_with_missing(pairing, sweep, arm, ref)):
        sources = []
        for metric in cfg.memory_metrics:
            src = Source(
                metric, missing=[m for m in pairing.missing if f"for {cell_label(cell)}, seed " in m]
            )
            for seed, tr, rr in by.get(cell, []):
                tm, rm = memory_of(tr, cfg, metric), memory_of(rr, cfg, metric)
                if tm.bytes is None or rm.bytes is None:
                    src.missing.append(f"seed {seed}: " + (tm.why_missing or rm.why_missing or "no value"))
                elif tm.is_lower_bound and rm.is_lower_bound:
                    src.missing.append(f"seed {seed}: both {arm} and {ref} ran out of memory")
                elif rm.is_lower_bound:
                    # the reference needed more than the device: theta <= log(T / device)
                    hi = math.log(tm.bytes / rm.bytes)
                    if src.theta_hi is None or hi > src.theta_hi:
                        src.theta_hi = hi
                        src.bound_text = (
                            f"{label(cfg, ref)} did not fit in {gib(rm.bytes)}; {label(cfg, arm)} used "
                            f"{gib(tm.bytes)}, so the reduction is at least "
                            f"{math.floor(1000 * (1 - tm.bytes / rm.bytes)) / 10:.1f}%"
                        )
                elif tm.is_lower_bound:
                    lo = math.log(tm.bytes / rm.bytes)
                    if src.theta_lo is None or lo < src.theta_lo:
                        src.theta_lo = lo
                        src.bound_text = (
                            f"{label(cfg, arm)} did not fit in {gib(tm.bytes)} where {label(cfg, ref)} used "
                            f"{gib(rm.bytes)}, so the reduction is at most "
                            f"{math.ceil(1000 * (1 - tm.bytes / rm.bytes)) / 10:.1f}%"
                        )
                else:
                    src.d.append(math.log(tm.bytes / rm.bytes))
                    src.seeds.append(str(seed))
                    src.t_values.append(tm.bytes)
                    src.r_values.append(rm.bytes)
            sources.append(src)
        # a metric no run recorded (older runs have no NVML figure) is left out, said in the report
        recorded = [s for s in sources if s.has_data]
        out.append(CellEvidence(cell, recorded or sources[:1]))
    return out


def _cells_with_missing(pairing: Any, sweep: Sweep, arm: str, ref: str) -> set[Cell]:
    return {r.cell for r in sweep.runs if r.arm == arm} | {r.cell for r in sweep.runs if r.arm == ref}


def quality_evidence(sweep: Sweep, cfg: Any, arm: str, ref: str, metric: str) -> list[CellEvidence]:
    """Per cell, the log ratios of ``QUALITY_KEYS[metric]`` and the runs that failed that endpoint."""
    key = QUALITY_KEYS[metric]
    pairing = pair_runs(sweep, arm, ref)
    by: dict[Cell, list[tuple[Any, Run, Run]]] = {}
    for cell, seed, tr, rr in pairing.pairs:
        by.setdefault(cell, []).append((seed, tr, rr))
    out = []
    for cell in sorted(set(by) | _cells_with_missing(pairing, sweep, arm, ref)):
        src = Source(key, missing=[m for m in pairing.missing if f"for {cell_label(cell)}, seed " in m])
        for seed, tr, rr in by.get(cell, []):
            t, why_t = quality_of(tr, key, cfg)
            r, why_r = quality_of(rr, key, cfg)
            gate_why = gate_failure(tr, key, cfg)
            if key == "final_loss" and t is not None and r is not None:
                steps_t, steps_r = tr.num("steps_completed"), rr.num("steps_completed")
                if steps_t != steps_r:
                    # "after the same number of steps": compare at the last step both logged.
                    common = int(min(steps_t or 0, steps_r or 0))
                    t, r = loss_at_step(tr, common), loss_at_step(rr, common)
                    if t is None or r is None:
                        src.missing.append(
                            f"seed {seed}: steps differ ({steps_t} vs {steps_r}) and no loss logged at "
                            f"step {common} in both"
                        )
                        continue
            if t is None and gate_why:
                src.gate_no_number.append(f"seed {seed}: {gate_why}")
                continue
            stopped = is_diverged(tr, cfg) or fired_gate(tr)
            if t is None and r is not None and stopped:
                # a stopped treatment cannot make the verdict better than any number it could have had
                src.worst_case.append(f"seed {seed}: {why_t}")
                src.no_pass.append(f"seed {seed}: {why_t}")
                continue
            if t is None and (stopped or tr.status in ("oom", "failed", "diverged")):
                src.no_pass.append(f"seed {seed}: {why_t}")
                continue
            if t is None or r is None:
                src.missing.append(f"seed {seed}: {why_t or why_r or 'no value'}")
                continue
            if gate_why:
                src.gate_with_number.append(f"seed {seed}: {gate_why}")
            src.d.append(math.log(t / r))
            src.seeds.append(str(seed))
            src.t_values.append(t)
            src.r_values.append(r)
        out.append(CellEvidence(cell, [src]))
    return out


def evidence(sweep: Sweep, cfg: Any, arm: str, ref: str, metric: str) -> list[CellEvidence]:
    if metric in MEMORY_CRITERION_METRICS:
        return memory_evidence(sweep, cfg, arm, ref)
    return quality_evidence(sweep, cfg, arm, ref, metric)


def diverged_by_cell(sweep: Sweep, cfg: Any, arm: str) -> dict[Cell, list[tuple[Any, str | None]]]:
    by_cell: dict[Cell, list[tuple[Any, str | None]]] = {}
    for r in sweep.runs:
        if r.arm == arm:
            by_cell.setdefault(r.cell, []).append((r.seed, is_diverged(r, cfg)))
    return by_cell


def _norm_dtype(d: Any) -> str:
    return str(d).removeprefix("torch.").lower()


def state_artifacts(sweep: Sweep, cfg: Any, arm: str) -> tuple[list[str], list[str], int]:
    """(runs whose optimizer state is not materialised / not 8-bit, runs that do not say, runs looked at)."""
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
    return bad, unknown, len(runs)


def first_reasons(reasons: list[str], k: int = 2) -> str:
    uniq = list(dict.fromkeys(reasons))
    return "; ".join(uniq[:k]) + (f" (+{len(uniq) - k} more)" if len(uniq) > k else "")
