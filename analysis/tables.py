"""Flat tables of a sweep (pandas): one row per run, per grid cell and arm, per gate decision.

They feed the figures and are written as report/tables/*.csv so that every number in the report
can be traced to a run.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.criteria import CriterionResult, label
from analysis.load import Sweep
from analysis.pairs import GIB, cell_label, memory_of, pair_runs

BREAKDOWN = ("params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes", "other_bytes")


def runs_frame(sweep: Sweep, cfg: Any) -> pd.DataFrame:
    rows = []
    for r in sweep.runs:
        mem = memory_of(r, cfg)
        breakdown = r.summary.get("mem_breakdown") or {}
        row = {
            "run_id": r.run_id,
            "arm": r.arm,
            "seed": r.seed,
            "status": r.status,
            "n_params": r.num("n_params"),
            "status_reason": r.summary.get("status_reason"),
            **{k: r.grid.get(k) for k in ("model", "seq_len", "global_batch", "behaviour")},
            "cell": cell_label(r.cell),
            "peak_mem_gib": None if mem.bytes is None or mem.is_lower_bound else mem.bytes / GIB,
            "oom_device_mem_gib": mem.bytes / GIB if mem.is_lower_bound and mem.bytes else None,
            "mem_measurable": r.summary.get("mem_measurable"),
            "tokens_per_s": r.num("tokens_per_s"),
            "rel_l2_error": r.num("rel_l2_error"),
            "trivial_rel_l2_error": r.num("trivial_rel_l2_error"),
            "final_loss": r.num("final_loss"),
            "initial_loss": r.num("initial_loss"),
            "steps_completed": r.num("steps_completed"),
            "checkpoint_gib": None if r.num("checkpoint_bytes") is None else r.num("checkpoint_bytes") / GIB,
            "optimizer_state_bytes_per_param": r.num("optimizer_state_bytes_per_param"),
            "state_materialised": r.summary.get("state_materialised"),
            "optimizer_state_dtypes": ",".join(map(str, r.summary.get("optimizer_state_dtypes") or [])),
            "model_init": r.summary.get("model_init"),
            "dataset_id": r.summary.get("dataset_id"),
        }
        for k in BREAKDOWN:
            v = breakdown.get(k) if isinstance(breakdown, dict) else None
            row[k.replace("_bytes", "_gib")] = None if v is None else float(v) / GIB
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in (
        "peak_mem_gib",
        "oom_device_mem_gib",
        "tokens_per_s",
        "rel_l2_error",
        "trivial_rel_l2_error",
        "final_loss",
        "checkpoint_gib",
        *[k.replace("_bytes", "_gib") for k in BREAKDOWN],
    ):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def cells_frame(sweep: Sweep, cfg: Any, arms: list[str]) -> pd.DataFrame:
    """Per grid cell and treatment arm: memory reduction vs each reference, paired tests, Holm over cells."""
    rows = []
    for arm in arms:
        for ref in (cfg.reference_arm, cfg.eightbit_arm):
            by_cell: dict[Any, list[tuple[float, float]]] = {}
            for cell, _seed, tr, rr in pair_runs(sweep, arm, ref).pairs:
                tm, rm = memory_of(tr, cfg), memory_of(rr, cfg)
                by_cell.setdefault(cell, [])
                if (
                    tm.bytes is not None
                    and rm.bytes is not None
                    and not (tm.is_lower_bound or rm.is_lower_bound)
                ):
                    by_cell[cell].append((tm.bytes, rm.bytes))
            for cell, pairs in by_cell.items():
                row = {
                    "arm": arm,
                    "reference_arm": ref,
                    **dict(cell),
                    "cell": cell_label(cell),
                    "n_pairs": len(pairs),
                }
                if pairs:
                    ratios = np.array([t / r for t, r in pairs])
                    test = stats.paired_test(
                        [t for t, _ in pairs], [r for _, r in pairs], cfg.memory_test_scale
                    )
                    row.update(
                        reduction=1 - stats.geomean_ratio(ratios),
                        t_p=test.t_p,
                        wilcoxon_p=test.wilcoxon_p,
                        attainable_min_p=test.attainable_min_p,
                        exact_across_seeds=test.exact_across_seeds,
                    )
                rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty and "t_p" in df:
        df["t_p_holm"] = np.nan
        for idx in df.groupby(["arm", "reference_arm"]).groups.values():
            adj = stats.holm(
                {str(i): (None if pd.isna(df.at[i, "t_p"]) else float(df.at[i, "t_p"])) for i in idx}
            )
            for i in idx:
                df.at[i, "t_p_holm"] = np.nan if adj[str(i)] is None else adj[str(i)]
    return df


def gates_frame(sweep: Sweep) -> pd.DataFrame:
    rows = []
    for g in (sweep.sweep_json or {}).get("gates") or []:
        rows.append({"level": "sweep", "run_id": None, "arm": None, "seed": None, "cell": None, **_gate(g)})
    for r in sweep.runs:
        for g in r.summary.get("gates") or []:
            rows.append(
                {
                    "level": "run",
                    "run_id": r.run_id,
                    "arm": r.arm,
                    "seed": r.seed,
                    "cell": cell_label(r.cell),
                    **_gate(g),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "level",
            "run_id",
            "arm",
            "seed",
            "cell",
            "gate",
            "step",
            "fired",
            "outcome",
            "values",
            "reason",
        ],
    )


def _gate(g: dict[str, Any]) -> dict[str, Any]:
    outcome = g.get("outcome") or ("fired" if g.get("fired") else "pass")
    return {
        "gate": g.get("gate"),
        "step": g.get("step"),
        "fired": bool(g.get("fired")),
        "outcome": outcome,
        "values": json.dumps(g.get("values") or {}, sort_keys=True, default=str),
        "reason": g.get("reason"),
    }


def criteria_frame(results: list[CriterionResult], cfg: Any) -> pd.DataFrame:
    rows = []
    for r in results:
        rows.append(
            {
                "arm": label(cfg, r.arm),
                "id": r.id,
                "kind": r.kind,
                "text": r.text,
                "value": r.value,
                "bound": r.bound,
                "margin": r.margin,
                "rule": r.rule,
                "confidence_one_sided": r.confidence,
                "lower_bound": r.ci[0] if r.ci else None,
                "upper_bound": r.ci[1] if r.ci else None,
                "pairs_needed": r.pairs_needed,
                "p_t_test": r.p_values.get("t_test"),
                "p_t_test_holm": r.p_values.get("t_test_holm"),
                "p_wilcoxon_exact": r.p_values.get("wilcoxon_exact"),
                "attainable_min_p": r.attainable_min_p,
                "n_pairs": r.n_pairs,
                "outcome": r.outcome,
                "why": r.why,
            }
        )
    return pd.DataFrame(rows)
