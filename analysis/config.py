"""The analysis configuration: structured schemas registered in Hydra's ConfigStore, and ``validate``.

``conf/analysis.yaml`` inherits :class:`AnalysisConfig` (``defaults: [analysis_schema, ...]``) and
``conf/criteria/protocol.yaml`` fills its ``criteria`` node, so an unknown key or a wrong type in
either file is rejected when the config is composed. Semantic checks (a criterion of unknown
kind, a metric this package cannot compute, a reference arm equal to the treatment arm) live in
:func:`validate`, which raises :class:`common.config.ConfigError` naming key, value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from common.config import ConfigError, require

# The metrics analysis/metrics.py knows how to compute; a criterion naming anything else is a config error.
KNOWN_METRICS = (
    "peak_mem_reduction",  # 1 - treatment/reference peak memory (fraction), pooled over pairs
    "min_peak_mem_reduction_by_model",  # the smallest per-model-size reduction (fraction)
    "model_sizes_meeting_reduction",  # how many model sizes reach params.min_reduction
    "peak_mem_paired_p",  # paired t-test p-value of the memory difference
    "rel_l2_error_change",  # treatment/reference relative L2 error - 1 (fraction; + is worse)
    "tokens_per_s_drop",  # 1 - treatment/reference tokens per second (fraction; + is slower)
    "final_loss_change",  # treatment/reference final training loss - 1 (fraction; + is worse)
    "diverged_seeds",  # the most seeds of one grid cell whose treatment run diverged (count)
    "state_artifact_runs",  # treatment runs whose optimizer state is not materialised / 8-bit (count)
)
COMPARATORS = (">=", ">", "<=", "<")
MEMORY_METRICS = ("peak_mem_allocated_bytes", "peak_mem_reserved_bytes", "peak_mem_nvml_process_bytes")
GATE_ENDPOINTS = ("diverged", "rel_l2_error", "tokens_per_s", "final_loss")
KINDS = ("success", "failure")
DESIGNS = ("mvt", "full")


@dataclass
class CriterionSpec:
    id: str = MISSING
    text: str = MISSING
    metric: str = MISSING
    threshold: float = MISSING
    # The criterion *holds* when `value <comparator> threshold`: for a success criterion holding
    # is a pass, for a failure criterion holding is a fail.
    comparator: str = MISSING
    kind: str = MISSING
    designs: list[str] = field(default_factory=lambda: ["mvt", "full"])
    uses_p_value: bool = False
    reference_arm: str | None = None  # defaults to AnalysisConfig.reference_arm
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SequentialConfig:
    """The pre-registered seed-adding rule (analysis/sequential.py): looks and the alpha each spends."""

    name: str = "fixed"
    looks: list[int] = field(default_factory=lambda: [3])  # cumulative seed pairs per cell at each look
    alpha_shares: list[float] = field(default_factory=lambda: [1.0])  # of the one-sided alpha; sum <= 1
    endpoints: list[str] = field(default_factory=lambda: ["rel_l2_error_change"])  # may ask for seeds
    futility_stop: bool = True  # stop adding when the pairs needed exceed the last look


@dataclass
class CriteriaConfig:
    name: str = MISSING
    entries: list[CriterionSpec] = field(default_factory=list)
    sequential: SequentialConfig = field(default_factory=SequentialConfig)


@dataclass
class BootstrapConfig:
    n_resamples: int = 2000
    seed: int = 0
    min_pairs: int = 10  # the BCa bootstrap replaces the t-interval only from this many pairs on


@dataclass
class DecisionConfig:
    confidence: float = 0.975  # one-sided level of each bound (two-sided interval 2c - 1)
    interval: str = "t"  # t: paired t on log ratios | bca: BCa bootstrap where n >= bootstrap.min_pairs
    multiplicity: str = "bonferroni"  # across grid cells, for claims about "some cell" | none
    power: float = 0.8  # of the "pairs needed" sentence
    pairs_needed_cap: int = 1000
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)


@dataclass
class AssayConfig:
    """GO needs the accuracy endpoint to have shown it can see a degradation (issue 14's check)."""

    required: bool = True
    baseline_key: str = "best_baseline_rel_l2_error"  # summary key of the best non-learned baseline
    factor: float = 2.0  # the reference arm must beat that baseline by this factor


@dataclass
class ControlsConfig:
    """The accuracy endpoint's controls (analysis/controls.py): arms the endpoint must flag as worse
    (positive) and arms it must find non-inferior (negative), each against ``reference_arm``."""

    positive: list[str] = field(default_factory=lambda: ["adamw_bf16", "adam8bit_bf16"])
    negative: list[str] = field(default_factory=lambda: ["adamw_replicate"])
    positive_margin: float = 0.0  # detected: the lower bound of the degradation exceeds this fraction
    criterion: str = "S3"  # the negative control must pass this criterion's margin (non-inferiority)
    required: bool = False  # true: a control not run or not shown also blocks GO (misbehaving ones always do)


@dataclass
class WandbConfig:
    mode: str = "disabled"  # disabled | offline | online
    project: str = "flashoptim-tissue"
    entity: str | None = None
    group: str | None = None  # W&B group of the summary run; null -> the sweep id (the runs' group)


@dataclass
class FiguresConfig:
    dpi: int = 110
    max_cells: int = 6  # loss/memory-over-steps panels; the rest are in tables/, said in the caption


@dataclass
class AnalysisConfig:
    output_dir: str | None = None  # null -> <sweep_dir>/report
    treatment_arm: str = "flashoptim"
    secondary_arms: list[str] = field(default_factory=lambda: ["flashoptim_gr"])
    reference_arm: str = "adamw"
    eightbit_arm: str = "adam8bit"
    arm_labels: dict[str, str] = field(default_factory=dict)  # display names; the arm id otherwise
    design: str = "auto"  # auto (sweep.json, else number of model sizes) | mvt | full
    inconclusive_scales: list[str] = field(default_factory=lambda: ["smoke"])
    memory_metrics: list[str] = field(
        default_factory=lambda: [
            "peak_mem_allocated_bytes",
            "peak_mem_reserved_bytes",
            "peak_mem_nvml_process_bytes",
        ]
    )
    memory_statuses: list[str] = field(default_factory=lambda: ["completed", "diverged", "aborted"])
    quality_statuses: list[str] = field(default_factory=lambda: ["completed"])
    gate_endpoints: dict[str, str] = field(
        default_factory=lambda: {"A": "diverged", "D": "rel_l2_error", "E": "tokens_per_s"}
    )
    memory_test_scale: str = "log"  # log: t-test on log bytes (ratio scale) | bytes
    alpha: float = 0.05
    min_pairs: int = 3  # a cell with fewer matched pairs cannot pass a paired criterion
    decide_on_holm: bool = False  # decide p-value criteria on Holm-adjusted (true) or raw p (false)
    zero_variance_is_significant: bool = True
    quantized_state_dtypes: list[str] = field(default_factory=lambda: ["uint8", "int8"])
    require_plan: bool = True  # no sweep.json: the planned runs are unknown, GO is blocked
    long_seq_len: int = 2048  # the report's "do savings disappear at sequence lengths > this?"
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    assay_sensitivity: AssayConfig = field(default_factory=AssayConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    criteria: CriteriaConfig = field(default_factory=CriteriaConfig)
    # The criteria this sweep answers (ids), when a study is split into sweeps that answer different
    # criteria (the pilot: accuracy on a small model, memory/throughput at 1B). null: all. The others
    # are not_evaluable here, naming this key, so that no one sweep alone can give GO.
    answers: list[str] | None = None


def register() -> None:
    ConfigStore.instance().store(name="analysis_schema", node=AnalysisConfig)


def validate(cfg: Any) -> None:
    """Semantic checks the schema cannot express; raises ConfigError on the first problem."""
    known = {f.name for f in fields(AnalysisConfig)}
    for key in cfg:  # `+key=value` adds a key Hydra does not check against the schema
        require(
            key in known,
            str(key),
            cfg.get(key),
            f"a key of the analysis config: one of {', '.join(sorted(known))}",
        )
    require(cfg.design in ("auto", *DESIGNS), "design", cfg.design, "auto, mvt or full")
    require(
        cfg.reference_arm != cfg.treatment_arm,
        "reference_arm",
        cfg.reference_arm,
        f"an arm other than the treatment arm {cfg.treatment_arm!r}",
    )
    require(
        cfg.memory_test_scale in ("log", "bytes"), "memory_test_scale", cfg.memory_test_scale, "log or bytes"
    )
    require(cfg.min_pairs >= 1, "min_pairs", cfg.min_pairs, "an integer >= 1")
    ids = [e.id for e in cfg.criteria.entries]
    if cfg.answers is not None:
        bad = [a for a in cfg.answers if a not in ids]
        require(
            not bad and len(cfg.answers) > 0,
            "answers",
            list(cfg.answers),
            f"null or criterion ids from {ids}",
        )
    require(
        cfg.controls.criterion in ids, "controls.criterion", cfg.controls.criterion, f"a criterion id: {ids}"
    )
    require(
        cfg.controls.positive_margin >= 0, "controls.positive_margin", cfg.controls.positive_margin, ">= 0"
    )
    both = set(cfg.controls.positive) & set(cfg.controls.negative)
    require(not both, "controls.negative", list(cfg.controls.negative), "arms not also positive controls")
    for arm in (*cfg.controls.positive, *cfg.controls.negative):
        require(
            arm not in (cfg.reference_arm, cfg.treatment_arm),
            "controls",
            arm,
            "arms other than the reference and treatment arms",
        )
    require(0 < cfg.alpha < 1, "alpha", cfg.alpha, "a number in (0, 1)")
    d = cfg.decision
    require(0.5 < d.confidence < 1, "decision.confidence", d.confidence, "a one-sided level in (0.5, 1)")
    require(d.interval in ("t", "bca"), "decision.interval", d.interval, "t or bca")
    require(
        d.multiplicity in ("bonferroni", "none"),
        "decision.multiplicity",
        d.multiplicity,
        "bonferroni or none",
    )
    require(0 < d.power < 1, "decision.power", d.power, "a number in (0, 1)")
    require(d.pairs_needed_cap >= 2, "decision.pairs_needed_cap", d.pairs_needed_cap, "an integer >= 2")
    require(
        d.bootstrap.n_resamples >= 100,
        "decision.bootstrap.n_resamples",
        d.bootstrap.n_resamples,
        "an integer >= 100",
    )
    require(
        d.bootstrap.min_pairs >= 10,
        "decision.bootstrap.min_pairs",
        d.bootstrap.min_pairs,
        "an integer >= 10 (the bootstrap is not trusted at fewer pairs)",
    )
    require(
        len(cfg.memory_metrics) > 0 and all(m in MEMORY_METRICS for m in cfg.memory_metrics),
        "memory_metrics",
        list(cfg.memory_metrics),
        "a non-empty list of " + ", ".join(MEMORY_METRICS),
    )
    for gate, endpoint in cfg.gate_endpoints.items():
        require(
            endpoint in GATE_ENDPOINTS,
            f"gate_endpoints.{gate}",
            endpoint,
            "one of " + ", ".join(GATE_ENDPOINTS),
        )
    require(
        cfg.assay_sensitivity.factor >= 1, "assay_sensitivity.factor", cfg.assay_sensitivity.factor, ">= 1"
    )
    seq = cfg.criteria.sequential
    require(
        len(seq.looks) >= 1 and all(b > a for a, b in zip(seq.looks, seq.looks[1:])) and seq.looks[0] >= 2,
        "criteria.sequential.looks",
        list(seq.looks),
        "increasing seed-pair counts, the first >= 2",
    )
    require(
        len(seq.alpha_shares) == len(seq.looks)
        and all(a > 0 for a in seq.alpha_shares)
        and sum(seq.alpha_shares) <= 1 + 1e-9,
        "criteria.sequential.alpha_shares",
        list(seq.alpha_shares),
        f"{len(seq.looks)} positive fractions (one per look) summing to at most 1",
    )
    require(
        all(e in KNOWN_METRICS for e in seq.endpoints),
        "criteria.sequential.endpoints",
        list(seq.endpoints),
        "criterion metrics, e.g. rel_l2_error_change",
    )
    require(
        cfg.wandb.mode in ("disabled", "offline", "online"),
        "wandb.mode",
        cfg.wandb.mode,
        "disabled, offline or online",
    )
    require(len(cfg.criteria.entries) > 0, "criteria.entries", "[]", "at least one criterion")
    seen: set[str] = set()
    for i, c in enumerate(cfg.criteria.entries):
        key = f"criteria.entries[{i}]"
        require(c.id not in seen, f"{key}.id", c.id, "an id not used by another criterion")
        seen.add(c.id)
        require(c.metric in KNOWN_METRICS, f"{key}.metric", c.metric, "one of " + ", ".join(KNOWN_METRICS))
        require(c.comparator in COMPARATORS, f"{key}.comparator", c.comparator, "one of >=, >, <=, <")
        require(c.kind in KINDS, f"{key}.kind", c.kind, "success or failure")
        require(
            len(c.designs) > 0 and all(d in DESIGNS for d in c.designs),
            f"{key}.designs",
            list(c.designs),
            "a non-empty list of mvt, full",
        )
        if c.metric == "peak_mem_paired_p":
            require(c.uses_p_value, f"{key}.uses_p_value", c.uses_p_value, "true for a p-value metric")
        if c.metric == "model_sizes_meeting_reduction":
            require(
                "min_reduction" in c.params,
                f"{key}.params",
                dict(c.params),
                "a dict with min_reduction (fraction)",
            )


__all__ = ["AnalysisConfig", "ConfigError", "CriterionSpec", "register", "validate"]
