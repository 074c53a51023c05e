"""The pre-registered seed-adding rule: a pure function of the summaries so far."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from analysis.__main__ import main as analysis_main
from analysis.sequential import next_seeds
from analysis.synthetic import DEFAULT_EFFECTS, _run, go_spec, write_sweep
from common.atomic import read_json, write_json


def summaries(seeds: int, sd: float, factor: float = 1.0, noise_seed: int = 0) -> list[dict]:
    eff = dict(DEFAULT_EFFECTS)
    eff["flashoptim"] = replace(eff["flashoptim"], rel_l2_factor=factor)
    spec = go_spec(
        seeds=tuple(range(seeds)), effects=eff, noise_sd={"rel_l2_error": sd}, noise_seed=noise_seed
    )
    grid = {"model": "7b", "seq_len": 2048, "global_batch": 32, "behaviour": "hyperelastic"}
    return [_run(spec, arm, e, s, grid)[0] for arm, e in eff.items() for s in spec.seeds]


def test_undecided_accuracy_adds_seeds_up_to_the_next_look(cfg) -> None:
    step = next_seeds(summaries(3, 0.02, noise_seed=2), cfg)
    assert (step.look, step.seeds) == (1, 3)
    assert step.add == 7 and not step.stop and "S3" in step.undecided  # looks [3, 10]
    assert step.confidence == 1 - 0.025 * 0.2  # look 1 spends a fifth of the one-sided alpha


def test_decided_accuracy_stops(cfg) -> None:
    step = next_seeds(summaries(3, 0.0), cfg)
    assert step.stop and step.add == 0 and "nothing undecided" in step.reason and "S3 pass" in step.reason


def test_last_look_stops_whatever_the_state(cfg) -> None:
    step = next_seeds(summaries(10, 0.15, factor=1.05), cfg)
    assert step.look == 2 and step.stop and step.add == 0 and "last look" in step.reason


def test_hopeless_spread_stops_for_futility(cfg) -> None:
    step = next_seeds(summaries(3, 0.4, factor=1.04, noise_seed=5), cfg)
    assert step.stop and step.add == 0 and "futility" in step.reason


def test_a_failure_stops_at_once(cfg) -> None:
    step = next_seeds(summaries(3, 0.0, factor=1.5), cfg)
    assert step.stop and "NO-GO" in step.reason


# ------------------------------------------------- what the sweep's gate F recorded, in the verdict
def _record(sweep_dir: Path, rule: dict) -> None:
    doc = read_json(sweep_dir / "sweep.json")
    doc["sequential"] = {
        "rule": rule,
        "looks": [
            {"model": "7b", "look": 1, "seeds": 3, "add": 2, "stop": False, "reason": "add 2 seeds per cell"},
            {"model": "7b", "look": 2, "seeds": 5, "add": 0, "stop": True, "reason": "stop: last look"},
        ],
        "seeds_added": [{"model": "7b", "look": 1, "seeds": [3, 4]}],
    }
    write_json(sweep_dir / "sweep.json", doc)


RULE_3_5 = {
    "name": "two_stage",
    "looks": [3, 5],
    "alpha_shares": [0.2, 0.8],
    "endpoints": ["rel_l2_error_change"],
    "futility_stop": True,
    "confidence": 0.975,
}
OVERRIDES = ["criteria.sequential.looks=[3,5]", "assay_sensitivity.required=false"]


def test_the_report_says_which_rule_ran_and_what_it_added(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec(seeds=tuple(range(5))))
    _record(sweep_dir, RULE_3_5)
    assert analysis_main([str(sweep_dir), *OVERRIDES]) == 0
    verdict = read_json(sweep_dir / "report" / "verdict.json")
    assert verdict["verdict"] == "GO", verdict["reasons"]
    assert verdict["sequential"]["look"] == 2 and verdict["sequential"]["sweep_record"]["seeds_added"]
    md = (sweep_dir / "report" / "report.md").read_text()
    assert "the sweep ran rule 'two_stage' (looks [3, 5]" in md and "seeds [3, 4] after look 1" in md


def test_seeds_added_by_another_rule_block_go(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path / "s", go_spec(seeds=tuple(range(5))))
    _record(sweep_dir, {**RULE_3_5, "looks": [3, 10]})  # the sweep ran another rule than the analysis
    assert analysis_main([str(sweep_dir), *OVERRIDES]) == 0
    verdict = read_json(sweep_dir / "report" / "verdict.json")
    assert verdict["verdict"] == "INCONCLUSIVE"
    assert any("another seed-adding rule" in r and "looks: sweep [3, 10]" in r for r in verdict["reasons"])
