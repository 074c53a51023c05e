"""Schema of conf/gates/*.yaml (the protocol's abort checkpoints), registered as ``gates/gates_schema``.

Registered on import; ``experiments.gates`` (which the run config's schema module imports) imports
this module, so composing ``conf/run.yaml`` finds the schema. What each gate means:
``experiments.gates``' docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from common.config import require

MEMORY_METRICS = ("peak_mem_allocated_bytes", "peak_mem_reserved_bytes")
# Gate E's clocks: (metrics row key, summary key) of the throughput each compares.
CLOCKS = {"wall": ("tokens_per_s", "tokens_per_s"), "process_cpu": ("tokens_per_cpu_s", "tokens_per_cpu_s")}


@dataclass
class LossGateConf:
    """A: abort a treatment run whose loss at ``step`` exceeds ``max_loss_ratio`` x the reference's."""

    enabled: bool = True
    step: int = 50
    max_loss_ratio: float = 3.0


@dataclass
class MemoryGateConf:
    """B: abort when the treatment's peak memory at ``step`` is within ``min_reduction`` of the reference."""

    enabled: bool = True
    step: int = 100
    min_reduction: float = 0.05
    abort_sweep: bool = True


@dataclass
class ScaleGateConf:
    """C: when the ``model`` memory reduction is under ``min_reduction``, start no larger model."""

    enabled: bool = True
    model: str = "llama-1b"
    min_reduction: float = 0.08
    metric: str = "peak_mem_allocated_bytes"


@dataclass
class AccuracyGateConf:
    """D: flag failure when val rel-L2 error is worse than the reference's by more than ``max_rel_worsening``."""

    enabled: bool = True
    max_rel_worsening: float = 0.15
    eval_samples: int = 500


@dataclass
class ThroughputGateConf:
    """E: abort when median tokens/s after ``warmup_steps`` is under ``min_ratio`` x the reference's,
    decided in the run at ``step`` (conf/gates ties it to B's step; the last step of a shorter run)."""

    enabled: bool = True
    step: int = 100
    warmup_steps: int = 10
    min_ratio: float = 0.5
    clock: str = "wall"  # "wall": tokens/s; "process_cpu": tokens per CPU-second (CLOCKS)


@dataclass
class PowerGateConf:
    """F: after each model's runs the sweep applies the pre-registered seed-adding rule
    (``criteria.sequential`` of the analysis config, :func:`analysis.sequential.next_seeds`): while
    the accuracy criterion is undecided it adds seeds up to the rule's next look. The rule's looks,
    alpha split and cap live there (one home), not here."""

    enabled: bool = True


@dataclass
class GatesConf:
    reference_arm: str = "adamw"
    treatment_arms: list[str] = field(default_factory=lambda: ["flashoptim"])
    A: LossGateConf = field(default_factory=LossGateConf)
    B: MemoryGateConf = field(default_factory=MemoryGateConf)
    C: ScaleGateConf = field(default_factory=ScaleGateConf)
    D: AccuracyGateConf = field(default_factory=AccuracyGateConf)
    E: ThroughputGateConf = field(default_factory=ThroughputGateConf)
    F: PowerGateConf = field(default_factory=PowerGateConf)


def register_schema() -> None:
    """Register ``gates/gates_schema`` (conf/gates/*.yaml inherit it). Idempotent; done on import."""
    ConfigStore.instance().store(group="gates", name="gates_schema", node=GatesConf)


register_schema()


def validate(gates_cfg: Any, prefix: str = "gates") -> None:
    """Semantic checks the schema cannot express; raises common.config.ConfigError."""
    require(
        gates_cfg.reference_arm not in gates_cfg.treatment_arms,
        f"{prefix}.treatment_arms",
        list(gates_cfg.treatment_arms),
        f"arms other than the reference arm {gates_cfg.reference_arm!r}",
    )
    for name in ("A", "B", "E"):
        require(gates_cfg[name].step >= 1, f"{prefix}.{name}.step", gates_cfg[name].step, "an integer >= 1")
    require(gates_cfg.A.max_loss_ratio > 0, f"{prefix}.A.max_loss_ratio", gates_cfg.A.max_loss_ratio, "> 0")
    for key in ("B.min_reduction", "C.min_reduction"):
        g, k = key.split(".")
        v = gates_cfg[g][k]
        require(-1 < v < 1, f"{prefix}.{key}", v, "a fraction in (-1, 1)")
    require(
        gates_cfg.D.max_rel_worsening >= 0,
        f"{prefix}.D.max_rel_worsening",
        gates_cfg.D.max_rel_worsening,
        ">= 0",
    )
    # min_ratio > 1 (the treatment must be faster than the reference) is legal: tests use it to fire E.
    require(gates_cfg.E.min_ratio > 0, f"{prefix}.E.min_ratio", gates_cfg.E.min_ratio, "a ratio > 0")
    # E.step <= E.warmup_steps is allowed (E.step follows B.step, which tests and scales shorten):
    # the decision is then not_evaluable, saying no step after warm-up was logged.
    require(gates_cfg.E.clock in CLOCKS, f"{prefix}.E.clock", gates_cfg.E.clock, f"one of {list(CLOCKS)}")
    require(gates_cfg.E.warmup_steps >= 0, f"{prefix}.E.warmup_steps", gates_cfg.E.warmup_steps, ">= 0")
    require(
        gates_cfg.C.metric in MEMORY_METRICS,
        f"{prefix}.C.metric",
        gates_cfg.C.metric,
        f"one of {list(MEMORY_METRICS)}",
    )
