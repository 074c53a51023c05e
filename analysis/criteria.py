"""The protocol's criteria, evaluated on a sweep, and the GO / NO-GO / INCONCLUSIVE verdict.

A criterion *holds* when ``value <comparator> threshold`` (conf/criteria/*.yaml). A success criterion
that holds passes; a failure criterion that holds fails the study. Outcomes:

* ``not_applicable``: the criterion does not apply to this design (consistency across model sizes in a
  single-size MVT); it does not block GO.
* ``not_evaluable``: it applies but its data are missing (runs missing or failed, memory not measurable
  on CPU, an OOM bound that does not decide it); it blocks GO.

Verdict: INCONCLUSIVE by rule at a smoke scale; else NO-GO if any failure criterion fails; else GO if
every applicable criterion passes; else INCONCLUSIVE with the reasons. When the reference ran out of
memory, a memory reduction is a bound (the reference needed at least the device memory) and the
criterion is decided on the bound where the bound decides it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analysis import stats
from analysis.load import Sweep
from analysis.metrics import METRICS, PAIRED_METRICS, Measure, decide, fmt_metric, label

__all__ = ["CriterionResult", "decide", "evaluate", "fmt_metric", "label", "sweep_design", "verdict"]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_design(sweep: Sweep, cfg: Any) -> str:
    if cfg.design != "auto":
        return str(cfg.design)
    if sweep.sweep_json and sweep.sweep_json.get("design") in ("mvt", "full"):
        return str(sweep.sweep_json["design"])
    return "full" if len(sweep.model_sizes()) > 1 else "mvt"


def evaluate(sweep: Sweep, cfg: Any, arm: str) -> list[CriterionResult]:
    """Every criterion of ``cfg.criteria`` for treatment ``arm``; Holm across the p-value criteria."""
    design = sweep_design(sweep, cfg)
    out: list[CriterionResult] = []
    measures: dict[str, Measure] = {}
    for spec in cfg.criteria.entries:
        ref = spec.reference_arm or cfg.reference_arm
        if design not in spec.designs:
            m = Measure(missing=None)
            outcome, why = (
                "not_applicable",
                f"applies to the {'/'.join(spec.designs)} design; this sweep is {design}",
            )
        else:
            m = METRICS[spec.metric](sweep, cfg, arm, ref, spec)
            outcome, why = _outcome(spec, m)
            if (
                spec.metric in PAIRED_METRICS
                and 0 < m.n_pairs < cfg.min_pairs
                and outcome != "not_applicable"
            ):
                outcome, why = (
                    "not_evaluable",
                    (
                        f"only {m.n_pairs} matched pair(s); the design needs at least "
                        f"{cfg.min_pairs} (min_pairs): {m.text or why}"
                    ),
                )
        measures[spec.id] = m
        out.append(
            CriterionResult(
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
                value=m.value,
                value_text=m.text,
                bound=m.bound,
                ci=None if m.ci is None else [float(m.ci[0]), float(m.ci[1])],
                p_values=dict(m.p_values),
                attainable_min_p=m.attainable_min_p,
                n_pairs=m.n_pairs,
                outcome=outcome,
                why=why,
            )
        )
    family = {r.id: r.p_values.get("t_test") for r in out if r.uses_p_value and r.outcome != "not_applicable"}
    adjusted = stats.holm(family)
    for r in out:
        if r.id in family:
            r.p_values["t_test_holm"] = adjusted[r.id]
            m = measures[r.id]
            if cfg.decide_on_holm and adjusted[r.id] is not None and not m.decided:
                spec = next(s for s in cfg.criteria.entries if s.id == r.id)
                r.outcome, r.why = _outcome(spec, Measure(value=adjusted[r.id], text=m.text, notes=m.notes))
                r.why += " (decided on the Holm-adjusted p)"
    return out


def _outcome(spec: Any, m: Measure) -> tuple[str, str]:
    rule = f"{spec.comparator} {fmt_metric(spec.metric, spec.threshold)}"
    notes = "; ".join(n for n in m.notes if n)
    suffix = f" [{notes}]" if notes else ""
    if m.decided:
        holds = m.holds
    elif m.value is None:
        return "not_evaluable", (m.missing or "no value") + suffix
    else:
        holds = decide(m.value, spec.comparator, spec.threshold, m.bound)
    if holds is None:
        return "not_evaluable", (
            f"{m.text}: a {m.bound} bound of {fmt_metric(spec.metric, m.value)} "
            f"cannot decide {rule}" + (f"; {m.missing}" if m.missing else "") + suffix
        )
    if spec.kind == "success":
        outcome = "pass" if holds else "fail"
    else:
        outcome = "fail" if holds else "pass"
    verb = "holds" if holds else "does not hold"
    check = "" if m.value is None or m.decided else f" (is {fmt_metric(spec.metric, m.value)} {rule}?)"
    return outcome, f"{m.text}{check}: {spec.kind} condition {verb}{suffix}"


def verdict(
    results: list[CriterionResult], scale: str, cfg: Any, n_treatment_runs: int
) -> tuple[str, list[str]]:
    """GO / NO-GO / INCONCLUSIVE with the reasons (criterion ids and their `why`)."""
    reasons: list[str] = []
    failures = [r for r in results if r.kind == "failure" and r.outcome == "fail"]
    blocking = [r for r in results if r.outcome in ("fail", "not_evaluable") and r not in failures]
    if scale in cfg.inconclusive_scales:
        reasons.append(
            f"{scale} scale: exercises the pipeline, is no evidence about the hypothesis "
            "(INCONCLUSIVE by rule)"
        )
        reasons += [f"{r.id} {r.outcome}: {r.why}" for r in failures + blocking]
        return "INCONCLUSIVE", reasons
    if n_treatment_runs == 0:
        return "INCONCLUSIVE", [f"no runs of the treatment arm {cfg.treatment_arm!r} in this sweep"]
    if failures:
        return "NO-GO", [f"{r.id} ({r.text}) holds: {r.why}" for r in failures]
    if not blocking:
        return "GO", ["every applicable success criterion passes and no failure criterion holds"]
    return "INCONCLUSIVE", [f"{r.id} {r.outcome}: {r.why}" for r in blocking]
