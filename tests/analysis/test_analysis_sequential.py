"""The pre-registered seed-adding rule: a pure function of the summaries so far."""

from __future__ import annotations

from dataclasses import replace

from analysis.sequential import next_seeds
from analysis.synthetic import DEFAULT_EFFECTS, _run, go_spec


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
