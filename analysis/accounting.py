"""Every planned run accounted for, and the accuracy endpoint's assay sensitivity.

GO needs evidence from every run the sweep planned (``sweep.json``'s ``runs``). A run that is
missing, unfinished (a directory without summary.json, or stopped by a signal), failed (crashed), or
present but not planned is named in the report and blocks GO, unless the decision rule covers its
ending: completed; OOM (a memory bound); diverged (F5); stopped by an abort gate (a failure of that
gate's endpoint). Only the arms the verdict uses (treatment and the criteria's reference arms) block;
the others are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.load import Sweep
from analysis.pairs import fired_gate

COVERED = ("completed", "oom", "diverged")


@dataclass
class Accounting:
    rows: list[dict[str, Any]] = field(default_factory=list)  # run_id, arm, seed, state, detail, blocks
    blockers: list[str] = field(default_factory=list)
    planned: int | None = None


def verdict_arms(cfg: Any) -> set[str]:
    arms = {cfg.treatment_arm, cfg.reference_arm}
    arms |= {c.reference_arm for c in cfg.criteria.entries if c.reference_arm}
    return arms


def account(sweep: Sweep, cfg: Any) -> Accounting:
    acc = Accounting()
    relevant = verdict_arms(cfg)
    present = {r.run_id: r for r in sweep.runs}
    unfinished = {p.name for p in sweep.unfinished}
    plan = (sweep.sweep_json or {}).get("runs")
    if not isinstance(plan, list):
        if cfg.require_plan:
            acc.blockers.append(
                "no sweep.json with the planned runs: missing runs cannot be excluded, so GO is not "
                "allowed (require_plan)"
            )
        return acc
    acc.planned = len(plan)
    planned_ids = set()
    for e in plan:
        if not isinstance(e, dict):
            continue
        rid = str(e.get("run_id"))
        planned_ids.add(rid)
        arm = str(e.get("arm") or e.get("optimizer"))
        row = {"run_id": rid, "arm": arm, "seed": e.get("seed"), "state": "", "detail": "", "blocks": False}
        run = present.get(rid)
        if run is not None:
            if run.status in COVERED:
                row["state"] = run.status
            elif run.status == "aborted" and fired_gate(run) is not None:
                g = fired_gate(run) or {}
                row["state"] = f"stopped by gate {g.get('gate')}"
                row["detail"] = str(g.get("reason") or "")
            else:
                row["state"] = "unfinished" if run.status == "aborted" else run.status
                row["detail"] = str(run.summary.get("status_reason") or "no reason recorded")
                row["blocks"] = arm in relevant
        elif rid in unfinished:
            row.update(
                state="unfinished", detail="run directory without summary.json", blocks=arm in relevant
            )
        else:
            status = e.get("status")
            why = e.get("status_reason")
            row.update(
                state="missing",
                detail=f"planned, no run directory (sweep.json status {status}"
                + (f": {why}" if why else "")
                + ")",
                blocks=arm in relevant,
            )
        acc.rows.append(row)
    for rid, run in present.items():
        if rid not in planned_ids:
            acc.rows.append(
                {
                    "run_id": rid,
                    "arm": run.arm,
                    "seed": run.seed,
                    "state": "extra",
                    "detail": "a run directory sweep.json did not plan",
                    "blocks": run.arm in relevant,
                }
            )
    for name in sorted(unfinished - planned_ids):
        acc.rows.append(
            {
                "run_id": name,
                "arm": "?",
                "seed": None,
                "state": "extra",
                "detail": "unplanned directory without summary.json",
                "blocks": True,
            }
        )
    bad = [r for r in acc.rows if r["blocks"]]
    if bad:
        by_state: dict[str, list[str]] = {}
        for r in bad:
            by_state.setdefault(r["state"], []).append(f"{r['arm']} seed {r['seed']} ({r['run_id']})")
        acc.blockers.append(
            "planned runs not accounted for, so GO is not allowed: "
            + "; ".join(
                f"{k}: {', '.join(v[:4])}" + (f" (+{len(v) - 4})" if len(v) > 4 else "")
                for k, v in by_state.items()
            )
        )
    return acc


def assay_sensitivity(sweep: Sweep, cfg: Any) -> tuple[bool | None, str]:
    """Whether the accuracy endpoint has shown it can see a degradation (issue 14's rule).

    True: every completed reference run's test rel-L2 is at most 1/factor of the best non-learned
    baseline recorded beside it (``baseline_key``, scored on the same samples under the same
    definition); False: some run misses it (the message names the worst run and by how much it
    missed: its ratio to the baseline, the bar, and how far its error must fall); None: no run
    records a baseline, so nothing was shown. Only ``True`` allows GO when ``assay_sensitivity.required``.
    """
    a = cfg.assay_sensitivity
    refs = [r for r in sweep.runs if r.arm == cfg.reference_arm and r.status == "completed"]
    pairs = [(r, r.num("rel_l2_error"), r.num(a.baseline_key)) for r in refs]
    known = [(r, e, b) for r, e, b in pairs if e is not None and b is not None and b > 0]
    if not known:
        return None, (
            f"the accuracy endpoint has not shown it can see a degradation: no completed "
            f"{cfg.reference_arm} run records rel_l2_error and {a.baseline_key} (assay sensitivity, "
            "issue 14), so GO is not allowed"
        )
    r, e, b = max(known, key=lambda k: k[1] / k[2])  # the run nearest to (or furthest past) the bar
    metric = r.summary.get("rel_l2_metric") or "rel-L2"
    name = r.summary.get("best_baseline_name") or "best non-learned baseline"
    bar = b / a.factor
    where = (
        f"{cfg.reference_arm} run {r.run_id} (seed {r.seed}): test {metric} {e:.4g} = {e / b:.3g}x "
        f"the best non-learned baseline ({name}, {b:.4g})"
    )
    if e > bar or len(known) < len(refs):
        detail = (
            f"{where}; the rule needs <= {1 / a.factor:.3g}x (<= {bar:.4g}): missed by {e - bar:.4g} "
            f"(its error would have to fall {1 - bar / e:.0%})"
            if e > bar
            else f"{len(refs) - len(known)} of {len(refs)} {cfg.reference_arm} runs lack {a.baseline_key}"
        )
        return (
            False,
            f"the accuracy endpoint cannot be trusted to see a degradation: {detail}, so the accuracy "
            "criteria are not evaluable and GO is not allowed",
        )
    return (
        True,
        f"accuracy endpoint sensitive: every {cfg.reference_arm} run is at most {1 / a.factor:.3g}x the best "
        f"non-learned baseline (worst: {where})",
    )
