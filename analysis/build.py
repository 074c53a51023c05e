"""Analyse a loaded sweep and write report/ (verdict.json last, the directory swapped in whole)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from analysis.accounting import account, assay_sensitivity
from analysis.context import ArmVerdict, ReportContext
from analysis.controls import baselines_frame, evaluate_controls, gate_accuracy, nll_frame
from analysis.criteria import ACCURACY_METRICS, answered, evaluate, label, sweep_design, sweep_look, verdict
from analysis.figures import all_figures
from analysis.load import Sweep
from analysis.pairs import GIB
from analysis.report_html import render_html
from analysis.report_md import render_md
from analysis.report_text import accounting_frame, long_sequences
from analysis.tables import cells_frame, criteria_frame, gates_frame, runs_frame
from common.atomic import read_json, staged_dir, write_bytes, write_json, write_text
from common.provenance import git_state, now_iso, provenance

MARKER = "STALE.txt"  # written beside an earlier verdict.json while a re-analysis has not finished


class OutputDirError(Exception):
    """output_dir holds something this package did not write; the message is one line."""


def _unique(values: list[Any]) -> str:
    counts = Counter(str(v) for v in values if v is not None)
    return (
        "; ".join(f"{k}" + (f" ({n} runs)" if len(counts) > 1 else "") for k, n in counts.items())
        or "unknown"
    )


def code_version(state: dict[str, Any]) -> str:
    """A manifest's or :func:`git_state`'s code version for the report: sha, and how it is known."""
    sha = state.get("git_sha") or "?"
    if state.get("git_dirty"):
        return f"{sha} (dirty)"
    if state.get("git_source") == "git archive":
        return f"{sha} (git archive)"
    return sha


def header(sweep: Sweep, design: str, cfg: Any, here: dict[str, Any]) -> dict[str, str]:
    """The report's header. ``here``: the analysing checkout's :func:`git_state`."""
    manifests = [r.manifest for r in sweep.runs if r.manifest]
    gpus = []
    for m in manifests:
        for g in (m.get("hardware") or {}).get("gpus") or []:
            mem = g.get("total_memory_bytes")
            gpus.append(f"{g.get('name')} ({mem / GIB:.1f} GiB)" if mem else g.get("name"))
    hardware = _unique(gpus) if gpus else _unique([r.summary.get("device") for r in sweep.runs])
    shas = [code_version(m) for m in manifests]
    starts = sorted(str(m["start_time"]) for m in manifests if m.get("start_time"))
    ends = sorted(str(m["end_time"]) for m in manifests if m.get("end_time"))
    status = Counter(r.status for r in sweep.runs)
    return {
        "sweep": sweep.sweep_id,
        "scale": sweep.scale
        + (
            "  (SMOKE SCALE: no evidence about the hypothesis)"
            if sweep.scale in cfg.inconclusive_scales
            else ""
        ),
        "design": design,
        "hardware": hardware,
        "dataset": _unique([r.summary.get("dataset_id") for r in sweep.runs]),
        "model initialisation": _unique([r.summary.get("model_init") for r in sweep.runs]),
        "runs": f"{len(sweep.runs)} finished ({', '.join(f'{k}: {v}' for k, v in sorted(status.items()))})"
        + (f"; {len(sweep.unfinished)} without summary.json" if sweep.unfinished else ""),
        "arms": ", ".join(f"{a} ({label(cfg, a)})" for a in sweep.arms()),
        "runs ran": f"{starts[0]} to {ends[-1]}" if starts and ends else "unknown (no run manifests)",
        "analysis date": now_iso(),
        "code version (runs)": _unique(shas) if shas else "unknown (no run manifests)",
        "code version (analysis)": code_version(here),
    }


def answers_accuracy(cfg: Any) -> bool:
    """Whether this sweep answers an accuracy criterion (all do, unless ``answers`` leaves them out:
    then the assay-sensitivity rule is the other sweep's business and blocks nothing here)."""
    return any(answered(cfg, e.id) for e in cfg.criteria.entries if e.metric in ACCURACY_METRICS)


def sweep_blockers(sweep: Sweep, cfg: Any) -> tuple[Any, tuple[bool | None, str], list[str]]:
    """(accounting, assay sensitivity, the sweep-level reasons GO is not allowed: unaccounted runs,
    the assay-sensitivity rule, misbehaving (or, when required, missing) accuracy controls)."""
    accounting = account(sweep, cfg)
    assay_ok, assay_why = assay_sensitivity(sweep, cfg)
    blockers = list(accounting.blockers)
    if cfg.assay_sensitivity.required and assay_ok is not True and answers_accuracy(cfg):
        blockers.append(assay_why)
    mismatch = rule_mismatch(sweep, cfg)
    if mismatch:
        blockers.append(mismatch)
    blockers += evaluate_controls(sweep, cfg).blockers
    return accounting, (assay_ok, assay_why), blockers


RULE_KEYS = ("name", "looks", "alpha_shares", "endpoints", "futility_stop", "confidence")


def rule_mismatch(sweep: Sweep, cfg: Any) -> str | None:
    """Why GO is blocked when the sweep added seeds by another rule than this analysis's (else None).

    The levels of the looks are only valid for the rule the sweep ran (sweep.json["sequential"]["rule"],
    fixed before any run); a sweep without that record (older sweeps, gate F off) is not checked.
    """
    ran = ((sweep.sweep_json or {}).get("sequential") or {}).get("rule")
    if not ran:
        return None
    seq = cfg.criteria.sequential
    mine = {
        "name": seq.name,
        "looks": list(seq.looks),
        "alpha_shares": [float(a) for a in seq.alpha_shares],
        "endpoints": list(seq.endpoints),
        "futility_stop": bool(seq.futility_stop),
        "confidence": float(cfg.decision.confidence),
    }
    differ = [k for k in RULE_KEYS if k in ran and ran[k] != mine[k]]
    if not differ:
        return None
    shown = "; ".join(f"{k}: sweep {ran[k]} vs analysis {mine[k]}" for k in differ)
    return (
        f"the sweep added seeds by another seed-adding rule than this analysis decides with ({shown}): "
        "the looks' levels do not hold; analyse with the sweep's rule (sweep.analysis_overrides)"
    )


def judge(sweep: Sweep, cfg: Any, arm: str | None = None) -> ArmVerdict:
    """The verdict of one treatment arm, exactly as ``python -m analysis`` decides it."""
    arm = arm or cfg.treatment_arm
    _, _, blockers = sweep_blockers(sweep, cfg)
    results = gate_accuracy(evaluate(sweep, cfg, arm), evaluate_controls(sweep, cfg))
    v, reasons = verdict(results, sweep.scale, cfg, sum(r.arm == arm for r in sweep.runs), blockers)
    return ArmVerdict(arm, v, reasons, results)


def build_context(sweep: Sweep, cfg: Any, here: dict[str, Any] | None = None) -> ReportContext:
    """Everything the report shows. ``here``: the analysing checkout's :func:`git_state`, taken
    before this analysis touched anything (marking the old report stale edits a committed report's
    verdict.json, which would make the checkout look dirty); taken now when not given."""
    here = git_state() if here is None else here
    design = sweep_design(sweep, cfg)
    arms_present = sweep.arms()
    accounting, assay, _ = sweep_blockers(sweep, cfg)
    verdicts = [
        judge(sweep, cfg, arm)
        for arm in [cfg.treatment_arm, *[a for a in cfg.secondary_arms if a in arms_present]]
    ]
    treatments = [v.arm for v in verdicts if v.arm in arms_present]
    order = [a for a in (cfg.reference_arm, cfg.eightbit_arm, *treatments) if a in arms_present]
    arms = order + [a for a in arms_present if a not in order]
    runs = runs_frame(sweep, cfg)
    cells = cells_frame(sweep, cfg, treatments)
    prov = {
        "analysis": provenance(here),
        "analysis_config": OmegaConf.to_container(cfg, resolve=True),
        "sweep_json": {k: v for k, v in (sweep.sweep_json or {}).items() if k not in ("runs", "order")},
        "run_manifests": {
            "code_versions": sorted({str(r.manifest.get("git_sha")) for r in sweep.runs if r.manifest}),
            "packages": [
                dict(p)
                for p in {
                    tuple(sorted((r.manifest.get("packages") or {}).items()))
                    for r in sweep.runs
                    if r.manifest
                }
            ],
            "commands": sorted({str(r.manifest.get("command")) for r in sweep.runs if r.manifest})[:5],
        },
    }
    return ReportContext(
        sweep=sweep,
        cfg=cfg,
        design=design,
        primary=verdicts[0],
        secondary=verdicts[1:],
        runs=runs,
        cells=cells,
        gates=gates_frame(sweep),
        figures=all_figures(sweep, runs, cells, cfg, arms, design),
        header=header(sweep, design, cfg, here),
        provenance=prov,
        accounting=accounting,
        assay=assay,
        look=sweep_look(sweep, cfg),
        controls=evaluate_controls(sweep, cfg),
        baselines=baselines_frame(sweep, cfg, arms),
        nll=nll_frame(sweep, cfg, arms),
    )


def verdict_json(ctx: ReportContext) -> dict[str, Any]:
    keys = (
        "id",
        "text",
        "kind",
        "metric",
        "threshold",
        "comparator",
        "value",
        "value_text",
        "bound",
        "ci",
        "rule",
        "margin",
        "confidence",
        "method",
        "pairs_needed",
        "pairs_needed_text",
        "cells",
        "p_values",
        "attainable_min_p",
        "n_pairs",
        "outcome",
        "why",
        "designs",
        "reference_arm",
    )

    def crit(av: ArmVerdict) -> list[dict[str, Any]]:
        return [{k: c.to_dict()[k] for k in keys} for c in av.criteria]

    return {
        "verdict": ctx.primary.verdict,
        "current": True,
        "scale": ctx.scale,
        "design": ctx.design,
        "sweep_id": ctx.sweep.sweep_id,
        "treatment_arm": ctx.primary.arm,
        "reasons": ctx.primary.reasons,
        "criteria": crit(ctx.primary),
        "secondary_arms": [
            {"arm": av.arm, "verdict": av.verdict, "reasons": av.reasons, "criteria": crit(av)}
            for av in ctx.secondary
        ],
        "n_runs": len(ctx.sweep.runs),
        "n_unfinished_run_dirs": len(ctx.sweep.unfinished),
        "planned_runs": ctx.accounting.planned,
        "unaccounted_runs": [r for r in ctx.accounting.rows if r["state"] not in ("completed",)],
        "assay_sensitivity": {"shown": ctx.assay[0], "why": ctx.assay[1]},
        "controls": [
            {"arm": c.arm, "role": c.role, "state": c.state, "behaves": c.behaves, "why": c.why}
            for c in ctx.controls.rows
        ],
        "sequential": {
            "rule": ctx.cfg.criteria.sequential.name,
            "look": ctx.look[0],
            "confidence": ctx.look[1],
            "seeds_per_cell": ctx.look[2],
            # what the sweep's gate F did: the rule it ran, each look, the seeds it added
            "sweep_record": (ctx.sweep.sweep_json or {}).get("sequential"),
        },
        "generated_at": ctx.header["analysis date"],
        "code_version": ctx.header["code version (analysis)"],
    }


REPORT_ENTRIES = {"verdict.json", "report.html", "report.md", "figures", "tables", MARKER}


def check_output_dir(out_dir: Path, sweep_id: str) -> None:
    """Refuse an ``out_dir`` that holds anything but an earlier report of the same sweep (exit 2).

    Allowed: absent, empty, or a report this package wrote for ``sweep_id`` (its verdict.json names the
    sweep, and it holds only report files). Anything else is the user's and is never deleted.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputDirError(
            f"output_dir={str(out_dir)!r} is a file; allowed: an empty or absent directory, "
            "or an earlier report of this sweep"
        )
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - REPORT_ENTRIES)
    try:
        previous = read_json(out_dir / "verdict.json").get("sweep_id")
    except (OSError, ValueError, AttributeError):
        previous = None
    if foreign or previous != sweep_id:
        what = (
            f"holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}"
            if foreign
            else f"is a report of sweep {previous!r}"
            if previous
            else "is not an analysis report"
        )
        raise OutputDirError(
            f"output_dir={str(out_dir)!r} {what}; allowed: an empty or absent directory, or an earlier "
            f"report of sweep {sweep_id!r} (nothing else is overwritten)"
        )


def mark_stale(out_dir: Path, why: str) -> None:
    """Before a re-analysis: the previous verdict.json says it is not current until the new one lands."""
    path = out_dir / "verdict.json"
    if not path.exists():
        return
    try:
        old = read_json(path)
    except (OSError, ValueError):
        return
    if isinstance(old, dict):
        old.update(current=False, stale_reason=why, stale_since=now_iso())
        write_json(path, old)
        write_text(out_dir / MARKER, f"{why}\n")


def write_report(ctx: ReportContext, out_dir: Path) -> Path:
    """Write everything into a staged directory, verdict.json last, then swap it in for ``out_dir``."""
    ready = out_dir.parent / f".{out_dir.name}.ready-{os.getpid()}"
    with staged_dir(ready) as tmp:
        for f in ctx.figures:
            write_bytes(tmp / "figures" / f"{f.name}.png", f.png)
        (tmp / "tables").mkdir()
        ctx.runs.to_csv(tmp / "tables" / "runs.csv", index=False)
        ctx.cells.to_csv(tmp / "tables" / "cells.csv", index=False)
        ctx.gates.to_csv(tmp / "tables" / "gates.csv", index=False)
        long_sequences(ctx)[0].to_csv(tmp / "tables" / "long_sequences.csv", index=False)
        accounting_frame(ctx).to_csv(tmp / "tables" / "run_accounting.csv", index=False)
        ctx.controls.frame().to_csv(tmp / "tables" / "controls.csv", index=False)
        ctx.baselines.to_csv(tmp / "tables" / "accuracy_vs_baselines.csv", index=False)
        ctx.nll.to_csv(tmp / "tables" / "target_nll.csv", index=False)
        criteria_frame(
            ctx.primary.criteria + [c for av in ctx.secondary for c in av.criteria], ctx.cfg
        ).to_csv(tmp / "tables" / "criteria.csv", index=False)
        write_text(tmp / "report.md", render_md(ctx))
        write_text(tmp / "report.html", render_html(ctx))
        write_json(tmp / "verdict.json", verdict_json(ctx))
    # Swap: a reader sees the old complete report, briefly none, then the new complete one.
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(ready, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
