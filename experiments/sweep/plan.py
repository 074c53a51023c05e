"""Plan a sweep: expand the grid into runs, compose each run's config, order them, predict their cost.

Order (what the gates need): models by parameter count (1B before 7B before 13B, so gate C can stop
the larger ones); within a model, every baseline run (non-treatment arms, reference arm first) before
any treatment run, so that in-run gates A, B, D, E find their reference finished. A model's runs form
two *waves* (baselines, treatments); a parallel launcher runs one wave at a time. With
``sweep.waves=together`` (runs sharing one device, in-run gates off) a model's runs are one wave.

Parameter counts come from the Llama shapes in the run config (no model is built):

    N = V·h·(1 + [untied]) + L·(2·h² + 2·h·kv·d + 3·h·i + 2·h) + h,   d = h / heads, kv = kv_heads

Predicted peak memory (dry run) = bytes/param of the arm · N + activations + logits + overhead,

    activations = k_act · b · s · h · L                 (no activation checkpointing)
                = (k_ckpt · L + k_act) · b · s · h      (checkpointing: layer inputs + one layer)
    logits      = k_logits · b · s · V                                             (bytes)

with b the micro-batch, s the sequence length, and k_act, k_ckpt, k_logits, overhead from
``sweep.estimate`` (k_act ≈ 34 bytes per token·hidden·layer in bf16 without recomputation,
Korthikanti et al. 2022; k_ckpt = 2, the bf16 layer input).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from common.config import CONF_DIR, ConfigError, load, strip_hydra, translate_hydra_error
from datagen.dataset import dataset_dir
from experiments import config as run_config
from experiments import identity
from experiments.rundir import read_summary

GIB = 1024**3


@dataclass
class PlannedRun:
    index: int
    arm: str
    seed: int
    point: dict[str, Any]  # the grid axes other than optimizer and seed (model, seq_len, ...)
    overrides: list[str]  # run-config overrides, as passed to `python -m experiments.run`
    run_id: str
    run_dir: Path
    model: str
    n_params: int
    setting: str  # "model=... seq_len=..." label of the point, shared by its arms and seeds
    phase: str  # "baseline" | "treatment"
    data_name: str
    data_overrides: list[str]
    dataset_dir: Path | None
    shape: dict[str, Any] = field(default_factory=dict)  # seq_len, micro/global batch, steps, vocab_size
    cfg: Any = field(repr=False, default=None)  # the composed run config (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "arm": self.arm,
            "seed": self.seed,
            "model": self.model,
            "n_params": self.n_params,
            "point": self.point,
            "setting": self.setting,
            "phase": self.phase,
            "shape": self.shape,
            "overrides": self.overrides,
            "run_dir": str(self.run_dir),
        }


# --------------------------------------------------------------------------------- composition
def compose_unresolved(
    config_name: str, overrides: Sequence[str], config_dir: Path | str
) -> tuple[Any, dict[str, str]]:
    """The run config as Hydra composes it (no hydra node, interpolations kept) and its group choices."""
    cfg = load(config_name, overrides, config_dir)
    choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))  # type: ignore[arg-type]
    return strip_hydra(cfg), choices


def resolve_variants(
    cfg: Any, variants: Sequence[dict[str, Any]], overrides: Sequence[str] = ()
) -> list[Any]:
    """One resolved copy of ``cfg`` per variant (dotted key -> plain value set before resolving).

    Composing is the slow part of planning (0.3-0.8 s each); the values varied this way (the
    top-level ``seed``, the accumulation steps that reach a global batch) are plain values that no
    group file sets, so each copy equals composing with ``key=value`` on the command line
    (tests/experiments/test_sweep_plan.py checks the run ids).
    """
    out = []
    for variant in variants:
        c = copy.deepcopy(cfg)
        try:
            for key, value in variant.items():
                OmegaConf.update(c, key, value, merge=False)
            OmegaConf.resolve(c)
            OmegaConf.to_container(c, throw_on_missing=True)
        except Exception as exc:
            raise translate_hydra_error(exc, [*overrides, *(f"{k}={v}" for k, v in variant.items())]) from exc
        out.append(c)
    return out


def compose_run(
    config_name: str, overrides: Sequence[str], config_dir: Path | str
) -> tuple[Any, dict[str, str]]:
    """The resolved run config (no hydra node, as ``experiments.run`` sees it) and its group choices."""
    cfg, choices = compose_unresolved(config_name, overrides, config_dir)
    return resolve_variants(cfg, [{}], overrides)[0], choices


# --------------------------------------------------------------------------------- model size
def _get(node: Any, dotted: str, default: Any = None) -> Any:
    v = OmegaConf.select(node, dotted, default=default) if OmegaConf.is_config(node) else default
    return default if v is None else v


def llama_param_count(model_cfg: Any, vocab_size: int | None = None) -> int:
    """Parameters of a Llama decoder from its shapes (formula in the module docstring).

    ``vocab_size`` stands in when the preset leaves it null (the tiny model takes the tokenizer's).
    """
    h = int(_get(model_cfg, "hidden_size"))
    i = int(_get(model_cfg, "intermediate_size"))
    n_layers = int(_get(model_cfg, "num_hidden_layers"))
    heads = int(_get(model_cfg, "num_attention_heads"))
    kv = int(_get(model_cfg, "num_key_value_heads", heads))
    vocab = int(_get(model_cfg, "vocab_size", vocab_size))
    tied = bool(_get(model_cfg, "tie_word_embeddings", False))
    d = int(_get(model_cfg, "head_dim", h // heads))
    per_layer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i + 2 * h
    return vocab * h * (1 if tied else 2) + n_layers * per_layer + h


# ---------------------------------------------------------------------------------- expansion
def _axis_values(grid: Any, axis: str) -> list[Any]:
    v = grid[axis]
    return [None] if v is None else list(v)


def _select(cfg: Any, keys: Any, name: str, default: Any = None) -> Any:
    key = keys.get(name)
    v = OmegaConf.select(cfg, key, default=None) if key else None
    return default if v is None else v


def run_shape(cfg: Any, keys: Any) -> dict[str, Any]:
    """The numbers the sweep reads from a run config: tokens per step, steps, vocabulary, behaviours."""
    micro = int(_select(cfg, keys, "micro_batch", 1))
    accum = int(_select(cfg, keys, "grad_accum", 1))
    behaviours = _select(cfg, keys, "behaviour", None)
    if OmegaConf.is_config(behaviours):
        behaviours = "+".join(map(str, behaviours))
    vocab = _get(cfg.model, "vocab_size") or _select(cfg, keys, "vocab_fallback", None)
    steps = _select(cfg, keys, "steps", None)
    return {
        "seq_len": int(_select(cfg, keys, "seq_len", 0)),
        "micro_batch": micro,
        "grad_accum": accum,
        "global_batch": micro * accum,
        "steps": None if steps is None else int(steps),
        "vocab_size": None if vocab is None else int(vocab),
        "behaviour": behaviours,
    }


def _accum_axes(axes: Any) -> set[str]:
    return {a for a in axes if "{accum}" in str(axes[a])}


def _point_overrides(axes: Any, point: dict[str, Any], micro_batch: int | None) -> list[str]:
    out = []
    for axis, value in point.items():
        if value is None:
            continue
        template = str(axes[axis])
        accum = None
        if "{accum}" in template:
            if micro_batch is None or value % micro_batch:
                raise ConfigError(
                    f"sweep.grid.{axis}",
                    value,
                    f"a multiple of the run's micro-batch ({micro_batch}), reached by accumulation",
                )
            accum = value // micro_batch
        out.append(template.format(value, accum=accum))
    return out


def _as_variant(override: str) -> tuple[str, Any]:
    """``train.grad_accum_steps=8`` -> (key, 8): an accumulation override set on a composed copy."""
    key, _, value = override.partition("=")
    return key, int(value) if value.lstrip("-").isdigit() else value


def expand(
    sweep_cfg: Any,
    scale: str,
    sweep_id: str,
    seeds: Iterable[int] | None = None,
    point: dict[str, Any] | None = None,
    results_root: str = "results",
) -> list[PlannedRun]:
    """Every run of the grid (``seeds`` / one grid ``point`` restrict it), composed and ordered."""
    s = sweep_cfg
    run_config.register()
    config_dir = s.run_config_dir or CONF_DIR
    grid = s.grid
    axes = list(s.axes)
    seed_list = list(grid.seed) if seeds is None else list(seeds)
    reference_arm, treatments = "adamw", set()
    runs: list[PlannedRun] = []
    only = point
    accum_axes = _accum_axes(s.axes)
    # One composition per (grid point without the accumulation axes, arm); seeds and global batches
    # are set on copies of it (see compose_run).
    base_axes = [a for a in axes if a not in accum_axes]
    for base_combo in itertools.product(*[_axis_values(grid, a) for a in base_axes]):
        base_point = dict(zip(base_axes, base_combo))
        points = [
            {**base_point, **dict(zip(sorted(accum_axes), c))}
            for c in itertools.product(*[_axis_values(grid, a) for a in sorted(accum_axes)])
        ]
        points = [{a: p[a] for a in axes} for p in points if only is None or {a: p[a] for a in axes} == only]
        if not points:
            continue
        base = [
            f"scale={scale}",
            *_point_overrides(s.axes, base_point, None),
            f"results_root={results_root}",
            *s.run_overrides,
        ]
        for arm in grid.optimizer:
            # Quoted: a hex id like 94e607891917 would otherwise parse as a float (inf).
            arm_overrides = [*base, f"optimizer={arm}", f"sweep_id='{sweep_id}'"]
            try:
                composed, choices = compose_unresolved(s.run_config, arm_overrides, config_dir)
            except ConfigError as exc:
                raise sweep_source(exc, s, base_point, arm) from exc
            micro = int(_select(composed, s.run_keys, "micro_batch", 1))
            reference_arm = str(composed.gates.reference_arm)
            treatments = set(composed.gates.treatment_arms)
            plans = []
            for pt in points:
                accum_over = _point_overrides(s.axes, {a: pt[a] for a in sorted(accum_axes)}, micro)
                for seed in seed_list:
                    plans.append(
                        (pt, seed, accum_over, {"seed": int(seed), **dict(map(_as_variant, accum_over))})
                    )
            try:
                cfgs = resolve_variants(composed, [v for *_, v in plans], arm_overrides)
            except ConfigError as exc:
                raise sweep_source(exc, s, base_point, arm) from exc
            for (pt, seed, accum_over, _), cfg in zip(plans, cfgs):
                if s.run_config == "run" and not s.run_config_dir:  # the real run schema: its checks now
                    try:
                        run_config.validate(cfg, dataset=False, model=False)  # the model: main.py (probe)
                    except ConfigError as exc:
                        raise sweep_source(exc, s, pt, arm, seed) from exc
                overrides = [
                    f"scale={scale}",
                    f"optimizer={arm}",
                    f"seed={seed}",
                    *_point_overrides(s.axes, {a: pt[a] for a in base_axes}, None),
                    *accum_over,
                    f"results_root={results_root}",
                    *s.run_overrides,
                ]
                runs.append(
                    _planned(
                        s,
                        scale,
                        pt,
                        arm,
                        int(seed),
                        overrides,
                        cfg,
                        choices,
                        identity,
                        treatments,
                        results_root,
                    )
                )
    return order(runs, reference_arm)


def sweep_source(
    exc: ConfigError, s: Any, point: dict[str, Any], arm: str | None = None, seed: Any = None
) -> ConfigError:
    """A run config's error named by what the user typed: the grid axis or run override that set it."""
    key = exc.key
    for axis, value in point.items():
        if value is not None and str(s.axes[axis]).partition("=")[0].lstrip("+~") == key:
            return ConfigError(f"sweep.grid.{axis}", value, exc.allowed)
    if key == "optimizer" and arm is not None:
        return ConfigError("sweep.grid.optimizer", arm, exc.allowed)
    if key == "seed" and seed is not None:
        return ConfigError("sweep.grid.seed", seed, exc.allowed)
    if any(o.lstrip("+~").partition("=")[0] == key for o in s.run_overrides):
        return ConfigError(f"sweep.run_overrides {key}", exc.value, exc.allowed)
    return exc


def _planned(
    s: Any,
    scale: str,
    point: dict[str, Any],
    arm: str,
    seed: int,
    overrides: list[str],
    cfg: Any,
    choices: dict[str, str],
    identity: Any,
    treatments: set[str],
    results_root: str,
) -> PlannedRun:
    shape = run_shape(cfg, s.run_keys)
    model = str(point.get("model") or _get(cfg, "model.name") or choices.get("model") or "?")
    ds_dir = None
    if s.ensure_data:
        ds_dir = Path(dataset_dir(cfg.data, results_root))
    label = f"model={model} seq_len={shape['seq_len']} global_batch={shape['global_batch']}"
    if point.get("behaviour") is not None:
        label += f" behaviour={point['behaviour']}"
    return PlannedRun(
        index=-1,
        arm=str(arm),
        seed=seed,
        point=dict(point),
        overrides=overrides,
        run_id=str(identity.run_id(cfg)),
        run_dir=Path(identity.run_dir(cfg)),
        model=model,
        n_params=llama_param_count(cfg.model, shape["vocab_size"]),
        setting=label,
        phase="treatment" if arm in treatments else "baseline",
        data_name=str(_get(cfg, "data.name") or choices.get("data") or scale),
        data_overrides=[o for o in overrides if o.startswith("data.")],
        dataset_dir=ds_dir,
        shape=shape,
        cfg=cfg,
    )


def order(runs: list[PlannedRun], reference_arm: str) -> list[PlannedRun]:
    """Models by size; baselines (reference first) before treatments; then setting, seed."""
    arm_rank = {a: i for i, a in enumerate(dict.fromkeys(r.arm for r in runs))}

    def key(r: PlannedRun) -> tuple[Any, ...]:
        return (
            r.n_params,
            r.model,
            r.phase != "baseline",
            r.setting,
            r.seed,
            r.arm != reference_arm,
            arm_rank[r.arm],
        )

    ordered = sorted(runs, key=key)
    for i, r in enumerate(ordered):
        r.index = i
    return ordered


def waves(runs: list[PlannedRun], mode: str = "phased") -> list[list[PlannedRun]]:
    """Consecutive groups that may run in parallel: (model, phase), or (model) when ``mode`` is
    ``together`` (sweep.waves)."""
    together = mode == "together"
    key = lambda r: (r.n_params, r.model, None if together else r.phase)  # noqa: E731
    return [list(group) for _, group in itertools.groupby(runs, key=key)]


# ------------------------------------------------------------------------------------ dry run
@dataclass
class Prediction:
    run: PlannedRun
    weights_and_states_bytes: float
    activation_bytes: float
    peak_bytes: float
    fits: bool
    tokens: int
    tokens_per_s: float
    throughput_source: str

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.tokens_per_s / 3600.0


def measured_throughput(results_root: Path) -> dict[tuple[str, str], list[tuple[int | None, float]]]:
    """(arm, model) -> [(seq_len, tokens/s)] from completed runs of every sweep under results_root."""
    out: dict[tuple[str, str], list[tuple[int | None, float]]] = {}
    for summary_path in sorted(Path(results_root).glob("sweeps/*/runs/*/summary.json")):
        s = read_summary(summary_path.parent)
        if not s or s.get("status") != "completed" or not s.get("tokens_per_s"):
            continue
        seq = (s.get("grid") or {}).get("seq_len")
        out.setdefault((str(s.get("optimizer")), str(s.get("model"))), []).append(
            (seq, float(s["tokens_per_s"]))
        )
    return out


def predict(
    runs: list[PlannedRun],
    sweep_cfg: Any,
    device_memory_gib: float,
    measured: dict[tuple[str, str], list[tuple[int | None, float]]],
) -> list[Prediction]:
    est = sweep_cfg.estimate
    out = []
    for r in runs:
        seq, global_batch, micro = r.shape["seq_len"], r.shape["global_batch"], r.shape["micro_batch"]
        steps, vocab = r.shape["steps"] or 0, r.shape["vocab_size"] or 0
        m = r.cfg.model
        h, n_layers = int(_get(m, "hidden_size")), int(_get(m, "num_hidden_layers"))
        bpp = est.bytes_per_param.get(r.arm)
        if bpp is None:
            raise ConfigError("sweep.estimate.bytes_per_param", r.arm, "an entry for every arm of the grid")
        states = float(bpp) * r.n_params
        if bool(_get(m, "activation_checkpointing", False)):
            acts = (
                (
                    est.checkpointed_bytes_per_token_hidden_layer * n_layers
                    + est.activation_bytes_per_token_hidden_layer
                )
                * micro
                * seq
                * h
            )
        else:
            acts = est.activation_bytes_per_token_hidden_layer * micro * seq * h * n_layers
        acts += est.logits_bytes_per_token_vocab * micro * seq * vocab
        peak = states + acts + est.overhead_gib * GIB
        tokens = steps * global_batch * seq
        seen = measured.get((r.arm, r.model), [])
        same_seq = [t for s, t in seen if s == seq]
        if same_seq or seen:
            vals = same_seq or [t for _, t in seen]
            tps = sorted(vals)[len(vals) // 2]
            source = f"measured ({len(vals)} run(s) of {r.arm} on {r.model})"
        else:
            flops_per_token = 6.0 * r.n_params + 12.0 * n_layers * h * seq
            tps = est.mfu * est.peak_tflops * 1e12 / flops_per_token
            source = (
                f"estimate: (6·N + 12·L·h·s) FLOPs/token at {est.mfu:.0%} MFU of {est.peak_tflops:g} TFLOP/s"
            )
        out.append(Prediction(r, states, acts, peak, peak <= device_memory_gib * GIB, tokens, tps, source))
    return out
