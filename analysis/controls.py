"""The accuracy endpoint's controls, and every arm against the dataset's baselines (issue 14).

Controls are arms of the sweep (``conf/optimizer/``), each compared with the reference arm by the
same paired, bounded rule as the criteria (:func:`analysis.criteria.decide_metric` on
``rel_l2_error_change``, the primary accuracy definition):

* a **positive** control (``controls.positive``: AdamW on bf16 weights without master copy,
  8-bit Adam on bf16 weights) degrades accuracy on purpose; the endpoint must flag it as worse:
  the lower bound of its degradation must exceed ``controls.positive_margin`` in every cell
  (``detected``). Bounds below the margin: ``missed`` (the endpoint cannot see a real degradation);
  straddling: ``not_shown``.
* a **negative** control (``controls.negative``: an AdamW replicate on another seed stream) does
  not; the endpoint must find it non-inferior by the non-inferiority criterion's own margin
  (``controls.criterion``, S3: upper bound <= ln(1 + 5%)): ``non_inferior``; ``flagged`` when its
  lower bound is past the margin (the endpoint sees degradations that are not there); ``not_shown``.

A control that misbehaves (``missed``, ``flagged``) makes the verdict INCONCLUSIVE with the reason;
one that is ``not_shown`` or ``not_run`` blocks GO only when ``controls.required``.

:func:`baselines_frame` puts every arm (mean over its completed seeds) beside every baseline the
runs recorded (``summary["baselines"]``, scored on the same samples), per split and per stratum
(tissue, behaviour, scenario), under the primary definition; :func:`nll_frame` gives the
decoding-free co-endpoint (teacher-forced target NLL) per arm and split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from analysis.criteria import CriterionResult, decide_metric, label
from analysis.load import Sweep

DETECTED, MISSED, NON_INFERIOR, FLAGGED, NOT_SHOWN, NOT_RUN = (
    "detected",
    "missed",
    "non_inferior",
    "flagged",
    "not_shown",
    "not_run",
)
MISBEHAVES = (MISSED, FLAGGED)


@dataclass
class Control:
    arm: str
    role: str  # positive | negative
    expectation: str
    state: str  # detected | missed | non_inferior | flagged | not_shown | not_run
    why: str
    result: CriterionResult | None = None

    @property
    def behaves(self) -> bool | None:
        if self.state in (DETECTED, NON_INFERIOR):
            return True
        return False if self.state in MISBEHAVES else None


@dataclass
class Controls:
    rows: list[Control] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # reasons GO is not allowed

    def frame(self) -> pd.DataFrame:
        cols = ["arm", "role", "expectation", "state", "estimate", "bounds", "pairs", "why"]
        return pd.DataFrame(
            [
                {
                    "arm": c.arm,
                    "role": c.role,
                    "expectation": c.expectation,
                    "state": c.state,
                    "estimate": None if c.result is None or c.result.value is None else c.result.value,
                    "bounds": None if c.result is None or c.result.ci is None else _bounds(c.result.ci),
                    "pairs": None if c.result is None else c.result.n_pairs,
                    "why": c.why,
                }
                for c in self.rows
            ],
            columns=cols,
        )


def _bounds(ci: list[float]) -> str:
    return f"[{ci[0]:+.1%}, {ci[1]:+.1%}]"


def _spec(cfg: Any, arm: str, comparator: str, threshold: float, text: str) -> Any:
    return SimpleNamespace(
        id=f"control:{arm}",
        text=text,
        metric="rel_l2_error_change",
        comparator=comparator,
        threshold=threshold,
        kind="success",
        designs=["mvt", "full"],
        uses_p_value=False,
        reference_arm=cfg.reference_arm,
        params={},
    )


def _criterion_threshold(cfg: Any) -> float:
    for spec in cfg.criteria.entries:
        if spec.id == cfg.controls.criterion:
            return float(spec.threshold)
    raise ValueError(f"controls.criterion={cfg.controls.criterion!r} is not a criterion id")


def evaluate_controls(sweep: Sweep, cfg: Any) -> Controls:
    """Each configured control decided against the reference arm (module docstring)."""
    c = cfg.controls
    out = Controls()
    arms = set(sweep.arms())
    margin = _criterion_threshold(cfg)
    for role, names in (("positive", c.positive), ("negative", c.negative)):
        for arm in names:
            if role == "positive":
                expect = f"flagged worse than {label(cfg, cfg.reference_arm)}: lower bound > {c.positive_margin:+.0%}"
                spec = _spec(cfg, arm, ">", c.positive_margin, expect)
            else:
                expect = f"non-inferior to {label(cfg, cfg.reference_arm)}: upper bound <= {margin:+.0%} ({c.criterion})"
                spec = _spec(cfg, arm, "<=", margin, expect)
            if arm not in arms:
                out.rows.append(Control(arm, role, expect, NOT_RUN, f"no {arm} runs in this sweep"))
                continue
            res = decide_metric(sweep, cfg, arm, spec)
            good, bad = (DETECTED, MISSED) if role == "positive" else (NON_INFERIOR, FLAGGED)
            state = {"pass": good, "fail": bad}.get(res.outcome, NOT_SHOWN)
            # res.why already carries the pairs-needed text (criteria._result appends it)
            out.rows.append(Control(arm, role, expect, state, res.why, res))
    for row in out.rows:
        name = f"{row.role} control {row.arm}"
        if row.state == MISSED:
            out.blockers.append(
                f"{name} misbehaves: the accuracy endpoint did not flag it as worse ({row.why}), "
                "so it cannot be trusted to see a degradation"
            )
        elif row.state == FLAGGED:
            out.blockers.append(
                f"{name} misbehaves: the accuracy endpoint flagged a replicate of "
                f"{cfg.reference_arm} as worse ({row.why}), so it sees degradations that are not there"
            )
        elif c.required and row.state in (NOT_SHOWN, NOT_RUN):
            out.blockers.append(f"{name} {row.state.replace('_', ' ')}: {row.why} (controls.required)")
    return out


def gate_accuracy(results: list[CriterionResult], controls: Controls) -> list[CriterionResult]:
    """A misbehaving control makes the accuracy criteria (``rel_l2_error_change``) not_evaluable,
    saying which control and why: an endpoint that misses a real degradation cannot pass a
    treatment, and one that flags a replicate cannot fail one."""
    bad = [c for c in controls.rows if c.state in MISBEHAVES]
    if not bad:
        return results
    why = "; ".join(f"{c.role} control {c.arm} {c.state}" for c in bad)
    out = []
    for r in results:
        if r.metric == "rel_l2_error_change" and r.outcome not in ("not_applicable", "not_evaluable"):
            r = replace(
                r,
                outcome="not_evaluable",
                why=f"the accuracy endpoint's controls misbehave ({why}) (without this rule: {r.outcome}: {r.why})",
                pairs_needed_text="",
            )
        out.append(r)
    return out


# ---------------------------------------------------------------------------- arms vs baselines
def _strata_rows(split: str, predictor: str, kind: str, strata: dict[str, Any], key: str) -> list[dict]:
    rows = []
    for f, by_value in (strata or {}).items():
        for v, x in by_value.items():
            rows.append(
                {
                    "split": split,
                    "stratum": f"{f}={v}",
                    "n": x.get("n"),
                    "predictor": predictor,
                    "kind": kind,
                    "value": x.get(key),
                }
            )
    return rows


def baselines_frame(sweep: Sweep, cfg: Any, arms: list[str]) -> pd.DataFrame:
    """Long table: split, stratum ("all" or field=value), n, predictor (an arm, mean over its
    completed seeds; or a baseline), kind (arm | non-learned | learned), value (primary
    definition), seeds. Baselines are read from the first completed run that recorded them (every
    run of a sweep evaluates the same samples of the same dataset)."""
    done = [r for r in sweep.runs if r.status in cfg.quality_statuses]
    recorded = next((r.summary["baselines"] for r in done if r.summary.get("baselines")), None)
    rows: list[dict[str, Any]] = []
    primary = (recorded or {}).get("primary")
    for split in ("val", "test"):
        prefix = "" if split == "test" else "val_"
        for arm in arms:
            runs = [r for r in done if r.arm == arm and r.num(f"{prefix}rel_l2_error") is not None]
            if not runs:
                continue
            vals = [r.num(f"{prefix}rel_l2_error") for r in runs]
            n = runs[0].summary.get(f"{prefix}eval_samples")
            base = {"split": split, "predictor": arm, "kind": "arm", "seeds": len(runs)}
            rows.append({**base, "stratum": "all", "n": n, "value": float(np.mean(vals))})
            per: dict[tuple[str, str], list[float]] = {}
            sizes: dict[tuple[str, str], Any] = {}
            for r in runs:
                strata = ((r.summary.get("accuracy_strata") or {}).get(split)) or {}
                metric = r.summary.get("rel_l2_metric") or primary
                for row in _strata_rows(split, arm, "arm", strata, metric):
                    if row["value"] is not None:
                        per.setdefault((row["stratum"], arm), []).append(row["value"])
                        sizes[(row["stratum"], arm)] = row["n"]
            for (stratum, _), v in per.items():
                rows.append(
                    {**base, "stratum": stratum, "n": sizes[(stratum, arm)], "value": float(np.mean(v))}
                )
        for name, sc in (((recorded or {}).get("splits") or {}).get(split) or {}).get("scores", {}).items():
            kind = "learned" if sc.get("learned") else "non-learned"
            n = (recorded.get("n_samples") or {}).get(split) if recorded else None
            rows.append(
                {
                    "split": split,
                    "stratum": "all",
                    "n": n,
                    "predictor": name,
                    "kind": kind,
                    "value": sc["metrics"].get(primary),
                    "seeds": None,
                }
            )
            for row in _strata_rows(split, name, kind, sc.get("strata") or {}, "value"):
                rows.append({**row, "seeds": None})
    cols = ["split", "stratum", "n", "predictor", "kind", "value", "seeds"]
    return pd.DataFrame(rows, columns=cols)


def baselines_wide(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """One split as a table to read: a row per predictor, a column per stratum ("all" first)."""
    sub = df[df["split"] == split]
    if sub.empty:
        return pd.DataFrame()
    order = ["all", *sorted(s for s in sub["stratum"].unique() if s != "all")]
    wide = sub.pivot_table(index=["kind", "predictor"], columns="stratum", values="value", aggfunc="first")
    wide = wide.reindex(columns=[c for c in order if c in wide.columns]).reset_index()
    rank = {"arm": 0, "non-learned": 1, "learned": 2}
    wide = wide.sort_values(["kind", "predictor"], key=lambda s: s.map(rank) if s.name == "kind" else s)
    wide.columns.name = None
    return wide.reset_index(drop=True)


def nll_frame(sweep: Sweep, cfg: Any, arms: list[str]) -> pd.DataFrame:
    """The decoding-free co-endpoint: per arm and split, the mean over completed seeds of the
    teacher-forced NLL of the target tokens (nats/token), its seed SD, and the primary rel-L2 beside it."""
    rows = []
    for arm in arms:
        runs = [r for r in sweep.runs if r.arm == arm and r.status in cfg.quality_statuses]
        for split, prefix in (("val", "val_"), ("test", "")):
            nll = [r.num(f"{prefix}target_nll") for r in runs]
            nll = [x for x in nll if x is not None]
            if not nll:
                continue
            err = [x for x in (r.num(f"{prefix}rel_l2_error") for r in runs) if x is not None]
            rows.append(
                {
                    "arm": arm,
                    "split": split,
                    "seeds": len(nll),
                    "target_nll": float(np.mean(nll)),
                    "target_nll_sd": float(np.std(nll, ddof=1)) if len(nll) > 1 else None,
                    "rel_l2_error": float(np.mean(err)) if err else None,
                }
            )
    return pd.DataFrame(
        rows, columns=["arm", "split", "seeds", "target_nll", "target_nll_sd", "rel_l2_error"]
    )


def report_sections(
    controls: Controls, baselines: pd.DataFrame, nll: pd.DataFrame, assay: tuple[bool | None, str], cfg: Any
) -> list[tuple[str, str, pd.DataFrame]]:
    """The report's accuracy-endpoint sections as (heading, note, table), shared by the HTML and
    Markdown reports: the controls, every arm against the baselines per split (stratified by
    tissue, behaviour and scenario), and the target-NLL co-endpoint."""
    bad = [c for c in controls.rows if c.state in MISBEHAVES]
    note = (
        "Each control against "
        + label(cfg, cfg.reference_arm)
        + " by the criteria's paired bounds on the primary accuracy definition. "
        + (
            "Misbehaving: "
            + "; ".join(f"{c.arm} {c.state}" for c in bad)
            + ": the accuracy criteria are not evaluable."
            if bad
            else "No control misbehaves."
            if controls.rows
            else "No controls configured."
        )
        + f" Assay sensitivity: {assay[1]}"
    )
    out = [("Accuracy endpoint: controls", note, controls.frame())]
    metric = "the primary definition"
    for split in ("test", "val"):
        wide = baselines_wide(baselines, split) if not baselines.empty else pd.DataFrame()
        out.append(
            (
                f"Accuracy vs baselines: {split}",
                f"Relative L2 error ({metric}; arms: mean over completed seeds) of every arm and every "
                "baseline on the same samples, whole split ('all') and per stratum; non-learned "
                "baselines read no numeric input, the best of them is the assay-sensitivity bar. "
                "Long form: tables/accuracy_vs_baselines.csv.",
                wide,
            )
        )
    out.append(
        (
            "Accuracy co-endpoint: teacher-forced NLL of the target tokens",
            "Decoding-free: mean negative log-likelihood (nats per target token) of the held-out "
            "stress tokens given the prompt, mean and SD over completed seeds; primary rel-L2 beside it.",
            nll,
        )
    )
    return out
