"""The pre-registered seed-adding rule: how many seeds a sweep adds after a look, or stop.

The rule (``criteria.sequential`` in conf/criteria/*.yaml) is fixed before any run: looks at
cumulative seed counts ``looks`` (per grid cell), each spending ``alpha_shares[k]`` of the one-sided
alpha (Bonferroni over looks, so looking and adding seeds cannot raise the false-GO rate above alpha),
and the criterion metrics ``endpoints`` that may ask for more seeds. The analysis decides every
criterion at the look's level (:func:`analysis.criteria.look_confidence`), so the verdict and this
function agree on what "decided" means.

Interface for the sweep (a pure function of the summaries so far; it reads and writes no file)::

    from analysis.sequential import load_rule_config, next_seeds
    cfg = load_rule_config()                    # conf/analysis.yaml + conf/criteria (once per sweep)
    step = next_seeds(summaries, cfg)            # summaries: list of summary.json dicts, all arms
    step.add      # int: seeds to add to every cell (0 = stop)
    step.reason   # one line for sweep.json and the log
    step.to_dict()  # record it in sweep.json["sequential"] (a list of these, one per look): the
                    # report's "Seeds" section prints what the sweep recorded there
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.load import Run, Sweep


@dataclass
class SeedStep:
    look: int  # 1-based look this decision was taken at
    seeds: int  # seeds per cell at this look (the fewest over cells)
    add: int  # seeds to add to every cell; 0: stop
    stop: bool
    rule: str
    reason: str
    confidence: float
    undecided: list[str] = field(default_factory=list)  # criterion ids that asked for seeds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_rule_config(overrides: list[str] | None = None) -> Any:
    """The composed, validated analysis config (its ``criteria.sequential`` is the rule)."""
    from analysis.config import register, validate  # Hydra's ConfigStore: only when composing
    from common.config import compose

    register()
    cfg = compose("analysis", list(overrides or []))
    validate(cfg)
    return cfg


def sweep_of(summaries: list[dict[str, Any]], sweep_dir: str | Path = ".") -> Sweep:
    """An in-memory sweep of summary dicts (no metrics, no plan: enough for the endpoint criteria)."""
    runs = [Run(run_dir=Path(sweep_dir) / str(s.get("run_id")), summary=s, metrics=[]) for s in summaries]
    return Sweep(sweep_dir=Path(sweep_dir), runs=runs)


def next_seeds(summaries: list[dict[str, Any]], cfg: Any) -> SeedStep:
    """Seeds to add after the current look, by the pre-registered rule, or stop (``add == 0``)."""
    from analysis.criteria import evaluate, sweep_look  # the decision layer (scipy), imported on use

    seq = cfg.criteria.sequential
    sweep = sweep_of(summaries)
    look, conf, seeds = sweep_look(sweep, cfg)
    base = {"look": look, "seeds": seeds, "rule": seq.name, "confidence": conf}
    results = [r for r in evaluate(sweep, cfg, cfg.treatment_arm) if r.outcome != "not_applicable"]
    nogo = [r.id for r in results if r.kind == "failure" and r.outcome == "fail"]
    if nogo:
        return SeedStep(
            add=0, stop=True, reason=f"stop: failure criteria {', '.join(nogo)} hold (NO-GO)", **base
        )
    watched = [r for r in results if r.metric in seq.endpoints]
    asking = [r for r in watched if r.outcome == "undecided"]
    if not asking:
        states = ", ".join(f"{r.id} {r.outcome}" for r in watched) or f"no criterion on {seq.endpoints}"
        return SeedStep(add=0, stop=True, reason=f"stop: nothing undecided at look {look} ({states})", **base)
    ids = [r.id for r in asking]
    if look >= len(seq.looks) or seeds >= seq.looks[-1]:
        return SeedStep(
            add=0,
            stop=True,
            undecided=ids,
            reason=f"stop: last look ({seq.looks[-1]} seeds) reached; {', '.join(ids)} undecided",
            **base,
        )
    target = seq.looks[look]  # the next look's cumulative seed count (looks are 1-based here)
    needs = [r.pairs_needed for r in asking]
    if seq.futility_stop and (any(n is None for n in needs) or max(n for n in needs if n) > seq.looks[-1]):
        shown = ", ".join(f"{r.id}: {r.pairs_needed or 'n/a'}" for r in asking)
        return SeedStep(
            add=0,
            stop=True,
            undecided=ids,
            reason=f"stop for futility: the observed spread needs more than {seq.looks[-1]} pairs ({shown})",
            **base,
        )
    return SeedStep(
        add=target - seeds,
        stop=False,
        undecided=ids,
        reason=f"add {target - seeds} seeds per cell (to look {look + 1} at {target}): {', '.join(ids)} undecided",
        **base,
    )
