"""report.md: the same content as report.html in Markdown, figures linked from figures/."""

from __future__ import annotations

import json

import pandas as pd

from analysis.context import ReportContext
from analysis.controls import report_sections
from analysis.criteria import CriterionResult, label
from analysis.pretrained_banner import random_init_banner
from analysis.report_text import accounting_frame, criteria_rows, long_sequences, method_text, sequential_text


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def criteria_md(results: list[CriterionResult]) -> str:
    rows = criteria_rows(results)
    cols = [
        "id",
        "kind",
        "criterion",
        "estimate",
        "bounds",
        "margin",
        "rule",
        "pairs needed",
        "n",
        "outcome",
        "why",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        row = dict(row, outcome=f"**{row['outcome']}**")
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
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
    out += [t + "\n" for t in method_text(ctx)]
    for av in ctx.secondary:
        out += ["", f"### Secondary arm {label(cfg, av.arm)}: {av.verdict}", ""]
        out += [f"- {r}" for r in av.reasons] + ["", criteria_md(av.criteria)]
    out += ["", "## Seeds: the sequential rule", "", sequential_text(ctx), "", "## Planned runs", ""]
    acc = accounting_frame(ctx)
    out.append(
        (
            f"{ctx.accounting.planned} runs planned in sweep.json; "
            if ctx.accounting.planned is not None
            else "No sweep.json plan: the planned runs are unknown. "
        )
        + (
            "every planned run completed."
            if acc.empty and ctx.accounting.planned is not None
            else f"{len(acc)} runs did not complete or were not planned:"
        )
    )
    if not acc.empty:
        out += ["", frame_md(acc)]
    out += ["", f"Accuracy assay sensitivity: {ctx.assay[1]}", ""]
    for title, note, df in report_sections(ctx.controls, ctx.baselines, ctx.nll, ctx.assay, cfg):
        out += [f"## {title}", "", note, "", frame_md(df), ""]
    long_df, answer = long_sequences(ctx)
    out += [f"## Do savings disappear at sequence lengths > {cfg.long_seq_len}?", "", f"**{answer}**", ""]
    if not long_df.empty:
        out += [frame_md(long_df), ""]
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
