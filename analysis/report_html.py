"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no script, no network)."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import pandas as pd

from analysis.context import ArmVerdict, ReportContext
from analysis.controls import report_sections
from analysis.criteria import CriterionResult, label
from analysis.pretrained_banner import random_init_banner
from analysis.report_text import (
    accounting_frame,
    criteria_rows,
    long_sequences,
    method_text,
    sequential_text,
)

VERDICT_COLOURS = {"GO": "#1b7f3b", "NO-GO": "#b3261e", "INCONCLUSIVE": "#9a6700"}
OUTCOME_COLOURS = {
    "pass": "#1b7f3b",
    "fail": "#b3261e",
    "undecided": "#9a6700",
    "not_evaluable": "#9a6700",
    "not_applicable": "#666",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;
color:#1d1d1d;line-height:1.4}
h1{margin:.2rem 0}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.banner{color:#fff;padding:1rem 1.4rem;border-radius:8px;font-size:1.6rem;font-weight:700}
.banner ul{font-size:.95rem;font-weight:400;margin:.5rem 0 0}
.smoke{background:#fff3cd;border:2px solid #9a6700;color:#5c3d00;padding:.7rem 1rem;border-radius:8px;
font-weight:700;margin-top:.8rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.8rem;width:100%}
th,td{border:1px solid #ddd;padding:.25rem .45rem;vertical-align:top;text-align:left;overflow-wrap:anywhere}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.outcome{font-weight:700;white-space:nowrap}
td.nw{white-space:nowrap}
figure{margin:1rem 0;border:1px solid #eee;padding:.5rem}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85rem;color:#444}
.facts td:first-child{font-weight:600;white-space:nowrap}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font-size:.8rem}
.note{font-size:.9rem;color:#333}
td.rule{font-size:.75rem;color:#333;min-width:14rem}
.answer{font-size:1.05rem;font-weight:600;border-left:4px solid #4c72b0;padding:.3rem .8rem;background:#f5f8fc}
"""


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def fmt_p(p: float | None) -> str:
    return "—" if p is None or pd.isna(p) else f"{p:.3g}"


def attainable_words(r: CriterionResult) -> str:
    a = r.attainable_min_p
    if a is None:
        return "—"
    return f"{a:.3g}" + (f" (floor for n={r.n_pairs}: &ge; 0.05 is unreachable)" if a >= 0.05 else "")


def p_cell(r: CriterionResult) -> str:
    if not r.p_values:
        return "—"
    parts = [f"t {fmt_p(r.p_values.get('t_test'))}"]
    if "t_test_holm" in r.p_values:
        parts.append(f"Holm {fmt_p(r.p_values.get('t_test_holm'))}")
    parts.append(f"Wilcoxon {fmt_p(r.p_values.get('wilcoxon_exact'))}")
    return "<br>".join(parts)


def criteria_table(results: list[CriterionResult]) -> str:
    head = (
        "<tr><th>id</th><th>kind</th><th>criterion</th><th>estimate</th><th>one-sided bounds</th>"
        "<th>margin</th><th>rule</th><th>pairs needed</th><th>p-values</th><th>n</th><th>outcome</th>"
        "<th>why</th></tr>"
    )
    rows = []
    for r, row in zip(results, criteria_rows(results)):
        colour = OUTCOME_COLOURS.get(r.outcome, "#000")
        rows.append(
            f"<tr id='crit-{esc(r.arm)}-{esc(r.id)}'><td class=nw>{esc(r.id)}</td><td class=nw>{esc(r.kind)}</td>"
            f"<td>{esc(r.text)}</td><td class=num>{esc(row['estimate'])}</td>"
            f"<td class=num>{esc(row['bounds'])}</td><td class=num>{esc(row['margin'])}</td>"
            f"<td class=rule>{esc(row['rule'])}</td><td class=num>{esc(row['pairs needed'])}</td>"
            f"<td class=num>{p_cell(r)}</td><td class=num>{esc(row['n'])}</td>"
            f"<td class=outcome style='color:{colour}'>{esc(r.outcome)}</td><td>{esc(r.why)}</td></tr>"
        )
    return f"<table class=criteria>{head}{''.join(rows)}</table>"


def frame_table(df: pd.DataFrame, max_rows: int = 60, note: str = "") -> str:
    if df.empty:
        return "<p class=note>none</p>"
    shown = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = []
    for _, row in shown.iterrows():
        cells = []
        for v in row.values:
            if isinstance(v, float):
                cells.append(f"<td class=num>{'—' if pd.isna(v) else f'{v:.4g}'}</td>")
            else:
                cells.append(f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p class=note>showing {max_rows} of {len(df)} rows; all are in {esc(note)}</p>"
        if len(df) > max_rows
        else ""
    )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _arm_section(av: ArmVerdict, cfg: Any) -> str:
    colour = VERDICT_COLOURS[av.verdict]
    reasons = "".join(f"<li>{esc(x)}</li>" for x in av.reasons)
    return (
        f"<h3>{esc(label(cfg, av.arm))} <span style='color:{colour}'>{esc(av.verdict)}</span></h3>"
        f"<ul class=note>{reasons}</ul>{criteria_table(av.criteria)}"
    )


def render_html(ctx: ReportContext) -> str:
    cfg, p = ctx.cfg, ctx.primary
    colour = VERDICT_COLOURS[p.verdict]
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(p.verdict)}: {esc(ctx.sweep.sweep_id)}</title><style>{CSS}</style></head><body>"
    ]
    parts.append(f"<h1>FlashOptim study: sweep {esc(ctx.sweep.sweep_id)}</h1>")
    reasons = "".join(f"<li>{esc(x)}</li>" for x in p.reasons)
    parts.append(
        f"<div class=banner id=verdict style='background:{colour}'>VERDICT: {esc(p.verdict)} "
        f"<span style='font-weight:400'>({esc(ctx.scale)} scale, treatment "
        f"{esc(label(cfg, p.arm))})</span><ul>{reasons}</ul></div>"
    )
    if ctx.is_smoke:
        parts.append(
            f"<div class=smoke id=smoke-banner>SMOKE SCALE: {esc(ctx.scale)} scale exercises the "
            "pipeline, is no evidence about the hypothesis.</div>"
        )
    if banner := random_init_banner([r.summary for r in ctx.sweep.runs]):
        parts.append(f"<div class=smoke id=random-init-banner>{esc(banner)}</div>")
    facts = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in ctx.header.items())
    parts.append(f"<table class=facts>{facts}</table>")

    parts.append("<h2>Criteria</h2>")
    parts.append(
        f"<p class=note>Treatment arm {esc(label(cfg, p.arm))} vs reference arms "
        f"{esc(label(cfg, cfg.reference_arm))} and {esc(label(cfg, cfg.eightbit_arm))}.</p>"
    )
    parts += [f"<p class=note>{esc(t)}</p>" for t in method_text(ctx)]
    parts.append(criteria_table(p.criteria))
    if ctx.secondary:
        parts.append("<h3>Secondary arms (shown, do not change the verdict)</h3>")
        parts += [_arm_section(av, cfg) for av in ctx.secondary]

    parts.append("<h2>Seeds: the sequential rule</h2>")
    parts.append(f"<p class=note id=sequential>{esc(sequential_text(ctx))}</p>")
    parts.append("<h2>Planned runs</h2>")
    acc = accounting_frame(ctx)
    planned = ctx.accounting.planned
    parts.append(
        "<p class=note id=accounting>"
        + esc(
            f"{planned} runs planned in sweep.json; "
            if planned is not None
            else "No sweep.json plan: the planned runs are unknown. "
        )
        + esc(
            "every planned run completed."
            if acc.empty and planned is not None
            else f"{len(acc)} runs did not complete or were not planned (blocks: counts against GO):"
        )
        + "</p>"
    )
    if not acc.empty:
        parts.append(frame_table(acc))
    parts.append(f"<p class=note id=assay>Accuracy assay sensitivity: {esc(ctx.assay[1])}</p>")
    for title, note, df in report_sections(ctx.controls, ctx.baselines, ctx.nll, ctx.assay, cfg):
        parts.append(f"<h2>{esc(title)}</h2><p class=note>{esc(note)}</p>")
        parts.append(frame_table(df) if not df.empty else "<p class=note>No data.</p>")
    parts.append(f"<h2>Do savings disappear at sequence lengths &gt; {cfg.long_seq_len}?</h2>")
    long_df, answer = long_sequences(ctx)
    parts.append(f"<p class=answer id=long-seq-answer>{esc(answer)}</p>")
    if not long_df.empty:
        parts.append(frame_table(long_df, note="tables/long_sequences.csv"))
    parts.append("<h2>Gate decisions</h2>")
    g = ctx.gates
    if g.empty:
        parts.append("<p class=note>No gate decisions recorded in summaries or sweep.json.</p>")
    else:
        counts = g.groupby(["level", "gate", "outcome"]).size().reset_index(name="decisions")
        parts.append(frame_table(counts))
        notable = g[(g["level"] == "sweep") | (g["outcome"] != "pass")]
        parts.append(
            "<p class=note>Sweep-level decisions and every gate that fired or was not evaluable:</p>"
        )
        parts.append(frame_table(notable, note="tables/gates.csv"))

    parts.append("<h2>Figures</h2>")
    for f in ctx.figures:
        b64 = base64.b64encode(f.png).decode()
        parts.append(
            f"<figure id='fig-{esc(f.name)}'><img src='data:image/png;base64,{b64}' "
            f"alt='{esc(f.title)}'><figcaption><b>{esc(f.title)}.</b> {esc(f.caption)}"
            + (f" <i>No plot: {esc(f.placeholder)}.</i>" if f.placeholder else "")
            + "</figcaption></figure>"
        )

    parts.append("<h2>Memory reduction per grid cell</h2>")
    parts.append(frame_table(ctx.cells, note="tables/cells.csv"))
    parts.append("<h2>Runs</h2>")
    status = ctx.runs.groupby(["arm", "status"]).size().reset_index(name="runs")
    parts.append(frame_table(status))
    not_done = ctx.runs[ctx.runs["status"] != "completed"][
        ["run_id", "arm", "seed", "cell", "status", "status_reason"]
    ]
    if not not_done.empty:
        parts.append(
            "<p class=note>Runs that did not complete:</p>" + frame_table(not_done, note="tables/runs.csv")
        )
    if ctx.sweep.unfinished:
        parts.append(
            "<p class=note>Run directories without summary.json (unfinished or crashed): "
            + esc(", ".join(u.name for u in ctx.sweep.unfinished))
            + "</p>"
        )

    parts.append("<h2>Provenance</h2>")
    parts.append(f"<pre>{esc(json.dumps(ctx.provenance, indent=2, sort_keys=True, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
