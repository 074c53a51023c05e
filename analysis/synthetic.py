"""Synthetic sweep directories with planted effects, written per the run/sweep contracts.

Used by the known-answer tests (and handy for looking at a report without a cluster). Numbers are
made up but shaped like the study: AdamW's peak memory grows with model size, sequence length and
batch; each arm scales it by a factor; a seed adds a small deterministic jitter (or none).

Usage: ``python -m analysis.synthetic <out_sweep_dir> [go|full|smoke|cpu]`` then ``python -m analysis <dir>``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_json, write_text
from common.ids import content_id

GIB = float(1 << 30)
MODEL_PARAMS = {"1b": 1.1e9, "7b": 6.7e9, "13b": 13.0e9, "tiny": 2.0e6}
MODEL_BASE_MEM_GIB = {"1b": 22.0, "7b": 60.0, "13b": 75.0, "tiny": 0.05}  # AdamW at seq 2048, batch 32


@dataclass
class ArmEffect:
    mem_factor: float  # peak memory relative to AdamW
    rel_l2_factor: float = 1.0
    tokens_factor: float = 1.0
    final_loss_factor: float = 1.0
    state_bytes_per_param: float = 8.0
    state_dtypes: tuple[str, ...] = ("torch.float32",)


DEFAULT_EFFECTS = {
    "adamw": ArmEffect(1.0, state_bytes_per_param=8.0, state_dtypes=("torch.float32",)),
    "adam8bit": ArmEffect(
        0.80,
        rel_l2_factor=1.01,
        tokens_factor=0.97,
        final_loss_factor=1.005,
        state_bytes_per_param=2.0,
        state_dtypes=("torch.uint8", "torch.float32"),
    ),
    "flashoptim": ArmEffect(
        0.60,
        rel_l2_factor=1.02,
        tokens_factor=0.95,
        final_loss_factor=1.01,
        state_bytes_per_param=2.0,
        state_dtypes=("torch.uint8", "torch.float16"),
    ),
}


@dataclass
class SweepSpec:
    sweep_id: str = "synthetic"
    scale: str = "protocol"
    design: str = "mvt"
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = ("7b",)
    seq_lens: tuple[int, ...] = (2048,)
    batches: tuple[int, ...] = (32,)
    behaviours: tuple[str, ...] = ("hyperelastic",)
    effects: dict[str, ArmEffect] = field(default_factory=lambda: dict(DEFAULT_EFFECTS))
    mem_jitter: float = 0.002  # relative, per seed; 0 -> identical memory across seeds
    steps: int = 1000
    log_every: int = 50
    device_memory_bytes: float = 80 * GIB
    device: str = "NVIDIA H100 80GB HBM3"
    mem_measurable: bool = True
    activation_dilution: bool = False
    # Called as mutate(summary, metrics) for every run before it is written: plant effects here.
    mutate: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None
    skip: Callable[[dict[str, Any]], bool] | None = None  # True -> the run is not written at all
    write_sweep_json: bool = True
    # Planted per-seed noise: the SD of log(T/R) of the treatment arm's endpoint (rel_l2_error,
    # tokens_per_s, final_loss), drawn from numpy's default_rng(noise_seed), one draw per seed and cell.
    noise_sd: dict[str, float] = field(default_factory=dict)
    noise_seed: int = 0
    noise_arm: str = "flashoptim"
    # issue 14's assay-sensitivity record: the best non-learned baseline's test rel-L2 (None: not written)
    best_baseline_rel_l2_error: float | None = 0.35


def _jitter(seed: int, arm: str, scale: float) -> float:
    # Deterministic, different per seed and arm, in [-scale, scale].
    h = int(content_id([seed, arm], 8), 16) / 0xFFFFFFFF
    return 1.0 + scale * (2 * h - 1)


def _noise(spec: SweepSpec, seed: int, grid: dict[str, Any]) -> list[float]:
    """Three standard normal draws for (seed, cell), reproducible from spec.noise_seed."""
    key = int(content_id([spec.noise_seed, seed, sorted(grid.items())], 8), 16)
    return [float(x) for x in np.random.default_rng(key).standard_normal(3)]


def _mem_base(model: str, seq_len: int, batch: int) -> float:
    # Activations grow with tokens per step; weights/state do not: savings shrink at long sequences.
    static = MODEL_BASE_MEM_GIB[model] * 0.75
    activations = MODEL_BASE_MEM_GIB[model] * 0.25 * (seq_len * batch) / (2048 * 32)
    return (static + activations) * GIB


def _run(spec: SweepSpec, arm: str, eff: ArmEffect, seed: int, grid: dict[str, Any]) -> tuple[dict, list]:
    adamw_mem = _mem_base(grid["model"], grid["seq_len"], grid["global_batch"])
    static_adamw = MODEL_BASE_MEM_GIB[grid["model"]] * 0.75 * GIB
    activations = adamw_mem - static_adamw
    if spec.activation_dilution:
        # The arm's factor shrinks weights/grads/state only: savings fade where activations dominate.
        peak = static_adamw * eff.mem_factor + activations
    else:
        peak = adamw_mem * eff.mem_factor  # planted reductions are then exact: 1 - mem_factor
    peak *= _jitter(seed, arm, spec.mem_jitter)
    n_params = MODEL_PARAMS[grid["model"]]
    initial_loss = 3.0
    final_loss = 1.0 * eff.final_loss_factor * (1 + 0.003 * (seed % 3))
    tokens = 10000.0 * eff.tokens_factor * (1 + 0.01 * ((seed * 7) % 3 - 1)) * 2048 / grid["seq_len"]
    rel_l2 = 0.10 * eff.rel_l2_factor * (1 + 0.01 * ((seed * 5) % 3 - 1))
    if arm == spec.noise_arm and spec.noise_sd:
        z = _noise(spec, seed, grid)
        rel_l2 *= math.exp(spec.noise_sd.get("rel_l2_error", 0.0) * z[0])
        tokens *= math.exp(spec.noise_sd.get("tokens_per_s", 0.0) * z[1])
        final_loss *= math.exp(spec.noise_sd.get("final_loss", 0.0) * z[2])
    metrics = []
    for step in range(0, spec.steps + 1, spec.log_every):
        frac = step / spec.steps
        loss = final_loss + (initial_loss - final_loss) * math.exp(-6 * frac)
        mem = None if not spec.mem_measurable else peak * (0.5 if step == 0 else 0.97)
        metrics.append(
            {
                "step": step,
                "loss": loss,
                "lr": 1e-4,
                "step_time_s": 2048 * 32 / tokens,
                "tokens_per_s": tokens,
                "mem_allocated_bytes": mem,
                "mem_reserved_bytes": None if mem is None else mem * 1.05,
            }
        )
    settings = {"optimizer": arm, "seed": seed, **grid}
    run_id = content_id(settings)
    breakdown_keys = (
        "params_bytes",
        "grads_bytes",
        "optimizer_state_bytes",
        "activations_bytes",
        "other_bytes",
    )
    if spec.mem_measurable:
        # Component shares (not a memory model): they sum to the peak, with the state shrinking by arm.
        shares = {
            "params_bytes": 0.22,
            "grads_bytes": 0.11,
            "optimizer_state_bytes": 0.44 * eff.state_bytes_per_param / 8,
            "activations_bytes": 0.25 * activations / max(adamw_mem, 1.0) * 4,
        }
        total = sum(shares.values())
        breakdown = {k: peak * v / max(total, 1.0) for k, v in shares.items()}
        breakdown["other_bytes"] = max(peak - sum(breakdown.values()), 0.0)
    else:
        breakdown = dict.fromkeys(breakdown_keys)
    summary = {
        "run_id": run_id,
        "sweep_id": spec.sweep_id,
        "optimizer": arm,
        "model": grid["model"],
        "n_params": n_params,
        "seed": seed,
        "scale": spec.scale,
        "device": spec.device if spec.mem_measurable else "cpu (2 cores)",
        "status": "completed",
        "status_reason": None,
        "gates": (
            [
                {
                    "gate": "A",
                    "step": 50,
                    "fired": False,
                    "outcome": "pass",
                    "values": {"loss_ratio": 1.01},
                    "reason": "loss within 3x AdamW's",
                }
            ]
            if arm.startswith("flashoptim")
            else []
        ),
        "peak_mem_allocated_bytes": peak if spec.mem_measurable else None,
        "peak_mem_reserved_bytes": peak * 1.05 if spec.mem_measurable else None,
        # NVML adds the CUDA context, the same for every arm: the most conservative reduction
        "peak_mem_nvml_process_bytes": peak * 1.07 + 0.01 * static_adamw if spec.mem_measurable else None,
        "optimizer_state_bytes_per_param": eff.state_bytes_per_param,
        "tokens_per_s": tokens,
        "initial_loss": initial_loss,
        "final_loss": final_loss,
        "rel_l2_error": rel_l2,
        "parse_failure_rate": 0.0,
        "steps_completed": spec.steps,
        "grid": grid,
        "dataset_id": "d0a1b2c3d4e5",
        "model_init": "pretrained",
        "mem_breakdown": breakdown,
        "optimizer_state_dtypes": list(eff.state_dtypes),
        "state_materialised": True,
        "trivial_rel_l2_error": 0.35,
        **(
            {"best_baseline_rel_l2_error": spec.best_baseline_rel_l2_error}
            if spec.best_baseline_rel_l2_error is not None
            else {}
        ),
        "median_step_time_s": 2048 * 32 / tokens,
        "mfu": 0.4,
        "checkpoint_bytes": (2.0 + eff.state_bytes_per_param) * n_params,
        "mem_measurable": spec.mem_measurable,
        "val_rel_l2_error": rel_l2 * 1.01,
        "eval_samples": 500,
    }
    return summary, metrics


def write_sweep(root: str | Path, spec: SweepSpec) -> Path:
    """Write ``root`` as results/sweeps/<id>/ would look after the sweep (runs/, sweep.json)."""
    root = Path(root)
    entries = []
    for model in spec.models:
        for seq_len in spec.seq_lens:
            for batch in spec.batches:
                for behaviour in spec.behaviours:
                    grid = {"model": model, "seq_len": seq_len, "global_batch": batch, "behaviour": behaviour}
                    for arm, eff in spec.effects.items():
                        for seed in spec.seeds:
                            summary, metrics = _run(spec, arm, eff, seed, grid)
                            if spec.mutate is not None:
                                spec.mutate(summary, metrics)
                            if spec.skip is not None and spec.skip(summary):
                                continue
                            _write_run(root, spec, summary, metrics)
                            entries.append(
                                {
                                    "run_id": summary["run_id"],
                                    "status": summary["status"],
                                    "optimizer": arm,
                                    "seed": seed,
                                    "grid": grid,
                                }
                            )
    if spec.write_sweep_json:
        write_json(
            root / "sweep.json",
            {
                "sweep_id": spec.sweep_id,
                "protocol": "protocol",
                "scale": spec.scale,
                "design": spec.design,
                "grid": {
                    "model": list(spec.models),
                    "seq_len": list(spec.seq_lens),
                    "global_batch": list(spec.batches),
                    "behaviour": list(spec.behaviours),
                    "optimizer": list(spec.effects),
                    "seed": list(spec.seeds),
                },
                "order": [e["run_id"] for e in entries],
                "runs": entries,
                "gates": [
                    {
                        "gate": "F",
                        "step": None,
                        "fired": False,
                        "outcome": "pass",
                        "values": {"cv_peak_mem": 0.001, "threshold": 0.15},
                        "reason": "CV 0.001 <= 0.15",
                    }
                ],
            },
        )
    return root


def _write_run(root: Path, spec: SweepSpec, summary: dict, metrics: list) -> None:
    run_dir = root / "runs" / summary["run_id"]
    write_text(
        run_dir / "config.yaml",
        f"optimizer: {summary['optimizer']}\nseed: {summary['seed']}\n"
        f"scale: {spec.scale}\nsweep_id: {spec.sweep_id}\n",
    )
    gpus = (
        [{"name": spec.device, "total_memory_bytes": spec.device_memory_bytes}] if spec.mem_measurable else []
    )
    write_json(
        run_dir / "manifest.json",
        {
            "git_sha": "0123456789abcdef0123456789abcdef01234567",
            "git_dirty": False,
            "packages": {"torch": "2.11.0", "bitsandbytes": "0.50.2"},
            "python": "3.12.0",
            "hardware": {
                "hostname": "synthetic",
                "cpu": "x86_64",
                "cpu_count": 16,
                "gpus": gpus,
                "driver": "570",
            },
            "dataset_id": summary["dataset_id"],
            "seed": summary["seed"],
            "start_time": "2026-11-23T10:00:00+00:00",
            "end_time": "2026-11-23T11:00:00+00:00",
            "command": "python -m experiments.run",
        },
    )
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in metrics))
    write_json(run_dir / "summary.json", summary)


def go_spec(**kw: Any) -> SweepSpec:
    return replace(SweepSpec(), **kw)


def full_spec(**kw: Any) -> SweepSpec:
    return replace(
        SweepSpec(design="full", models=("1b", "7b", "13b"), seq_lens=(512, 2048, 8192), batches=(8, 32)),
        **kw,
    )


if __name__ == "__main__":
    kind = sys.argv[2] if len(sys.argv) > 2 else "go"
    specs = {
        "go": go_spec(),
        "full": full_spec(activation_dilution=True),
        "smoke": go_spec(scale="smoke"),
        "cpu": go_spec(mem_measurable=False),
    }
    print(write_sweep(sys.argv[1], specs[kind]))
