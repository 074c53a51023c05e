"""Config mistakes fail in one line (exit 2) before any work or directory; every preset and arm
composes; identity is the content of the result-changing settings."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from run_helpers import compose_run, fixture_results_root

from common.config import CONF_DIR, compose
from experiments import identity
from experiments.config import register, validate
from experiments.run.main import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _config_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "config error" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def _no_runs(root: Path) -> None:
    assert not (root / "sweeps").exists(), "a rejected configuration must leave no run directory"


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (["optimizer=nope"], ["optimizer", "nope", "adamw", "flashoptim"]),
        (["train.lrr=0.1"], ["lrr"]),
        (["train.lr=-0.001"], ["train.lr", "-0.001", "> 0"]),
        (["train.max_steps=many"], ["train.max_steps", "many"]),
        (["optimizer=flashoptim", "optimizer.param_dtype=float32"], ["optimizer.param_dtype", "bfloat16"]),
        (
            ["optimizer=flashoptim_gr", "train.grad_accum_steps=2"],
            ["train.grad_accum_steps", "gradient-release"],
        ),
        (["optimizer=flashoptim_gr", "train.grad_clip_norm=1.0"], ["train.grad_clip_norm"]),
        (["wandb.mode=sometimes"], ["wandb.mode", "offline"]),
        (["model.num_attention_heads=5"], ["model.num_attention_heads", "divisor"]),
        (["harness.measure_step=1"], ["harness.measure_step"]),
        (["scale=huge"], ["scale", "huge", "smoke"]),
        (["train.eval.decoder=fast"], ["train.eval.decoder", "fast", "static", "hf"]),
        # a per-model smoke setting (conf/scale_model/) is checked like any other value
        (["model=smollm2-135m", "train.lr=0"], ["train.lr", "0", "> 0"]),
        (["model=smollm2-135m", "train.max_seq_len=8"], ["train.max_seq_len", "8", "16.."]),
    ],
)
def test_bad_override_is_one_line_exit_2(
    results_root: Path, capsys: pytest.CaptureFixture[str], override: list[str], words: list[str]
) -> None:
    line = _config_error(capsys, [f"results_root={results_root}", *override])
    for w in words:
        assert w in line, line
    _no_runs(results_root)


def test_missing_dataset_names_data_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _config_error(capsys, [f"results_root={tmp_path}"])
    assert "data" in line and "python -m datagen data=smoke" in line
    assert list(tmp_path.iterdir()) == []


def test_sequence_too_short_for_a_sample_is_a_config_error(
    results_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _config_error(capsys, [f"results_root={results_root}", "train.max_seq_len=32"])
    assert "train.max_seq_len" in line and "longest" in line
    _no_runs(results_root)


def test_an_arm_whose_package_is_missing_fails_clearly(
    results_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [f"results_root={results_root}", "optimizer=torchao8bit"]
    if importlib.util.find_spec("torchao") is None:
        line = _config_error(capsys, args)
        assert "torchao" in line and "install" in line
    else:  # installed: the arm composes and validates like any other
        assert (
            compose_run(results_root, ["optimizer=torchao8bit"]).optimizer.target == "torchao.optim.AdamW8bit"
        )


@pytest.mark.parametrize("arm", sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml")))
@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")))
def test_every_arm_and_model_composes(results_root: Path, arm: str, model: str) -> None:
    register()
    cfg = compose("run", [f"results_root={results_root}", f"optimizer={arm}", f"model={model}"])
    assert cfg.optimizer.name == arm and cfg.model.name == model
    if cfg.optimizer.requires is None or importlib.util.find_spec(cfg.optimizer.requires) is not None:
        validate(cfg)


def test_model_presets_have_the_published_shapes() -> None:
    register()
    shapes = {m: compose("run", [f"model={m}"]).model for m in ("llama-1b", "llama2-7b", "llama2-13b")}
    got = {
        m: (
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
            c.vocab_size,
        )
        for m, c in shapes.items()
    }
    assert got == {
        "llama-1b": (2048, 22, 32, 4, 5632, 32000),
        "llama2-7b": (4096, 32, 32, 32, 11008, 32000),
        "llama2-13b": (5120, 40, 40, 40, 13824, 32000),
    }


def test_scales_pick_defaults_and_the_command_line_wins() -> None:
    register()
    proto = compose("run", ["scale=protocol"])
    assert proto.scale == "protocol" and proto.model.name == "llama2-7b" and proto.data.name == "protocol"
    assert (
        proto.train.micro_batch_size * proto.train.grad_accum_steps == 32 and proto.train.max_seq_len == 2048
    )
    over = compose("run", ["scale=protocol", "model=llama-1b", "train.max_steps=7"])
    assert over.model.name == "llama-1b" and over.train.max_steps == 7
    smoke = compose("run", [])
    assert smoke.scale == "smoke" and smoke.model.name == "tiny" and smoke.gates.A.step < proto.gates.A.step


def _tokens(c: Any) -> int:
    t = c.train
    return int(t.max_steps * t.micro_batch_size * t.grad_accum_steps * t.max_seq_len)


def test_pretrained_preset_gets_its_own_smoke_lr_and_budget() -> None:
    """scale=smoke was sized for the random-init tiny model: its lr 3e-3 undid SmolLM2's pretrained
    weights (loss 0.42 -> 7.0) and its 30 x 2 x 768 tokens took 19 minutes on the 2-core CPU; the
    preset gets 3e-4 (the rate that kept them) and a smaller budget, and the command line still wins."""
    register()
    tiny = compose("run", ["scale=smoke"])
    smol = compose("run", ["scale=smoke", "model=smollm2-135m"])
    assert tiny.train.lr == pytest.approx(3e-3)
    assert smol.train.lr == pytest.approx(3e-4)
    assert _tokens(smol) * 4 <= _tokens(tiny)
    assert smol.train.eval.test_samples >= 1 and smol.train.eval.val_samples >= 1  # still evaluates
    g = smol.gates
    assert g.A.step <= smol.train.max_steps and g.B.step <= smol.train.max_steps
    assert g.E.step == g.B.step and g.E.warmup_steps < g.E.step
    cli = compose("run", ["scale=smoke", "model=smollm2-135m", "train.lr=1e-4"])
    assert cli.train.lr == pytest.approx(1e-4)
    # only the smoke scale has such a file: the pilot keeps its lr for this model
    pilot = compose("run", ["scale=pilot", "model=smollm2-135m"])
    assert pilot.train.lr == compose("run", ["scale=pilot"]).train.lr


def test_run_id_is_the_content_of_result_changing_settings(results_root: Path) -> None:
    a = compose_run(results_root, [])
    assert identity.run_id(a) == identity.run_id(
        compose_run(results_root, ["sweep_id=other", "wandb=disabled", "harness.sync_every_steps=5"])
    )
    assert identity.run_id(a) != identity.run_id(compose_run(results_root, ["seed=1"]))
    assert identity.run_id(a) != identity.run_id(compose_run(results_root, ["train.lr=0.001"]))
    b = compose_run(results_root, ["optimizer=flashoptim", "sweep_id=s1"])
    assert identity.reference_run_dir(b, "adamw") == identity.run_dir(
        compose_run(results_root, ["sweep_id=s1"])
    )
    assert identity.run_dir(b).parent == Path(results_root) / "sweeps" / "s1" / "runs"


def test_cli_prints_config_and_rejects_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    ok = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--cfg", "model=llama2-7b"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0 and "hidden_size: 4096" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.run", "optimizer=nope", f"results_root={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "nope" in lines[0] and "Traceback" not in bad.stderr
    assert list(tmp_path.iterdir()) == []
