"""Schema of conf/sweep.yaml (`python -m experiments.sweep`), registered in Hydra's ConfigStore.

The grid's axes map onto run-config overrides through ``sweep.axes`` (templates such as
``train.seq_len={}``); an axis set to ``null`` keeps what the scale chose (the MVT leaves model,
sequence length, batch and behaviour to the scale). Everything the sweep does is here: launcher
(``hydra/launcher=basic|joblib|submitit_local|submitit_slurm``), dry run, analysis, estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from common.config import CONF_DIR, require, require_name, require_results_root

DESIGNS = ("mvt", "full")
SCALES = ("smoke", "pilot", "pilot_accuracy", "protocol")


@dataclass
class GridConf:
    optimizer: list[str] = field(default_factory=lambda: ["adamw", "adam8bit", "flashoptim"])
    seed: list[int] = field(default_factory=lambda: [0, 1, 2])
    model: list[str] | None = None  # null: the scale's model
    seq_len: list[int] | None = None
    global_batch: list[int] | None = None
    behaviour: list[str] | None = None


@dataclass
class EstimateConf:
    """Dry-run estimates (module docstring of experiments.sweep.plan gives the formulas)."""

    bytes_per_param: dict[str, float] = field(
        default_factory=lambda: {
            "adamw": 16.0,
            "adam8bit": 10.0,
            "flashoptim": 7.0,
            # the accuracy endpoint's controls (conf/optimizer/: nominal_bytes_per_param)
            "adamw_bf16": 8.0,
            "adam8bit_bf16": 6.0,
            "adamw_replicate": 16.0,
            "adamw_foreach": 16.0,
        }
    )
    activation_bytes_per_token_hidden_layer: float = 34.0
    # With activation checkpointing only each layer's bf16 input is kept (2 bytes per token·hidden·layer)
    # plus one layer's full activations during its recomputation.
    checkpointed_bytes_per_token_hidden_layer: float = 2.0
    logits_bytes_per_token_vocab: float = 8.0
    overhead_gib: float = 1.5
    peak_tflops: float = 989.0
    mfu: float = 0.35


WAVES = ("phased", "together")


@dataclass
class SweepSection:
    design: str = MISSING  # mvt | full
    scale: str = "smoke"  # passed to every run as scale=<scale>
    protocol: str = "flashoptim-tissue-v1"
    id: str | None = None  # null: content id of design, scale, grid, run overrides and gates
    grid: GridConf = field(default_factory=GridConf)
    # Grid axis -> run-config override; "{}" is the value. global_batch is reached by gradient
    # accumulation: "{accum}" = global_batch / the run's micro-batch (which must divide it).
    axes: dict[str, str] = field(
        default_factory=lambda: {
            "model": "model={}",
            "seq_len": "train.max_seq_len={}",
            "global_batch": "train.grad_accum_steps={accum}",
            "behaviour": "data.behaviours=[{}]",
        }
    )
    # Where the run config keeps what the sweep reads (labels, progress, dry-run estimates).
    run_keys: dict[str, str] = field(
        default_factory=lambda: {
            "seq_len": "train.max_seq_len",
            "micro_batch": "train.micro_batch_size",
            "grad_accum": "train.grad_accum_steps",
            "steps": "train.max_steps",
            "behaviour": "data.behaviours",
            "vocab_fallback": "train.text.tokenizer_vocab_size",
        }
    )
    run_overrides: list[str] = field(default_factory=list)
    run_config: str = "run"
    run_config_dir: str | None = None  # null: conf/
    run_module: str = "experiments.run"
    ensure_data: bool = True
    datagen_module: str = "datagen"
    analyse: bool = True
    analysis_module: str = "analysis"
    # Overrides of the analysis config (conf/analysis.yaml), used both by gate F's seed-adding rule
    # (criteria.sequential, composed once before any run) and by the analysis the sweep launches.
    analysis_overrides: list[str] = field(default_factory=list)
    dry_run: bool = False
    device_memory_gib: float | None = None  # null: the visible GPU's, else 80
    gpus: list[int] | None = None  # local GPUs to share out, one run per GPU (joblib)
    jobs_per_launch: int | None = None  # null: 1 for the basic launcher, a whole wave otherwise
    # Wall seconds from the sweep's start by which its launches should have ended (null: none). A
    # launch is not started when the previous launch's duration would take it past; the runs not
    # started stay pending, the sweep ends `incomplete`, and the same command later continues it (a
    # sweep split over time-limited slots, e.g. device calls of 10 minutes).
    launch_deadline_s: float | None = None
    # phased: a model's baseline runs, then its treatment runs (the in-run gates A/B/D/E compare a
    # treatment with its finished reference). together: one wave per model, every arm at once (for runs
    # that share one device, e.g. the accuracy pilot); needs the in-run gates off, since a reference
    # still running cannot serve as one.
    waves: str = "phased"
    # The basic (sequential, local) launcher forks each run that needs no GPU from one server process
    # that imported these modules once (experiments/sweep/forkserver.py): start-up is most of a smoke
    # run. An empty list: every run starts its own interpreter (as the other launchers always do).
    preload_modules: list[str] = field(
        default_factory=lambda: [
            "experiments.run.execute",
            "experiments.run.torchrun",
            "experiments.run.models",
            "flashoptim",
            "bitsandbytes",
            "wandb",
        ]
    )
    progress_interval_s: float = 5.0
    launch_run: str = ""  # set by the launcher for each job (the run_id it runs); not for users
    estimate: EstimateConf = field(default_factory=EstimateConf)


@dataclass
class SweepConf:
    # `scale=<name>` on the command line is rewritten to `sweep.scale=<name>` by experiments.sweep:
    # conf/scale/ is a config group (the run's), so Hydra would read `scale=` as a group override.
    scale: str = "${sweep.scale}"
    results_root: str = "results"
    allow_outside_results_root: bool = False  # results_root may lie outside the working tree
    sweep: SweepSection = field(default_factory=SweepSection)


def register_schema() -> None:
    ConfigStore.instance().store(name="sweep_schema", node=SweepConf)


register_schema()


def validate(cfg: Any) -> None:
    s = cfg.sweep
    require_results_root(cfg.results_root, bool(cfg.allow_outside_results_root))
    if s.id is not None:
        require_name("sweep.id", s.id)
    if s.launch_run:
        require_name("sweep.launch_run", s.launch_run)
    require(cfg.scale in SCALES, "scale", cfg.scale, f"one of {', '.join(SCALES)}")
    require(s.design in DESIGNS, "sweep.design", s.design, f"one of {', '.join(DESIGNS)}")
    require(
        len(s.grid.optimizer) > 0, "sweep.grid.optimizer", list(s.grid.optimizer), "a non-empty list of arms"
    )
    require(
        len(set(s.grid.seed)) == len(s.grid.seed) and len(s.grid.seed) > 0,
        "sweep.grid.seed",
        list(s.grid.seed),
        "a non-empty list of distinct seeds",
    )
    for seed in s.grid.seed:
        require(seed >= 0, "sweep.grid.seed", seed, "integers >= 0")
    arms_dir = Path(s.run_config_dir or CONF_DIR) / "optimizer"
    if arms_dir.is_dir():  # a run config with an optimizer group: the arms are its options
        arms = sorted(p.stem for p in arms_dir.glob("*.yaml"))
        for arm in s.grid.optimizer:
            require(arm in arms, "sweep.grid.optimizer", arm, "one of " + ", ".join(arms))
    for axis in ("model", "seq_len", "global_batch", "behaviour"):
        v = s.grid[axis]
        require(
            v is None or len(v) > 0, f"sweep.grid.{axis}", v, "null (the scale's choice) or a non-empty list"
        )
        require(
            axis in s.axes, "sweep.axes", list(s.axes), f"a template for every grid axis (missing {axis})"
        )
    for axis in ("seq_len", "global_batch"):
        bad = [x for x in (s.grid[axis] or []) if x <= 0]
        require(not bad, f"sweep.grid.{axis}", bad, "positive integers")
    missing = [a for a in s.grid.optimizer if a not in s.estimate.bytes_per_param]
    require(
        not missing,
        "sweep.estimate.bytes_per_param",
        missing,
        "an entry for every arm in sweep.grid.optimizer",
    )
    require(
        s.device_memory_gib is None or s.device_memory_gib > 0,
        "sweep.device_memory_gib",
        s.device_memory_gib,
        "null or > 0",
    )
    require(
        s.jobs_per_launch is None or s.jobs_per_launch >= 1,
        "sweep.jobs_per_launch",
        s.jobs_per_launch,
        "null or >= 1",
    )
    require(s.progress_interval_s > 0, "sweep.progress_interval_s", s.progress_interval_s, "> 0")
    require(
        s.launch_deadline_s is None or s.launch_deadline_s > 0,
        "sweep.launch_deadline_s",
        s.launch_deadline_s,
        "null or seconds > 0",
    )
    require(s.waves in WAVES, "sweep.waves", s.waves, f"one of {', '.join(WAVES)}")
    require(
        s.id is None or (s.id and "/" not in s.id and not s.id.startswith(".")),
        "sweep.id",
        s.id,
        "null or a directory name (no '/', not starting with '.')",
    )
