"""report.md: the same content as report.html in Markdown, figures linked from figures/."""

from __future__ import annotations

import json

import pandas as pd

from analysis.context import ReportContext
from analysis.criteria import CriterionResult, label
from analysis.pretrained_banner import random_init_banner
from analysis.report_html import fmt_p


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def criteria_md(results: list[CriterionResult]) -> str:
    lines = [
        "| id | kind | criterion | value | rule | 95% CI | p (t) | p (Holm) | p (Wilcoxon) | attainable min p | n | outcome | why |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ci = "—" if not r.ci else f"[{r.ci[0]:.3g}, {r.ci[1]:.3g}]"
        amin = "—" if r.attainable_min_p is None else f"{r.attainable_min_p:.3g}"
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    r.id,
                    r.kind,
                    r.text,
                    r.value_text or "—",
                    f"{r.comparator} {r.threshold:g}",
                    ci,
                    fmt_p(r.p_values.get("t_test")),
                    fmt_p(r.p_values.get("t_test_holm")),
                    fmt_p(r.p_values.get("wilcoxon_exact")),
                    amin,
                    r.n_pairs,
                    f"**{r.outcome}**",
                    r.why,
                )
            )
            + " |"
        )
    return "\n".join(lines)


def frame_md(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df.empty:
        return "_none_"
    shown = df.head(max_rows)
    lines = ["| " + " | ".join(map(_cell, shown.columns)) + " |", "|" + "---|" * len(shown.columns)]
    for _, row in shown.iterrows():
        lines.append(
            "| "
            + " | ".join(
                _cell(
                    "—"
                    if isinstance(v, float) and pd.isna(v)
                    else (f"{v:.4g}" if isinstance(v, float) else v)
                )
                for v in row.values
            )
            + " |"
        )
    if len(df) > max_rows:
        lines.append(f"\n_showing {max_rows} of {len(df)} rows; all are in tables/_")
    return "\n".join(lines)


def render_md(ctx: ReportContext) -> str:
    cfg, p = ctx.cfg, ctx.primary
    out = [
        f"# FlashOptim study: sweep {ctx.sweep.sweep_id}",
        "",
        f"**VERDICT: {p.verdict}** ({ctx.scale} scale, treatment {label(cfg, p.arm)})",
        "",
    ]
    out += [f"- {r}" for r in p.reasons] + [""]
    if ctx.is_smoke:
        out += [
            f"> **SMOKE SCALE**: {ctx.scale} scale exercises the pipeline, is no evidence about the hypothesis.",
            "",
        ]
    if banner := random_init_banner([r.summary for r in ctx.sweep.runs]):
        out += [f"> **{banner}**", ""]
    out += [f"- **{k}**: {v}" for k, v in ctx.header.items()] + [
        "",
        "## Criteria",
        "",
        criteria_md(p.criteria),
        "",
    ]
    out.append(
        "Exact two-sided Wilcoxon p cannot go below 2/2^n with n pairs (0.25 for 3 pairs): "
        "a p at that floor is no evidence of no effect."
    )
    for av in ctx.secondary:
        out += ["", f"### Secondary arm {label(cfg, av.arm)}: {av.verdict}", ""]
        out += [f"- {r}" for r in av.reasons] + ["", criteria_md(av.criteria)]
    out += ["", "## Gate decisions", ""]
    g = ctx.gates
    out.append(
        frame_md(g.groupby(["level", "gate", "outcome"]).size().reset_index(name="decisions"))
        if not g.empty
        else "_no gate decisions recorded_"
    )
    out += ["", "## Figures", ""]
    for f in ctx.figures:
        out += [f"![{f.title}](figures/{f.name}.png)", "", f"_{f.title}._ {f.caption}", ""]
    out += [
        "## Memory reduction per grid cell",
        "",
        frame_md(ctx.cells),
        "",
        "## Runs",
        "",
        frame_md(ctx.runs.groupby(["arm", "status"]).size().reset_index(name="runs")),
        "",
    ]
    if ctx.sweep.unfinished:
        out.append("Run directories without summary.json: " + ", ".join(u.name for u in ctx.sweep.unfinished))
    out += [
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(ctx.provenance, indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    return "\n".join(out)
