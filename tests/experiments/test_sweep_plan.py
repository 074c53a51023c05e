"""Planning without running: parameter counts, memory-fit prediction, ordering, ids, launcher configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.config import ConfigError, load
from experiments.sweep import main as S
from experiments.sweep import plan as P
from experiments.sweep.config import validate

REPO = Path(__file__).resolve().parents[2]


def sweep_cfg(*overrides: str) -> Any:
    cfg = load(
        "sweep",
        [f"sweep.scale={o.split('=', 1)[1]}" if o.startswith("scale=") else o for o in overrides],
        multirun=True,
    )
    validate(cfg)
    return cfg


def plan(cfg: Any) -> list[P.PlannedRun]:
    return P.expand(cfg.sweep, cfg.scale, "test", results_root=str(cfg.results_root))


def test_param_count_formula_matches_published_llama_sizes() -> None:
    from omegaconf import OmegaConf

    seven_b = OmegaConf.load(REPO / "conf/model/llama2-7b.yaml")
    assert P.llama_param_count(seven_b) == 6_738_415_616  # Llama-2-7B, as published by Meta/HF
    thirteen_b = OmegaConf.load(REPO / "conf/model/llama2-13b.yaml")
    assert P.llama_param_count(thirteen_b) == 13_015_864_320  # Llama-2-13B
    tiny_llama = OmegaConf.load(REPO / "conf/model/llama-1b.yaml")
    assert P.llama_param_count(tiny_llama) == 1_100_048_384  # TinyLlama-1.1B (GQA, 4 KV heads)


@pytest.mark.slow
def test_param_count_formula_matches_transformers_on_meta_device() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = sweep_cfg(
        "sweep=full",
        "sweep.grid.seed=[0]",
        "sweep.grid.optimizer=[adamw]",
        "sweep.grid.seq_len=[512]",
        "sweep.grid.global_batch=[32]",
        "sweep.grid.behaviour=[hyperelastic]",
        "sweep.ensure_data=false",
    )
    runs = plan(cfg)
    assert [r.model for r in runs] == ["llama-1b", "llama2-7b", "llama2-13b"], "ordered by size"
    seven_b = runs[1]
    m = seven_b.cfg.model
    hf = LlamaConfig(
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_hidden_layers,
        num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.num_key_value_heads,
        vocab_size=m.vocab_size,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(hf)
    assert seven_b.n_params == sum(p.numel() for p in model.parameters())
    assert (
        6.7e9 < seven_b.n_params < 6.8e9
        and 1.0e9 < runs[0].n_params < 1.2e9
        and 12.9e9 < runs[2].n_params < 13.1e9
    )


def test_dry_run_flags_7b_adamw_on_80gb_and_fits_flashoptim(tmp_path: Path) -> None:
    cfg = sweep_cfg(
        "scale=protocol",
        f"results_root={tmp_path}",
        "sweep.grid.seed=[0]",
        "sweep.ensure_data=false",
        "sweep.device_memory_gib=80",
    )
    preds = {p.run.arm: p for p in P.predict(plan(cfg), cfg.sweep, 80.0, {})}
    assert preds["adamw"].run.model == "llama2-7b"
    # 16 bytes/param alone is 6.74e9 x 16 B = 100 GiB > 80 GiB; FlashOptim's 7 B/param is 44 GiB.
    assert not preds["adamw"].fits and preds["adamw"].weights_and_states_bytes / P.GIB > 80
    assert preds["flashoptim"].fits and preds["adam8bit"].fits
    assert preds["flashoptim"].peak_bytes < preds["adam8bit"].peak_bytes < preds["adamw"].peak_bytes
    assert preds["adamw"].throughput_source.startswith("estimate")
    # The protocol's MVT: 1,000 steps x 32 x 2048 tokens.
    assert preds["adamw"].tokens == 1000 * 32 * 2048

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sweep",
            "scale=protocol",
            f"results_root={tmp_path}",
            "sweep.dry_run=true",
            "sweep.grid.seed=[0]",
            "sweep.ensure_data=false",
            "sweep.device_memory_gib=80",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {
        ln.split("│")[3].strip(): ln
        for ln in proc.stdout.splitlines()
        if ln.count("│") > 8 and "run_id" not in ln
    }
    assert "NO (will not fit)" in lines["adamw"] and "yes" in lines["flashoptim"]
    assert "1 predicted not to fit in 80.0 GiB" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "a dry run creates nothing"


def test_dry_run_uses_measured_throughput_when_a_run_exists(tmp_path: Path) -> None:
    from common.atomic import write_json

    write_json(
        tmp_path / "sweeps/old/runs/r1/summary.json",
        {
            "status": "completed",
            "optimizer": "flashoptim",
            "model": "llama2-7b",
            "tokens_per_s": 2000.0,
            "grid": {"seq_len": 2048},
        },
    )
    cfg = sweep_cfg(
        "scale=protocol", f"results_root={tmp_path}", "sweep.grid.seed=[0]", "sweep.ensure_data=false"
    )
    preds = {p.run.arm: p for p in P.predict(plan(cfg), cfg.sweep, 80.0, P.measured_throughput(tmp_path))}
    assert preds["flashoptim"].throughput_source.startswith("measured")
    assert preds["flashoptim"].gpu_hours == pytest.approx(1000 * 32 * 2048 / 2000.0 / 3600)
    assert preds["adamw"].throughput_source.startswith("estimate")


def test_waves_put_baselines_before_treatments_per_model() -> None:
    cfg = sweep_cfg(
        "sweep=full",
        "sweep.grid.seed=[0,1]",
        "sweep.grid.seq_len=[512]",
        "sweep.grid.global_batch=[8]",
        "sweep.grid.behaviour=[poroelastic]",
        "sweep.grid.model=[llama2-13b,llama-1b]",
        "sweep.ensure_data=false",
    )
    runs = plan(cfg)
    waves = P.waves(runs)
    assert [(w[0].model, w[0].phase) for w in waves] == [
        ("llama-1b", "baseline"),
        ("llama-1b", "treatment"),
        ("llama2-13b", "baseline"),
        ("llama2-13b", "treatment"),
    ]
    assert len(runs) == 2 * 2 * 3 and len({r.run_id for r in runs}) == len(runs)
    assert all(r.arm == "flashoptim" for w in waves[1::2] for r in w)
    # global batch 8 is reached by accumulation over the scale's micro-batch.
    assert all(r.shape["global_batch"] == 8 for r in runs)
    assert {r.shape["behaviour"] for r in runs} == {"poroelastic"}


def test_waves_together_put_every_arm_of_a_model_in_one_wave() -> None:
    cfg = sweep_cfg(
        "sweep=full",
        "sweep.grid.seed=[0,1]",
        "sweep.grid.seq_len=[512]",
        "sweep.grid.global_batch=[8]",
        "sweep.grid.behaviour=[poroelastic]",
        "sweep.grid.model=[llama2-13b,llama-1b]",
        "sweep.ensure_data=false",
        "sweep.waves=together",
    )
    runs = plan(cfg)
    waves = P.waves(runs, cfg.sweep.waves)
    assert [(w[0].model, len(w), sorted({r.arm for r in w})) for w in waves] == [
        ("llama-1b", 6, ["adam8bit", "adamw", "flashoptim"]),
        ("llama2-13b", 6, ["adam8bit", "adamw", "flashoptim"]),
    ]
    with pytest.raises(ConfigError, match=r"sweep\.waves"):
        sweep_cfg("sweep.waves=all")


def test_waves_together_is_refused_while_in_run_gates_are_on(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "experiments.sweep", "sweep=mvt", "scale=smoke", "sweep.waves=together"]
    cmd += [f"results_root={tmp_path}", "allow_outside_results_root=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in (proc.stdout + proc.stderr).strip().splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
    assert "sweep.waves" in lines[0] and "gates" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written
    # the smoke scale's gates are on; with them off the check passes
    gates = S.OmegaConf.create({g: {"enabled": False} for g in "ABDE"})
    S.require_gates_for_waves("together", gates)


def test_global_batch_must_be_a_multiple_of_the_micro_batch() -> None:
    cfg = sweep_cfg(
        "sweep=full",
        "sweep.grid.global_batch=[6]",
        "sweep.grid.model=[llama-1b]",
        "sweep.grid.seq_len=[512]",
        "sweep.grid.behaviour=[hyperelastic]",
        'sweep.run_overrides=["train.micro_batch_size=4"]',
        "sweep.ensure_data=false",
    )
    with pytest.raises(ConfigError, match="global_batch"):
        plan(cfg)


def test_sweep_id_is_content_of_result_changing_settings() -> None:
    a = sweep_cfg("scale=smoke")
    probe, _ = P.compose_run("run", ["scale=smoke"], P.CONF_DIR)
    same = S._sweep_id(sweep_cfg("scale=smoke", "sweep.progress_interval_s=9", "sweep.analyse=false"), probe)
    assert S._sweep_id(a, probe) == same
    assert S._sweep_id(sweep_cfg("scale=smoke", "sweep.grid.seed=[0]"), probe) != same
    assert S._sweep_id(sweep_cfg("scale=smoke", "sweep.id=mine"), probe) == "mine"


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "slurm"])
def test_launcher_configs_compose_and_instantiate(tmp_path: Path, launcher: str) -> None:
    from experiments.sweep.launch import RunTask, make_launcher

    extra = ["hydra.launcher.partition=gpu"] if launcher == "slurm" else []
    cfg = sweep_cfg(f"hydra/launcher={launcher}", *extra)
    inst = make_launcher(cfg, RunTask({}, str(tmp_path), "experiments.run", None), tmp_path)
    assert (
        type(inst).__name__
        == {"joblib": "JoblibLauncher", "submitit_local": "LocalLauncher", "slurm": "SlurmLauncher"}[launcher]
    )
    if launcher == "slurm":
        assert inst.params["partition"] == "gpu" and inst.params["gpus_per_node"] == 1
        # A job SLURM ends early is reported to the sweep, never requeued behind its back: rerunning
        # the sweep resumes it from its checkpoint (experiments/sweep/slurm.py).
        assert inst.params["max_num_timeout"] == 0
        assert inst.params["additional_parameters"]["no-requeue"] is True


def test_bad_sweep_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"sweep\.grid\.seed"):
        sweep_cfg("sweep.grid.seed=[0,0]")
    with pytest.raises(ConfigError, match=r"estimate\.bytes_per_param"):
        sweep_cfg("sweep.grid.optimizer=[adamw,torchao8bit]")


def test_planned_run_ids_match_the_run_entry_points_own_composition() -> None:
    """The sweep composes once per arm and sets the seed on copies; ids must equal a plain compose."""
    from common.config import compose
    from experiments import identity

    cfg = sweep_cfg(
        "sweep=full",
        "scale=smoke",
        "sweep.grid.optimizer=[adam8bit]",
        "sweep.grid.seed=[0,3]",
        "sweep.grid.model=[tiny]",
        "sweep.grid.seq_len=[768]",
        "sweep.grid.global_batch=[4,8]",
        "sweep.grid.behaviour=[viscoelastic]",
        "sweep.ensure_data=false",
    )
    runs = plan(cfg)
    assert sorted((r.seed, r.shape["global_batch"]) for r in runs) == [(0, 4), (0, 8), (3, 4), (3, 8)]
    for r in runs:
        direct = compose("run", [*r.overrides, "sweep_id=test"])
        assert identity.run_id(direct) == r.run_id
        assert identity.run_dir(direct) == r.run_dir


def test_a_sweep_id_that_looks_like_a_float_stays_the_sweep_directory(tmp_path: Path) -> None:
    """A 12-hex content id such as 94e607891917 reads as 9.4e607891917 = inf unless quoted: every
    such sweep would then share results/sweeps/inf/."""
    from common.config import compose
    from experiments import identity
    from experiments.sweep.main import Sweep

    cfg = sweep_cfg("sweep=mvt", "scale=smoke", "sweep.grid.seed=[0]", f"results_root={tmp_path}")
    runs = P.expand(cfg.sweep, cfg.scale, "94e607891917", results_root=str(tmp_path))
    assert runs and all(r.run_dir.parent.parent.name == "94e607891917" for r in runs)
    argv = Sweep(cfg, [], "94e607891917")._argv(runs[0])  # what the launched run receives
    assert identity.run_dir(compose("run", argv)) == runs[0].run_dir
